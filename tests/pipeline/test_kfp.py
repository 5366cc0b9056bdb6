"""The Kubeflow pipeline: compiles, loads back with kfp, stays in sync with the checked-in YAML, and
runs under kfp.local with outputs identical to the DVC run's."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import pytest
import yaml
from kfp import components

from components.common.kfp import BASE_IMAGE
from components.common.params import STAGES, load_all, to_dict
from pipelines.compile import DEFAULT_OUTPUT, compile_pipeline
from pipelines.local_run import run_local
from tests.pipeline.conftest import ROOT, TINY_PARAMS


def test_compiled_pipeline_loads_back_with_kfp(tmp_path: Path):
    path = compile_pipeline(ROOT / "params.yaml", tmp_path / "pipeline.yaml")
    loaded = components.load_component_from_file(str(path))
    assert loaded.name == "llm-production-line"
    # The compiled file holds the pipeline spec, then the Kubernetes platform spec (kfp-kubernetes).
    spec, platform = yaml.safe_load_all(path.read_text())
    assert set(spec["root"]["dag"]["tasks"]) == set(STAGES)
    # Every stage's pipeline parameter defaults to its params.yaml section, under the same name.
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    for stage, params in load_all(ROOT / "params.yaml").items():
        assert parameters[stage]["defaultValue"] == json.loads(json.dumps(to_dict(params)))
    executors = spec["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {BASE_IMAGE}
    # Training pods get shared memory and the checkpoint PVC; the data-lake step its secret.
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert {"exec-pretrain", "exec-finetune"} <= {name for name, cfg in k8s.items() if "pvcMount" in cfg}
    assert all(
        k8s[e]["emptyDirMounts"][0]["mountPath"] == "/dev/shm" for e in ("exec-pretrain", "exec-finetune")
    )
    assert k8s["exec-ingest"]["secretAsEnv"][0]["secretName"] == "data-lake-credentials"
    tasks = spec["root"]["dag"]["tasks"]
    # Cached: every deterministic step; not the gate, which reads the promotion record as it is now.
    assert {name for name, task in tasks.items() if not task["cachingOptions"].get("enableCache")} == {
        "select"
    }
    assert tasks["ingest"]["retryPolicy"]["maxRetryCount"] == 3


def test_accelerators_come_from_params(tmp_path: Path):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["finetune"].update(accelerator_type="nvidia.com/gpu", accelerator_count=1)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    spec, _ = yaml.safe_load_all(compile_pipeline(params, tmp_path / "p.yaml").read_text())
    resources = {
        name: e["container"].get("resources", {}) for name, e in spec["deploymentSpec"]["executors"].items()
    }
    accelerator = resources["exec-finetune"]["accelerator"]
    assert (accelerator["resourceType"], accelerator["resourceCount"]) == ("nvidia.com/gpu", "1")
    assert "accelerator" not in resources["exec-pretrain"]


def test_checked_in_pipeline_yaml_is_in_sync(tmp_path: Path):
    path = compile_pipeline(ROOT / "params.yaml", tmp_path / "pipeline.yaml")
    # Compare the specs, not the text: kfp's header comment lists dict defaults in a varying order.
    fresh = list(yaml.safe_load_all(path.read_text()))
    assert fresh == list(yaml.safe_load_all((ROOT / DEFAULT_OUTPUT).read_text())), (
        "run `make compile` and commit the YAML"
    )


def _same_files(a: Path, b: Path) -> list[str]:
    """Relative paths of the files under ``a``; asserts ``b`` holds byte-identical copies."""
    names = sorted(str(p.relative_to(a)) for p in a.rglob("*") if p.is_file() and p.name != "metrics.json")
    assert names == sorted(
        str(p.relative_to(b)) for p in b.rglob("*") if p.is_file() and p.name != "metrics.json"
    )
    _, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    assert mismatch == [] and errors == []
    return names


@pytest.mark.slow
def test_kfp_local_run_matches_the_dvc_run(dvc_project: Path, tmp_path: Path):
    run_dir = run_local(
        TINY_PARAMS,
        tmp_path / "kfp",
        news=str(ROOT / "data/raw/news_articles.csv"),
        reviews=str(ROOT / "data/raw/rotten_tomatoes.csv.bz2"),
    )
    dvc_out = dvc_project / "outputs"
    assert "documents/part-00000-of-00001.jsonl" in _same_files(
        dvc_out / "clean", run_dir / "clean" / "cleaned"
    )
    assert "train_text_document.bin" in _same_files(dvc_out / "tokenize", run_dir / "tokenize" / "tokenized")
    dvc_eval = json.loads((dvc_out / "evaluate" / "metrics.json").read_text())
    kfp_eval = json.loads((run_dir / "evaluate" / "evaluation" / "metrics.json").read_text())
    for key in ("accuracy", "macro_f1", "perplexity"):
        assert kfp_eval[key] == dvc_eval[key], key
    kfp_monitor = json.loads((run_dir / "monitor" / "reports" / "metrics.json").read_text())
    assert kfp_monitor["batches"]["plots"]["drift_detected"] is True
    assert (run_dir / "monitor" / "report").read_text().count("<iframe") == 2


@pytest.mark.parametrize(
    ("profile", "executor"),
    [("gpt-1b-8gpu.yaml", "exec-pretrain"), ("gpt-1b-2x8gpu.yaml", "exec-pretrain-pytorchjob")],
)
def test_gpu_profiles_compile_with_accelerators_or_a_pytorchjob(tmp_path: Path, profile: str, executor: str):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["pretrain"] = yaml.safe_load((ROOT / "params" / "profiles" / profile).read_text())["pretrain"]
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    spec, platform = yaml.safe_load_all(compile_pipeline(params, tmp_path / "p.yaml").read_text())
    task = executor.removeprefix("exec-")
    assert spec["root"]["dag"]["tasks"][task]["componentRef"]["name"] == f"comp-{task}"
    container = spec["deploymentSpec"]["executors"][executor]["container"]
    if executor == "exec-pretrain":  # one node: the step's own pod gets the GPUs
        accelerator = container["resources"]["accelerator"]
        assert (accelerator["resourceType"], accelerator["resourceCount"]) == ("nvidia.com/gpu", "8")
    else:  # several nodes: the launcher asks for no GPU, the PyTorchJob's pods do
        assert "accelerator" not in container.get("resources", {})
    assert "pvcMount" in platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"][executor]
