"""The one generate sequence: a config in, a finished run folder out; resume and re-export.

``ssd3d generate``, ``ssd3d batch`` and the app all drive a ``Generation``:

    gen = Generation.new(cfg, out_root)       # checks everything, then makes the folder
    for record in gen.steps():                # logs every step, checkpoints every N
        ...                                   # (the app previews here; a caller may stop)
    gen.finish()                              # exports, report.html, then summary.json

``generate`` and ``resume`` wrap that with a progress bar and Ctrl-C / SIGTERM handling.
summary.json is written last: a folder that has one is trained, exported and reported.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from ssd3d.errors import SSD3DError
from ssd3d.pipeline.config import GenerateConfig
from ssd3d.pipeline.loop import Distillation, StepRecord
from ssd3d.pipeline.outputs import export_outputs
from ssd3d.pipeline.run import prepare
from ssd3d.pipeline.run_dir import RunDir
from ssd3d.priors.base import DiffusionPrior
from ssd3d.process import StopRequest
from ssd3d.report.run_page import write_run_report

DEFAULT_OUT = Path("outputs")


class RunInterrupted(SSD3DError):
    """Ctrl-C or SIGTERM during training: a checkpoint was saved and the run can be resumed."""


class Generation:
    """A run in progress and its folder."""

    def __init__(self, run: Distillation, run_dir: RunDir) -> None:
        self.run = run
        self.run_dir = run_dir
        self.train_seconds = 0.0

    @property
    def cfg(self) -> GenerateConfig:
        return self.run.cfg

    @classmethod
    def new(
        cls,
        cfg: GenerateConfig,
        out_root: str | os.PathLike = DEFAULT_OUT,
        *,
        prior: DiffusionPrior | None = None,
        run_dir: str | os.PathLike | None = None,
    ) -> Generation:
        """Check ``cfg`` and load its prior, then make ``out_root/<slug>`` (or use the given,
        empty ``run_dir``) and write its config."""
        run = prepare(cfg, prior)
        folder = RunDir.create(out_root, cfg.prompt) if run_dir is None else RunDir(run_dir)
        folder.write_config(cfg)
        return cls(run, folder)

    @classmethod
    def resume(
        cls,
        run_dir: str | os.PathLike,
        *,
        prior: DiffusionPrior | None = None,
        steps: int | None = None,
    ) -> Generation:
        """Continue a run folder from its last checkpoint, optionally to a new step count.
        Everything is checked before config.yaml is rewritten."""
        folder = RunDir(run_dir).require_run()
        cfg = folder.read_config()
        if steps is not None:
            cfg = replace(cfg, steps=steps)
        run = prepare(cfg, prior)
        run.load(folder)
        if run.step > cfg.steps:
            raise SSD3DError(
                f"{folder.path} is checkpointed at step {run.step}: --steps must be at least that"
            )
        if steps is not None:
            folder.write_config(cfg)
        folder.truncate_log(run.step)
        return cls(run, folder)

    def steps(
        self, until: int | None = None, stop: StopRequest | None = None
    ) -> Iterator[StepRecord]:
        """Step to ``cfg.steps`` (or ``until``), logging every step and checkpointing every N
        steps and after a step during which ``stop`` was requested; yields each step's
        record, so a caller can stop between steps (Ctrl-C, the app's cancel)."""
        run = self.run
        end = run.cfg.steps if until is None else min(until, run.cfg.steps)
        while run.step < end:
            start = time.perf_counter()
            record = run.run_step()
            self.train_seconds += time.perf_counter() - start
            self.run_dir.append_log(record.__dict__)
            if run.step % run.cfg.checkpoint_every == 0 or (stop is not None and stop.requested):
                run.save(self.run_dir)
            yield record

    def train(
        self,
        stop_after: int | None = None,
        progress: bool = True,
        on_step: Callable[[StepRecord], None] | None = None,
    ) -> bool:
        """Step until ``cfg.steps`` (or ``stop_after``) under a progress bar; checkpoint every
        N steps and on Ctrl-C or SIGTERM (at the end of the step it came in, so that
        resuming reproduces the run bit for bit). Returns True when the run finished."""
        run, cfg = self.run, self.cfg
        bar = tqdm(
            total=cfg.steps,
            initial=run.step,
            desc=cfg.prompt[:30],
            disable=not progress,
            dynamic_ncols=True,
        )
        resume_hint = f"Resume with: ssd3d generate --resume {self.run_dir.path}"
        try:
            with StopRequest().installed() as stop:
                for record in self.steps(stop_after, stop):
                    bar.update(1)
                    bar.set_postfix(loss=f"{record.loss:.3g}", t=record.t[0], refresh=False)
                    if on_step is not None:
                        on_step(record)
                    if stop.requested:  # the signal came during this step: it was finished first
                        raise RunInterrupted(
                            f"interrupted at step {run.step}; checkpoint saved. {resume_hint}"
                        )
        except KeyboardInterrupt:
            # A second Ctrl-C lands mid-step, when the scene may be half updated: saving it
            # would break resuming bit for bit, so the last checkpoint is kept as it is.
            raise RunInterrupted(
                f"interrupted during step {run.step + 1}; the last checkpoint is kept. "
                f"{resume_hint}"
            ) from None
        finally:
            bar.close()
        run.save(self.run_dir)
        return run.step >= cfg.steps

    def finish(self) -> dict:
        """Export the outputs, write the report, then summary.json (the completion marker)."""
        return finish(self.run_dir, self.train_seconds)


def finish(run_dir: RunDir, train_seconds: float) -> dict:
    notes: list[str] = []
    written = export_outputs(run_dir, notes=notes)
    summary = {
        "train_seconds": round(train_seconds, 2),
        "files": {k: Path(v).name for k, v in written.items()},
        "notes": notes,
    }
    # What the estimator cost next to how long it took: network evaluations of the batch
    # per step over the whole run (logs written before the count have none).
    calls = [r["prior_calls"] for r in run_dir.read_log() if "prior_calls" in r]
    if calls:
        summary["prior_calls_per_step"] = round(sum(calls) / len(calls), 3)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    write_run_report(run_dir, summary)
    run_dir.write_summary(summary)
    return summary


def generate(
    cfg: GenerateConfig,
    out_root: str | os.PathLike = DEFAULT_OUT,
    *,
    prior: DiffusionPrior | None = None,
    stop_after: int | None = None,
    progress: bool = True,
    run_dir: str | os.PathLike | None = None,
) -> Path:
    """Run ``cfg`` into a new folder under ``out_root`` (or the given empty ``run_dir``);
    returns the folder."""
    gen = Generation.new(cfg, out_root, prior=prior, run_dir=run_dir)
    if gen.train(stop_after, progress):
        gen.finish()
    return gen.run_dir.path


def resume(
    run_dir: str | os.PathLike,
    *,
    prior: DiffusionPrior | None = None,
    stop_after: int | None = None,
    progress: bool = True,
    steps: int | None = None,
) -> Path:
    """Continue a run folder from its last checkpoint (optionally to a new step count)."""
    gen = Generation.resume(run_dir, prior=prior, steps=steps)
    if gen.train(stop_after, progress):
        gen.finish()
    return gen.run_dir.path


def export(run_dir: str | os.PathLike) -> dict[str, Path]:
    """Rewrite a run's exports and report from its checkpoint (``ssd3d export``)."""
    folder = RunDir(run_dir).require_run()
    notes: list[str] = []
    written = export_outputs(folder, notes=notes)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    summary = folder.read_summary()
    written["report"] = write_run_report(
        folder, None if summary is None else summary | {"notes": notes}
    )
    return written


__all__ = [
    "DEFAULT_OUT",
    "Generation",
    "RunInterrupted",
    "export",
    "finish",
    "generate",
    "resume",
]
