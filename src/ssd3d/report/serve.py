"""``ssd3d view``: serve a run or benchmark folder on localhost, its report.html first."""

from __future__ import annotations

import errno
import functools
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal

from ssd3d.errors import SSD3DError
from ssd3d.report.page import REPORT_FILE

FolderKind = Literal["run", "bench"]


def folder_kind(folder: Path) -> FolderKind:
    """The kind of folder: "bench" (has results.json) or "run" (has config.yaml); else an error."""
    from ssd3d.pipeline.outputs import CONFIG_FILE
    from ssd3d.toyworld.bench import RESULTS_FILE

    folder = Path(folder)
    if not folder.is_dir():
        raise SSD3DError(f"{folder} is not a folder")
    if (folder / RESULTS_FILE).is_file():
        return "bench"
    if (folder / CONFIG_FILE).is_file():
        return "run"
    raise SSD3DError(
        f"{folder} is neither a run folder (no {CONFIG_FILE}) nor a benchmark folder "
        f"(no {RESULTS_FILE})"
    )


def ensure_report(folder: Path) -> Path:
    """The folder's report.html, written first if missing (a run still going, an old folder)."""
    folder = Path(folder)
    kind = folder_kind(folder)
    page = folder / REPORT_FILE
    if page.is_file():
        return page
    if kind == "run":
        from ssd3d.report.run_page import write_run_report

        return write_run_report(folder)
    from ssd3d.report.bench_page import write_bench_report
    from ssd3d.toyworld.bench import RESULTS_FILE, read_results

    return write_bench_report(folder, read_results(folder / RESULTS_FILE))


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        pass  # one line per request would bury the address the command printed


def make_server(folder: Path, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """A server of ``folder`` (not started: ``serve_forever``). Port 0 picks a free one."""
    handler = functools.partial(_QuietHandler, directory=str(Path(folder).resolve()))
    try:
        return ThreadingHTTPServer((host, port), handler)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise SSD3DError(f"port {port} is in use: pick another with --port (0: any)") from None
        raise SSD3DError(f"cannot serve on {host}:{port}: {e.strerror}") from None


def address(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/{REPORT_FILE}"


__all__ = ["address", "ensure_report", "folder_kind", "make_server"]
