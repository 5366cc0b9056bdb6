"""One HTML page holding several report pages (stdlib only), for the KFP UI's HTML viewer, which
shows a single file per artifact: each page in an iframe under its heading, in the given order.

Used by ``components.common.kfp.publish_html`` (a stage's per-batch reports) and by the continuous
monitor's ``monitoring.reports.combined_html`` (per model version and report).
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterable
from pathlib import Path

IFRAME_STYLE = "width:100%;height:900px;border:0"


def iframe_page(pages: Iterable[tuple[str, str | os.PathLike]]) -> str:
    """The combined page of ``(heading, path of an HTML page)`` pairs.

    Each page is a full document (an Evidently report with its own scripts); an iframe's
    ``srcdoc`` keeps their scripts apart, so it is quoted for the attribute (``&`` and ``"``).
    """
    parts = ["<!doctype html><html><body>"]
    for heading, path in pages:
        parts.append(f"<h1>{html.escape(heading, quote=False)}</h1>")
        src = Path(path).read_text(encoding="utf-8").replace("&", "&amp;").replace('"', "&quot;")
        parts.append(f'<iframe srcdoc="{src}" style="{IFRAME_STYLE}"></iframe>')
    parts.append("</body></html>")
    return "\n".join(parts)


def write_iframe_page(pages: Iterable[tuple[str, str | os.PathLike]], html_path: str | os.PathLike) -> Path:
    """Write ``iframe_page(pages)`` to ``html_path`` (its folder created; a temporary file renamed
    into place, so a reader never sees half a page); return the path."""
    html_path = Path(html_path)
    html_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = html_path.with_name(f".{html_path.name}.tmp-{os.getpid()}")
    tmp.write_text(iframe_page(pages), encoding="utf-8")
    os.replace(tmp, html_path)
    return html_path
