"""Screenshots of a run report, a benchmark report and the app, for the README and docs/reports.md.

    python scripts/screenshots.py [--run DIR] [--bench DIR] [--out docs/figures]

Without --run / --bench it makes them first, with the commands a user would type:
``ssd3d generate "a red cube"`` and ``ssd3d bench --quick`` (a few minutes on 2 cores).
Pages are opened in the system's headless Chromium (as the browser tests do) through
``ssd3d view``'s server and the app's own; the app is shown halfway through a run. The PNGs
are reduced to 256 colours.
"""

from __future__ import annotations

import os

# As the ssd3d command does: idle OpenMP threads must not spin (the app runs in-process).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import socket
import subprocess
import sys
import threading
from pathlib import Path

from PIL import Image

from ssd3d.commands.view import ensure_report
from ssd3d.report.browser import PageProblems, chromium
from ssd3d.report.serve import address, make_server

WIDTH = 1280
LOAD_TIMEOUT_MS = 120_000
APP_STEPS = 300
QUICK_PROMPTS = "a yellow wedge;a blue torus"


def ssd3d(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "ssd3d.cli", *args], check=True)


def save(png: bytes, path: Path, height: int | None = None) -> None:
    """The screenshot cropped to ``height`` and reduced to 256 colours (page-sized)."""
    import io

    image = Image.open(io.BytesIO(png)).convert("RGB")
    if height is not None:
        image = image.crop((0, 0, image.width, min(height, image.height)))
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


def serve(folder: Path) -> tuple[str, object]:
    ensure_report(folder)
    server = make_server(folder, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return address(server), server


def report_shot(browser, folder: Path, path: Path, height: int, viewer: bool) -> None:
    url, server = serve(folder)
    page = browser.new_page(viewport={"width": WIDTH, "height": height})
    problems = PageProblems(page)
    try:
        page.goto(url, timeout=LOAD_TIMEOUT_MS)
        if viewer:
            page.wait_for_function(
                "() => document.querySelector('model-viewer').modelIsVisible",
                timeout=LOAD_TIMEOUT_MS,
            )
        page.wait_for_timeout(1000)
        save(page.screenshot(full_page=not viewer), path, height)
        if problems.list():
            print(f"warning: {url}: {problems.list()}", file=sys.stderr)
    finally:
        page.close()
        server.shutdown()


def app_shot(browser, out_root: Path, path: Path) -> None:
    """The app during a run (the progress bar, the orbit views as they are), then Cancel."""
    from ssd3d.webapp import build_app, launch

    with socket.socket() as s:  # a free port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = build_app(out_root)
    _, url, _ = launch(demo, out_root, port=port, prevent_thread_lock=True, quiet=True)
    page = browser.new_page(viewport={"width": WIDTH, "height": 900})
    try:
        page.goto(url, timeout=LOAD_TIMEOUT_MS)
        page.get_by_label("prompt").fill("a red cube")
        page.get_by_label("steps").fill(str(APP_STEPS))
        page.get_by_role("button", name="Generate").click()
        page.wait_for_function(
            "n => +(document.body.innerText.match(/step (\\d+) \\//) || [0, 0])[1] >= n",
            arg=APP_STEPS // 2,
            timeout=10 * 60_000,
        )
        save(page.screenshot(), path)
        page.get_by_role("button", name="Cancel").click()
    finally:
        page.close()
        demo.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a finished run folder")
    parser.add_argument("--bench", type=Path, help="a benchmark folder")
    parser.add_argument("--work", type=Path, default=Path("outputs/screenshots"))
    parser.add_argument("--out", type=Path, default=Path("docs/figures"))
    args = parser.parse_args()
    run, bench = args.run, args.bench
    if run is None:
        ssd3d("generate", "a red cube", "--out", str(args.work / "runs"), "--quiet")
        run = max((args.work / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    if bench is None:
        bench = args.work / "bench"
        # Two prompts, for a gallery with two rows.
        ssd3d("bench", "--quick", "--prompts", QUICK_PROMPTS, "--out", str(bench), "--quiet")
    args.out.mkdir(parents=True, exist_ok=True)
    with chromium() as browser:
        report_shot(browser, run, args.out / "report_run.png", 1300, viewer=True)
        report_shot(browser, bench, args.out / "report_bench.png", 2600, viewer=False)
        app_shot(browser, args.work / "app", args.out / "app.png")


if __name__ == "__main__":
    main()
