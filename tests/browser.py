"""Pages checked as a person sees them: headless Chromium with no network.

A small helper for the page tests (the DVC plots page, the Evidently UI, the run report):

- ``require_browser()``: the Chromium binary, or a pytest skip that names what is missing and how
  to install it (the one acceptable skip of these tests);
- ``render(url)``: load a ``file://`` or ``http://127.0.0.1`` page headless, let its scripts run,
  and return a ``Page``: the DOM after the scripts ran and every URL the page asked for
  (``Page.requests``; ``Page.offsite``: those for a host off this machine, which all fail);
- ``dom(url)``: the DOM alone; ``screenshot(url, path)``: a PNG of the page.

No request leaves the machine: Chromium's proxy is a loopback port that refuses every connection
(Chromium never sends loopback requests through a proxy, so 127.0.0.1 pages load) and every other
host name fails to resolve. The page's own requests are read from Chromium's net log (those with an
initiator; Chromium's background requests have none and are not the page's). Each call uses a fresh
profile folder, removed afterwards.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

# Where Debian (/usr/bin/chromium) and other distributions put it; $CHROMIUM overrides.
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = "apt-get install -y chromium (Debian; `make setup` does it when run as root)"

# Quiet and self-contained: no first-run pages, no background fetches (updates, safe browsing,
# translation), no GPU, no sandbox (tests run as root in containers), /tmp instead of a small /dev/shm.
_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--disable-client-side-phishing-detection",
    "--disable-domain-reliability",
    "--disable-features=Translate,MediaRouter,OptimizationHints,AutofillServerCommunication",
    "--metrics-recording-only",
    "--no-pings",
    "--hide-scrollbars",
    "--mute-audio",
    # Charts draw their final state at once (no grow-in animation), so the DOM holds what a person
    # sees once a page has settled.
    "--force-prefers-reduced-motion",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
)


def find_browser() -> str | None:
    """The path of a Chromium binary ($CHROMIUM, else the first of ``BROWSER_NAMES`` on PATH), or None."""
    override = os.environ.get("CHROMIUM")
    if override:
        return override if os.access(override, os.X_OK) else None
    for name in BROWSER_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def require_browser() -> str:
    """The Chromium binary; skips the calling test, saying so plainly, where there is none."""
    path = find_browser()
    if path is None:
        import pytest

        pytest.skip(f"headless browser test: chromium is not installed; install it with {INSTALL_HINT}")
    return path


@dataclass(frozen=True)
class Page:
    """A rendered page: the DOM after its scripts ran, and every URL the page itself asked for
    (its subresources, fetches and frames, not Chromium's own background requests)."""

    dom: str
    requests: tuple[str, ...]

    @property
    def offsite(self) -> tuple[str, ...]:
        """The requests for a host off this machine (each one failed: there is no network)."""
        return tuple(u for u in self.requests if not _is_loopback(u))


def _is_loopback(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in ("file", "data", "blob", "about", "chrome", "devtools"):
        return True
    host = (parts.hostname or "").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _page_requests(net_log: Path) -> tuple[str, ...]:
    """The URLs of the requests the page started, from Chromium's net log: those with an initiator
    (the page's origin, ``null`` for a file:// page); Chromium's own have ``not an origin``."""
    try:
        log = json.loads(net_log.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ()
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for event in log.get("events", []):
        params = event.get("params") or {}
        if event.get("type") == start_job and params.get("url"):
            initiator = params.get("initiator")
            if initiator is not None and initiator != "not an origin":
                urls.append(params["url"])
    return tuple(urls)


def _run(browser: str, args: Sequence[str], timeout_s: float) -> tuple[str, tuple[str, ...]]:
    """Run Chromium with ``args`` and no network; (its stdout, the URLs the page asked for)."""
    work = Path(tempfile.mkdtemp(prefix="chromium-"))
    # The proxy: a loopback port bound but not listening, so every connection to it is refused.
    closed = socket.socket()
    try:
        closed.bind(("127.0.0.1", 0))
        net_log = work / "net-log.json"
        command = [
            browser,
            *_FLAGS,
            f"--user-data-dir={work / 'profile'}",
            f"--proxy-server=http://127.0.0.1:{closed.getsockname()[1]}",
            f"--log-net-log={net_log}",
            *args,
        ]
        # Its own process group, so a page that hangs takes Chromium's helper processes with it.
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            out, err = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise TimeoutError(f"chromium did not finish {args[-1]} within {timeout_s} s") from None
        if process.returncode != 0:
            tail = err.decode(errors="replace")[-2000:]
            raise RuntimeError(f"chromium exited {process.returncode} on {args[-1]}:\n{tail}")
        return out.decode("utf-8", errors="replace"), _page_requests(net_log)
    finally:
        closed.close()
        shutil.rmtree(work, ignore_errors=True)


def render(
    url: str, timeout_s: float = 60, budget_ms: int = 10_000, size: tuple[int, int] = (1280, 1600)
) -> Page:
    """Load ``url`` headless with no network; the DOM once its scripts ran (``budget_ms`` of the
    page's virtual time, which waits for loopback requests in flight) and the refused requests."""
    browser = require_browser()
    out, requests = _run(
        browser,
        [f"--window-size={size[0]},{size[1]}", f"--virtual-time-budget={budget_ms}", "--dump-dom", url],
        timeout_s,
    )
    return Page(dom=out, requests=requests)


def dom(url: str, timeout_s: float = 60, budget_ms: int = 10_000) -> str:
    """The DOM of ``url`` after its scripts ran (see ``render``)."""
    return render(url, timeout_s=timeout_s, budget_ms=budget_ms).dom


def screenshot(
    url: str,
    path: str | os.PathLike,
    timeout_s: float = 60,
    budget_ms: int = 10_000,
    size: tuple[int, int] = (1280, 1600),
) -> Path:
    """A PNG of ``url`` (``size`` pixels: width, height) at ``path``, taken as ``render`` loads it."""
    browser = require_browser()
    target = Path(path).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    _run(
        browser,
        [
            f"--window-size={size[0]},{size[1]}",
            f"--virtual-time-budget={budget_ms}",
            f"--screenshot={target}",
            url,
        ],
        timeout_s,
    )
    if not target.is_file():
        raise RuntimeError(f"chromium wrote no screenshot of {url} to {target}")
    return target
