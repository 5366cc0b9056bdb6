"""The Kubeflow pipeline: compiles, loads back with kfp, stays in sync with the checked-in YAML, and
runs under kfp.local with outputs identical to the DVC run's."""

from __future__ import annotations

import filecmp
import json
import math
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from kfp import components

from components.common.entry import RUN_RECORD
from components.common.params import STAGES, load_all, to_dict
from pipelines.cluster import load_cluster
from pipelines.compile import DEFAULT_OUTPUT, compile_pipeline
from pipelines.local_run import run_local
from tests.pipeline.conftest import ROOT, TINY_PARAMS, dvc


def test_compiled_pipeline_loads_back_with_kfp(tmp_path: Path):
    path = compile_pipeline(ROOT / "params.yaml", tmp_path / "pipeline.yaml")
    loaded = components.load_component_from_file(str(path))
    assert loaded.name == "llm-production-line"
    # The compiled file holds the pipeline spec, then the Kubernetes platform spec (kfp-kubernetes).
    spec, platform = yaml.safe_load_all(path.read_text())
    # Every stage, plus the condition holding the optional apply-the-InferenceService step.
    assert set(spec["root"]["dag"]["tasks"]) == {*STAGES, "condition-1"}
    # Every stage's pipeline parameter defaults to its params.yaml section, under the same name.
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    every = load_all(ROOT / "params.yaml")
    for stage in STAGES:
        assert parameters[stage]["defaultValue"] == json.loads(json.dumps(to_dict(every[stage])))
    executors = spec["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {load_cluster().image}
    # Training pods get shared memory and the checkpoint PVC; the data-lake step its secret.
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert {"exec-pretrain", "exec-finetune"} <= {name for name, cfg in k8s.items() if "pvcMount" in cfg}
    assert all(
        k8s[e]["emptyDirMounts"][0]["mountPath"] == "/dev/shm" for e in ("exec-pretrain", "exec-finetune")
    )
    assert k8s["exec-ingest"]["secretAsEnv"][0]["secretName"] == "data-lake-credentials"
    tasks = {name: task for name, task in spec["root"]["dag"]["tasks"].items() if name in STAGES}
    # Cached: every deterministic step; not the gate, which reads the promotion record as it is now,
    # nor the run report, which shows this run's records (nor applying the InferenceService: an
    # action on the cluster as it is now).
    assert {name for name, task in tasks.items() if not task["cachingOptions"].get("enableCache")} == {
        "select",
        "report",
    }
    # The run report is the last step: it reads every stage's output, and the UI shows its page.
    assert set(tasks["report"]["dependentTasks"]) == set(STAGES) - {"report"}
    assert (
        spec["components"]["comp-report"]["outputDefinitions"]["artifacts"]["page"]["artifactType"][
            "schemaTitle"
        ]
        == "system.HTML"
    )
    (apply,) = spec["components"]["comp-condition-1"]["dag"]["tasks"].values()
    assert not apply["cachingOptions"].get("enableCache")
    assert tasks["ingest"]["retryPolicy"]["maxRetryCount"] == 3


def test_applying_the_inference_service_is_an_optional_step_off_by_default(tmp_path: Path):
    spec, _ = yaml.safe_load_all(compile_pipeline(ROOT / "params.yaml", tmp_path / "p.yaml").read_text())
    parameter = spec["root"]["inputDefinitions"]["parameters"]["apply_inference_service"]
    assert (parameter["parameterType"], parameter["defaultValue"]) == ("BOOLEAN", False)
    condition = spec["root"]["dag"]["tasks"]["condition-1"]
    assert condition["taskInfo"]["name"] == "apply-inference-service"
    assert condition["triggerPolicy"]["condition"] == (
        "inputs.parameter_values['pipelinechannel--apply_inference_service'] == true"
    )
    assert condition["dependentTasks"] == ["deploy"]
    (inner,) = spec["components"][condition["componentRef"]["name"]]["dag"]["tasks"].values()
    assert inner["componentRef"]["name"] == "comp-deploy-inference-service"
    assert inner["inputs"]["artifacts"]["release"] == {
        "componentInputArtifact": "pipelinechannel--deploy-release"
    }
    # deploy itself gets the cluster's image and secret, and the log URI the monitor reads.
    deploy = spec["root"]["dag"]["tasks"]["deploy"]["inputs"]["parameters"]
    assert deploy["image"] == {"runtimeValue": {"constant": load_cluster().image}}
    assert deploy["prediction_log"] == {"componentInputParameter": "prediction_log_uri"}


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
    assert path.read_text() == (ROOT / DEFAULT_OUTPUT).read_text(), "run `make compile` and commit the YAML"


# Where each stage's output lies in a kfp.local run: <run>/<task>/<output artifact>.
KFP_OUTPUT = {
    "ingest": "data",
    "clean": "cleaned",
    "tokenize": "tokenized",
    "pretrain": "pretrained",
    "finetune": "finetuned",
    "sft": "generator",
    "compress": "variants",
    "evaluate": "evaluation",
    "select": "selection",
    "deploy": "release",
    "monitor": "reports",
    "report": "run_report",
}
# Wall-clock figures: the only values allowed to differ between two runs of the same inputs.
WALL_CLOCK = re.compile(
    r"seconds|hours|_s$|/s$|_ms$|ms_per|ms/|per_s|latency|throughput|mfu|tokens_per|flops|cost|usd|elapsed"
)
TIMED_PROSE = re.compile(r"latency|/s\b|\bms\b|seconds")
TIMED_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
# Files that hold wall-clock figures next to deterministic ones; compared without those figures.
TIMED_FILES = {
    "evaluate": {"models.json", "table.md", "qa.json", "qa_table.md", "generations.jsonl"},
    "select": {"decision.json", "decision.md", "MODEL_CARD.md", "model/MODEL_CARD.md", "generations.jsonl"},
    "deploy": {"generations.jsonl", "roi.json"},
}
# The one field that differs between the doors by design: where the release lies for KServe (the KFP
# output artifact's URI; under DVC, dvc.yaml's kserve.storage_uri). Compared with it blanked out.
STORAGE_URI_FILES = {"deploy": {"inference_service.yaml"}}


def _without_storage_uri(text: str) -> Any:
    """An InferenceService with its predictor container's STORAGE_URI value blanked out."""
    document = yaml.safe_load(text)
    for container in document["spec"]["predictor"]["containers"]:
        for entry in container.get("env", []):
            if entry["name"] == "STORAGE_URI":
                entry["value"] = "<storage-uri>"
    return document


# What the run report shows that must not depend on the door: the DAG's stages and edges, the chosen
# model and the drift verdicts (its times, links and timed figures are each door's own).
REPORT_FACTS = re.compile(
    r'data-(?:stage|edge)="[^"]+"|<tr class="chosen"><td>[^<]*|class="(?:drift|ok)">[^<]*'
)


def _same_run_record(a: Path, b: Path) -> bool:
    """Two run.json files of the same stage: the same stage and fields; times, paths and the
    arguments are each door's own (KFP's pretrain also gets its checkpoint folder). The DAG the
    arguments draw is compared in the run report's facts."""
    x, y = json.loads(a.read_text()), json.loads(b.read_text())
    return (x["stage"], sorted(x)) == (y["stage"], sorted(y)) and all(
        isinstance(r["seconds"], float | int) for r in (x, y)
    )


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _untimed(value: Any) -> Any:
    """A JSON value with every wall-clock key removed (recursively)."""
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if not WALL_CLOCK.search(str(k))}
    if isinstance(value, list):
        return [_untimed(v) for v in value]
    return value


def _close(a: Any, b: Any) -> bool:
    """Equal JSON values, floats to 1e-5 relative (recursively)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, int | float) and isinstance(b, int | float) and math.isclose(a, b, rel_tol=1e-5)
    return a == b


def _untimed_markdown(text: str) -> list[list[str]]:
    """Markdown table rows without the columns whose header names a wall-clock figure; the
    other lines as they are."""
    rows, timed = [], None
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else None
        if cells is None:
            # Prose that quotes timings ("latency p50 1.1 ms ... 6876 reviews/s"): numbers masked.
            rows.append([TIMED_NUMBER.sub("#", line) if TIMED_PROSE.search(line) else line])
            timed = None
            continue
        if timed is None:  # a table's header row
            timed = {i for i, c in enumerate(cells) if WALL_CLOCK.search(c.lower().replace(" ", "_"))}
        rows.append([c for i, c in enumerate(cells) if i not in timed])
    return rows


def assert_same_outputs(stage: str, dvc_dir: Path, kfp_dir: Path) -> list[str]:
    """Every file of the stage's output equal in both runs: byte for byte, except metrics.json and
    the TIMED_FILES, equal once their wall-clock figures are removed. Returns the names compared."""
    names = _files(dvc_dir)
    assert names == _files(kfp_dir), stage
    for name in names:
        a, b = dvc_dir / name, kfp_dir / name
        if name == "metrics.json":
            # Metrics as numbers: equal to 1e-5 relative. Seen once: pretrain's step-0 valid loss
            # (the first forward pass of a fresh process) off in the 6th digit, with the checkpoint,
            # loss.csv and steps.csv byte-identical.
            assert _close(_untimed(json.loads(a.read_text())), _untimed(json.loads(b.read_text()))), (
                stage,
                name,
            )
        elif name == RUN_RECORD:
            assert _same_run_record(a, b), (stage, name)
        elif stage == "report" and name == "report.html":
            facts = [REPORT_FACTS.findall(f.read_text()) for f in (a, b)]
            assert facts[0] == facts[1] and any("data-edge" in f for f in facts[0]), (stage, name)
        elif name in STORAGE_URI_FILES.get(stage, ()):
            assert _without_storage_uri(a.read_text()) == _without_storage_uri(b.read_text()), (stage, name)
        elif name in TIMED_FILES.get(stage, ()) and name.endswith(".jsonl"):
            rows = [[_untimed(json.loads(line)) for line in f.read_text().splitlines()] for f in (a, b)]
            assert rows[0] == rows[1], (stage, name)
        elif name in TIMED_FILES.get(stage, ()) and name.endswith(".json"):
            assert _untimed(json.loads(a.read_text())) == _untimed(json.loads(b.read_text())), (stage, name)
        elif name in TIMED_FILES.get(stage, ()):
            assert _untimed_markdown(a.read_text()) == _untimed_markdown(b.read_text()), (stage, name)
        else:
            assert filecmp.cmp(a, b, shallow=False), f"{stage}: {name} differs"
    return names


def kfp_lineage(run_dir: Path, stage: str) -> str | None:
    """The dataset version kfp.local recorded on the stage's output artifact (executor_output.json)."""
    executor_output = json.loads((run_dir / stage / "executor_output.json").read_text())
    (artifact,) = executor_output["artifacts"][KFP_OUTPUT[stage]]["artifacts"]
    return artifact.get("metadata", {}).get("dataset_version")


@pytest.mark.slow
def test_kfp_local_run_matches_the_dvc_run(dvc_project: Path, tmp_path: Path):
    # Both runs start from the same state: the shared project's outputs are those of its params
    # (other tests change params and put them back), and its gate record is the fresh clone's
    # ({}: nothing promoted), as the kfp.local run's is; select, whose dep it is, reruns.
    (dvc_project / "models" / "promoted.json").write_text("{}\n")
    dvc(dvc_project, "repro")
    system_tmp = Path(tempfile.gettempdir())
    workspaces_before = set(system_tmp.glob("kfp-workspace-*"))
    run_dir = run_local(
        TINY_PARAMS,
        tmp_path / "kfp",
        news=str(ROOT / "data/raw/news_articles.csv"),
        reviews=str(ROOT / "data/raw/rotten_tomatoes.csv.bz2"),
    )
    assert set(system_tmp.glob("kfp-workspace-*")) == workspaces_before  # kfp.local's stays in ROOT
    dvc_out = dvc_project / "outputs"
    compared = {
        stage: assert_same_outputs(stage, dvc_out / stage, run_dir / stage / KFP_OUTPUT[stage])
        for stage in STAGES
    }
    assert "documents/part-00000-of-00001.jsonl" in compared["clean"]
    assert "train_text_document.bin" in compared["tokenize"]
    assert any(name.startswith("checkpoint/") for name in compared["pretrain"])
    assert {"model.safetensors", "int8/model.safetensors", "release.json"} <= {
        *compared["finetune"],
        *compared["compress"],
        *compared["deploy"],
    }
    # The monitor's verdicts, and the HTML page the UI shows.
    kfp_monitor = json.loads((run_dir / "monitor" / "reports" / "metrics.json").read_text())
    assert kfp_monitor["batches"]["plots"]["drift_detected"] is True
    assert (run_dir / "monitor" / "report").read_text().count("<iframe") == 2
    # Lineage: the version DVC's ingest recorded is on the KFP artifacts, and in the release.
    version = json.loads((dvc_out / "ingest" / "dataset.json").read_text())["version"]
    assert kfp_lineage(run_dir, "ingest") == version
    assert kfp_lineage(run_dir, "deploy") == version
    assert kfp_lineage(run_dir, "finetune") == version  # carried along the DAG
    assert json.loads((dvc_out / "deploy" / "release.json").read_text())["dataset"]["version"] == version

    # The InferenceService points at each door's own copy of the release.
    def storage_uri(folder: Path) -> str:
        (container,) = yaml.safe_load((folder / "inference_service.yaml").read_text())["spec"]["predictor"][
            "containers"
        ]
        return next(e["value"] for e in container["env"] if e["name"] == "STORAGE_URI")

    assert storage_uri(dvc_out / "deploy") == "s3://llm-data-lake/outputs/deploy"
    assert storage_uri(run_dir / "deploy" / "release") == str(run_dir / "deploy" / "release")


def test_compile_twice_gives_identical_files(tmp_path: Path):
    a = compile_pipeline(ROOT / "params.yaml", tmp_path / "a.yaml")
    b = compile_pipeline(ROOT / "params.yaml", tmp_path / "b.yaml")
    assert a.read_bytes() == b.read_bytes()
    assert "train_steps: 200.0" not in a.read_text()  # integer params stay integers


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
