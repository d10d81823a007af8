"""Run many jobs: one after another in this process, or as Ray tasks on a cluster.

The one runner behind ``ssd3d batch`` and ``ssd3d bench --ray``. A job is any picklable
object with an ``id``, a ``label``, ``resources()`` and ``run(context) -> dict``; the
runner does not know what it computes. Ray is the scheduler (no queue of our own): each
job is one task that asks for the CPUs and GPUs it needs, and Ray retries a task whose
worker died a bounded number of times. A job that raises is one failed ``Outcome`` with a
one-line error; the others go on.

Each process that runs jobs (this one, or a Ray worker) keeps one ``WorkerContext``: the
priors it loaded, so that consecutive jobs with the same prior do not reload it.

While a job runs, ``track_dir/<id>.json`` holds one line per attempt (pid, host): the
progress bar counts running jobs from it, and the attempt number comes from it. With Ray
on several machines it is only seen where the folder is shared; elsewhere attempts read 1.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import socket
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ssd3d.errors import SSD3DError

# ``--ray`` without an address: start a Ray instance on this machine for this batch.
LOCAL = "local"
RAY_INSTALL = 'pip install "ssd3d[ray]"'
# Ray's own default: a task whose worker process dies is run again up to 3 more times.
DEFAULT_RETRIES = 3
# How often the progress bar looks for jobs that started (seconds).
POLL_SECONDS = 1.0
# A local Ray instance (``--ray`` alone) is reachable from this machine only.
LOOPBACK = "127.0.0.1"
_RAY_CLUSTER_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_ADDRESS = re.compile(r"^(auto|local|(ray://)?[\w.\-]+:\d+)$")


def is_ray_address(text: str) -> bool:
    """``auto``, ``local``, ``host:port`` or ``ray://host:port``."""
    return bool(_ADDRESS.match(text))


@dataclass(frozen=True)
class Resources:
    """What one job needs from the machine it runs on."""

    # Torch threads, and the CPUs Ray reserves for the job. None: in this process, leave
    # torch's thread count alone; on Ray, 1.
    threads: int | None = 1
    gpus: int = 0

    @property
    def cpus(self) -> int:
        return self.threads or 1


class Job(Protocol):
    id: str  # stable across runs: names its files
    label: str  # for people: progress, errors

    def resources(self) -> Resources: ...

    def run(self, context: WorkerContext) -> dict: ...


@dataclass
class Outcome:
    """How one job ended: ``result`` when it ran to the end, else ``error`` (one line)."""

    job: Any
    result: dict | None = None
    error: str | None = None
    detail: str = ""  # the traceback of an unexpected exception
    attempts: int = 1
    host: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None


class Interrupted(SSD3DError):
    """Ctrl-C: the runner stopped; finished jobs were reported through ``on_done``."""


class WorkerContext:
    """What the jobs run by one process share: loaded priors and other costly objects."""

    def __init__(self, prior=None) -> None:
        self._prior = prior  # given: every job uses it (tests, bench with a loaded prior)
        self._cache: dict = {}

    def memo(self, key, make: Callable[[], Any]):
        """``make()`` once per ``key`` in this process."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def put(self, key, value) -> None:
        self._cache[key] = value

    def prior(self, cfg):
        """The prior of a GenerateConfig, loaded once per process."""
        if self._prior is not None:
            return self._prior
        from ssd3d.pipeline.priors import load_prior

        spec = cfg.prior_spec()
        return self.memo(("prior", spec), lambda: load_prior(spec))


def _mark_start(track_dir: Path | None, job_id: str) -> int:
    """Append this attempt to the job's marker; return the attempt number (1 if unseen)."""
    if track_dir is None:
        return 1
    line = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "at": time.time()})
    try:
        with open(Path(track_dir) / f"{job_id}.json", "a+") as f:
            f.write(line + "\n")
            f.flush()
            f.seek(0)
            return sum(1 for _ in f)
    except OSError:  # a folder this machine cannot see: no tracking, not a failure
        return 1


def execute(job, context: WorkerContext, track_dir: Path | None) -> Outcome:
    """Run one job here (the driver or a Ray worker). Its own errors become the Outcome's
    one-line error; Ctrl-C goes through (the batch stops, the job resumes next time)."""
    from ssd3d.generation import RunInterrupted
    from ssd3d.process import torch_threads

    attempts = _mark_start(track_dir, job.id)
    out = Outcome(job=None, attempts=attempts, host=socket.gethostname())
    try:
        with torch_threads(job.resources().threads):
            out.result = job.run(context)
    except (KeyboardInterrupt, RunInterrupted):
        raise
    except SSD3DError as e:  # bad input of this job (a prompt the prior lacks, NaN…)
        out.error = str(e)
    except Exception as e:  # a bug or the machine (out of memory…): still this job's alone
        lines = str(e).strip().splitlines()
        out.error = f"{type(e).__name__}: {lines[0] if lines else ''}".rstrip(": ")
        out.detail = traceback.format_exc()
    return out


# --- Ray ---------------------------------------------------------------------------------------

_PROCESS_CONTEXT: WorkerContext | None = None


def _ray_task(job, track_dir: Path | None) -> Outcome:
    """The body of every Ray task: the worker process's context, then ``execute``."""
    global _PROCESS_CONTEXT
    if _PROCESS_CONTEXT is None:
        _PROCESS_CONTEXT = WorkerContext()
    return execute(job, _PROCESS_CONTEXT, track_dir)


def import_ray():
    """The ``ray`` module, or a one-line error that says what to install."""
    try:
        import ray
    except ImportError:
        raise SSD3DError(f"--ray needs Ray, an optional extra: {RAY_INSTALL}") from None
    return ray


@contextlib.contextmanager
def _loopback_only(ray):
    """While a local Ray instance starts: make it listen on the loopback interface only.

    ``_node_ip_address="127.0.0.1"`` alone is not enough: Ray (2.x on Linux) swaps a
    loopback node address for the machine's routable one, and its GCS, raylet and workers
    then listen on every interface, open to anyone on the network for the length of the
    batch. Ray keeps the loopback address where it thinks clusters are unsupported, a
    switch read from ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``: set it to 0 for the processes
    ``ray.init`` starts (they inherit the environment), and in this process, which read it
    when Ray was imported, through the module constant. Both are put back afterwards.
    """
    constants = getattr(getattr(ray, "_private", None), "ray_constants", None)
    had_env = os.environ.get(_RAY_CLUSTER_ENV)
    had_flag = getattr(constants, "ENABLE_RAY_CLUSTER", None)
    os.environ[_RAY_CLUSTER_ENV] = "0"
    if had_flag is not None:
        constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if had_env is None:
            os.environ.pop(_RAY_CLUSTER_ENV, None)
        else:
            os.environ[_RAY_CLUSTER_ENV] = had_env
        if had_flag is not None:
            constants.ENABLE_RAY_CLUSTER = had_flag


@contextlib.contextmanager
def connect(address: str, num_cpus: int | None = None):
    """Ray for this batch: a local instance (``local``, on the loopback interface only), or
    the cluster at ``address`` (``auto``: the one ``ray start`` runs on this machine). An
    instance that is already initialised (a test's, a notebook's) is used as it is and left
    running."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    if not is_ray_address(address):
        raise SSD3DError(f"--ray takes no value, auto, or host:port; got {address!r}")
    # Each job logs into its own run folder: the workers' output is not echoed here.
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    kwargs["logging_level"] = logging.WARNING
    try:
        if address == LOCAL:
            with _loopback_only(ray):
                ray.init(num_cpus=num_cpus, _node_ip_address=LOOPBACK, **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SSD3DError(f"cannot start or join Ray at {address!r}: {first}") from None
    try:
        yield ray
    finally:
        ray.shutdown()  # stops a local instance; only disconnects from a cluster


# --- the runner ----------------------------------------------------------------------------------


class _Progress:
    """One bar for all jobs: finished / total with ETA, then ok, failed and running."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="job", disable=not enabled, dynamic_ncols=True)
        self.ok = self.failed = self.running = 0
        self.show()

    def show(self, refresh: bool = True) -> None:
        self.bar.set_postfix_str(
            f"ok {self.ok}, failed {self.failed}, running {self.running}", refresh=refresh
        )

    def finished(self, outcome: Outcome) -> None:
        if outcome.ok:
            self.ok += 1
        else:
            self.failed += 1
        self.running = max(0, self.running - 1)
        self.show(refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def _running(track_dir: Path | None, pending: set[str]) -> int:
    if track_dir is None:
        return 0
    try:
        started = {p.name.removesuffix(".json") for p in os.scandir(track_dir)}
    except OSError:
        return 0
    return len(started & pending)


def run_jobs(
    jobs: Sequence,
    on_done: Callable[[Outcome], None],
    *,
    ray: str | None = None,
    track_dir: Path | None = None,
    retries: int = DEFAULT_RETRIES,
    progress: bool = True,
    desc: str = "jobs",
    context: WorkerContext | None = None,
    ray_cpus: int | None = None,
) -> list[Outcome]:
    """Run ``jobs`` and call ``on_done`` in this process as each one ends.

    ray: None runs them here, in order, sharing ``context``; else a Ray address (see
    ``connect``; ``ray_cpus`` caps a local instance). retries: Ray's retries of a job whose
    worker died. Raises ``Interrupted`` on Ctrl-C (after cancelling the Ray tasks).
    """
    ids = [job.id for job in jobs]
    if len(set(ids)) != len(ids):
        raise ValueError("job ids must be distinct")
    if track_dir is not None:
        shutil.rmtree(track_dir, ignore_errors=True)  # an interrupted batch's stale markers
        Path(track_dir).mkdir(parents=True)
    bar = _Progress(len(jobs), desc, progress)
    outcomes: list[Outcome] = []

    def finish(outcome: Outcome, job) -> None:
        outcome.job = job
        if track_dir is not None:
            (Path(track_dir) / f"{job.id}.json").unlink(missing_ok=True)
        outcomes.append(outcome)
        bar.finished(outcome)
        on_done(outcome)

    try:
        if ray is None:
            context = context or WorkerContext()
            for job in jobs:
                bar.running = 1
                bar.show()
                finish(execute(job, context, track_dir), job)
        else:
            _run_on_ray(jobs, finish, bar, ray, track_dir, retries, ray_cpus)
    except KeyboardInterrupt:
        raise Interrupted("interrupted") from None
    except SSD3DError as e:
        from ssd3d.generation import RunInterrupted

        if isinstance(e, RunInterrupted):
            raise Interrupted("interrupted") from None
        raise
    finally:
        bar.running = 0
        bar.close()
        if track_dir is not None:
            with contextlib.suppress(OSError):
                Path(track_dir).rmdir()  # gone when every job ended
    return outcomes


def _run_on_ray(jobs, finish, bar, address, track_dir, retries, ray_cpus) -> None:
    with connect(address, ray_cpus) as ray:
        task = ray.remote(_ray_task)
        pending = {}
        for job in jobs:
            need = job.resources()
            ref = task.options(
                num_cpus=need.cpus,
                num_gpus=need.gpus,
                max_retries=retries,  # worker deaths only: a job's own errors are results
                name=job.label[:80],
            ).remote(job, track_dir)
            pending[ref] = job
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
                bar.running = _running(track_dir, {j.id for j in pending.values()})
                bar.show()
                for ref in ready:
                    job = pending.pop(ref)
                    try:
                        outcome = ray.get(ref)
                    except ray.exceptions.RayTaskError as e:
                        # The task itself raised outside the job (a node without ssd3d…).
                        cause = e.cause if e.cause is not None else e
                        first = (str(cause).strip().splitlines() or [""])[0]
                        outcome = Outcome(job=None, error=f"{type(cause).__name__}: {first}")
                    except ray.exceptions.RayError as e:
                        # The worker died more often than Ray retries (or the node was lost).
                        outcome = Outcome(
                            job=None,
                            error=f"its worker died {retries + 1} times "
                            f"({type(e).__name__}); see the Ray logs",
                            attempts=retries + 1,
                        )
                    finish(outcome, job)
        except BaseException:
            for ref in pending:  # Ctrl-C: stop the rest; their checkpoints stay for a rerun
                ray.cancel(ref, force=True)
            raise
