"""``ssd3d view``: serves a run or benchmark folder (writing a missing report first) and
refuses any other folder with a one-line error."""

from __future__ import annotations

import pytest

from ssd3d.report.page import REPORT_FILE


@pytest.mark.parametrize("kind", ["run", "bench"])
def test_view_serves_the_report(kind, run_folder, bench_folder):
    import threading
    import urllib.request

    from ssd3d.report.serve import address, make_server

    folder = run_folder if kind == "run" else bench_folder
    server = make_server(folder, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = address(server)
        assert url.startswith("http://127.0.0.1:") and url.endswith("/report.html")
        with urllib.request.urlopen(url) as response:
            assert response.status == 200 and "text/html" in response.headers["Content-Type"]
            assert response.read() == (folder / REPORT_FILE).read_bytes()
    finally:
        server.shutdown()
        server.server_close()


def test_view_writes_a_missing_report_and_refuses_other_folders(tmp_path, bench_folder):
    import shutil

    from ssd3d.commands.view import ensure_report
    from ssd3d.errors import SSD3DError

    copy = tmp_path / "bench"
    shutil.copytree(bench_folder, copy)
    (copy / REPORT_FILE).unlink()
    assert ensure_report(copy) == copy / REPORT_FILE and (copy / REPORT_FILE).is_file()
    with pytest.raises(SSD3DError, match="neither a run folder .* nor a benchmark folder"):
        ensure_report(tmp_path)
    with pytest.raises(SSD3DError, match="is not a folder"):
        ensure_report(tmp_path / "missing")


def test_cli_view_on_a_plain_folder_is_a_one_line_error(tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "ssd3d.cli", "view", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("error: ") and "neither a run folder" in result.stderr


def test_cli_view_prints_the_address_it_serves(run_folder):
    import subprocess
    import sys
    import urllib.request

    server = subprocess.Popen(
        [sys.executable, "-m", "ssd3d.cli", "view", str(run_folder), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = server.stdout.readline()
        url = line.split(" at ")[1].split()[0]
        assert line.startswith(f"serving {run_folder} at http://127.0.0.1:")
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.read() == (run_folder / REPORT_FILE).read_bytes()
    finally:
        server.terminate()
        server.wait(timeout=30)
