"""Closing the loop: an alert -> a new data version -> a retraining run -> the gate -> deploy.

``on_alert(summary, settings, target, ...)`` is what a monitor run does after judging its window
when it was started with ``--on-alert retrain`` (off by default; the Kubeflow component's
``on_alert`` parameter). In order, each step recording why it stopped when it does:

1. trigger: one of the run's alert kinds is in ``monitoring.retrain.on_alerts``; else nothing;
2. data: the flywheel harvests the labelled predictions not harvested before
   (``monitoring.flywheel``) into the feedback folder, the ingest stage's ``--feedback`` input.
   Retraining needs ``min_new_examples`` new examples: harvested rows the trained data version did
   not read (the ingest output's dataset.json names the harvest files it read) that ingest would
   add, by its own rules (``llm.feedback.screen``: not already a train / valid / test example or a
   held-out review, not malformed or conflicting). Retraining on the same data would only
   reproduce the model;
3. cost control: the off-peak window (``monitoring.training_window``, ``llm.costs``): outside it
   the run is refused (the message shows the window, when it opens and the estimate at both
   prices) unless ``force``, or it waits for the opening (``outside: wait``, at most
   ``max_wait_hours``);
4. the run: locally ``dvc repro`` in the project (``LocalTarget``): DVC sees the feedback folder
   changed and reruns the DAG from ingest; select's gate compares the new model with the promoted
   one on the same test split (the flywheel never adds test examples) and refuses a regression, and
   then deploy does not run. On Kubeflow (``KubeflowTarget``): a run of the training pipeline
   started through ``kfp.Client`` with ``feedback_uri`` set to the harvest folder in the lake; its
   select step gates, its deploy step follows only a promotion;
5. the record: ``retrain.json`` in the monitor run's folder and one line in
   ``<runs>/decisions.jsonl``: the alerts, harvest counts, data versions, window check and cost
   estimate, the command and its exit status, the gate's outcome and reason, and whether a release
   was deployed.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from components.common.io import jsonl_line, read_json, write_json
from llm.costs import OutsideWindow, check_window, wait_for_window
from monitoring import flywheel
from monitoring.cost import training_cost

log = logging.getLogger("monitoring.retrain")

RETRAIN_FILE = "retrain.json"  # in the monitor run's folder
DECISIONS_FILE = "decisions.jsonl"  # beside the run folders: one line per monitor run with --on-alert retrain
OFF, RETRAIN = "off", "retrain"
ON_ALERT_MODES = (OFF, RETRAIN)

# The decision's action: what the monitor did about the alert.
NOT_TRIGGERED = "not_triggered"  # no alert of monitoring.retrain.on_alerts
NO_NEW_DATA = "no_new_data"  # fewer than min_new_examples new labelled predictions
REFUSED_WINDOW = "refused_outside_window"  # outside the off-peak window, not forced
RETRAINED = "retrained"  # the local run reached the gate (see gate / deploy for what came of it)
RETRAIN_FAILED = "retrain_failed"  # the local run stopped before the gate (a stage failed; see run.log)
STARTED = "started"  # a Kubeflow run was started (its select and deploy steps decide)


@dataclass
class LocalTarget:
    """A DVC project on this machine: ``dvc repro`` in ``root``; the folders are dvc.yaml's vars."""

    root: Path
    feedback: str = "data/feedback"
    ingest: str = "outputs/ingest"
    pretrain: str = "outputs/pretrain"
    finetune: str = "outputs/finetune"
    select: str = "outputs/select"
    deploy: str = "outputs/deploy"
    command: list[str] = field(default_factory=list)  # default: the venv's dvc repro

    @classmethod
    def from_project(cls, root: str | os.PathLike) -> LocalTarget:
        """The folders as the project's dvc.yaml names them (its first ``vars`` entry)."""
        import yaml

        root = Path(root)
        spec = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))
        var = next((v for v in spec.get("vars", []) if isinstance(v, dict) and "out" in v), {})
        out = var.get("out", {})
        keys = ("ingest", "pretrain", "finetune", "select", "deploy")
        return cls(root, feedback=var.get("feedback", cls.feedback), **{k: out[k] for k in keys if k in out})

    def path(self, name: str) -> Path:
        return self.root / getattr(self, name)


@dataclass
class KubeflowTarget:
    """A Kubeflow Pipelines host: the training pipeline package and where the lake keeps the data."""

    host: str
    package: str  # the compiled training pipeline (pipelines/llm_pipeline.yaml in the image)
    feedback: str  # the harvest folder in the lake, e.g. s3://llm-data-lake/feedback
    ingest: str = ""  # the trained data version's ingest output (dataset.json), e.g. s3://.../outputs/ingest
    pretrain: str = ""
    finetune: str = ""
    namespace: str | None = None
    client: Any = None  # a kfp.Client; made from host when None


def pending_examples(feedback_uri: str, ingest_dir: str | os.PathLike | None) -> dict[str, Any]:
    """What the next retraining would add: the rows of the harvest files the trained data version
    did not read (their content hash is not among those its dataset.json records), screened with
    ingest's own rules (``llm.feedback.screen``) against its task data and held-out batch.
    ``{"rows": unread harvested rows, "new_examples": those ingest would add, "set_aside":
    {reason: n}}``; without the trained version's folder every unread row counts."""
    from collections import Counter

    from components.common import artifacts as a
    from components.common.io import read_jsonl
    from components.common.lineage import file_md5
    from llm.feedback import screen

    base = str(ingest_dir).rstrip("/") if ingest_dir else None

    def records(name: str) -> list[dict[str, Any]]:
        try:
            return list(read_jsonl(f"{base}/{name}")) if base else []
        except FileNotFoundError:
            return []

    try:
        known = set(read_json(f"{base}/{a.DATASET}").get("files", {}).values()) if base else set()
    except FileNotFoundError:
        known = set()
    rows = [
        r
        for path in flywheel.harvest_files(feedback_uri)
        if file_md5(path) not in known
        for r in read_jsonl(path)
    ]
    task = records(a.TASK)
    if not task:
        return {"rows": len(rows), "new_examples": len(rows), "set_aside": {}}
    existing: dict[str, list[str]] = {}
    for r in task:
        existing.setdefault(r["split"], []).append(r["text"])
    existing["heldout"] = [r["text"] for r in records(f"{a.BATCHES}/{a.MONITOR_BATCHES[0]}.jsonl")]
    labels = sorted({r["label"] for r in task})
    audit, kept = screen(rows, existing, labels)
    set_aside = Counter(r["outcome"] for r in audit if r["outcome"] is not None)
    return {"rows": len(rows), "new_examples": len(kept), "set_aside": dict(sorted(set_aside.items()))}


def last_training_hours(target: Any) -> float | None:
    """The accelerator-hours of the last training run (pretrain + finetune metrics.json, summed as
    the monitor's training cost is: ``monitoring.cost.training_cost``): what the estimate of the
    next run is based on; None when either is unknown."""
    stages = {}
    for stage in ("pretrain", "finetune"):
        folder = target.path(stage) if isinstance(target, LocalTarget) else getattr(target, stage)
        try:
            stages[stage] = read_json(f"{str(folder).rstrip('/')}/metrics.json")
        except FileNotFoundError:
            stages[stage] = None
    return training_cost(stages, 0.0)["accelerator_hours"]


def _mtime(path: Path) -> float | None:
    return path.stat().st_mtime if path.exists() else None


def run_local(target: LocalTarget, log_path: Path) -> dict[str, Any]:
    """``dvc repro`` in the project, its output in ``log_path``; then what the gate and deploy did,
    read from the files select and deploy write (decision.json, ``<select>.refused.json``,
    release.json: each counts only if written by this run)."""
    command = target.command or [str(Path(sys.executable).with_name("dvc")), "repro"]
    select_dir, deploy_dir = target.path("select"), target.path("deploy")
    refused_file = select_dir.with_name(f"{select_dir.name}.refused.json")
    release_file = deploy_dir / "release.json"
    before = read_json(release_file).get("version") if release_file.is_file() else None
    started = time.time()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log.info("retrain: running %s in %s (log: %s)", " ".join(command), target.root, log_path)
    # dvc.yaml's commands say `python -m components...`: the interpreter the monitor runs in (its
    # venv) must come first on PATH, as `make run` puts it, or DVC finds a bare system Python.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    with open(log_path, "w", encoding="utf-8") as out:
        proc = subprocess.run(
            command, cwd=target.root, stdout=out, stderr=subprocess.STDOUT, check=False, env=env
        )
    seconds = time.time() - started

    def fresh(path: Path) -> bool:
        stamp = _mtime(path)
        return stamp is not None and stamp >= started

    gate: dict[str, Any]
    if fresh(refused_file):
        refusal = read_json(refused_file)
        gate = {
            "outcome": "refused",
            "reason": refusal.get("refused"),
            "chosen": refusal.get("chosen", {}).get("model"),
        }
    elif fresh(select_dir / "decision.json"):
        decision = read_json(select_dir / "decision.json")
        gate = {
            "outcome": "promoted",
            "reason": decision.get("gate"),
            "chosen": decision.get("chosen"),
            "metric": decision.get("metric"),
            "score": decision.get("score"),
            "previous": decision.get("previous"),
            "test_split": decision.get("test_split"),
        }
    else:
        gate = {
            "outcome": "not_reached",
            "reason": f"the run stopped before select (exit {proc.returncode}; see {log_path})",
        }
    deployed = fresh(deploy_dir / "release.json")
    release = read_json(deploy_dir / "release.json") if deployed else None
    return {
        "command": command,
        "returncode": proc.returncode,
        "seconds": round(seconds, 1),
        "log": str(log_path),
        "gate": gate,
        "deploy": {
            "deployed": deployed,
            "version": (release or {}).get("version"),
            "previous_version": before,
            # The same bytes promoted again (the data changed nothing the model saw) keep the version.
            "new_release": bool(deployed and (release or {}).get("version") != before),
            "reason": "the gate promoted the model" if deployed else f"not deployed: gate {gate['outcome']}",
        },
    }


def run_kubeflow(target: KubeflowTarget, experiment: str, run_name: str) -> dict[str, Any]:
    """Start the training pipeline with the new data version (``feedback_uri``); the other
    parameters are the package's defaults (the params it was compiled with)."""
    client = target.client
    if client is None:
        import kfp

        client = kfp.Client(host=target.host, namespace=target.namespace)
    arguments = {"feedback_uri": target.feedback}
    run = client.create_run_from_pipeline_package(
        target.package,
        arguments=arguments,
        run_name=run_name,
        experiment_name=experiment,
        namespace=target.namespace,
        enable_caching=True,
    )
    run_id = getattr(run, "run_id", None)
    return {
        "host": target.host,
        "package": target.package,
        "arguments": arguments,
        "run_id": run_id,
        "gate": {"outcome": "pending", "reason": f"decided by the run's select step (run {run_id})"},
        "deploy": {"deployed": None, "reason": "the run's deploy step follows only a promotion"},
    }


def on_alert(
    summary: Mapping[str, Any],
    settings: Any,
    target: LocalTarget | KubeflowTarget,
    log_uri: str,
    folder: Path,
    *,
    force: bool = False,
    now: datetime | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], Any] = time.sleep,
) -> dict[str, Any]:
    """Act on a monitor run's alerts (``summary``: ``monitoring.loop.monitor_window``'s; ``folder``:
    the run's folder); return the decision, also written to ``folder/retrain.json`` and appended to
    ``folder.parent/decisions.jsonl``. See the module doc for the steps."""
    policy = settings.retrain
    fired = list(summary.get("alert_kinds") or [])
    trigger = [k for k in fired if k in policy.on_alerts]
    window_end = summary["window"]["end"]
    decision: dict[str, Any] = {
        "window_end": window_end,
        "decided_at": clock().isoformat(timespec="seconds"),
        "alerts": fired,
        "trigger": trigger,
        "target": "local" if isinstance(target, LocalTarget) else "kubeflow",
    }
    if not trigger:
        decision.update(
            action=NOT_TRIGGERED,
            reason=f"no alert of monitoring.retrain.on_alerts ({', '.join(policy.on_alerts)}) fired"
            + (f"; fired: {', '.join(fired)}" if fired else ""),
        )
        return _record(decision, folder)

    local = isinstance(target, LocalTarget)
    feedback = str(target.path("feedback")) if local else target.feedback
    ingest = target.path("ingest") if local else target.ingest
    end = datetime.fromisoformat(window_end)
    decision["harvest"] = flywheel.harvest(log_uri, feedback, end, now)
    screened = pending_examples(feedback, ingest)
    pending = screened["new_examples"]
    decision["data"] = {"feedback": feedback, "version": decision["harvest"]["version"], **screened}
    if pending < policy.min_new_examples:
        aside = ", ".join(f"{n} {why}" for why, n in screened["set_aside"].items())
        decision.update(
            action=NO_NEW_DATA,
            reason=f"{pending} new examples in the {screened['rows']} harvested labelled predictions not yet "
            f"trained on{f' (set aside: {aside})' if aside else ''}, fewer than monitoring.retrain.min_new_examples "
            f"= {policy.min_new_examples}: retraining would reproduce the model",
        )
        return _record(decision, folder)

    window = settings.training_window
    hours = last_training_hours(target)
    try:
        check = check_window(clock(), settings.prices, window, hours, force)
        if not check["allowed"]:  # outside: wait
            log.info("retrain: %s", check["message"])
            check = wait_for_window(check, window, clock, sleep)
    except OutsideWindow as exc:
        decision.update(action=REFUSED_WINDOW, reason=str(exc))
        log.warning("retrain: %s", exc)
        return _record(decision, folder)
    decision["window_check"] = check
    if local:
        result = run_local(target, folder / "retrain.log")
        reached = result["gate"]["outcome"] != "not_reached"
        decision.update(action=RETRAINED if reached else RETRAIN_FAILED, run=result)
        decision["reason"] = (
            f"retrained on data version {decision['data']['version'][:12]} ({pending} new examples): "
            f"gate {result['gate']['outcome']}"
            + (f" ({result['gate']['reason']})" if result["gate"].get("reason") else "")
            + (
                (
                    "; deployed a new release"
                    if result["deploy"]["new_release"]
                    else "; deployed, the same release as before"
                )
                if result["deploy"]["deployed"]
                else "; not deployed"
            )
        )
    else:
        stamp = end.astimezone(UTC).strftime("%Y%m%d-%H%M%S")
        result = run_kubeflow(target, policy.experiment, f"retrain-{stamp}")
        decision.update(action=STARTED, run=result, reason=f"started Kubeflow run {result['run_id']}")
    return _record(decision, folder)


def _record(decision: dict[str, Any], folder: Path) -> dict[str, Any]:
    folder = Path(folder)
    write_json(folder / RETRAIN_FILE, decision)
    with open(folder.parent / DECISIONS_FILE, "a", encoding="utf-8") as f:
        f.write(jsonl_line(decision))
    log.info("retrain: %s: %s", decision["action"], decision.get("reason"))
    return decision
