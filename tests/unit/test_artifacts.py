"""dvc.yaml names the files of every stage's output exactly as components.common.artifacts does."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from components.common import artifacts
from components.common.params import STAGES

ROOT = Path(__file__).resolve().parents[2]


def _dvc() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())


def _names(entries: list, stage: str) -> list[str]:
    """``${out.<stage>}/<name>`` entries of a DVC outs/metrics list -> their names."""
    names = []
    for entry in entries:
        path = next(iter(entry)) if isinstance(entry, dict) else entry
        prefix = f"${{out.{stage}}}/"
        assert path.startswith(prefix), f"{stage}: {path} is not inside ${{out.{stage}}}"
        names.append(path.removeprefix(prefix))
    return names


def test_every_stage_output_is_declared_as_artifacts_names_it():
    dvc = _dvc()
    assert list(dvc["stages"]) == list(STAGES)
    assert dvc["vars"][0]["out"] == {stage: f"outputs/{stage}" for stage in STAGES}
    for stage, spec in dvc["stages"].items():
        # Plots files are plain outs: a stage `plots:` entry would be one more default chart in
        # `dvc plots show` beside the top-level plots.
        assert "plots" not in spec, (
            f"{stage}: plots files belong in outs (dvc.yaml's top-level plots draw them)"
        )
        declared = {
            "outs": _names(spec.get("outs", []), stage),
            "metrics": _names(spec.get("metrics", []), stage),
        }
        expected = artifacts.OUTPUTS[stage]
        assert declared["outs"] == [*expected["outs"], *expected.get("plots", ())], stage
        assert declared["metrics"] == [artifacts.METRICS], stage
        assert set(artifacts.files_of(stage)) == {n for names in declared.values() for n in names}


def test_every_dependency_on_a_stage_output_is_a_file_artifacts_names():
    for stage, spec in _dvc()["stages"].items():
        used = list(spec.get("deps", [])) + re.findall(r"\$\{out\.\w+\}[^\s]*", spec["cmd"])
        for dep in used:
            match = re.fullmatch(r"\$\{out\.(\w+)\}(?:/([^/]+))?(?:/.*)?", dep)
            if match is None:
                continue  # code folders and raw data
            producer, name = match.groups()
            if producer == stage:
                continue  # its own --output
            assert STAGES.index(producer) < STAGES.index(stage), f"{stage} reads {producer}, downstream"
            if name is not None:
                assert name in artifacts.files_of(producer), f"{stage}: {dep} is not an output of {producer}"


def test_path_joins_onto_paths_and_kfp_artifacts():
    class Artifact:
        path = "/tmp/run/ingest/data"

    assert artifacts.path(Artifact(), artifacts.TASK) == "/tmp/run/ingest/data/task.jsonl"
    assert artifacts.path("outputs/ingest", artifacts.BATCHES) == "outputs/ingest/batches"


def test_every_stage_depends_on_the_code_it_runs():
    # A stage runs its own package, components/common and the floor (the import-rule test keeps it
    # from importing anything else of the project): a change to any of them reruns it.
    for stage, spec in _dvc()["stages"].items():
        code = [d for d in spec["deps"] if not d.startswith(("$", "models/"))]
        assert sorted(code) == sorted([f"components/{stage}", "components/common", "llm"]), stage


def test_the_top_level_plots_draw_plots_files_that_artifacts_names():
    plots = _dvc()["plots"]
    assert [next(iter(p)) for p in plots] == [
        "Pretraining loss",
        "Fine-tuning",
        "Supervised fine-tuning (response loss)",
        "Sentiment confusion matrix (test split)",
    ]
    for plot in plots:
        (definition,) = plot.values()
        for path in definition["y"]:
            stage, name = re.fullmatch(r"outputs/(\w+)/([^/]+)", path).groups()
            assert name in artifacts.OUTPUTS[stage].get("plots", ()), path
