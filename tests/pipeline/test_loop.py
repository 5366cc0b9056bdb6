"""The whole loop on the tiny profile, for real: serve the release, log a drifted labelled batch,
the monitor alerts, the flywheel makes a new data version, `dvc repro` retrains, the gate decides,
deploy follows only a promotion; and every logged request is counted once at every step.

Two turns of the loop in one copy of the pipeline tests' DVC project: the first promotes (the
tiny profile's tolerance lets its near-chance models through) and deploys a new release; the
second finds a promotion record no model can beat, so the gate refuses and the release stays.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import yaml

from monitoring.descriptors import nltk_data_dir
from tests.pipeline.conftest import BIN, project_env

TEXTS_PER_REQUEST = 4


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _serve(project: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "serving",
            "--model",
            "outputs/deploy/model",
            "--log",
            "outputs/prediction_log",
        ]
        + ["--port", "0", "--params", "params.yaml"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**project_env(), "PYTHONWARNINGS": "ignore"},
    )
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("serving: listening on "):
            return proc, line.split()[3]
    proc.wait(timeout=10)
    raise AssertionError("server did not start:\n" + "".join(lines[-30:]))


def _log_labelled_batch(project: Path, texts: list[str]) -> set[tuple[str, int]]:
    """Serve ``texts`` in requests of several texts, send a label for each; return the
    (request id, item) pairs answered. The server is stopped with SIGTERM (it flushes its log)."""
    proc, url = _serve(project)
    served: set[tuple[str, int]] = set()
    try:
        with httpx.Client(base_url=url, timeout=60.0) as client:
            for start in range(0, len(texts), TEXTS_PER_REQUEST):
                chunk = texts[start : start + TEXTS_PER_REQUEST]
                response = client.post("/predict", json={"texts": chunk})
                assert response.status_code == 200, response.text
                rid = response.json()["request_id"]
                served |= {(rid, item) for item in range(len(chunk))}
                labels = [
                    {
                        "request_id": rid,
                        "item": item,
                        "label": "negative" if (start + item) % 3 else "positive",
                    }
                    for item in range(len(chunk))
                ]
                assert client.post("/feedback", json=labels).status_code == 202
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    # uvicorn drains, flushes the log (shutdown), then re-raises the signal: exit by SIGTERM.
    assert proc.returncode in (0, -signal.SIGTERM)
    return served


def _monitor(project: Path, end: datetime) -> tuple[int, dict]:
    result = subprocess.run(
        [sys.executable, "-m", "monitoring", "--once", "--end", end.isoformat(), "--on-alert", "retrain"]
        + ["--project", ".", "--no-workspace", "--params", "params.yaml"],
        cwd=project,
        # As a person starts it: no venv on PATH (the monitor puts its own first for dvc's stages);
        # the NLTK data of this checkout (the copy has no .cache of its own).
        env={**project_env(), "PATH": _path_without_venv(), "NLTK_DATA": str(nltk_data_dir())},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    runs = project / "outputs" / "live_monitoring" / "runs"
    folder = runs / end.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    assert (folder / "retrain.json").is_file(), result.stdout[-3000:] + result.stderr[-3000:]
    return result.returncode, json.loads((folder / "retrain.json").read_text())


def _path_without_venv() -> str:
    return os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if Path(p) != BIN)


def _test_split(project: Path) -> list[dict]:
    return [r for r in _jsonl(project / "outputs" / "ingest" / "task.jsonl") if r["split"] == "test"]


def test_drift_alert_to_retrained_gated_deployed_model_counts_match(dvc_project: Path, tmp_path: Path):
    project = tmp_path / "loop"
    shutil.copytree(dvc_project, project, symlinks=True)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["monitoring"].setdefault("retrain", {})["min_new_examples"] = 30
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    plots = [r["text"] for r in _jsonl(project / "outputs" / "ingest" / "batches" / "plots.jsonl")]
    assert len(plots) >= 160
    test_before = _test_split(project)
    release_before = json.loads((project / "outputs" / "deploy" / "release.json").read_text())

    # Turn 1: drifted labelled batch -> alert -> new data version -> retrain -> promoted -> deployed.
    served = _log_labelled_batch(project, plots[:80])
    assert len(served) == 80
    end = datetime.now(UTC) + timedelta(minutes=1)
    code, decision = _monitor(project, end)
    assert code == 1  # the monitor still reports the alert
    assert "data_drift" in decision["trigger"]
    harvest = decision["harvest"]
    assert (harvest["predictions"], harvest["labelled"], harvest["duplicate_rows"]) == (80, 80, 0)
    assert (harvest["already_harvested"], harvest["written"]) == (0, 80)
    harvested = _jsonl(Path(project, harvest["file"]))
    assert {(r["request_id"], r["item"]) for r in harvested} == served
    assert decision["data"]["rows"] == 80
    assert decision["action"] == "retrained" and decision["run"]["returncode"] == 0, decision
    ingest = json.loads((project / "outputs" / "ingest" / "metrics.json").read_text())["feedback"]
    assert ingest["rows"] == 80
    assert sum(ingest["added"].values()) + sum(ingest["set_aside"].values()) == 80
    # The monitor's screening (llm.feedback.screen) predicted exactly what ingest added.
    assert decision["data"]["new_examples"] == sum(ingest["added"].values())
    task = _jsonl(project / "outputs" / "ingest" / "task.jsonl")
    added = {
        (r["request_id"], int(r["id"].rsplit(":", 1)[1])) for r in task if r["id"].startswith("feedback:")
    }
    assert len(added) == sum(ingest["added"].values()) > 0 and added <= served
    audit = _jsonl(project / "outputs" / "ingest" / "feedback.jsonl")
    assert {(r["request_id"], r["item"]) for r in audit} == served
    assert _test_split(project) == test_before  # the fixed test split
    gate = decision["run"]["gate"]
    assert gate["outcome"] == "promoted" and "same" in gate["reason"], gate
    assert decision["run"]["deploy"]["deployed"]
    release = json.loads((project / "outputs" / "deploy" / "release.json").read_text())
    assert release["dataset"]["version"] != release_before["dataset"]["version"]
    assert decision["run"]["deploy"]["version"] == release["version"]
    assert (
        decision["run"]["deploy"]["new_release"]
        and decision["run"]["deploy"]["previous_version"] == release_before["version"]
    )

    # The same window again: nothing new, nothing counted twice, no retraining.
    code, again = _monitor(project, end)
    assert again["harvest"]["written"] == 0 and again["harvest"]["already_harvested"] == 80
    assert again["action"] == "no_new_data" and "run" not in again

    # Turn 2: a promotion record no model can beat -> the gate refuses -> the release stays.
    record = json.loads((project / "models" / "promoted.json").read_text())
    record["scores"]["macro_f1"] = 1.0
    (project / "models" / "promoted.json").write_text(json.dumps(record))
    params["select"]["tolerance"] = 0.0
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    served_2 = _log_labelled_batch(project, plots[80:160])
    end_2 = datetime.now(UTC) + timedelta(minutes=2)
    code, refused = _monitor(project, end_2)
    assert (refused["harvest"]["written"], refused["harvest"]["already_harvested"]) == (80, 80)
    assert {
        (r["request_id"], r["item"]) for r in _jsonl(Path(project, refused["harvest"]["file"]))
    } == served_2
    assert refused["action"] == "retrained"
    assert (
        refused["run"]["gate"]["outcome"] == "refused"
        and "refusing to promote" in refused["run"]["gate"]["reason"]
    )
    assert not refused["run"]["deploy"]["deployed"]
    assert json.loads((project / "outputs" / "deploy" / "release.json").read_text()) == release
    assert json.loads((project / "models" / "promoted.json").read_text())["scores"]["macro_f1"] == 1.0
    assert _test_split(project) == test_before
    decisions = _jsonl(project / "outputs" / "live_monitoring" / "runs" / "decisions.jsonl")
    assert [d["action"] for d in decisions] == ["retrained", "no_new_data", "retrained"]
    assert os.path.exists(project / "outputs" / "select.refused.json")
