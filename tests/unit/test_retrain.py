"""What the monitor does with --on-alert retrain (monitoring.retrain): each decision and its reason.

The real `dvc repro` of a retraining runs in tests/pipeline/test_loop.py; here the project's
command is a small script that writes what select and deploy would (a promotion, a refusal), so
every branch of the decision is checked in seconds."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitoring.retrain import (
    NO_NEW_DATA,
    NOT_TRIGGERED,
    REFUSED_WINDOW,
    RETRAINED,
    STARTED,
    KubeflowTarget,
    LocalTarget,
    on_alert,
)
from monitoring.settings import Prices, Retrain, Settings, TrainingWindow
from serving.prediction_log import PredictionLog

T0 = datetime(2026, 12, 2, 11, 0, tzinfo=UTC)
END = T0 + timedelta(hours=1)
SETTINGS = Settings(
    retrain=Retrain(on_alerts=["data_drift", "quality"], min_new_examples=10),
    prices=Prices(train_usd_per_hour=2.0, train_off_peak_usd_per_hour=0.5),
    training_window=TrainingWindow(enabled=True, time_zone="UTC", start="22:00", end="06:00"),
)
NIGHT = datetime(2026, 12, 2, 23, 0, tzinfo=UTC)
NOON = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def _summary(*kinds: str) -> dict:
    return {"window": {"end": END.isoformat(), "start": T0.isoformat()}, "alert_kinds": list(kinds)}


def _log(tmp_path: Path, n: int) -> str:
    log = PredictionLog(str(tmp_path / "log"), background=False)
    log.predictions.append(
        {
            "request_id": f"r{i:03d}",
            "item": 0,
            "ts": T0 + timedelta(seconds=i),
            "text": f"text {i}",
            "prediction": "positive",
            "score": 0.7,
            "latency_ms": 5.0,
            "compute_ms": 1.0,
            "tokens": 3,
            "model_version": "v1",
        }
        for i in range(n)
    )
    log.labels.append(
        {"request_id": f"r{i:03d}", "item": 0, "ts": T0 + timedelta(minutes=5), "label": "negative"}
        for i in range(n)
    )
    log.close()
    return str(tmp_path / "log")


# What select and deploy write, as `dvc repro` would leave them: promoted (decision.json and
# release.json) or refused (select.refused.json, nothing deployed).
PROMOTE = """
import json, pathlib
pathlib.Path("outputs/select").mkdir(parents=True, exist_ok=True)
pathlib.Path("outputs/deploy").mkdir(parents=True, exist_ok=True)
pathlib.Path("outputs/select/decision.json").write_text(json.dumps({"chosen": "int8", "gate": "macro_f1 0.8 >= 0.7", "metric": "macro_f1", "score": 0.8}))
pathlib.Path("outputs/deploy/release.json").write_text(json.dumps({"version": "abc123"}))
"""
REFUSE = """
import json, pathlib, sys
pathlib.Path("outputs").mkdir(exist_ok=True)
pathlib.Path("outputs/select.refused.json").write_text(json.dumps({"refused": "select: refusing to promote 'int8'", "chosen": {"model": "int8"}}))
sys.exit(1)
"""


def _project(tmp_path: Path, script: str) -> LocalTarget:
    root = tmp_path / "project"
    root.mkdir(parents=True, exist_ok=True)
    return LocalTarget(root, command=[sys.executable, "-c", script])


class Clock:
    """A clock that moves only when the monitor sleeps."""

    def __init__(self, now: datetime):
        self.now, self.slept = now, []

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += timedelta(seconds=seconds)


def _decide(tmp_path: Path, target, kinds=("data_drift",), clock=NIGHT, force=False, settings=SETTINGS, n=12):
    folder = tmp_path / "runs" / "20261202T120000Z"
    folder.mkdir(parents=True, exist_ok=True)
    clock = clock if isinstance(clock, Clock) else Clock(clock)
    return on_alert(
        _summary(*kinds),
        settings,
        target,
        _log(tmp_path, n),
        folder,
        force=force,
        now=END,
        clock=clock,
        sleep=clock.sleep,
    )


def test_alerts_outside_the_list_start_nothing_and_say_so(tmp_path):
    decision = _decide(tmp_path, _project(tmp_path, PROMOTE), kinds=("latency",))
    assert decision["action"] == NOT_TRIGGERED and "fired: latency" in decision["reason"]
    assert json.loads((tmp_path / "runs" / "20261202T120000Z" / "retrain.json").read_text()) == decision
    assert not (tmp_path / "project" / "outputs").exists()


def test_too_few_new_labelled_predictions_do_not_retrain(tmp_path):
    decision = _decide(tmp_path, _project(tmp_path, PROMOTE), n=4)
    assert (
        decision["action"] == NO_NEW_DATA
        and "4 new examples in the 4 harvested labelled predictions not yet trained on" in decision["reason"]
    )
    assert decision["harvest"]["written"] == 4  # harvested all the same: the next alert counts them


def test_rows_ingest_would_set_aside_start_no_retraining(tmp_path):
    # The trained data version already holds these texts (here: as the held-out monitoring batch,
    # as when the held-out reviews are served and labelled): ingest would add none of them.
    target = _project(tmp_path, PROMOTE)
    ingest = tmp_path / "project" / "outputs" / "ingest"
    (ingest / "batches").mkdir(parents=True)
    (ingest / "task.jsonl").write_text(
        "".join(
            json.dumps({"id": f"t{i}", "text": f"train {i}", "label": "positive", "split": "train"}) + "\n"
            for i in range(3)
        )
        + json.dumps({"id": "n", "text": "a negative one", "label": "negative", "split": "test"})
        + "\n"
    )
    (ingest / "batches" / "reviews.jsonl").write_text(
        "".join(
            json.dumps({"id": f"h{i}", "text": f"TEXT {i}", "label": "negative"}) + "\n" for i in range(12)
        )
    )
    (ingest / "dataset.json").write_text(json.dumps({"files": {}}))
    decision = _decide(tmp_path, target)
    assert decision["harvest"]["written"] == 12
    assert decision["data"]["rows"] == 12 and decision["data"]["new_examples"] == 0
    assert decision["data"]["set_aside"] == {"duplicate_of_heldout": 12}
    assert decision["action"] == NO_NEW_DATA and "set aside: 12 duplicate_of_heldout" in decision["reason"]
    assert not (tmp_path / "project" / "outputs" / "deploy").exists()


def test_a_promotion_is_deployed_and_recorded(tmp_path):
    target = _project(tmp_path, PROMOTE)
    decision = _decide(tmp_path, target)
    assert decision["action"] == RETRAINED and decision["trigger"] == ["data_drift"]
    assert decision["harvest"]["written"] == 12 and decision["data"]["new_examples"] == 12
    assert decision["window_check"]["period"] == "off-peak"
    assert decision["window_check"]["estimate"]["accelerator_hours"] is None  # no training recorded yet
    assert decision["run"]["gate"] == {
        "outcome": "promoted",
        "reason": "macro_f1 0.8 >= 0.7",
        "chosen": "int8",
        "metric": "macro_f1",
        "score": 0.8,
        "previous": None,
        "test_split": None,
    }
    assert decision["run"]["deploy"] == {
        "deployed": True,
        "version": "abc123",
        "previous_version": None,
        "new_release": True,
        "reason": "the gate promoted the model",
    }
    assert decision["reason"].endswith("; deployed a new release")
    (harvest_file,) = (tmp_path / "project" / "data" / "feedback").glob("feedback-*.jsonl")
    assert len(harvest_file.read_text().splitlines()) == 12
    lines = (tmp_path / "runs" / "decisions.jsonl").read_text().splitlines()
    assert [json.loads(line)["action"] for line in lines] == [RETRAINED]


def test_a_refusal_deploys_nothing(tmp_path):
    decision = _decide(tmp_path, _project(tmp_path, REFUSE))
    assert decision["run"]["returncode"] == 1
    assert (
        decision["run"]["gate"]["outcome"] == "refused"
        and "refusing to promote" in decision["run"]["gate"]["reason"]
    )
    assert (
        decision["run"]["deploy"]["deployed"] is False
        and "gate refused" in decision["run"]["deploy"]["reason"]
    )
    assert "gate refused" in decision["reason"] and "not deployed" in decision["reason"]


def test_a_run_that_stops_before_the_gate_is_a_failure_not_a_retraining(tmp_path):
    decision = _decide(tmp_path, _project(tmp_path, "import sys; sys.exit(255)"))
    assert decision["action"] == "retrain_failed" and decision["run"]["returncode"] == 255
    assert decision["run"]["gate"]["outcome"] == "not_reached" and "exit 255" in decision["reason"]
    assert decision["run"]["deploy"]["deployed"] is False


def test_on_peak_the_retraining_is_refused_with_both_prices_unless_forced(tmp_path):
    target = _project(tmp_path, PROMOTE)
    (tmp_path / "project" / "outputs" / "pretrain").mkdir(parents=True)
    (tmp_path / "project" / "outputs" / "finetune").mkdir(parents=True)
    (tmp_path / "project" / "outputs" / "pretrain" / "metrics.json").write_text(
        '{"seconds": 100, "accelerator_hours": 0.75}'
    )
    (tmp_path / "project" / "outputs" / "finetune" / "metrics.json").write_text(
        '{"seconds": 10, "accelerator_hours": 0.25}'
    )
    refused = _decide(tmp_path, target, clock=NOON)
    assert refused["action"] == REFUSED_WINDOW
    assert (
        "12:00 UTC is on-peak; the off-peak window is 22:00-06:00 UTC (opens in 10h00m" in refused["reason"]
    )
    assert "1 accelerator-h: $2 on-peak ($2/h), $0.5 off-peak ($0.5/h)" in refused["reason"]
    assert not (tmp_path / "project" / "outputs" / "deploy").exists()
    # The harvest stays: forced, the next run trains on it at the on-peak price.
    forced = _decide(tmp_path, target, clock=NOON, force=True)
    assert forced["action"] == RETRAINED and forced["window_check"]["forced"]
    assert (
        forced["harvest"]["written"] == 0 and forced["data"]["new_examples"] == 12 == forced["data"]["rows"]
    )
    assert forced["window_check"]["estimate"]["usd_now"] == 2.0


def test_outside_wait_waits_for_the_opening_then_runs(tmp_path):
    settings = replace(SETTINGS, training_window=replace(SETTINGS.training_window, outside="wait"))
    clock = Clock(NOON)
    decision = _decide(tmp_path, _project(tmp_path, PROMOTE), clock=clock, settings=settings)
    assert decision["action"] == RETRAINED and decision["window_check"]["waited_seconds"] == 10 * 3600
    assert clock.now == NOON + timedelta(hours=10) and max(clock.slept) <= 60.0
    short = replace(settings, training_window=replace(settings.training_window, max_wait_hours=1.0))
    refused = _decide(tmp_path / "b", _project(tmp_path / "b", PROMOTE), clock=NOON, settings=short)
    assert refused["action"] == REFUSED_WINDOW and "max_wait_hours = 1" in refused["reason"]


def test_on_kubeflow_the_training_pipeline_is_started_with_the_new_data_version(tmp_path):
    class RecordingClient:  # what would be sent to the Kubeflow Pipelines API
        def create_run_from_pipeline_package(self, package, **kwargs):
            self.package, self.kwargs = package, kwargs
            return type("Run", (), {"run_id": "run-7"})()

    client = RecordingClient()
    target = KubeflowTarget(
        host="http://kfp.example",
        package="pipelines/llm_pipeline.yaml",
        feedback=str(tmp_path / "lake" / "feedback"),
        client=client,
    )
    decision = _decide(tmp_path, target)
    assert decision["action"] == STARTED and decision["target"] == "kubeflow"
    assert client.package == "pipelines/llm_pipeline.yaml"
    assert client.kwargs["arguments"] == {"feedback_uri": str(tmp_path / "lake" / "feedback")}
    assert client.kwargs["experiment_name"] == "llm-production-line"
    assert client.kwargs["run_name"] == "retrain-20261202-120000"
    assert decision["run"]["gate"]["outcome"] == "pending" and "run-7" in decision["reason"]
    assert len(list((tmp_path / "lake" / "feedback").glob("feedback-*.jsonl"))) == 1
