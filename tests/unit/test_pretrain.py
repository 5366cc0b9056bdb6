"""pretrain: schedule, data, accounting, checkpoint and launch helpers; training on a tiny corpus
(loss falls, runs are reproducible, the checkpoint reproduces the recorded validation loss).

The multi-process layouts and the kill-and-resume run are in test_pretrain_parallel.py.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import math
import tempfile
from pathlib import Path

import pytest
import yaml

from components.common.params import SECTIONS, ParamsError, from_dict, load_all
from components.pretrain import accounting, checkpointing, launch
from components.pretrain.core import (
    build_datasets,
    eval_steps,
    evaluate,
    gpt_shape,
    lr_at,
    micro_batches,
    padded_vocab_size,
    run,
    tokenizer_info,
)
from components.pretrain.data import blend_config, eval_sample_ids, source_prefix, step_sample_ids
from components.pretrain.params import Params
from components.pretrain.schedule import checkpoint_steps
from llm.gpt import GPTShape
from tests.gpt_fixtures import PRETRAIN_TIMING as TIMING
from tests.gpt_fixtures import make_token_data

ROOT = Path(__file__).resolve().parents[2]

TINY = {
    "model": {
        "num_layers": 2,
        "hidden_size": 64,
        "num_attention_heads": 4,
        "ffn_hidden_size": 128,
        "seq_length": 32,
    },
    "make_vocab_size_divisible_by": 64,
    "micro_batch_size": 4,
    "global_batch_size": 8,  # two micro batches per step: exercises gradient accumulation
    "train_steps": 30,
    "lr": 3.0e-3,
    "min_lr": 3.0e-4,
    "warmup_steps": 3,
    "eval_interval": 10,
    "eval_iters": 2,
    "seed": 7,
    "cpu_threads": 1,
    "checkpoint_interval": 0,
}
CPU = launch.Machine(cuda=False, gpus=0, transformer_engine=False)
GPU_TE = launch.Machine(cuda=True, gpus=8, transformer_engine=True)


def _params(**overrides) -> Params:
    return from_dict(Params, {**TINY, **overrides}, "pretrain")


# ---------------------------------------------------------------- schedule and params


def test_padded_vocab_size_rounds_up_to_the_multiple_times_tp():
    assert padded_vocab_size(300, 64) == 320
    assert padded_vocab_size(320, 64) == 320
    assert padded_vocab_size(8192, 128) == 8192
    assert padded_vocab_size(8193, 128, tensor_parallel_size=2) == 8448


def test_lr_warms_up_linearly_then_decays_by_cosine_to_min_lr():
    p = _params(train_steps=100, warmup_steps=10, lr=1.0, min_lr=0.1)
    assert lr_at(1, p) == pytest.approx(0.1)
    assert lr_at(10, p) == pytest.approx(1.0)
    assert lr_at(55, p) == pytest.approx(0.55)  # halfway through the decay: the mean of lr and min_lr
    assert lr_at(100, p) == pytest.approx(0.1)
    decay = [lr_at(s, p) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(decay, decay[1:], strict=False))


def test_eval_and_checkpoint_steps_include_the_last_step():
    assert eval_steps(_params(train_steps=30, eval_interval=10)) == [10, 20, 30]
    assert eval_steps(_params(train_steps=25, eval_interval=10)) == [10, 20, 25]
    assert eval_steps(_params(train_steps=5, eval_interval=10, warmup_steps=1)) == [5]
    assert checkpoint_steps(_params(train_steps=25, checkpoint_interval=10)) == [10, 20, 25]
    assert checkpoint_steps(_params(train_steps=25, checkpoint_interval=0)) == [25]


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"global_batch_size": 6}, "pretrain.global_batch_size"),
        ({"data_parallel_size": 4}, "pretrain.global_batch_size"),  # 8 is not a multiple of 4 * 4
        ({"min_lr": 1.0}, "pretrain.min_lr"),
        ({"warmup_steps": 31}, "pretrain.warmup_steps"),
        ({"tensor_parallel_size": 3}, "pretrain.tensor_parallel_size"),
        ({"pipeline_parallel_size": 4}, "pretrain.pipeline_parallel_size"),
        ({"data_parallel_size": 2, "num_nodes": 4}, "pretrain.num_nodes"),
        ({"accelerator_count": 8}, "pretrain.accelerator_type"),
        ({"accelerator_type": "nvidia.com/gpu", "accelerator_count": 8}, "pretrain.accelerator_count"),
        ({"precision": "fp16"}, "pretrain.precision"),
        ({"data": {"sources": []}}, "pretrain.data.sources"),
        ({"data": {"sources": [{"name": "a"}, {"name": "a"}]}}, "pretrain.data.sources"),
        ({"data": {"sources": [{"name": "a", "weight": 0}]}}, "pretrain.data.sources.weight"),
        ({"data": {"split": "90,10"}}, "pretrain.data.split"),
        ({"model": {"hidden_size": 60, "num_attention_heads": 8}}, "pretrain.model.num_attention_heads"),
        ({"model": {"num_layers": "two"}}, "pretrain.model.num_layers"),
        ({"lr_schedule": "cosine"}, "pretrain.lr_schedule"),
    ],
)
def test_bad_params_name_the_key(overrides, key):
    with pytest.raises(ParamsError, match=key.replace(".", r"\.")):
        _params(**overrides)


def test_shape_pads_the_tokenizer_vocabulary():
    shape = gpt_shape(_params(), vocab_size=300)
    assert (shape.vocab_size, shape.seq_length, shape.hidden_size) == (320, 32, 64)
    assert gpt_shape(_params(tensor_parallel_size=2), vocab_size=300).vocab_size == 384


PROFILES = sorted((ROOT / "params" / "profiles").glob("*.yaml"))


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.stem)
def test_hardware_profiles_load_with_the_strict_loader(profile, tmp_path):
    from components.pretrain.profile import main as apply_main

    base = tmp_path / "params.yaml"
    base.write_text(yaml.safe_dump({stage: {} for stage in SECTIONS}))
    out = tmp_path / "params-profile.yaml"
    assert apply_main([str(profile), "--base", str(base), "--output", str(out)]) == 0
    params = load_all(out)["pretrain"]
    assert params.accelerator_count == params.procs_per_node > 0
    assert params.precision == "bf16" and params.peak_flops_per_accelerator > 1e14
    # The GPU paths that exist only there are refused on this CPU before anything starts ...
    with pytest.raises(ParamsError, match=r"pretrain\.(precision|use_distributed_optimizer|num_nodes)"):
        launch.check_machine(params, CPU)
    # ... and accepted on a machine with the GPUs the profile asks for.
    launch.check_machine(params, GPU_TE, launcher_world=params.world_size if params.num_nodes > 1 else None)
    assert launch.resolve_transformer_impl(params, GPU_TE) == "transformer_engine"


def test_a_profile_with_a_bad_key_is_refused(tmp_path, capsys):
    from components.pretrain.profile import main as apply_main

    base = tmp_path / "params.yaml"
    base.write_text(yaml.safe_dump({stage: {} for stage in SECTIONS}))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"pretrain": {"tensor_parallel": 2}}))
    assert apply_main([str(bad), "--base", str(base), "--output", str(tmp_path / "out.yaml")]) == 2
    assert "pretrain.tensor_parallel" in capsys.readouterr().err and not (tmp_path / "out.yaml").exists()


# ---------------------------------------------------------------- machine checks and launch


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"precision": "bf16"}, "pretrain.precision"),
        ({"use_distributed_optimizer": True}, "pretrain.use_distributed_optimizer"),
        ({"transformer_impl": "transformer_engine"}, "pretrain.transformer_impl"),
        ({"data_parallel_size": 2, "num_nodes": 2}, "pretrain.num_nodes"),
    ],
)
def test_what_a_cpu_cannot_run_is_refused_before_launch(overrides, key):
    with pytest.raises(ParamsError, match=key.replace(".", r"\.")):
        launch.check_machine(_params(**overrides), CPU)


def test_launcher_world_and_visible_gpus_must_match_the_layout():
    with pytest.raises(ParamsError, match="launcher started 4 processes"):
        launch.check_machine(_params(data_parallel_size=2), CPU, launcher_world=4)
    with pytest.raises(ParamsError, match="2 GPUs are visible"):
        launch.check_machine(
            _params(data_parallel_size=4, global_batch_size=16), dataclasses.replace(GPU_TE, gpus=2)
        )
    launch.check_machine(_params(data_parallel_size=2, num_nodes=2), CPU, launcher_world=2)
    assert launch.resolve_transformer_impl(_params(), CPU) == "local"
    assert (
        launch.resolve_transformer_impl(_params(), dataclasses.replace(GPU_TE, transformer_engine=False))
        == "local"
    )


def test_torchrun_command_names_the_port_and_one_process_per_rank():
    command = launch.torchrun_command(_params(tensor_parallel_size=2), 29123, ["--data", "d"])
    assert command[1:3] == ["-m", "torch.distributed.run"]
    assert "--nproc-per-node=2" in command and "--master-port=29123" in command
    assert command[-4:] == ["-m", launch.WORKER_MODULE, "--data", "d"]


# ---------------------------------------------------------------- data order and accounting


def test_data_parallel_ranks_split_each_global_batch_exactly():
    single = _params(train_steps=4, micro_batch_size=2, global_batch_size=8)
    dp2 = _params(train_steps=4, micro_batch_size=2, global_batch_size=8, data_parallel_size=2)
    for step in (1, 4):
        one = sorted(i for mb in step_sample_ids(step, single) for i in mb)
        two = sorted(i for r in (0, 1) for mb in step_sample_ids(step, dp2, r) for i in mb)
        assert one == two == list(range((step - 1) * 8, step * 8))
    assert step_sample_ids(1, dp2, 1) == [[2, 3], [6, 7]]  # megatron's sampler: rank r, slice r
    assert eval_sample_ids(dp2, 0) == [[0, 1]] and eval_sample_ids(dp2, 1) == [[2, 3]]


def test_blend_config_per_split_files_or_a_ratio_split(tmp_path):
    one = blend_config(tmp_path, _params())
    assert one["blend_per_split"][0] == ([source_prefix(tmp_path, "train", "text")], None)
    assert one["blend_per_split"][2] is None
    two = blend_config(tmp_path, _params(data={"sources": [{"name": "a", "weight": 3}, {"name": "b"}]}))
    assert two["blend_per_split"][1] == ([source_prefix(tmp_path, "valid", n) for n in "ab"], [3.0, 1.0])
    ratio = blend_config(tmp_path, _params(data={"split": "98,1,1"}))
    assert ratio == {"blend": ([source_prefix(tmp_path, "train", "text")], None), "split": "98,1,1"}


def test_model_flops_match_the_megatron_paper_formula():
    # 72 B s l h^2 (1 + s/6h + V/12lh) per batch of B sequences when ffn = 4h (Narayanan et al. 2021).
    shape = GPTShape(
        vocab_size=51200,
        seq_length=2048,
        num_layers=24,
        hidden_size=2048,
        num_attention_heads=16,
        ffn_hidden_size=8192,
    )
    s, layers, h, v = 2048, 24, 2048, 51200
    paper = 72 * s * layers * h * h * (1 + s / (6 * h) + v / (12 * layers * h)) / s
    assert accounting.model_flops_per_token(shape) == pytest.approx(paper)
    assert accounting.mfu(1000.0, 1e9, 1e12, 2) == pytest.approx(0.5)
    assert accounting.accelerator_hours(1800, 8) == 4.0
    # Device time only: no price and no cost in the stage (monitoring.prices prices it).
    assert not hasattr(accounting, "cost")
    # Held for the wall time: one GPU per rank; on CPU the machines, however many ranks each runs.
    assert accounting.held_devices(8, 1, on_gpu=True) == (8, "gpu")
    assert accounting.held_devices(4, 1, on_gpu=False) == (1, "cpu_machine")
    assert accounting.held_devices(4, 2, on_gpu=False) == (2, "cpu_machine")


def test_mfu_peak_names_its_source_and_says_when_it_is_assumed():
    gpu_peak, gpu_source = accounting.peak_flops(9.89e14, on_gpu=True)
    assert gpu_peak == 9.89e14 and gpu_source == "params: pretrain.peak_flops_per_accelerator"
    cpu_peak, cpu_source = accounting.peak_flops(3.0e11, on_gpu=False)
    assert cpu_peak == 3.0e11 and cpu_source.startswith("params: pretrain.peak_flops_per_accelerator")
    assert "assumed" in cpu_source


def test_the_stage_has_no_price_key():
    with pytest.raises(ParamsError, match=r"^pretrain\.price_per_accelerator_hour: unknown key"):
        _params(price_per_accelerator_hour=3.5)


# ---------------------------------------------------------------- checkpoint files


def test_fingerprint_ignores_how_the_run_is_executed(tmp_path):
    (tmp_path / "f.idx").write_bytes(b"index")
    base = dataclasses.asdict(_params())
    same = dataclasses.asdict(_params(tensor_parallel_size=2, cpu_threads=2, checkpoint_interval=5))
    other = dataclasses.asdict(_params(lr=1e-3))
    shape = {"vocab_size": 320}
    fid = checkpointing.fingerprint(base, shape, [tmp_path / "f.idx"])[0]
    assert checkpointing.fingerprint(same, shape, [tmp_path / "f.idx"])[0] == fid
    assert checkpointing.fingerprint(other, shape, [tmp_path / "f.idx"])[0] != fid
    (tmp_path / "f.idx").write_bytes(b"index2")
    assert checkpointing.fingerprint(base, shape, [tmp_path / "f.idx"])[0] != fid


def test_commit_is_atomic_points_latest_and_keeps_the_newest(tmp_path):
    assert checkpointing.latest_checkpoint(tmp_path) is None
    for step in (4, 8, 12):
        partial = checkpointing.begin(tmp_path, step)
        checkpointing.write_state(partial, checkpointing.TrainState(step=step))
        checkpointing.commit(tmp_path, step, keep=2)
    assert checkpointing.latest_checkpoint(tmp_path).name == "step_00000012"
    assert sorted(p.name for p in tmp_path.glob("step_*")) == ["step_00000008", "step_00000012"]
    # A save killed half-way leaves only a .partial folder: latest still names step 12, and the
    # next save of that step starts from an empty folder.
    leftover = checkpointing.begin(tmp_path, 16)
    (leftover / "junk").write_text("half")
    assert checkpointing.read_state(checkpointing.latest_checkpoint(tmp_path)).step == 12
    assert list(checkpointing.begin(tmp_path, 16).iterdir()) == []


def test_retention_keeps_the_newest_and_drops_superseded_finished_trainings(tmp_path):
    """The checkpoint root stays bounded across params changes (each one starts a new run folder:
    a 5M-parameter demo had left 246 MB, two finished trainings of two checkpoints each)."""

    def train(run_id: str, steps: list[int], train_steps: int = 12) -> Path:
        run_dir = checkpointing.prepare_run_dir(tmp_path, run_id, {"params": {"train_steps": train_steps}})
        for step in steps:
            partial = checkpointing.begin(run_dir, step)
            (partial / "weights.distcp").write_bytes(b"w" * 1024)
            checkpointing.write_state(partial, checkpointing.TrainState(step=step))
            checkpointing.commit(run_dir, step, keep=2, final=step == train_steps)
        return run_dir

    finished = train("a-finished-training", [4, 8, 12])
    assert checkpointing.is_finished(finished)
    killed = train("a-killed-training", [4])
    assert not checkpointing.is_finished(killed)
    (tmp_path / "not-a-run").mkdir()
    current = tmp_path / "the-current-training"
    current.mkdir()
    (current / ".step_00000006.partial").mkdir()  # a save killed half-way, earlier
    train(current.name, [4, 8, 12])
    assert sorted(p.name for p in current.glob("*step_*")) == ["step_00000008", "step_00000012"]
    assert checkpointing.read_state(checkpointing.latest_checkpoint(current)).step == 12
    # The other finished training is gone; the unfinished one (it may resume) and foreign folders stay.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-killed-training", "not-a-run", current.name]
    assert sorted(p.name for p in killed.glob("step_*")) == ["step_00000004"]


def test_train_state_keeps_each_runs_seconds_and_reads_older_states():
    state = checkpointing.TrainState(step=8, run_seconds=[1.5, 2.25], wall_seconds=3.75)
    assert checkpointing.TrainState.from_json(state.to_json()) == state
    # A state written before run_seconds existed: its wall time counts as one earlier run.
    older = json.dumps({"step": 4, "wall_seconds": 7.0, "train_seconds": 5.0})
    assert checkpointing.TrainState.from_json(older).run_seconds == [7.0]
    assert checkpointing.TrainState.from_json(json.dumps({"step": 0})).run_seconds == []


def test_default_checkpoint_root_sits_beside_the_output():
    assert checkpointing.default_root("outputs/pretrain") == Path("outputs/pretrain.checkpoints")
    assert checkpointing.default_root("s3://bucket/pretrain") == Path(".cache/pretrain-checkpoints")


# ---------------------------------------------------------------- training


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_token_data(tmp_path_factory.mktemp("tokenize"))


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("pretrain") / "out"
    return out, run(str(data), str(out), _params())


def _loss_rows(out: Path) -> list[dict[str, str]]:
    with open(out / "loss.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_training_lowers_the_loss_and_writes_the_outputs(trained):
    out, metrics = trained
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint",
        "loss.csv",
        "metrics.json",
        "model.json",
        "steps.csv",
    ]
    rows = _loss_rows(out)
    assert [int(r["step"]) for r in rows] == [10, 20, 30]
    valid = [float(r["valid_loss"]) for r in rows]
    train = [float(r["train_loss"]) for r in rows]
    # From about ln(320) = 5.8 nats for the untrained model, clearly down on this tiny grammar.
    assert metrics["initial_valid_loss"] == pytest.approx(math.log(320), abs=0.3)
    assert valid[-1] < metrics["initial_valid_loss"] - 1.0
    assert valid == sorted(valid, reverse=True) and train == sorted(train, reverse=True)
    assert metrics["valid_loss"] == pytest.approx(valid[-1], abs=1e-6)
    assert metrics["valid_perplexity"] == pytest.approx(math.exp(metrics["valid_loss"]), rel=1e-5)
    assert metrics["steps"] == 30 and metrics["tokens"] == 30 * 8 * 32
    assert metrics["parameters"] == json.loads((out / "metrics.json").read_text())["parameters"] > 0
    shape = GPTShape.from_json(out / "model.json")
    assert metrics["parameters"] == shape.num_parameters()
    # Accounting: model FLOP/s = tokens/s x FLOPs/token; MFU against the params' peak, named.
    assert metrics["model_flops_per_s"] == pytest.approx(
        metrics["tokens_per_s"] * accounting.model_flops_per_token(shape), rel=1e-4
    )
    assert metrics["mfu"] == pytest.approx(metrics["model_flops_per_s"] / 3.0e11, rel=1e-3)
    assert metrics["peak_flops_per_accelerator"] == 3.0e11
    assert metrics["peak_flops_source"] == (
        "params: pretrain.peak_flops_per_accelerator (assumed CPU figure, not measured)"
    )
    # Time, never dollars: one CPU machine held for the run's wall time; one run, so cumulative
    # and this run's figures agree.
    assert metrics["accelerators"] == 1 and metrics["accelerator_hours"] > 0 and "cost" not in metrics
    assert (metrics["held_devices"], metrics["held_device_kind"]) == (1, "cpu_machine")
    assert metrics["accelerator_hours"] == pytest.approx(metrics["seconds"] / 3600, abs=1e-6)
    assert metrics["runs"] == 1 and metrics["seconds"] == metrics["seconds_this_run"] > 0
    assert metrics["accelerator_hours_this_run"] == metrics["accelerator_hours"]
    assert metrics["seconds"] >= metrics["train_seconds"]
    with open(out / "steps.csv", newline="") as f:
        steps = list(csv.DictReader(f))
    assert [int(r["step"]) for r in steps] == list(range(1, 31))
    assert float(steps[0]["lr"]) == pytest.approx(1e-3) and float(steps[0]["grad_norm"]) > 0


def test_same_data_and_params_give_identical_losses(data, trained, tmp_path):
    out, metrics = trained
    again = run(str(data), str(tmp_path / "again"), _params())
    for name in ("loss.csv", "steps.csv", "model.json"):
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes(), name
    assert {k: v for k, v in again.items() if k not in TIMING} == {
        k: v for k, v in metrics.items() if k not in TIMING
    }


def test_checkpoint_reproduces_the_recorded_validation_loss(data, trained):
    from llm.gpt import load_pretrained, megatron_runtime

    out, metrics = trained
    params = _params()
    vocab_size, eod = tokenizer_info(data)
    with megatron_runtime(seed=0), tempfile.TemporaryDirectory() as cache:
        model, shape = load_pretrained(out)
        assert shape == gpt_shape(params, vocab_size)
        _train, valid = build_datasets(data, params, vocab_size, eod, cache)
        batches = list(micro_batches(valid, 0, params.eval_iters, params.micro_batch_size))
        loss = evaluate(model, batches)
    assert loss == pytest.approx(metrics["valid_loss"], abs=1e-5)


def test_two_sources_are_blended_by_weight(data, tmp_path):
    import numpy as np

    from components.tokenize.core import encode_documents, token_dtype, write_indexed_dataset
    from llm.gpt import megatron_runtime
    from llm.tokenizer import load_tokenizer
    from tests.gpt_fixtures import synthetic_documents

    tokenizer = load_tokenizer(data / "tokenizer.json")
    for split, n in (("train", 200), ("valid", 30)):
        docs = encode_documents(tokenizer, synthetic_documents(n, seed=99))
        write_indexed_dataset(
            source_prefix(data, split, "extra"), docs, token_dtype(tokenizer.get_vocab_size())
        )
    sources = [{"name": "text", "weight": 3.0}, {"name": "extra", "weight": 1.0}]
    params = _params(data={"sources": sources})
    vocab_size, eod = tokenizer_info(data)
    with megatron_runtime():  # megatron builds blends on rank 0 first, then the others
        train, valid = build_datasets(data, params, vocab_size, eod, tmp_path)
    assert len(train) >= params.train_steps * params.global_batch_size
    share = np.bincount(train.dataset_index[: len(train)], minlength=2) / len(train)
    assert share == pytest.approx([0.75, 0.25], abs=0.02)
    assert train[0]["tokens"].shape == (32,) and len(valid) >= params.eval_iters * params.micro_batch_size


def test_params_file_with_every_pretrain_key_validates():
    # params.yaml's pretrain section lists every key (with its comment) at its default value.
    section = yaml.safe_load((ROOT / "params.yaml").read_text())["pretrain"]
    params = from_dict(Params, section, "pretrain")
    # One deliberate exception: the demo blends in the task source (task-adaptive pretraining,
    # written by tokenize --task); the default is the corpus alone, which every tokenize output has.
    assert dataclasses.replace(params, data=Params().data) == Params()
    assert [(s.name, s.weight) for s in params.data.sources] == [("text", 0.5), ("task", 0.5)]
    known = {f.name for f in dataclasses.fields(Params)}
    assert set(section) == known and set(section["model"]) == {
        f.name for f in dataclasses.fields(params.model)
    }


# ---------------------------------------------------------------- recomputation


def test_activation_recomputation_changes_memory_not_numbers():
    import torch

    from components.pretrain.training import Trainer
    from llm.gpt import megatron_runtime

    model = {**TINY["model"], "hidden_dropout": 0.1, "attention_dropout": 0.1}  # RNG replay matters
    shape = gpt_shape(_params(model=model), vocab_size=300)
    tokens = torch.randint(0, 300, (4, 33), generator=torch.Generator().manual_seed(0))
    batch = {"tokens": tokens[:, :-1], "labels": tokens[:, 1:], "loss_mask": torch.ones(4, 32)}
    results = {}
    for recompute in ("none", "selective", "full"):
        params = _params(model=model, recompute=recompute, micro_batch_size=4, global_batch_size=4)
        with megatron_runtime(seed=3):
            trainer = Trainer(shape, params, "local")
            results[recompute] = [trainer.train_step(step, [batch])[:2] for step in (1, 2, 3)]
    assert results["selective"] == results["none"] == results["full"]


# ---------------------------------------------------------------- multi-node: PyTorchJob

from components.pretrain import pytorchjob  # noqa: E402

MULTI = {
    "data_parallel_size": 4,
    "num_nodes": 2,
    "global_batch_size": 16,
    "accelerator_type": "nvidia.com/gpu",
}


def _manifest(**overrides) -> dict:
    params = _params(**{**MULTI, "accelerator_count": 2, **overrides})
    return pytorchjob.pytorchjob_manifest(
        params,
        name="pretrain-abc",
        namespace="team",
        image="registry/llm:1",
        data="/mnt/ckpt/jobs/x/data",
        output="/mnt/ckpt/jobs/x/output",
        checkpoint_dir="/mnt/ckpt/pretrain",
        params_file="/mnt/ckpt/jobs/x/params.yaml",
        pvc_name="llm-checkpoints",
        pvc_mount="/mnt/ckpt",
    )


def test_pytorchjob_manifest_runs_the_stage_with_torchrun_on_every_node():
    job = _manifest()
    assert (job["apiVersion"], job["kind"], job["metadata"]["namespace"]) == (
        "kubeflow.org/v1",
        "PyTorchJob",
        "team",
    )
    assert job["spec"]["nprocPerNode"] == "2"
    specs = job["spec"]["pytorchReplicaSpecs"]
    assert (specs["Master"]["replicas"], specs["Worker"]["replicas"]) == (1, 1)
    assert specs["Master"]["restartPolicy"] == specs["Worker"]["restartPolicy"] == "OnFailure"
    assert job["spec"]["runPolicy"] == {"backoffLimit": 3, "cleanPodPolicy": "Running"}
    # Elastic: a fixed-size c10d rendezvous hosted by the master pod's service.
    assert job["spec"]["elasticPolicy"] == {
        "minReplicas": 2,
        "maxReplicas": 2,
        "rdzvBackend": "c10d",
        "rdzvHost": "pretrain-abc-master-0",
        "rdzvPort": 23456,
        "rdzvId": "pretrain-abc",
        "maxRestarts": 3,
    }
    pod = specs["Worker"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["name"] == "pytorch" and container["image"] == "registry/llm:1"
    assert container["ports"] == [{"name": "pytorchjob-port", "containerPort": 23456}]
    assert container["resources"] == {
        "requests": {"cpu": "4", "memory": "32Gi", "nvidia.com/gpu": "2"},
        "limits": {"memory": "32Gi", "nvidia.com/gpu": "2"},
    }
    # No rendezvous flags: torchrun reads them from the PET_* variables the operator injects.
    assert container["command"] == [
        "python",
        "-m",
        "torch.distributed.run",
        "-m",
        "components.pretrain",
        "--tokenized",
        "/mnt/ckpt/jobs/x/data",
        "--output",
        "/mnt/ckpt/jobs/x/output",
        "--checkpoint-dir",
        "/mnt/ckpt/pretrain",
        "--params",
        "/mnt/ckpt/jobs/x/params.yaml",
    ]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["checkpoints"]["persistentVolumeClaim"] == {"claimName": "llm-checkpoints"}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}
    assert {"name": "checkpoints", "mountPath": "/mnt/ckpt"} in container["volumeMounts"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]


def test_pytorchjob_resources_and_policies_come_from_params():
    job_params = {
        "cpu_request": "3500m",
        "cpu_limit": "8",
        "memory_request": "64Gi",
        "memory_limit": "",
        "rendezvous": "static",
        "max_restarts": 0,
        "restart_policy": "ExitCode",
        "backoff_limit": 5,
        "clean_pod_policy": "All",
    }
    job = _manifest(job=job_params)
    assert "elasticPolicy" not in job["spec"]  # static: MASTER_ADDR and the operator's node rank
    assert job["spec"]["runPolicy"] == {"backoffLimit": 5, "cleanPodPolicy": "All"}
    master = job["spec"]["pytorchReplicaSpecs"]["Master"]
    assert master["restartPolicy"] == "ExitCode"
    assert master["template"]["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "3500m", "memory": "64Gi", "nvidia.com/gpu": "2"},
        "limits": {"cpu": "8", "nvidia.com/gpu": "2"},
    }


def test_a_misspelt_or_mistyped_manifest_field_is_refused_by_the_sdk_models():
    job = _manifest()
    assert pytorchjob.validate_manifest(job).spec.elastic_policy.max_restarts == 3  # the SDK model
    misspelt = copy.deepcopy(job)
    container = misspelt["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]
    container["volumeMount"] = container.pop("volumeMounts")
    with pytest.raises(
        ValueError, match=r"Worker\.template\.spec\.containers\[0\]\.volumeMount is not a field"
    ):
        pytorchjob.validate_manifest(misspelt)
    elastic = copy.deepcopy(job)
    elastic["spec"]["elasticPolicy"]["maxRestart"] = 3
    with pytest.raises(ValueError, match=r"spec\.elasticPolicy\.maxRestart is not a field"):
        pytorchjob.validate_manifest(elastic)
    nameless = copy.deepcopy(job)
    del nameless["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["name"]
    with pytest.raises(ValueError, match="name"):
        pytorchjob.validate_manifest(nameless)


@pytest.mark.parametrize(
    ("job", "key"),
    [
        ({"memory_request": "32GB"}, "pretrain.job.memory_request"),
        ({"cpu_limit": "lots"}, "pretrain.job.cpu_limit"),
        ({"rendezvous": "etcd"}, "pretrain.job.rendezvous"),
        ({"rendezvous": "static"}, "pretrain.job.max_restarts"),
        ({"restart_policy": "Sometimes"}, "pretrain.job.restart_policy"),
        ({"backoff_limit": -1}, "pretrain.job.backoff_limit"),
        ({"max_restarts": "3"}, "pretrain.job.max_restarts"),
        ({"replicas": 2}, "pretrain.job.replicas"),
    ],
)
def test_bad_job_params_name_the_key(job, key):
    with pytest.raises(ParamsError, match=key.replace(".", r"\.")):
        _params(**MULTI, accelerator_count=2, job=job)


def test_single_node_job_has_no_workers_and_cpu_jobs_request_no_accelerator():
    job = _manifest(
        num_nodes=1, data_parallel_size=2, global_batch_size=8, accelerator_count=0, accelerator_type=""
    )
    assert list(job["spec"]["pytorchReplicaSpecs"]) == ["Master"]
    assert "elasticPolicy" not in job["spec"]  # the operator accepts one only with Workers
    resources = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["resources"]
    assert resources == {"requests": {"cpu": "4", "memory": "32Gi"}, "limits": {"memory": "32Gi"}}


def test_job_phase_reads_the_operator_conditions():
    assert pytorchjob.job_phase({}) == "Running"
    running = {
        "status": {
            "conditions": [{"type": "Created", "status": "True"}, {"type": "Running", "status": "True"}]
        }
    }
    assert pytorchjob.job_phase(running) == "Running"
    ok = {
        "status": {
            "conditions": [{"type": "Running", "status": "False"}, {"type": "Succeeded", "status": "True"}]
        }
    }
    assert pytorchjob.job_phase(ok) == "Succeeded"
    assert (
        pytorchjob.job_phase({"status": {"conditions": [{"type": "Failed", "status": "True"}]}}) == "Failed"
    )


class _FakeApi:
    """Stands in for the API server: 'runs' the job by writing its output on the shared volume."""

    def __init__(self, outcome: str) -> None:
        self.outcome, self.created, self.polls = outcome, [], 0

    def create(self, manifest: dict) -> None:
        self.created.append(manifest)
        command = manifest["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0][
            "command"
        ]
        output = Path(command[command.index("--output") + 1])
        params_file = Path(command[command.index("--params") + 1])
        assert load_all(params_file)["pretrain"].num_nodes == 2  # the CLI will accept the file
        assert (Path(command[command.index("--tokenized") + 1]) / "tokenizer.json").exists()
        output.mkdir(parents=True)
        (output / "metrics.json").write_text(json.dumps({"valid_loss": 3.5}))
        (output / "model.json").write_text("{}")

    def get(self, namespace: str, name: str) -> dict:
        self.polls += 1
        if self.polls < 3:
            return {"status": {"conditions": [{"type": "Running", "status": "True"}]}}
        return {
            "status": {
                "conditions": [{"type": self.outcome, "status": "True", "reason": "R", "message": "m"}]
            }
        }


def test_launcher_creates_the_job_waits_and_copies_the_output(tmp_path):
    data = tmp_path / "tokenized"
    data.mkdir()
    (data / "tokenizer.json").write_text("{}")
    api = _FakeApi("Succeeded")
    params = _params(**MULTI, accelerator_count=2)
    kwargs = {"image": "img", "pvc_name": "pvc", "pvc_mount": str(tmp_path / "pvc"), "namespace": "team"}
    metrics = pytorchjob.run_pytorchjob(
        str(data), str(tmp_path / "out"), params, **kwargs, api=api, sleep=lambda s: None
    )
    assert metrics == {"valid_loss": 3.5} and api.polls == 3 and len(api.created) == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["metrics.json", "model.json"]
    failing = _FakeApi("Failed")
    with pytest.raises(RuntimeError, match="failed"):
        pytorchjob.run_pytorchjob(
            str(data), str(tmp_path / "out2"), params, **kwargs, api=failing, sleep=lambda s: None
        )
    assert not (tmp_path / "out2").exists()


def test_master_port_is_free_and_below_the_ephemeral_range():
    import random
    import socket

    port = launch.master_port(random.Random(0))
    assert 20000 <= port < launch._ephemeral_low()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # still free
