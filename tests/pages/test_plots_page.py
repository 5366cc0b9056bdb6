"""`make plots`' page as a person opens it, offline, in headless Chromium: a DVC project in a temp
folder with this repository's dvc.yaml and params.yaml and small CSVs where the stages write theirs,
rendered with the offline template set-up builds (scripts/plots_template.py). Vega draws exactly
dvc.yaml's four top-level plots and the page asks for nothing off the machine; DVC's own page, as
a control, asks a CDN for vega and draws nothing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import browser

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / ".cache" / "plots" / "template.html"
# dvc.yaml's top-level plots, as DVC names their divs (title, non-word characters -> "_").
PLOT_DIVS = (
    "Pretraining_loss",
    "Fine-tuning",
    "Supervised_fine-tuning__response_loss_",
    "Sentiment_confusion_matrix__test_split_",
)
CSVS = {
    "pretrain/loss.csv": "step,train_loss,valid_loss\n1,9.1,9.0\n50,7.2,7.0\n100,6.6,6.5\n",
    "pretrain/steps.csv": "step,train_loss,lr\n1,9.1,0.001\n2,9.0,0.001\n",
    "finetune/history.csv": "epoch,train_loss,valid_loss,valid_macro_f1\n1,0.62,0.51,0.70\n2,0.40,0.53,0.75\n",
    "sft/loss.csv": "step,train_loss,valid_loss\n1,6.7,6.7\n50,4.4,4.2\n",
    "sft/steps.csv": "step,train_loss,lr\n1,6.7,0.001\n",
    "evaluate/confusion.csv": "actual,predicted\nnegative,negative\nnegative,positive\npositive,positive\n",
}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A DVC project with the repository's dvc.yaml and params.yaml and the stages' plots files."""
    root = tmp_path_factory.mktemp("plots")
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, root / name)
    for name, text in CSVS.items():
        (root / "outputs" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "outputs" / name).write_text(text)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    _dvc(root, "init", "-q")
    return root


def _dvc(root: Path, *args: str) -> None:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(root / ".dvc-site")}
    subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, env=env, check=True, capture_output=True)


def _plot_divs(dom: str) -> dict[str, str]:
    """{div id: its HTML up to the next plot div} of every vega-embed plot div, in page order."""
    parts = re.split(r'(?=<div id="[^"]+" class="vega-embed)', dom)[1:]
    return {re.match(r'<div id="([^"]+)"', part)[1]: part for part in parts}


def _drawn(chunk: str) -> bool:
    """Vega drew the plot: its div holds the canvas of marks, sized, and the spec's controls."""
    canvas = re.search(r'<canvas width="(\d+)" height="(\d+)" class="marks"', chunk)
    return canvas is not None and int(canvas[1]) > 100 and int(canvas[2]) > 100 and "vega-bind" in chunk


def test_the_plots_page_draws_the_four_plots_offline(project):
    browser.require_browser()
    if not TEMPLATE.is_file():
        pytest.fail(f"{TEMPLATE} is missing: `make setup` builds it (scripts/plots_template.py, needs npm)")
    _dvc(project, "plots", "show", "--html-template", str(TEMPLATE), "-o", "offline")
    page_file = project / "offline" / "index.html"
    assert "<script src=" not in page_file.read_text()  # vega is inline, nothing to fetch

    page = browser.render(page_file.as_uri(), budget_ms=8000)

    assert page.offsite == ()
    divs = _plot_divs(page.dom)
    assert list(divs) == list(PLOT_DIVS)  # dvc.yaml's plots, no default chart per CSV
    for div, chunk in divs.items():
        assert _drawn(chunk), div


def test_dvcs_own_page_needs_the_network(project):
    """The control: without the template the page asks a CDN for vega and, offline, draws nothing."""
    browser.require_browser()
    _dvc(project, "plots", "show", "-o", "default")

    page = browser.render((project / "default" / "index.html").as_uri(), budget_ms=4000)

    assert any("vega" in url for url in page.offsite)
    assert 'class="marks"' not in page.dom
