"""``ssd3d view``'s server: a run or benchmark folder on localhost (``commands/view.py``
writes a missing report.html first: the report does not know who writes the folders)."""

from __future__ import annotations

import errno
import functools
import urllib.parse
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ssd3d.errors import SSD3DError
from ssd3d.report.page import REPORT_FILE

# Host headers a request to this machine's own server carries. Any other name reached
# the server through DNS rebinding (a web page whose name now points at 127.0.0.1) or
# from another machine: refused, so a page elsewhere cannot read the run through us.
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def host_name(header: str | None) -> str | None:
    """``"localhost:8000"`` -> ``"localhost"``, ``"[::1]:80"`` -> ``"::1"``; None if absent."""
    if not header:
        return None
    header = header.strip().lower()
    if header.startswith("["):  # an IPv6 literal, with or without a port
        end = header.find("]")
        return header[1:end] if end > 0 else None
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class _FolderHandler(SimpleHTTPRequestHandler):
    """Serves the regular files under ``directory`` to local requests, nothing else.

    A path is served if it resolves (symlinks followed) to a regular file inside the
    folder; a symlink inside that points inside is served like its target (it shows
    nothing the folder does not already show), one that points out is a 404, as are
    folders (no listings), missing files and anything else. A request whose Host is not
    a local name (see ``LOCAL_HOSTS``, or the address given to ``--host``) is a 403.
    """

    allowed_hosts: frozenset[str] = LOCAL_HOSTS

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        pass  # one line per request would bury the address the command printed

    def send_head(self):
        if host_name(self.headers.get("Host")) not in self.allowed_hosts:
            self.send_error(403, "this server answers requests to localhost only")
            return None
        if self.path.split("?", 1)[0].split("#", 1)[0] == "/":
            self.send_response(302)
            self.send_header("Location", "/" + REPORT_FILE)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        root = Path(self.directory).resolve()
        try:
            target = Path(self.translate_path(self.path)).resolve(strict=True)
        except (OSError, RuntimeError):  # missing, or a symlink loop
            target = None
        if target is None or not target.is_relative_to(root) or not target.is_file():
            self.send_error(404, "File not found")
            return None
        # Serve the resolved path (symlink-free when checked), not the one in the URL.
        self.path = "/" + urllib.parse.quote(target.relative_to(root).as_posix())
        return super().send_head()


def make_server(folder: Path, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """A server of ``folder`` (not started: ``serve_forever``). Port 0 picks a free one.

    It answers requests whose Host is a local name, or ``host`` itself when that is a
    specific address (``--host 192.168.1.5``: the user chose to serve it there).
    """
    allowed = LOCAL_HOSTS | ({host.lower()} if host not in ("", "0.0.0.0", "::") else set())
    handler_class = type("_Handler", (_FolderHandler,), {"allowed_hosts": allowed})
    handler = functools.partial(handler_class, directory=str(Path(folder).resolve()))
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
