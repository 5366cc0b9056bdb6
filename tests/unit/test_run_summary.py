"""pipelines.run_summary: stage statuses and times from DVC's own lines, key figures from the
metrics, the model table with the chosen model, the command's output and exit status kept."""

from __future__ import annotations

import json
import sys

from pipelines import run_summary as rs

STAGES = ["ingest", "clean", "pretrain", "select", "monitor"]


def _outputs(tmp_path):
    out = tmp_path / "outputs"
    metrics = {
        "ingest": {
            "corpus": {"documents": 3788},
            "qa": {"questions": 4741},
            "dataset_version": "912db5033419",
        },
        "clean": {"input": 3788, "kept": 2652, "dropped": {"contaminated": 558, "c4:curly_bracket": 1}},
        "pretrain": {"initial_valid_loss": 9.05, "valid_loss": 6.41, "mfu": 0.43, "accelerator_hours": 0.5},
        "select": {"chosen": "distilled", "macro_f1": 0.749, "generator_shipped": False},
    }
    for stage, m in metrics.items():
        (out / stage).mkdir(parents=True)
        (out / stage / "metrics.json").write_text(json.dumps(m))
    decision = {
        "metric": "macro_f1",
        "chosen": "distilled",
        "models": [
            {
                "model": "finetuned",
                "macro_f1": 0.734,
                "latency_p95_ms": 4.3,
                "size_bytes": 21850072,
                "violations": [],
            },
            {
                "model": "distilled",
                "macro_f1": 0.749,
                "latency_p95_ms": 2.4,
                "size_bytes": 15529162,
                "violations": [],
            },
            {"model": "baseline", "macro_f1": 0.763, "violations": ["not a deployable model folder"]},
        ],
    }
    (out / "select" / "decision.json").write_text(json.dumps(decision))
    return out


def test_statuses_and_times_come_from_dvcs_lines():
    times = rs.StageTimes()
    for now, line in [
        (0.0, "Stage 'ingest' didn't change, skipping\n"),
        (1.0, "Running stage 'clean':\n"),
        (52.0, "Running stage 'pretrain':\n"),
        (60.0, "ERROR: failed to reproduce 'pretrain': failed to run: python -m components.pretrain\n"),
    ]:
        times.see(line, now)
    times.end = 185.0
    assert [times.status(s) for s in STAGES] == ["unchanged", "ran", "FAILED", "not reached", "not reached"]
    assert times.seconds("clean") == 51.0 and times.seconds("pretrain") == 133.0
    assert times.seconds("ingest") is None
    assert rs.duration(133.0) == "2m13s" and rs.duration(51.0) == "51s" and rs.duration(None) == "-"


def test_the_summary_names_each_stage_its_figures_and_the_chosen_model(tmp_path):
    out = _outputs(tmp_path)
    times = rs.StageTimes(started={"clean": 1.0, "pretrain": 52.0}, unchanged={"ingest"}, end=185.0)
    text = rs.summary(out, STAGES, times, {"train_usd_per_hour": 0.10})
    lines = text.splitlines()
    assert lines[0] == "== run summary: 5 stages, 2 ran, 1 unchanged, 3m04s =="
    by_stage = {line.split()[0]: line for line in lines[1:6]}
    assert "unchanged" in by_stage["ingest"] and "3,788 documents, 4,741 QA questions" in by_stage["ingest"]
    assert (
        "51s" in by_stage["clean"]
        and "kept 2,652 of 3,788 documents (most dropped: contaminated 558)" in by_stage["clean"]
    )
    assert "valid loss 9.05 -> 6.41, MFU 43%, 0.500 accelerator-h ($0.0500)" in by_stage["pretrain"]
    assert "chose distilled (macro-F1 0.749); no generator shipped" in by_stage["select"]
    assert "not reached" in by_stage["monitor"] and "no metrics.json" in by_stage["monitor"]
    chosen = next(line for line in lines if "CHOSEN" in line)
    assert chosen.split()[:5] == ["distilled", "0.749", "2.4", "15.5", "CHOSEN"]
    assert any("baseline" in line and "not a deployable model folder" in line for line in lines)
    assert "All metrics: .venv/bin/dvc metrics show" in lines
    assert max(len(line) for line in lines) <= rs.WIDTH  # no 260-column table
    assert len(lines) < 25


def test_main_runs_the_command_passes_its_output_and_keeps_its_exit_status(tmp_path, capsys, monkeypatch):
    out = _outputs(tmp_path)
    monkeypatch.setattr(rs, "dvc_stages", lambda: STAGES)
    script = "print(\"Running stage 'clean':\"); print('hello from the stage'); raise SystemExit(3)"
    code = rs.main(
        ["--outputs", str(out), "--params", str(tmp_path / "none.yaml"), "--", sys.executable, "-c", script]
    )
    printed = capsys.readouterr().out
    assert code == 3
    assert "hello from the stage" in printed  # the command's own output passes through
    assert "== run summary: 5 stages, 1 ran, 0 unchanged" in printed
    assert "0.500 accelerator-h\n" in printed  # no prices file: the hours alone, no made-up cost
