"""pretrain across processes (gloo, 2 ranks launched by the stage with torchrun) and across a kill.

- TP=2 and DP=2 give the single-process loss at every step within ``TOLERANCE`` (they differ only
  in the order of floating-point sums: the all-reduce of row-parallel outputs and of gradients);
- PP=2 (1F1B, tied embeddings across the two stages) trains: its loss falls;
- the weights saved at TP=2 load at TP=1 and reproduce the recorded validation loss; a
  resumable checkpoint written by one process resumes at TP=2 (model and optimizer resharded);
- a run SIGKILLed mid-training resumes from its latest checkpoint and then matches the
  uninterrupted run bit for bit (losses at every step, data order, dropout, final weights);
- invalid layouts are refused before anything is launched;
- an elastic range (job.min_nodes, job.max_nodes): data_parallel_size follows the nodes that
  joined with the global batch kept, it reaches the PyTorchJob's elasticPolicy (SDK round trip),
  and a range some node count of which cannot hold the layout or split the batch is refused
  (the preempted-node rehearsal itself is in tests/pipeline/test_pytorchjob_nodes.py).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
import yaml

from components.common.params import SECTIONS, ParamsError, from_dict
from components.pretrain import checkpointing, launch, pytorchjob
from components.pretrain.core import build_datasets, evaluate, micro_batches, run, tokenizer_info
from components.pretrain.data import step_sample_ids
from components.pretrain.params import Params
from tests.gpt_fixtures import PRETRAIN_TIMING, make_token_data

ROOT = Path(__file__).resolve().parents[2]
# Largest allowed difference between a 2-process run and the single process, per step (nats/token).
TOLERANCE = 1e-4

TINY = {
    "model": {
        "num_layers": 2,
        "hidden_size": 64,
        "num_attention_heads": 4,
        "ffn_hidden_size": 128,
        "seq_length": 32,
    },
    # 32 * tp(2) = 64 divides the padded 320 rows, so TP=1 and TP=2 build the same 320-row model.
    "make_vocab_size_divisible_by": 32,
    "micro_batch_size": 2,
    "global_batch_size": 8,
    "train_steps": 8,
    "lr": 3.0e-3,
    "min_lr": 3.0e-4,
    "warmup_steps": 2,
    "eval_interval": 4,
    "eval_iters": 2,
    "seed": 11,
    "cpu_threads": 1,
    "checkpoint_interval": 4,
}


def _params(**overrides) -> Params:
    return from_dict(Params, {**TINY, **overrides}, "pretrain")


def _step_losses(out: Path) -> list[float]:
    with open(out / "steps.csv", newline="") as f:
        return [float(row["train_loss"]) for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_token_data(tmp_path_factory.mktemp("tokenize"), docs=(120, 20, 20))


@pytest.fixture(scope="module")
def single(data, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("single") / "out"
    return out, run(str(data), str(out), _params())


@pytest.mark.parametrize(
    "layout", [{"tensor_parallel_size": 2}, {"data_parallel_size": 2}], ids=["tp2", "dp2"]
)
def test_two_processes_match_one_process(data, single, tmp_path, layout):
    out, metrics = tmp_path / "out", None
    metrics = run(str(data), str(out), _params(**layout))
    base_out, base = single
    assert metrics["accelerators"] == 2
    expected, got = _step_losses(base_out), _step_losses(out)
    assert len(got) == len(expected) == TINY["train_steps"]
    assert max(abs(a - b) for a, b in zip(got, expected, strict=True)) <= TOLERANCE
    assert metrics["valid_loss"] == pytest.approx(base["valid_loss"], abs=TOLERANCE)
    assert metrics["parameters"] == base["parameters"]
    if "tensor_parallel_size" in layout:
        # The TP=2 weights, resharded on load, give the recorded validation loss at TP=1.
        from llm.gpt import load_pretrained, megatron_runtime

        params = _params()
        vocab_size, eod = tokenizer_info(data)
        with megatron_runtime(seed=0), tempfile.TemporaryDirectory() as cache:
            model, _shape = load_pretrained(out)
            _train, valid = build_datasets(data, params, vocab_size, eod, cache)
            loss = evaluate(model, list(micro_batches(valid, 0, params.eval_iters, params.micro_batch_size)))
        assert loss == pytest.approx(metrics["valid_loss"], abs=TOLERANCE)


def test_a_single_process_checkpoint_resumes_at_tensor_parallel_2(data, single, tmp_path):
    import shutil

    base_out, base = single
    (run_dir,) = [p.parent for p in Path(f"{base_out}.checkpoints").glob("*/latest")]
    # As if the single process had been killed right after its step-4 checkpoint.
    copy = tmp_path / "ckpt" / run_dir.name
    shutil.copytree(run_dir, copy)
    shutil.rmtree(copy / "step_00000008")
    (copy / "latest").write_text("step_00000004\n")
    out = tmp_path / "out"
    metrics = run(str(data), str(out), _params(tensor_parallel_size=2), checkpoint_dir=str(tmp_path / "ckpt"))
    assert metrics["resumed_from_step"] == 4 and metrics["accelerators"] == 2
    # The time counts both runs: the first up to its step-4 checkpoint, then this one (torchrun
    # launch included); two ranks on one CPU machine hold one machine.
    first = checkpointing.read_state(copy / "step_00000004")
    assert len(first.run_seconds) == 1 and first.run_seconds[0] > 0
    assert metrics["runs"] == 2 and metrics["seconds"] > metrics["seconds_this_run"] > 0
    assert metrics["seconds"] == pytest.approx(first.run_seconds[0] + metrics["seconds_this_run"], abs=1e-5)
    assert (metrics["held_devices"], metrics["held_device_kind"]) == (1, "cpu_machine")
    assert metrics["accelerator_hours"] == pytest.approx(metrics["seconds"] / 3600, abs=1e-6)
    expected, got = _step_losses(base_out), _step_losses(out)
    assert got[:4] == expected[:4]  # the history of the first run
    assert max(abs(a - b) for a, b in zip(got[4:], expected[4:], strict=True)) <= TOLERANCE
    assert metrics["valid_loss"] == pytest.approx(base["valid_loss"], abs=TOLERANCE)


def test_pipeline_parallel_trains(data, tmp_path):
    out = tmp_path / "out"
    metrics = run(str(data), str(out), _params(pipeline_parallel_size=2, train_steps=12, eval_interval=6))
    losses = _step_losses(out)
    # PP=2 draws the second stage's initial weights in another order: not the single-process
    # numbers, but it must learn: well below the untrained ln(320) = 5.77 nats.
    assert metrics["valid_loss"] < metrics["initial_valid_loss"] - 0.5
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5
    assert metrics["parameters"] > 0 and (out / "checkpoint" / "metadata.json").exists()


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"tensor_parallel_size": 3}, "pretrain.tensor_parallel_size"),
        ({"pipeline_parallel_size": 3}, "pretrain.pipeline_parallel_size"),
        ({"data_parallel_size": 3}, "pretrain.global_batch_size"),
        ({"data_parallel_size": 2, "num_nodes": 3}, "pretrain.num_nodes"),
    ],
)
def test_invalid_layouts_are_refused_before_launch(overrides, key):
    with pytest.raises(ParamsError, match=key.replace(".", r"\.")):
        _params(**overrides)


def test_multi_node_without_a_launcher_is_refused_before_launch(data, tmp_path):
    params = _params(data_parallel_size=2, num_nodes=2)
    with pytest.raises(ParamsError, match=r"pretrain\.num_nodes"):
        run(str(data), str(tmp_path / "out"), params)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.checkpoints").exists()


# ---------------------------------------------------------------- kill and resume

RESUME = {
    **TINY,
    "model": {**TINY["model"], "hidden_dropout": 0.1, "attention_dropout": 0.1},  # RNG streams matter
    "train_steps": 64,  # room for the kill to land mid-run even on a slow, busy machine
    "eval_interval": 16,
    "checkpoint_interval": 4,
}


def _final_state(checkpoint_root: Path) -> checkpointing.TrainState:
    (run_dir,) = [p.parent for p in checkpoint_root.glob(f"*/{checkpointing.LATEST}")]
    return checkpointing.read_state(checkpointing.latest_checkpoint(run_dir))


def _latest_step(checkpoint_root: Path) -> int:
    pointers = list(checkpoint_root.glob(f"*/{checkpointing.LATEST}"))
    return int(pointers[0].read_text().strip().split("_")[1]) if pointers else 0


def test_killed_run_resumes_and_matches_the_uninterrupted_run(data, tmp_path):
    params = from_dict(Params, RESUME, "pretrain")
    full = run(str(data), str(tmp_path / "full"), params, checkpoint_dir=str(tmp_path / "full-ckpt"))

    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump({**{s: {} for s in SECTIONS}, "pretrain": RESUME}))
    out, ckpt = tmp_path / "resumed", tmp_path / "resumed-ckpt"
    command = [sys.executable, "-m", "components.pretrain", "--tokenized", str(data), "--output", str(out)]
    command += ["--checkpoint-dir", str(ckpt), "--params", str(params_file)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = tmp_path / "killed.log"
    with open(log, "wb") as stderr_file:
        # Its own process group: the kill takes the stage and any helper it forked, as when a
        # pod or a machine goes away.
        proc = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr_file, start_new_session=True
        )
        deadline = time.monotonic() + 240
        while _latest_step(ckpt) < 8 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)  # a real kill: no cleanup, no final checkpoint
        proc.wait(timeout=60)
    stderr = log.read_text(errors="replace")
    killed_at = _latest_step(ckpt)
    assert proc.returncode == -signal.SIGKILL, stderr[-2000:]
    assert 8 <= killed_at < RESUME["train_steps"] and not out.exists()
    killed = _final_state(ckpt)  # the killed run's own seconds, up to its last checkpoint
    assert len(killed.run_seconds) == 1 and killed.wall_seconds == killed.run_seconds[0] > 0

    resumed = run(str(data), str(out), params, checkpoint_dir=str(ckpt))
    assert resumed["resumed_from_step"] == killed_at
    # Cumulative time: the killed run's and this one's, each counted once; this run alone is less.
    assert resumed["runs"] == 2 and resumed["seconds"] >= resumed["seconds_this_run"] > 0
    assert resumed["seconds"] == pytest.approx(killed.run_seconds[0] + resumed["seconds_this_run"], abs=1e-5)
    assert resumed["accelerator_hours"] == pytest.approx(resumed["seconds"] / 3600, abs=1e-6)
    assert resumed["accelerator_hours_this_run"] == pytest.approx(
        resumed["seconds_this_run"] / 3600, abs=1e-6
    )
    assert _final_state(ckpt).run_seconds[0] == killed.run_seconds[0]
    # Every step (those of the killed process and those after the resume), bit for bit.
    assert _final_state(ckpt).steps == _final_state(tmp_path / "full-ckpt").steps
    assert _final_state(ckpt).evals == _final_state(tmp_path / "full-ckpt").evals
    for name in ("loss.csv", "steps.csv", "model.json"):
        assert (out / name).read_bytes() == (tmp_path / "full" / name).read_bytes(), name
    timing = PRETRAIN_TIMING
    assert {k: v for k, v in resumed.items() if k not in timing | {"resumed_from_step", "runs"}} == {
        k: v for k, v in full.items() if k not in timing | {"resumed_from_step", "runs"}
    }
    _assert_same_weights(out, tmp_path / "full")
    # Another rerun finds the final checkpoint and trains no further step.
    again = run(str(data), str(tmp_path / "again"), params, checkpoint_dir=str(ckpt))
    assert again["resumed_from_step"] == RESUME["train_steps"]
    done = _final_state(ckpt).run_seconds  # the two runs that trained, up to the final checkpoint
    assert again["runs"] == 3 and len(done) == 2
    assert again["seconds"] == pytest.approx(sum(done) + again["seconds_this_run"], abs=1e-5)
    assert json.loads((tmp_path / "again" / "model.json").read_text()) == json.loads(
        (out / "model.json").read_text()
    )


def _assert_same_weights(a: Path, b: Path) -> None:
    from llm.gpt import load_pretrained, megatron_runtime

    with megatron_runtime(seed=0):
        first = {k: v for k, v in load_pretrained(a)[0].state_dict().items() if torch.is_tensor(v)}
        second = {k: v for k, v in load_pretrained(b)[0].state_dict().items() if torch.is_tensor(v)}
    assert first.keys() == second.keys()
    for key, value in first.items():
        assert torch.equal(value, second[key]), key


# ---------------------------------------------------------------- elastic range

ELASTIC_JOB = {"min_nodes": 1, "max_nodes": 4, "rendezvous_last_call_s": 7, "node_heartbeat_s": 2}


def _elastic(**overrides) -> Params:
    # 2 nodes x 2 processes (tp=2, dp=2); 1 to 4 nodes -> dp 1 to 4; 24 = 2 micro x dp x accumulation.
    return _params(
        tensor_parallel_size=2,
        data_parallel_size=2,
        num_nodes=2,
        global_batch_size=24,
        job=ELASTIC_JOB,
        **overrides,
    )


def test_data_parallel_size_follows_the_nodes_and_the_global_batch_stays():
    params = _elastic()
    assert params.node_range == (1, 4) and params.procs_per_node == 2
    sizes = {}
    for nodes in range(1, 5):
        at = params.at_nodes(nodes)
        assert (at.num_nodes, at.procs_per_node, at.tensor_parallel_size) == (nodes, 2, 2)
        assert at.data_parallel_size == nodes and at.global_batch_size == 24
        assert at.grad_accumulation * at.micro_batch_size * at.data_parallel_size == 24
        assert at.node_range == (1, 4)  # written out: 0 no longer means "the start size"
        # Every step trains on the same samples, whichever ranks share them.
        for step in (1, 5):
            ids = sorted(
                i for r in range(at.data_parallel_size) for mb in step_sample_ids(step, at, r) for i in mb
            )
            assert ids == list(range((step - 1) * 24, step * 24))
        sizes[nodes] = (at.data_parallel_size, at.grad_accumulation)
    assert sizes == {1: (1, 12), 2: (2, 6), 3: (3, 4), 4: (4, 3)}  # (dp, micro batches per rank and step)
    assert params.at_nodes(2) is params
    with pytest.raises(ValueError, match=r"pretrain\.job\.min_nodes: 5 node\(s\) is outside"):
        params.at_nodes(5)


def test_a_torchrun_world_inside_the_range_is_run_at_its_size_and_one_outside_is_refused():
    params = _elastic()
    for world, dp in ((2, 1), (4, 2), (8, 4)):
        launch.check_machine(params, launch.Machine(cuda=False, gpus=0, transformer_engine=False), world)
        assert launch.at_launcher_world(params, world).data_parallel_size == dp
    assert launch.at_launcher_world(params, None) is params
    for world in (3, 10):  # 1.5 nodes; 5 nodes
        with pytest.raises(ParamsError, match=r"pretrain\.data_parallel_size: the launcher started"):
            launch.at_launcher_world(params, world)
    fixed = _params(data_parallel_size=2, num_nodes=2)
    with pytest.raises(ParamsError, match="launcher started 1 processes"):
        launch.at_launcher_world(fixed, 1)


def _job_manifest(params: Params) -> dict:
    return pytorchjob.pytorchjob_manifest(
        params,
        name="pretrain-el",
        namespace="team",
        image="llm:1",
        data="/mnt/ckpt/jobs/x/data",
        output="/mnt/ckpt/jobs/x/output",
        checkpoint_dir="/mnt/ckpt/pretrain",
        params_file="/mnt/ckpt/jobs/x/params.yaml",
        pvc_name="llm-checkpoints",
        pvc_mount="/mnt/ckpt",
    )


def test_the_elastic_range_is_the_jobs_elastic_policy_through_the_sdk_models():
    job = _job_manifest(_elastic())
    policy = job["spec"]["elasticPolicy"]
    assert (policy["minReplicas"], policy["maxReplicas"]) == (1, 4)
    assert policy["rdzvConf"] == [
        {"key": "last_call_timeout", "value": "7"},
        {"key": "keep_alive_interval", "value": "2"},
    ]
    # The pods created are the desired size; torchrun's range is the policy's.
    specs = job["spec"]["pytorchReplicaSpecs"]
    assert (specs["Master"]["replicas"], specs["Worker"]["replicas"]) == (1, 1)
    assert job["spec"]["nprocPerNode"] == "2"
    model = pytorchjob.validate_manifest(job)  # the Training Operator SDK's own models
    assert (model.spec.elastic_policy.min_replicas, model.spec.elastic_policy.max_replicas) == (1, 4)
    assert [c.key for c in model.spec.elastic_policy.rdzv_conf] == [
        "last_call_timeout",
        "keep_alive_interval",
    ]
    # A fixed size (the default, 0 = num_nodes) keeps torchrun's rendezvous defaults.
    fixed = _job_manifest(_params(tensor_parallel_size=2, data_parallel_size=2, num_nodes=2))
    assert fixed["spec"]["elasticPolicy"]["minReplicas"] == fixed["spec"]["elasticPolicy"]["maxReplicas"] == 2
    assert "rdzvConf" not in fixed["spec"]["elasticPolicy"]
    # The range survives the params file the pods read.
    assert from_dict(Params, json.loads(json.dumps(dataclasses.asdict(_elastic()))), "pretrain") == _elastic()


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"job": {"min_nodes": 3}}, "pretrain.job.min_nodes"),  # above num_nodes
        ({"job": {"max_nodes": 1}}, "pretrain.job.max_nodes"),  # below num_nodes
        ({"job": {"min_nodes": -1}}, "pretrain.job.min_nodes"),
        ({"job": {"min_nodes": 1, "rendezvous": "static", "max_restarts": 0}}, "pretrain.job.min_nodes"),
        ({"job": {"max_nodes": 3, "rendezvous": "static", "max_restarts": 0}}, "pretrain.job.max_nodes"),
        ({"job": {"max_nodes": 3}}, "pretrain.job.max_nodes"),  # 3 nodes: dp 3 does not split 8
        ({"job": {"min_nodes": 1, "max_nodes": 4}, "global_batch_size": 8}, "pretrain.job.max_nodes"),
        ({"job": {"rendezvous_last_call_s": 0}}, "pretrain.job.rendezvous_last_call_s"),
        ({"job": {"node_heartbeat_s": 0}}, "pretrain.job.node_heartbeat_s"),
    ],
)
def test_an_elastic_range_that_cannot_run_is_refused_naming_the_key(overrides, key):
    base = {"data_parallel_size": 2, "num_nodes": 2, "global_batch_size": 8}
    with pytest.raises(ParamsError, match=key.replace(".", r"\.")):
        _params(**{**base, **overrides})


def test_an_elastic_range_that_cannot_hold_a_model_replica_is_refused():
    # tp=2 on 1 process per node: one node cannot hold a replica.
    with pytest.raises(ParamsError, match=r"pretrain\.job\.min_nodes: at 1 node\(s\).*tp\*pp = 2"):
        _params(tensor_parallel_size=2, data_parallel_size=2, num_nodes=4, job={"min_nodes": 1})
    # Every count in the range must hold one: 3 nodes of 1 process cannot.
    with pytest.raises(ParamsError, match=r"pretrain\.job\.min_nodes: at 3 node\(s\)"):
        _params(tensor_parallel_size=2, data_parallel_size=2, num_nodes=4, job={"min_nodes": 2})


def test_a_one_pod_job_cannot_grow_into_workers_it_does_not_have():
    params = _params(job={"max_nodes": 2})  # fine for dvc repro: one process, the range unused
    with pytest.raises(ParamsError, match=r"pretrain\.job\.max_nodes: a job that starts on one pod"):
        _job_manifest(params)
