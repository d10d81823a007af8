"""The reports in a real browser: the system's headless Chromium (.ci/run installs it),
driven by Playwright. Each page must load with no console error, no failed request, its
images and video decoded, and the 3D viewer must draw the mesh (pixels of a screenshot)."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from PIL import Image

from ssd3d.report.browser import PageProblems, chromium, find_chromium
from ssd3d.report.page import REPORT_FILE
from ssd3d.report.serve import address, make_server

pytest.importorskip("playwright", reason="Playwright is in the dev extra: pip install -e .[dev]")
if find_chromium() is None:
    pytest.skip(
        "no system Chromium on PATH (apt-get install chromium; .ci/run installs it)",
        allow_module_level=True,
    )

# Software WebGL on a busy 2-core machine: seconds, not milliseconds.
LOAD_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture
def served():
    """url(folder): the folder served as ``ssd3d view`` serves it (port 0: a free one)."""
    servers = []

    def url(folder):
        server = make_server(folder, port=0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return address(server)

    yield url
    for server in servers:
        server.shutdown()
        server.server_close()


def open_report(browser, url):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems = PageProblems(page)
    page.goto(url, timeout=LOAD_TIMEOUT_MS)
    return page, problems


def assert_images_decoded(page, at_least: int) -> None:
    sizes = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.complete, i.naturalWidth])")
    assert len(sizes) >= at_least
    assert all(complete and width > 0 for complete, width in sizes), sizes


def screenshot_array(locator) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(locator.screenshot())).convert("RGB")).astype(float)


def wait_for_video(page) -> None:
    page.wait_for_function(
        "() => document.querySelector('video').readyState >= 2", timeout=LOAD_TIMEOUT_MS
    )
    duration, width = page.eval_on_selector("video", "v => [v.duration, v.videoWidth]")
    assert duration > 0 and width > 0


def test_run_report_from_disk_draws_the_mesh(browser, run_folder):
    """Opened as a file: the harder case (no server: the mesh is inlined, the script classic)."""
    page, problems = open_report(browser, (run_folder / REPORT_FILE).as_uri())
    try:
        viewer = page.locator("model-viewer")
        viewer.scroll_into_view_if_needed()
        page.wait_for_function(
            "() => { const m = document.querySelector('model-viewer');"
            " return m.loaded && m.modelIsVisible; }",
            timeout=LOAD_TIMEOUT_MS,
        )
        page.wait_for_timeout(300)  # a frame or two after the model became visible
        pixels = screenshot_array(viewer)
        background = pixels[2, 2]  # a corner: the viewer's background colour
        drawn = (np.abs(pixels - background).sum(axis=-1) > 40).mean()
        assert drawn > 0.05, f"the 3D viewer drew {drawn:.1%} of its pixels"
        assert pixels.std() > 10
        assert_images_decoded(page, at_least=2)  # contact sheet, training curves
        wait_for_video(page)
        assert problems.list() == []
    finally:
        page.close()


def test_run_report_through_view(browser, served, run_folder):
    """Served as ``ssd3d view`` serves it: every file found, the model parsed (its drawing is
    checked above, once: software WebGL takes seconds)."""
    page, problems = open_report(browser, served(run_folder))
    try:
        page.wait_for_function(
            "() => document.querySelector('model-viewer').loaded", timeout=LOAD_TIMEOUT_MS
        )
        assert_images_decoded(page, at_least=2)
        wait_for_video(page)
        assert problems.list() == []
    finally:
        page.close()


def test_bench_report_through_view(browser, served, bench_folder):
    page, problems = open_report(browser, served(bench_folder))
    try:
        page.wait_for_load_state("load")
        gallery = page.locator("table.gallery img")
        assert gallery.count() == 8  # the oracle and 3 estimators x 2 prompts
        assert_images_decoded(page, at_least=7)  # the gallery and the metric figure
        plot = page.locator('img[src="metrics_vs_steps.png"]')
        assert plot.evaluate("i => i.naturalWidth") > 800
        assert problems.list() == []
    finally:
        page.close()
