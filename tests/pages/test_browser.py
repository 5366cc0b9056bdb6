"""The headless-browser helper itself (tests/browser.py): scripts run, nothing leaves the machine,
loopback pages load, screenshots are PNGs."""

from __future__ import annotations

import http.server
import threading

from tests import browser

PAGE = """<!DOCTYPE html><html><body>
<p id="out">not run</p>
<img src="http://example.invalid/pixel.png">
<script>document.getElementById("out").textContent = "ran " + (1 + 1);</script>
</body></html>"""


def test_render_runs_scripts_and_lists_offsite_requests(tmp_path):
    browser.require_browser()
    page_file = tmp_path / "page.html"
    page_file.write_text(PAGE, encoding="utf-8")

    page = browser.render(page_file.as_uri(), budget_ms=2000)

    assert '<p id="out">ran 2</p>' in page.dom
    assert page.offsite == ("http://example.invalid/pixel.png",)


def test_loopback_pages_load_through_no_proxy(tmp_path):
    browser.require_browser()
    (tmp_path / "index.html").write_text(PAGE.replace("http://example.invalid/pixel.png", "pixel.png"))
    (tmp_path / "pixel.png").write_bytes(b"")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/index.html"
        page = browser.render(url, budget_ms=2000)
        shot = browser.screenshot(url, tmp_path / "shot.png", size=(400, 300))
    finally:
        server.shutdown()

    assert "ran 2" in page.dom
    assert f"http://127.0.0.1:{server.server_address[1]}/pixel.png" in page.requests
    assert page.offsite == ()
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
