"""The run report as a person sees it: headless Chromium, no network (tests/browser.py)."""

from __future__ import annotations

import re
from pathlib import Path

from components.report.core import DAG, run
from components.report.params import Params
from tests import browser
from tests.report_fixtures import make_stage_outputs


def test_the_run_report_renders_offline_with_its_key_elements(tmp_path: Path):
    browser.require_browser()
    outputs = make_stage_outputs(tmp_path / "outputs")
    run(Params(), str(outputs / "report"), **{s: str(outputs / s) for s in DAG})
    url = (outputs / "report" / "report.html").as_uri()

    page = browser.render(url, budget_ms=2000)
    shot = browser.screenshot(url, tmp_path / "report.png", size=(1200, 1400))

    # Opened from disk, it asks for nothing but itself.
    assert page.offsite == ()
    dom = page.dom
    # The DAG: a box for every stage; the sections a person looks for, in order.
    assert set(re.findall(r'data-stage="([^"]+)"', dom)) == set(DAG)
    headings = re.findall(r"<h2[^>]*>([^<]+)</h2>", dom)
    assert headings == [
        "Pipeline",
        "Training curves",
        "Confusion matrix",
        "Models",
        "Return on investment",
        "Drift",
        "Model card",
    ]
    assert re.search(r'<tr class="chosen"><td>baseline</td>', dom) and ">DRIFT<" in dom
    # Not blank: the screenshot has ink (the DAG boxes, the curves, the tables) over much of it.
    from PIL import Image

    image = Image.open(shot).convert("L")
    dark = sum(1 for value in image.getdata() if value < 200)
    assert image.size == (1200, 1400) and dark > 0.01 * image.size[0] * image.size[1]
