"""``ssd3d batch``: a file of jobs, each one ``ssd3d generate`` run, none of them lost.

The job file holds one job a line: a prompt, or a JSON object with ``prompt`` and any of
``estimator``, ``seed``, ``steps``, ``prior``, ``model`` and ``overrides`` (a list of
``"key=value"`` or a mapping). Blank lines and lines starting with ``#`` are skipped.
A job's config is resolved as ``ssd3d generate`` resolves its own (``resolve_config``):
the prior's preset, then the job's fields, then the command line's ``key=value``s, then the
job's own overrides.

A job is named by a hash of its resolved config, so the same job in a later run of the
batch (or in another job file) is recognised. In the batch folder:

- ``<prompt-slug>-<id>/``: a complete run folder, as ``ssd3d generate`` writes it, plus
  ``job.log`` (this job's log) and ``job.json`` (its record);
- ``.<prompt-slug>-<id>.partial/``: a job in progress or interrupted; renamed to the above
  only once complete, so a complete-looking folder is complete;
- ``results.jsonl``: one line per complete job, appended (and synced) after the rename;
- ``failures.jsonl``: one line per failed attempt, with its error.

Running the batch again skips the jobs in ``results.jsonl``, resumes a ``.partial`` folder
from its last checkpoint, and tries failed jobs again.

Longer than the project's 400-line mark: the job file, one job's run folder and the batch
folder's files (results, failures, lock) are one format; the runner they share is runner.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ssd3d.batch.runner import (
    DEFAULT_RETRIES,
    Interrupted,
    Outcome,
    Resources,
    import_ray,
    run_jobs,
)
from ssd3d.config import to_dict
from ssd3d.errors import SSD3DError
from ssd3d.pipeline.config import DEFAULT_PRIOR, GenerateConfig, resolve_config
from ssd3d.pipeline.run_dir import RunDir, slugify

RESULTS_FILE = "results.jsonl"
FAILURES_FILE = "failures.jsonl"
JOB_LOG = "job.log"
JOB_RECORD = "job.json"
RUNNING_DIR = ".running"
LOCK_FILE = ".lock"  # held by the batch running in the folder (see lock_batch_dir)
PARTIAL_SUFFIX = ".partial"
# The keys a JSON job line may have.
JOB_FIELDS = ("prompt", "estimator", "seed", "steps", "prior", "model", "overrides")


# --- the job file ----------------------------------------------------------------------------


def job_id(cfg: GenerateConfig) -> str:
    """10 hex digits of the hash of the whole resolved config: the job's identity."""
    text = json.dumps(to_dict(cfg), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _as_overrides(value, where: str) -> list[str]:
    """A job's ``overrides``: ``["a.b=1"]`` or ``{"a.b": 1}`` -> ``["a.b=1"]``."""
    if isinstance(value, dict):
        # JSON is YAML, which is how override values are read.
        return [f"{k}={json.dumps(v)}" for k, v in value.items()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise SSD3DError(f'{where}: overrides must be a list of "key=value" or a mapping')


def parse_job_line(
    text: str, where: str, prior: str, model: str | None, overrides: Sequence[str]
) -> GenerateConfig:
    """One line of a job file -> its resolved config; ``SSD3DError`` prefixed with ``where``."""
    if text.startswith(("[", '"')):
        # ``["a red cube"]`` or ``"a red cube"``: meant as JSON, not a prompt with brackets.
        # A line that does not parse (``[draft] a red cube``) stays a prompt.
        try:
            json.loads(text)
        except json.JSONDecodeError:
            pass
        else:
            raise SSD3DError(f'{where}: a JSON job must be an object ({{"prompt": ...}})')
    if text.startswith("{"):
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as e:
            raise SSD3DError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(spec, dict):
            raise SSD3DError(f"{where}: a JSON job must be an object")
        unknown = [k for k in spec if k not in JOB_FIELDS]
        if unknown:
            raise SSD3DError(
                f"{where}: unknown field {unknown[0]!r} (fields: {', '.join(JOB_FIELDS)})"
            )
    else:
        spec = {"prompt": text}
    if not isinstance(spec.get("prompt"), str) or not spec["prompt"].strip():
        raise SSD3DError(f"{where}: a job needs a non-empty prompt")
    spec = dict(spec)
    job_prior = spec.pop("prior", prior)
    extra = _as_overrides(spec.pop("overrides", []), where)
    fields = {"model": model} if model is not None else {}
    fields |= spec
    try:
        cfg = resolve_config(job_prior, fields, [*overrides, *extra])
        # What can be checked without the prior or the device (both are the worker's):
        # the estimator spec and the timestep schedule.
        from ssd3d.estimators import build_estimator

        build_estimator(cfg.estimator)
        cfg.timesteps.build()
    except SSD3DError as e:
        raise SSD3DError(f"{where}: {e}") from None
    return cfg


def read_job_file(
    path: Path,
    *,
    prior: str = DEFAULT_PRIOR,
    model: str | None = None,
    overrides: Sequence[str] = (),
) -> list[tuple[int, GenerateConfig]]:
    """(line number, config) of every job in the file, in order; every line checked."""
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        why = getattr(e, "strerror", None) or str(e)
        raise SSD3DError(f"cannot read the job file {path}: {why}") from None
    # The command line's own mistakes, said once and without a line number.
    resolve_config(prior, {"model": model} if model else {}, list(overrides))
    jobs = []
    for n, raw in enumerate(lines, 1):
        text = raw.strip()
        if text and not text.startswith("#"):
            jobs.append((n, parse_job_line(text, f"{path} line {n}", prior, model, overrides)))
    if not jobs:
        raise SSD3DError(f"the job file {path} lists no jobs")
    return jobs


# --- one job -----------------------------------------------------------------------------------


def _log(run_dir: Path, message: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    with open(run_dir / JOB_LOG, "a") as f:
        f.write(f"{stamp} {message}\n")


def read_record(run_dir: Path) -> dict | None:
    """The record of a complete run folder, None if it has none (or an unreadable one)."""
    try:
        return json.loads((Path(run_dir) / JOB_RECORD).read_text())
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class GenerateJob:
    """One ``ssd3d generate`` run into ``out_dir/<name>``, written as ``.<name>.partial``."""

    cfg: GenerateConfig
    out_dir: Path  # the batch folder, absolute (Ray workers do not share our cwd)
    line: int = 0  # where the job file lists it (messages only, not the identity)
    threads: int = 1
    id: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", job_id(self.cfg))

    @property
    def name(self) -> str:
        return f"{slugify(self.cfg.prompt, 40)}-{self.id}"

    @property
    def label(self) -> str:
        return f"line {self.line}: {self.cfg.prompt}"

    @property
    def final_dir(self) -> Path:
        return self.out_dir / self.name

    @property
    def partial_dir(self) -> Path:
        return self.out_dir / f".{self.name}{PARTIAL_SUFFIX}"

    def resources(self) -> Resources:
        # The Stable Diffusion preset runs on cuda: such a job asks Ray for one GPU.
        return Resources(threads=self.threads, gpus=1 if self.cfg.device.startswith("cuda") else 0)

    def run(self, context) -> dict:
        """Train (or resume) in the partial folder, export, then rename it: complete."""
        from ssd3d.generation import RunInterrupted, generate, resume

        record = read_record(self.final_dir)
        if record is not None:  # completed by an attempt whose result did not reach us
            return record
        start = time.perf_counter()
        work = self.partial_dir
        work.mkdir(parents=True, exist_ok=True)
        run_dir = RunDir(work)
        _log(work, f"start: {self.cfg.prompt!r} on {socket.gethostname()}, pid {os.getpid()}")
        checkpoint_step = run_dir.checkpoint_step() if run_dir.is_run() else None
        resumed_from = 0
        try:
            prior = context.prior(self.cfg)
            if run_dir.is_complete():
                _log(work, "already trained, exported and reported by an earlier attempt")
            elif checkpoint_step is not None:
                resumed_from = checkpoint_step
                _log(work, f"resuming from the checkpoint at step {resumed_from}")
                resume(work, prior=prior, progress=False)
            else:
                # An attempt that died before its first checkpoint leaves nothing to reuse.
                for child in work.iterdir():
                    if child.name != JOB_LOG:
                        shutil.rmtree(child) if child.is_dir() else child.unlink()
                _log(work, f"training {self.cfg.steps} steps")
                generate(self.cfg, prior=prior, progress=False, run_dir=work)
        except (KeyboardInterrupt, RunInterrupted):
            _log(work, "interrupted; the next run of the batch resumes from the checkpoint")
            raise
        except SSD3DError as e:  # this job's own input: the message says it all
            _log(work, f"failed: {e}")
            raise
        except Exception as e:
            _log(work, f"failed: {e}\n{traceback.format_exc()}")
            raise
        summary = run_dir.read_summary() or {}
        record = {
            "id": self.id,
            "run_dir": self.name,
            "prompt": self.cfg.prompt,
            "prior": self.cfg.prior,
            "estimator": self.cfg.estimator,
            "seed": self.cfg.seed,
            "steps": self.cfg.steps,
            "status": "ok",
            "scene_sha256": run_dir.scene_digest(),
            "train_seconds": summary.get("train_seconds"),
            "prior_calls_per_step": summary.get("prior_calls_per_step"),
            "wall_seconds": round(time.perf_counter() - start, 3),
            "resumed_from_step": resumed_from,
            "host": socket.gethostname(),
        }
        _log(work, f"complete in {record['wall_seconds']:.1f} s")
        with open(work / JOB_RECORD, "w") as f:  # on disk before the rename that relies on it
            f.write(json.dumps(record, indent=1) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(work, self.final_dir)  # the job is complete from this instant
        return record


# --- the batch folder ------------------------------------------------------------------------------


def read_results(path: Path) -> dict[str, dict]:
    """id -> record of ``results.jsonl``; a torn last line (a crash mid-write) is ignored."""
    out = {}
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        return out
    for line in lines:
        try:
            record = json.loads(line)
            out[record["id"]] = record
        except (ValueError, KeyError, TypeError):
            continue
    return out


def append_line(path: Path, record: dict) -> None:
    """Append one JSON line and sync it to disk before returning."""
    with open(path, "a+b") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":  # a torn line: end it, so this one stands alone
                f.write(b"\n")
        f.write((json.dumps(record) + "\n").encode())
        f.flush()
        os.fsync(f.fileno())


def open_batch_dir(out_dir: Path) -> Path:
    """The batch folder (created), checked to be a batch folder or empty; absolute."""
    out_dir = Path(out_dir).absolute()
    results = out_dir / RESULTS_FILE
    if out_dir.exists() and not out_dir.is_dir():
        raise SSD3DError(f"{out_dir} is not a folder")
    if out_dir.is_dir() and not results.is_file() and any(out_dir.iterdir()):
        raise SSD3DError(f"{out_dir} exists, is not empty and holds no {RESULTS_FILE}")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        results.touch()
    except OSError as e:
        raise SSD3DError(f"cannot write the batch folder {out_dir}: {e.strerror}") from None
    return out_dir


@contextlib.contextmanager
def lock_batch_dir(out_dir: Path) -> Iterator[None]:
    """Hold the batch folder for this process, or fail at once if another batch holds it.

    Two batches on one folder would train the same job in the same ``.partial`` folder. The
    lock is ``flock`` on ``LOCK_FILE``: the kernel drops it when the process ends, a crash
    or ``kill -9`` included, so a stale lock file never blocks a rerun. Only the driver takes
    it: Ray workers write into job folders the driver handed out. The file is opened
    non-inheritable (Python's default), so a local Ray instance started by the driver does
    not keep it locked after the driver dies.
    """
    path = Path(out_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise SSD3DError(f"cannot write the batch folder {out_dir}: {e.strerror}") from None
    try:
        if not _try_lock(fd):
            holder = _read_holder(fd)
            by = f" ({holder})" if holder else ""
            raise SSD3DError(
                f"{out_dir} is in use by another ssd3d batch{by}; wait for it to end "
                "or give another --out"
            )
        # Who holds it, for the message above (not the lock itself).
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
        yield
    finally:
        os.close(fd)  # releases the lock


def _read_holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 200).decode(errors="replace").strip()
    except OSError:  # Windows refuses to read a locked byte: no name, same error
        return ""


def _try_lock(fd: int) -> bool:
    """An exclusive, non-blocking lock on the whole of ``fd``; False if another holds it."""
    try:
        import fcntl
    except ImportError:  # Windows: msvcrt's lock on the first byte, also freed on exit
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@dataclass
class BatchOutcome:
    """What ``run_batch`` did."""

    out_dir: Path
    jobs: list[GenerateJob]
    skipped: list[GenerateJob]  # complete before this run
    done: list[GenerateJob]  # completed by this run
    failed: list[tuple[GenerateJob, str]]  # (job, one-line error)
    duplicates: list[tuple[int, int]]  # (line, the earlier line with the same job)
    wall_s: float


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def default_out_dir(job_file: Path) -> Path:
    return Path("outputs") / Path(job_file).stem


def run_batch(
    job_file: Path,
    out_dir: Path | None = None,
    *,
    ray: str | None = None,
    prior: str = DEFAULT_PRIOR,
    model: str | None = None,
    overrides: Sequence[str] = (),
    threads: int = 1,
    retries: int = DEFAULT_RETRIES,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    context=None,
    ray_cpus: int | None = None,
) -> BatchOutcome:
    """Run every job of ``job_file`` not yet complete in ``out_dir``.

    ray: None (one after another, here), ``"local"``, ``"auto"`` or a cluster address.
    threads: torch threads per job, here and on Ray alike, so both give the same bits.
    context: a ``WorkerContext`` for the jobs run here (tests inject a prior).
    """
    if threads < 1:
        raise SSD3DError(f"--threads must be >= 1; got {threads}")
    if retries < 0:
        raise SSD3DError(f"--retries must be >= 0; got {retries}")
    if ray is not None:
        import_ray()  # a missing extra is said before anything is written
    start = time.perf_counter()
    parsed = read_job_file(job_file, prior=prior, model=model, overrides=overrides)
    out_dir = open_batch_dir(out_dir if out_dir is not None else default_out_dir(job_file))
    with lock_batch_dir(out_dir):  # until the batch ends, however it ends
        jobs: list[GenerateJob] = []
        duplicates, first_line = [], {}
        for line, cfg in parsed:
            job = GenerateJob(cfg, out_dir, line, threads)
            if job.id in first_line:  # the same job twice is one job: run it once
                duplicates.append((line, first_line[job.id]))
                continue
            first_line[job.id] = line
            jobs.append(job)

        results_path, failures_path = out_dir / RESULTS_FILE, out_dir / FAILURES_FILE
        complete = read_results(results_path)
        for job in jobs:
            # Complete on disk but not listed: the batch stopped between the rename and the
            # append. List it now rather than run it again.
            record = None if job.id in complete else read_record(job.final_dir)
            if record is not None:
                append_line(results_path, record)
                complete[job.id] = record
        skipped = [j for j in jobs if j.id in complete]
        todo = [j for j in jobs if j.id not in complete]
        resuming = sum(1 for j in todo if RunDir(j.partial_dir).checkpoint_step() is not None)
        where = "one after another here" if ray is None else f"on Ray ({ray})"
        echo(
            f"{plural(len(jobs), 'job')} in {job_file}: {len(skipped)} complete, {len(todo)} to run "
            f"({resuming} resuming) {where}; results in {results_path}"
        )
        done: list[GenerateJob] = []
        failed: list[tuple[GenerateJob, str]] = []

        def record(outcome: Outcome) -> None:
            job = outcome.job
            if outcome.ok:
                append_line(results_path, {**outcome.result, "attempts": outcome.attempts})
                done.append(job)
                return
            line = {"id": job.id, "line": job.line, "prompt": job.cfg.prompt}
            line |= {"error": outcome.error, "attempts": outcome.attempts, "host": outcome.host}
            line |= {"at": time.strftime("%Y-%m-%dT%H:%M:%S")}
            if outcome.detail:
                line["traceback"] = outcome.detail
            append_line(failures_path, line)
            failed.append((job, outcome.error))

        if todo:
            try:
                run_jobs(
                    todo,
                    record,
                    ray=ray,
                    track_dir=out_dir / RUNNING_DIR,
                    retries=retries,
                    progress=progress,
                    desc="batch",
                    context=context,
                    ray_cpus=ray_cpus,
                )
            except Interrupted:
                raise SSD3DError(
                    f"interrupted: {len(skipped) + len(done)} of {len(jobs)} jobs complete "
                    f"(in {results_path}); run the same command again to continue"
                ) from None
        return BatchOutcome(
            out_dir, jobs, skipped, done, failed, duplicates, time.perf_counter() - start
        )


__all__ = [
    "FAILURES_FILE",
    "JOB_FIELDS",
    "RESULTS_FILE",
    "BatchOutcome",
    "GenerateJob",
    "job_id",
    "read_job_file",
    "read_results",
    "run_batch",
]
