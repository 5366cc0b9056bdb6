"""The GPU paths, on a machine with a CUDA GPU: ``make test-gpu`` (skipped where there is none).

- pretrain in bf16 mixed precision, with and without megatron's distributed optimizer (the
  GPU-only settings the CPU tests can only see refused), learns, and a run resumed from a mid-run checkpoint ends where
  the uninterrupted run ends;
- a classifier fine-tuned on the GPU learns the task, is saved device-free (the model server and
  the compress stage load it on the CPU), and its int8 variant agrees with it;
- generation on the GPU: with megatron's key/value cache, greedy decoding of a batch of prompts of
  different lengths gives the uncached tokens, each prompt its own, and sampling is reproducible by
  seed (the CPU suite's tests/unit/test_generate.py, on the device).
"""

from __future__ import annotations

import csv
import dataclasses
import shutil
from pathlib import Path

import pytest
import torch

from components.common.params import from_dict
from tests.gpt_fixtures import make_token_data
from tests.task_fixtures import make_pretrained, make_task, make_tokenized

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on one: make test-gpu)"),
]

PRETRAIN = {
    "model": {
        "num_layers": 2,
        "hidden_size": 128,
        "num_attention_heads": 4,
        "ffn_hidden_size": 512,
        "seq_length": 64,
    },
    "make_vocab_size_divisible_by": 64,
    "micro_batch_size": 4,
    "global_batch_size": 8,
    "train_steps": 40,
    "lr": 3.0e-3,
    "min_lr": 3.0e-4,
    "warmup_steps": 4,
    "eval_interval": 10,
    "eval_iters": 2,
    "checkpoint_interval": 10,
    "keep_checkpoints": 4,
    "precision": "bf16",
}
# bf16 matmuls and the fused attention kernels are not bit-reproducible across a reload the way
# the CPU fp32 path is (tests/unit/test_pretrain_parallel.py asserts equality there).
BF16_TOLERANCE = 0.05  # nats/token


def _step_losses(out: Path) -> list[float]:
    with open(out / "steps.csv", newline="") as f:
        return [float(row["train_loss"]) for row in csv.DictReader(f)]


@pytest.mark.parametrize("distributed_optimizer", [False, True])
def test_bf16_pretraining_learns_and_resumes_from_a_mid_run_checkpoint(tmp_path, distributed_optimizer):
    from components.pretrain.core import run
    from components.pretrain.params import Params

    data = make_token_data(tmp_path / "tokenize", docs=(300, 40, 40))
    params = from_dict(Params, {**PRETRAIN, "use_distributed_optimizer": distributed_optimizer}, "pretrain")
    full = run(str(data), str(tmp_path / "full"), params, checkpoint_dir=str(tmp_path / "ckpt"))
    assert full["accelerators"] == 1 and full["mfu"] > 0
    assert full["valid_loss"] < full["initial_valid_loss"] - 1.0  # it learned the grammar

    # As if the job had been killed right after its step-20 checkpoint.
    (run_dir,) = [p.parent for p in (tmp_path / "ckpt").glob("*/latest")]
    killed = tmp_path / "killed" / run_dir.name
    shutil.copytree(run_dir, killed)
    for later in ("step_00000030", "step_00000040"):
        shutil.rmtree(killed / later)
    (killed / "latest").write_text("step_00000020\n")
    resumed = run(str(data), str(tmp_path / "resumed"), params, checkpoint_dir=str(tmp_path / "killed"))
    assert resumed["resumed_from_step"] == 20
    expected, got = _step_losses(tmp_path / "full"), _step_losses(tmp_path / "resumed")
    assert got[:20] == expected[:20]  # the killed run's history is kept
    assert max(abs(a - b) for a, b in zip(got[20:], expected[20:], strict=True)) <= BF16_TOLERANCE
    assert resumed["valid_loss"] == pytest.approx(full["valid_loss"], abs=BF16_TOLERANCE)


def test_a_gpu_fine_tuned_classifier_learns_and_loads_on_the_cpu(tmp_path):
    from components.compress import core as compress
    from components.compress.params import Params as CompressParams
    from components.finetune import core as finetune
    from components.finetune.params import Params as FinetuneParams
    from llm.classifier import load_classifier

    tokenized = make_tokenized(tmp_path / "tokenize")
    pretrained = make_pretrained(tmp_path / "pretrain", tokenized)
    task = make_task(tmp_path / "task.jsonl")
    params = from_dict(
        FinetuneParams,
        {"epochs": 4, "batch_size": 16, "lr": 1e-3, "head_lr": 3e-3, "max_length": 32},
        "finetune",
    )
    metrics = finetune.run(str(pretrained), str(tokenized), str(task), str(tmp_path / "ft"), params)
    assert metrics["valid_macro_f1"] >= 0.75  # the majority class scores 0.375

    classifier = load_classifier(tmp_path / "ft")
    assert classifier.device.type == "cuda" and classifier.traced is None  # traced on the CPU only
    labels, _ = classifier.predict(["the film was good and great", "the film was bad and awful"])
    assert labels == ["positive", "negative"]

    out = tmp_path / "compress"
    compress.run(
        str(tmp_path / "ft"),
        str(tokenized),
        str(task),
        str(out),
        from_dict(CompressParams, {"variants": ["int8"]}, "compress"),
    )
    int8 = load_classifier(out / "int8")
    assert int8.device.type == "cpu"
    texts = [f"the film was {w}" for w in ("good", "great", "bad", "awful", "dull", "fine", "superb", "weak")]
    assert int8.predict(texts)[0] == classifier.predict(texts)[0]


def test_gpu_generation_cached_equals_uncached_and_sampling_follows_the_seed():
    from llm.gpt import GPTShape, build_gpt, megatron_runtime
    from llm.gpt.generate import GenerateParams, generate

    shape = GPTShape(
        vocab_size=384,
        seq_length=64,
        num_layers=2,
        hidden_size=64,
        num_attention_heads=4,
        ffn_hidden_size=128,
        tie_embeddings=False,
    )
    prompts = [[5, 6, 7, 8, 9], [10, 11], [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]]
    greedy = GenerateParams(max_new_tokens=24)
    sampled = GenerateParams(max_new_tokens=24, temperature=1.0, top_p=0.9, seed=7)
    with megatron_runtime(seed=3):
        model = build_gpt(shape).eval()
        assert next(model.parameters()).device.type == "cuda"
        cached = generate(model, prompts, greedy)
        uncached = generate(model, prompts, greedy, use_cache=False)
        assert [g.tokens for g in cached.generations] == [g.tokens for g in uncached.generations]
        alone = [generate(model, [p], greedy).generations[0].tokens for p in prompts]
        assert [g.tokens for g in cached.generations] == alone
        first = generate(model, prompts, sampled)
        again = generate(model, prompts, sampled)
        other = generate(model, prompts, dataclasses.replace(sampled, seed=8))
    assert [g.tokens for g in first.generations] == [g.tokens for g in again.generations]
    assert [g.tokens for g in first.generations] != [g.tokens for g in other.generations]
