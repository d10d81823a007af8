"""A batch folder is one batch's at a time; job lines that are JSON but not an object are
errors; a local Ray instance is reachable from this machine only."""

import os
import signal
import subprocess
import sys

import pytest

from ssd3d.batch.jobs import read_job_file
from ssd3d.errors import SSD3DError

from .conftest import SMALL, cli, results, write_jobs

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HOLD = """
import sys, time
from pathlib import Path
from ssd3d.batch.jobs import lock_batch_dir, open_batch_dir
with lock_batch_dir(open_batch_dir(Path(sys.argv[1]))):
    print("locked", flush=True)
    time.sleep(600)
"""


def test_a_second_batch_on_the_same_folder_fails_at_once(tmp_path, dataset_file):
    jobs = write_jobs(tmp_path / "jobs.txt", ["a red disk"])
    out = tmp_path / "out"
    args = ["batch", jobs, "--out", out, "--prior", "exact", "--model", dataset_file, "--quiet"]
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"locked\n"
        code, _, err = cli(*args, *SMALL)  # was: both trained the job in one .partial folder
        assert code == 2 and err.count("\n") == 1
        assert err.startswith(f"error: {out.absolute()} is in use by another ssd3d batch")
        assert f"pid {holder.pid} " in err
        assert not list(out.glob(".*.partial"))  # nothing was started
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # a crash: the kernel drops its lock
        holder.wait()
    code, stdout, err = cli(*args, *SMALL)
    assert code == 0, err
    assert [r["prompt"] for r in results(out)] == ["a red disk"]


@pytest.mark.parametrize("line", ['["a red cube"]', '"a red cube"', '["a red cube", 1]'])
def test_a_json_job_line_that_is_not_an_object_is_an_error(tmp_path, line):
    jobs = write_jobs(tmp_path / "jobs.txt", ["a red cube", line])
    with pytest.raises(SSD3DError, match=r"jobs\.txt line 2: a JSON job must be an object"):
        read_job_file(jobs)  # was: the prompt '["a red cube"]'


def test_a_line_in_brackets_that_is_not_json_is_still_a_prompt(tmp_path):
    jobs = write_jobs(tmp_path / "jobs.txt", ["[draft] a red cube", '"quoted" cube'])
    assert [cfg.prompt for _, cfg in read_job_file(jobs)] == ["[draft] a red cube", '"quoted" cube']


def _is_loopback(ip: str) -> bool:
    return ip.startswith("127.") or ip in ("::1", "localhost") or ip.startswith("::ffff:127.")


def test_a_local_ray_instance_listens_on_loopback_only(monkeypatch):
    ray = pytest.importorskip("ray")
    psutil = pytest.importorskip("psutil")
    if ray.is_initialized():
        pytest.skip("another test's Ray instance is running")
    from ssd3d.batch.runner import _RAY_CLUSTER_ENV, connect

    monkeypatch.delenv(_RAY_CLUSTER_ENV, raising=False)
    with connect("local", num_cpus=1):
        ours = {p.pid for p in psutil.Process().children(recursive=True)} | {os.getpid()}
        listening = [
            c.laddr.ip
            for c in psutil.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.pid in ours
        ]
        assert ray.util.get_node_ip_address() == "127.0.0.1"
    assert len(listening) >= 2  # the GCS and the raylet at least
    assert all(_is_loopback(ip) for ip in listening), listening  # was: every interface
    assert _RAY_CLUSTER_ENV not in os.environ  # put back
