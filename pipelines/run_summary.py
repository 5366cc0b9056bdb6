"""The end of ``make run``: a summary a person reads in ten seconds, instead of a metrics table
260 columns wide.

``python -m pipelines.run_summary [--outputs outputs] -- dvc repro`` runs the command (its output
passes through unchanged), notes when each stage started from DVC's ``Running stage 'x':`` and
``Stage 'x' didn't change, skipping`` lines, and then prints, for each stage of dvc.yaml, its status
(ran, unchanged, failed, not reached) and time, and one line of its key figures read from the
stage's ``metrics.json``; then the model table with the chosen model, and where to look. The
full metrics stay one command away (``dvc metrics show``). The exit status is the command's.

``python -m pipelines.run_summary`` without a command prints the figures of the outputs as they are
(no statuses or times).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from components.report.figures import duration, figures, number, verdict

ROOT = Path(__file__).resolve().parent.parent
RUNNING = re.compile(r"^Running stage '([^']+)'")
UNCHANGED = re.compile(r"^Stage '([^']+)' didn't change, skipping")
FAILED = re.compile(r"^ERROR: failed to reproduce '([^']+)'")
WIDTH = 100


@dataclass
class StageTimes:
    """What the command's output said of each stage, with the time each status line arrived."""

    started: dict[str, float] = field(default_factory=dict)
    unchanged: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    end: float = 0.0

    def see(self, line: str, now: float) -> None:
        if m := RUNNING.match(line):
            self.started[m.group(1)] = now
        elif m := UNCHANGED.match(line):
            self.unchanged.add(m.group(1))
        elif m := FAILED.match(line):
            self.failed.add(m.group(1))

    def seconds(self, stage: str) -> float | None:
        """A stage that ran: from its start to the next stage's start (or the end)."""
        if stage not in self.started:
            return None
        later = [t for s, t in self.started.items() if t > self.started[stage]]
        return (min(later) if later else self.end) - self.started[stage]

    def status(self, stage: str) -> str:
        if stage in self.failed:
            return "FAILED"
        if stage in self.started:
            return "ran"
        if stage in self.unchanged:
            return "unchanged"
        return "not reached"


def run_command(
    command: Sequence[str], clock: Callable[[], float] = time.monotonic
) -> tuple[int, StageTimes]:
    """Run ``command``, passing its output (stdout and stderr merged) through line by line."""
    times = StageTimes()
    # Unbuffered children: the stages' progress lines arrive as they are written, not in blocks.
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            times.see(line, clock())
        code = proc.wait()
    times.end = clock()
    return code, times


def model_table(outputs: Path) -> list[str]:
    """select's candidates (decision.json), compact, with the verdict of each; nothing when select
    has not run."""
    path = outputs / "select" / "decision.json"
    if not path.exists():
        return []
    decision = json.loads(path.read_text())
    metric = decision.get("metric", "macro_f1")
    lines = [f"  {'model':<12} {metric:>9} {'p95 ms':>7} {'size MB':>8}  verdict"]
    for row in decision.get("models", []):
        size = row.get("size_bytes")
        lines.append(
            f"  {row.get('model', '?'):<12} {number(row.get(metric)):>9} {number(row.get('latency_p95_ms'), '{:.1f}'):>7} "
            f"{number(size / 1e6 if isinstance(size, int | float) else None, '{:.1f}'):>8}  "
            f"{verdict(row, decision.get('chosen'))}"
        )
    return [line if len(line) <= WIDTH else line[: WIDTH - 3] + "..." for line in lines]


def summary(outputs: Path, stages: Sequence[str], times: StageTimes | None, prices: dict[str, Any]) -> str:
    lines: list[str] = []
    if times is not None:
        ran = sum(times.status(s) == "ran" for s in stages)
        unchanged = sum(times.status(s) == "unchanged" for s in stages)
        total = duration(times.end - min(times.started.values())) if times.started else "-"
        lines.append(f"== run summary: {len(stages)} stages, {ran} ran, {unchanged} unchanged, {total} ==")
    else:
        lines.append(f"== outputs summary: {len(stages)} stages ==")
    for stage in stages:
        path = outputs / stage / "metrics.json"
        metrics = json.loads(path.read_text()) if path.exists() else None
        status = times.status(stage) if times is not None else ("done" if metrics else "no output")
        seconds = duration(times.seconds(stage)) if times is not None else ""
        text = figures(stage, metrics, prices) if metrics is not None else "no metrics.json"
        line = f"{stage:<9} {status:<11} {seconds:>6}  {text}"
        lines.append(line if len(line) <= WIDTH else line[: WIDTH - 3] + "...")
    table = model_table(outputs)
    if table:
        lines += ["", "Models (outputs/select/decision.md):", *table]
    lines += [
        "",
        "Look at: outputs/report/report.html (the whole run on one page, opens offline),",
        "         outputs/evaluate/table.md and qa_table.md, outputs/select/MODEL_CARD.md,",
        "         outputs/clean/report.json, outputs/monitor/<batch>/report.html; plots: make plots",
        "All metrics: .venv/bin/dvc metrics show",
    ]
    return "\n".join(lines)


def dvc_stages(root: Path = ROOT) -> list[str]:
    return list((yaml.safe_load((root / "dvc.yaml").read_text()) or {}).get("stages", {}))


def train_prices(params_file: Path) -> dict[str, Any]:
    raw = yaml.safe_load(params_file.read_text()) if params_file.exists() else {}
    return ((raw or {}).get("monitoring") or {}).get("prices") or {}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outputs", default="outputs", help="the stages' output folder")
    parser.add_argument("--params", default="params.yaml", help="params file (monitoring.prices)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND to run first, e.g. dvc repro")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    code, times = run_command(command) if command else (0, None)
    print()
    print(summary(Path(args.outputs), dvc_stages(), times, train_prices(Path(args.params))))
    return code


if __name__ == "__main__":
    sys.exit(main())
