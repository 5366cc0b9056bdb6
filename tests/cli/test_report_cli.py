"""python -m components.report: one flag per stage, the page and its metrics; bad params refused."""

from __future__ import annotations

import json
import re

from components.report.__main__ import main
from components.report.core import DAG
from tests.report_fixtures import make_stage_outputs
from tests.task_fixtures import write_params


def test_main_writes_the_page_from_the_stage_folders(tmp_path):
    outputs = make_stage_outputs(tmp_path / "outputs")
    params = write_params(tmp_path / "params.yaml", report={"curve_points": 2})
    out = outputs / "report"
    argv = [arg for stage in DAG for arg in (f"--{stage}", str(outputs / stage))]
    assert main([*argv, "--output", str(out), "--params", str(params)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "report.html", "run.json"]
    # curve_points 2: each of the three-point curves is drawn with its two ends.
    page = (out / "report.html").read_text()
    drawn = re.findall(r'points="([^"]+)"', page)
    assert [len(points.split()) for points in drawn] == [2, 2]
    record = json.loads((out / "run.json").read_text())
    assert record["stage"] == "report" and set(record["arguments"]) == set(DAG)


def test_bad_params_exit_2_naming_the_key(tmp_path, capsys):
    params = write_params(tmp_path / "params.yaml", report={"curve_points": "many"})
    assert main(["--output", str(tmp_path / "report"), "--params", str(params)]) == 2
    assert "report.curve_points: expected int, got str 'many'" in capsys.readouterr().err
    assert not (tmp_path / "report").exists()
