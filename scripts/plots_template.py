#!/usr/bin/env python3
"""The offline page template of `make plots` (`dvc plots show --html-template`), built at set-up.

DVC's own page loads vega, vega-lite and vega-embed from a CDN, so offline it is blank. This
installs the three packages with the machine's npm, exactly as pinned in
requirements/plots/package.json and package-lock.json (`npm ci` checks every file against the
lock's integrity), and writes an HTML template with their minified builds inline: the page DVC
fills from it draws its charts with no network, and still does when copied elsewhere.

The template has DVC's ``{plot_divs}`` placeholder (where DVC puts one div and one vegaEmbed call
per plot) and ``{refresh_tag}``, but not ``{scripts}``: that is where DVC would put its CDN tags.

    python3 scripts/plots_template.py [--output .cache/plots/template.html] [--node-dir .cache/plots-js]

Without npm it says so in one line and exits 0 (`make plots` then says what is missing); a second
call with nothing changed does nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PINS = ROOT / "requirements" / "plots"
# package -> its standalone minified build (it defines the global vega / vegaLite / vegaEmbed).
BUILDS = {
    "vega": "build/vega.min.js",
    "vega-lite": "build/vega-lite.min.js",
    "vega-embed": "build/vega-embed.min.js",
}
# DVC's placeholders (dvc_render.html.HTML): the JavaScript must contain none of them.
PLACEHOLDERS = ("{plot_divs}", "{scripts}", "{refresh_tag}")

PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {refresh_tag}
    <title>DVC plots</title>
    <!-- vega, vega-lite and vega-embed inline (requirements/plots; scripts/plots_template.py) -->
@SCRIPTS@
    <style>
        body { font-family: sans-serif; margin: 16px; }
        table { border-spacing: 15px; }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def install(node_dir: Path) -> None:
    """``npm ci`` of the pinned packages into ``node_dir`` (no install scripts run)."""
    node_dir.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(PINS / name, node_dir / name)
    subprocess.run(
        ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=node_dir,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def pinned_versions() -> dict[str, str]:
    return json.loads((PINS / "package.json").read_text(encoding="utf-8"))["dependencies"]


def build_template(node_dir: Path) -> str:
    """The template text, from the installed packages (each checked to be the pinned version)."""
    pins = pinned_versions()
    tags = []
    for package, build in BUILDS.items():
        folder = node_dir / "node_modules" / package
        version = json.loads((folder / "package.json").read_text(encoding="utf-8"))["version"]
        if version != pins[package]:
            raise SystemExit(f"plots template: {package} {version} is installed, {pins[package]} is pinned")
        js = (folder / build).read_text(encoding="utf-8")
        for placeholder in PLACEHOLDERS:
            if placeholder in js:
                raise SystemExit(
                    f"plots template: {package}'s {build} contains DVC's placeholder {placeholder}"
                )
        # An inline script ends at the first "</script"; none may appear inside the code.
        js = js.replace("</script", "<\\/script")
        tags.append(f"    <script>/* {package} {version} */\n{js}\n    </script>")
    return PAGE.replace("@SCRIPTS@", "\n".join(tags))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / ".cache" / "plots" / "template.html")
    parser.add_argument("--node-dir", type=Path, default=ROOT / ".cache" / "plots-js")
    args = parser.parse_args(argv)

    inputs = [PINS / "package.json", PINS / "package-lock.json", Path(__file__)]
    if args.output.is_file() and all(p.stat().st_mtime <= args.output.stat().st_mtime for p in inputs):
        return 0
    if shutil.which("npm") is None:
        print(
            "setup: npm not found: skipped the offline DVC plots page's JavaScript "
            "(`make plots` needs it; Debian: apt-get install -y npm)"
        )
        return 0
    install(args.node_dir)
    text = build_template(args.node_dir)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_name(args.output.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, args.output)
    versions = ", ".join(f"{p} {v}" for p, v in pinned_versions().items())
    print(f"setup: offline DVC plots template {os.path.relpath(args.output)} ({versions})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
