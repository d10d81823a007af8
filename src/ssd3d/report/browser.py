"""The system's headless Chromium, driven by Playwright: for the browser tests and
``scripts/screenshots.py`` (Playwright is a dev dependency; nothing is downloaded).

.ci/run installs Chromium from the distribution (``apt-get install chromium``); Playwright
is pointed at that binary instead of a browser build of its own.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# No GPU in CI: WebGL runs on SwiftShader, which recent Chromium only enables on request.
CHROMIUM_ARGS = ("--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--mute-audio")


def find_chromium() -> str | None:
    """The Chromium to use: $SSD3D_CHROMIUM, else the first of CHROMIUM_NAMES on PATH."""
    given = os.environ.get("SSD3D_CHROMIUM")
    if given:
        return given
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


@contextmanager
def chromium(executable: str | None = None):
    """A headless Chromium (Playwright ``Browser``), closed on exit."""
    from playwright.sync_api import sync_playwright

    executable = executable or find_chromium()
    if executable is None:
        raise RuntimeError("no Chromium found: apt-get install chromium (or set SSD3D_CHROMIUM)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=list(CHROMIUM_ARGS))
        try:
            yield browser
        finally:
            browser.close()


class PageProblems:
    """Everything a page reports as wrong: console errors, uncaught exceptions, failed
    requests and HTTP errors. Attach before ``goto``; ``list()`` after the page settled."""

    def __init__(self, page) -> None:
        self.problems: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.problems.append(f"exception: {e}"))
        page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url[:120]}"))
        page.on("response", self._response)

    def _console(self, message) -> None:
        if message.type == "error":
            self.problems.append(f"console: {message.text[:300]}")

    def _response(self, response) -> None:
        if response.status >= 400:
            self.problems.append(f"HTTP {response.status}: {response.url}")

    def list(self) -> list[str]:
        return list(self.problems)


__all__ = ["CHROMIUM_ARGS", "PageProblems", "chromium", "find_chromium"]
