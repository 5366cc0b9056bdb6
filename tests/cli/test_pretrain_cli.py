"""pretrain CLI: main() on temp dirs writes the stage outputs; bad params exit 2 before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from components.common.params import SECTIONS
from components.pretrain.__main__ import main
from llm.gpt import GPTShape
from tests.gpt_fixtures import make_token_data

TINY = {
    "model": {
        "num_layers": 1,
        "hidden_size": 32,
        "num_attention_heads": 2,
        "ffn_hidden_size": 64,
        "seq_length": 32,
    },
    "make_vocab_size_divisible_by": 64,
    "micro_batch_size": 4,
    "global_batch_size": 4,
    "train_steps": 6,
    "warmup_steps": 2,
    "eval_interval": 3,
    "eval_iters": 1,
    "cpu_threads": 1,
    "checkpoint_interval": 3,
}


def _params(path: Path, **pretrain) -> Path:
    data = {stage: {} for stage in SECTIONS}
    data["pretrain"] = pretrain
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_token_data(tmp_path_factory.mktemp("tokenize"), docs=(60, 10, 10))


def test_main_writes_model_checkpoint_losses_and_metrics(data: Path, tmp_path: Path) -> None:
    out, checkpoints = tmp_path / "pretrain", tmp_path / "ckpt"
    params = _params(tmp_path / "params.yaml", **TINY)
    argv = ["--tokenized", str(data), "--output", str(out), "--params", str(params)]
    assert main([*argv, "--checkpoint-dir", str(checkpoints)]) == 0
    shape = GPTShape.from_json(out / "model.json")
    assert (shape.num_layers, shape.hidden_size, shape.vocab_size) == (1, 32, 320)
    assert (out / "checkpoint" / "metadata.json").exists()
    assert (out / "loss.csv").read_text().splitlines()[0] == "step,train_loss,valid_loss"
    assert [line.split(",")[0] for line in (out / "loss.csv").read_text().splitlines()[1:]] == ["3", "6"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 6 and metrics["valid_loss"] < metrics["initial_valid_loss"]
    assert {
        "train_loss",
        "valid_perplexity",
        "tokens_per_s",
        "mfu",
        "peak_flops_per_accelerator",
        "peak_flops_source",
        "parameters",
        "seconds",
        "seconds_this_run",
        "accelerator_hours",
        "accelerator_hours_this_run",
    } <= metrics.keys()
    assert "cost" not in metrics  # time only: monitoring.prices prices it
    # The resumable checkpoints live in --checkpoint-dir, outside the output folder.
    (latest,) = checkpoints.glob("*/latest")
    assert latest.read_text().strip() == "step_00000006"
    assert sorted(p.name for p in latest.parent.glob("step_*")) == ["step_00000003", "step_00000006"]


@pytest.mark.parametrize(
    ("pretrain", "key"),
    [
        ({**TINY, "global_batch_size": 6}, "pretrain.global_batch_size"),
        ({**TINY, "model": {"hidden_size": "wide"}}, "pretrain.model.hidden_size"),
        ({**TINY, "pipeline_parallel_size": 2}, "pretrain.pipeline_parallel_size"),  # 1 layer
        ({**TINY, "tensor_parallel_size": 4}, "pretrain.tensor_parallel_size"),  # 2 heads
        ({**TINY, "learning_rate": 0.1}, "pretrain.learning_rate"),
        # Prices live in monitoring.prices only: the old stage price key is refused by name.
        ({**TINY, "price_per_accelerator_hour": 3.5}, "pretrain.price_per_accelerator_hour"),
    ],
)
def test_bad_params_exit_2_without_output(data: Path, tmp_path: Path, capsys, pretrain, key) -> None:
    out = tmp_path / "pretrain"
    params = _params(tmp_path / "params.yaml", **pretrain)
    assert main(["--tokenized", str(data), "--output", str(out), "--params", str(params)]) == 2
    assert key in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    ("pretrain", "key"),
    [
        ({**TINY, "precision": "bf16"}, "pretrain.precision"),
        ({**TINY, "use_distributed_optimizer": True}, "pretrain.use_distributed_optimizer"),
    ],
)
def test_gpu_only_settings_exit_2_on_cpu_before_any_launch(data: Path, tmp_path: Path, capsys, pretrain, key):
    out = tmp_path / "pretrain"
    params = _params(tmp_path / "params.yaml", **pretrain)
    assert main(["--tokenized", str(data), "--output", str(out), "--params", str(params)]) == 2
    assert key in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "pretrain.checkpoints").exists()


def test_missing_data_flag_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--output", str(tmp_path / "out")])
    assert exc.value.code == 2
