"""``ssd3d view`` serves the regular files inside its folder, to local requests only: no
symlink out of the folder, no listing, no answer to another Host (DNS rebinding)."""

from __future__ import annotations

import http.client
import threading

import pytest

from ssd3d.report.serve import host_name, make_server


@pytest.fixture
def served(tmp_path):
    """A folder with a report, a file, links in and out; served on an ephemeral port."""
    secret = tmp_path / "outside"
    secret.mkdir()
    (secret / "secret.txt").write_text("private")
    folder = tmp_path / "run"
    (folder / "sub").mkdir(parents=True)
    (folder / "report.html").write_text("<html>report</html>")
    (folder / "sub" / "frame.png").write_bytes(b"png")
    (folder / "a b.txt").write_text("spaced")
    (folder / "inside-link.png").symlink_to(folder / "sub" / "frame.png")
    (folder / "secret-link.txt").symlink_to(secret / "secret.txt")
    (folder / "outside-dir").symlink_to(secret, target_is_directory=True)
    server = make_server(folder, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def get(port: int, path: str, host: str | None = "auto") -> tuple[int, bytes, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("GET", path, skip_host=True)
        if host == "auto":
            host = f"127.0.0.1:{port}"
        if host is not None:
            conn.putheader("Host", host)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        conn.close()


def test_files_inside_are_served(served):
    assert get(served, "/report.html")[:2] == (200, b"<html>report</html>")
    assert get(served, "/sub/frame.png")[:2] == (200, b"png")
    assert get(served, "/a%20b.txt")[:2] == (200, b"spaced")
    # A link inside to a file inside shows nothing the folder does not already show.
    assert get(served, "/inside-link.png")[:2] == (200, b"png")
    status, _, headers = get(served, "/")
    assert status == 302 and headers["Location"] == "/report.html"


@pytest.mark.parametrize(
    "path",
    [
        "/secret-link.txt",  # was: 200 "private" (a symlink out of the folder)
        "/outside-dir/secret.txt",  # was: 200, through a linked folder
        "/outside-dir/",  # was: a listing of the outside folder
        "/sub/",  # was: a listing
        "/../outside/secret.txt",
        "/%2e%2e/outside/secret.txt",
        "/missing.html",
    ],
)
def test_anything_else_is_not_found(served, path):
    status, body, _ = get(served, path)
    assert status == 404 and b"private" not in body


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]", "LOCALHOST"])
def test_local_host_names_with_or_without_a_port(served, host):
    assert get(served, "/report.html", host)[0] == 200
    assert get(served, "/report.html", f"{host}:{served}")[0] == 200


@pytest.mark.parametrize(
    "host", ["attacker.example", "attacker.example:8000", "127.0.0.1.nip.io", "", None]
)
def test_other_hosts_are_refused(served, host):
    status, body, _ = get(served, "/report.html", host)  # was: 200 to any Host
    assert status == 403 and b"report" not in body


def test_host_name():
    assert host_name("localhost:8000") == "localhost"
    assert host_name("[::1]:8000") == "::1" and host_name("[::1]") == "::1"
    assert host_name("127.0.0.1") == "127.0.0.1" and host_name(None) is None
