"""``ssd3d view``'s server: a run or benchmark folder on localhost (``commands/view.py``
writes a missing report.html first: the report does not know who writes the folders)."""

from __future__ import annotations

import errno
import functools
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ssd3d.errors import SSD3DError
from ssd3d.report.page import REPORT_FILE


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


__all__ = ["address", "make_server"]
