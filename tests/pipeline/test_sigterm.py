"""SIGTERM (``kill``, a scheduler's time limit) stops ``ssd3d generate`` as the first Ctrl-C
does: the step in progress is finished and checkpointed, and ``--resume`` ends with the same
bits as a run never stopped."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from ssd3d.process import StopRequest

from .test_cli import SMALL, dataset_file  # noqa: F401 - the module-scoped fixture

STEPS = 24
# SMALL's step count replaced: long enough to be caught mid-run, with no periodic
# checkpoint before the end (only the one SIGTERM asks for).
SETTINGS = [s for s in SMALL if not s.startswith(("steps=", "checkpoint_every="))]
SETTINGS += [f"steps={STEPS}", "checkpoint_every=1000", "view_prompts.enabled=false"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same threads, the same bits


def ssd3d(*args, **kw):
    cmd = [sys.executable, "-m", "ssd3d.cli", *map(str, args)]
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def finish(proc, timeout=300) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err.decode()


def scene(run_dir):
    return load_file(str(run_dir / "checkpoint" / "scene.safetensors"))


def step_of(run_dir) -> int:
    import json

    return json.loads((run_dir / "checkpoint" / "state.json").read_text())["step"]


def test_sigterm_saves_the_step_and_resume_matches(tmp_path, dataset_file):  # noqa: F811
    base = ["generate", "a red disk", "--prior", "exact", "--model", dataset_file, "--quiet"]
    straight = ssd3d(*base, "--out", tmp_path / "a", *SETTINGS)
    stopped = ssd3d(*base, "--out", tmp_path / "b", *SETTINGS)
    run_dir = tmp_path / "b" / "a-red-disk"
    log = run_dir / "log.jsonl"
    deadline = time.monotonic() + 120
    while not (log.is_file() and log.read_text().count("\n") >= 3):
        assert stopped.poll() is None and time.monotonic() < deadline, "never got to step 3"
        time.sleep(0.01)
    stopped.send_signal(signal.SIGTERM)
    code, err = finish(stopped)
    # As Ctrl-C: the CLI's one-line error and its exit code (was: killed, -15, no save).
    assert code == 2, err
    assert err.startswith("error: interrupted at step ") and err.count("\n") == 1
    step = step_of(run_dir)
    assert f"interrupted at step {step};" in err and 3 <= step < STEPS
    assert log.read_text().count("\n") == step  # stopped at the end of the step it came in
    assert finish(straight)[0] == 0
    code, err = finish(ssd3d("generate", "--resume", run_dir, "--quiet"))
    assert code == 0, err
    a, b = scene(tmp_path / "a" / "a-red-disk"), scene(run_dir)
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert step_of(run_dir) == STEPS


@pytest.fixture
def default_sigterm():
    """SIGTERM at its default for the test, whatever an earlier test left (ray.init in this
    process installs its own handler); the previous handler back after. Without it, a test
    that sends SIGTERM to this process could end the whole test run."""
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGTERM, previous)


def test_stop_request_takes_sigterm_only_where_nothing_else_does(default_sigterm):
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    with StopRequest().installed() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(100):
            if stop.requested:
                break
            time.sleep(0.01)
        assert stop.requested and stop.signal == signal.SIGTERM
        # The second one would act at once: the default handler is back.
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL

    def owner(signum, frame):  # a Ray worker's, an embedding application's handler
        pass

    previous = signal.signal(signal.SIGTERM, owner)
    try:
        with StopRequest().installed():
            assert signal.getsignal(signal.SIGTERM) is owner
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_either_signal_restores_both_handlers(signum, default_sigterm):
    before = signal.getsignal(signal.SIGINT)
    with StopRequest().installed() as stop:
        signal.raise_signal(signum)
        assert stop.requested and stop.signal == signum
        assert signal.getsignal(signal.SIGINT) is before
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
