"""``generate``: a prompt in, a run folder out (config, log, checkpoint, video, sheet, mesh).

Every check that can fail on bad input (prior, prompt, estimator, device, output folder)
runs before the run folder is created, so bad input leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from tqdm import tqdm

from ssd3d.errors import SSD3DError
from ssd3d.estimators import build_estimator
from ssd3d.pipeline.config import GenerateConfig
from ssd3d.pipeline.loop import (
    LOG_FILE,
    Distillation,
    StepRecord,
    append_log,
    truncate_log,
)
from ssd3d.pipeline.outputs import SUMMARY_FILE, export_run, read_config, write_config
from ssd3d.process import StopRequest


class RunInterrupted(SSD3DError):
    """Ctrl-C during training: a checkpoint was saved and the run can be resumed."""


def slugify(prompt: str, max_length: int = 60) -> str:
    """``"A red cube!"`` -> ``"a-red-cube"``."""
    slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")
    return slug[:max_length].rstrip("-") or "run"


def new_run_dir(out_root: Path, prompt: str) -> Path:
    """``out_root/<slug>``, or ``<slug>-2``, ``-3``… if taken: never overwrite a run."""
    out_root = Path(out_root)
    try:
        out_root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SSD3DError(f"cannot create output folder {out_root}: {e.strerror}") from None
    if not os.access(out_root, os.W_OK | os.X_OK):
        raise SSD3DError(f"output folder {out_root} is not writable")
    slug = slugify(prompt)
    for n in range(1, 10_000):
        candidate = out_root / (slug if n == 1 else f"{slug}-{n}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
        except OSError as e:
            raise SSD3DError(f"cannot create run folder {candidate}: {e.strerror}") from None
    raise SSD3DError(f"too many runs named {slug} in {out_root}")


def check_device(device: str) -> None:
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise SSD3DError(f"unknown device '{device}' (use cpu or cuda)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SSD3DError("device 'cuda' was asked for, but PyTorch sees no CUDA device")


def prior_args(cfg: GenerateConfig) -> tuple:
    """What ``load_prior`` is called with for ``cfg``: runs with equal arguments can share
    one loaded prior (a batch keeps one per process)."""
    exact = cfg.exact
    return (
        cfg.prior,
        cfg.model,
        cfg.device,
        cfg.camera.height,
        cfg.encode_resolution,
        exact.views_per_prompt,
        exact.smoothing,
    )


def load_prior_for(cfg: GenerateConfig):
    """The prior a run of ``cfg`` distils from (loaded on ``cfg.device``)."""
    from ssd3d.priors.load import load_prior

    return load_prior(*prior_args(cfg))


def prepare(cfg: GenerateConfig, prior=None) -> Distillation:
    """Validate everything and build the run in memory (nothing written yet)."""
    check_device(cfg.device)
    if not cfg.prompt.strip():
        raise SSD3DError("the prompt is empty")
    build_estimator(cfg.estimator)  # fail fast on a bad estimator spec
    cfg.timesteps.build()
    if prior is None:
        prior = load_prior_for(cfg)
    return Distillation(cfg, prior)  # embeds the prompt: unknown prompts fail here


def run_steps(
    run: Distillation, run_dir: Path, until: int | None = None, stop: StopRequest | None = None
) -> Iterator[StepRecord]:
    """Step to ``cfg.steps`` (or ``until``), logging every step and checkpointing every N
    steps and after a step during which ``stop`` was requested; yields each step's record,
    so a caller can stop between steps (Ctrl-C, the app's cancel)."""
    end = run.cfg.steps if until is None else min(until, run.cfg.steps)
    while run.step < end:
        record = run.run_step()
        append_log(run_dir, record)
        if run.step % run.cfg.checkpoint_every == 0 or (stop is not None and stop.requested):
            run.save(run_dir)
        yield record


def train(run: Distillation, run_dir: Path, stop_after: int | None = None, progress=True) -> bool:
    """Step until ``cfg.steps`` (or ``stop_after``); checkpoint every N steps and on Ctrl-C
    (at the end of the step it came in, so that resuming reproduces the run bit for bit).

    Returns True when the run finished, False when it stopped early (resumable).
    """
    cfg = run.cfg
    bar = tqdm(
        total=cfg.steps,
        initial=run.step,
        desc=cfg.prompt[:30],
        disable=not progress,
        dynamic_ncols=True,
    )
    try:
        with StopRequest().installed() as stop:
            for record in run_steps(run, run_dir, stop_after, stop):
                bar.update(1)
                bar.set_postfix(loss=f"{record.loss:.3g}", t=record.t[0], refresh=False)
                if stop.requested:  # Ctrl-C came during this step: it was finished first
                    raise RunInterrupted(
                        f"interrupted at step {run.step}; checkpoint saved. "
                        f"Resume with: ssd3d generate --resume {run_dir}"
                    )
    except KeyboardInterrupt:
        # A second Ctrl-C lands mid-step, when the scene may be half updated: saving it
        # would break resuming bit for bit, so the last checkpoint is kept as it is.
        raise RunInterrupted(
            f"interrupted during step {run.step + 1}; the last checkpoint is kept. "
            f"Resume with: ssd3d generate --resume {run_dir}"
        ) from None
    finally:
        bar.close()
    run.save(run_dir)
    return run.step >= cfg.steps


def finish(run_dir: Path, seconds: float) -> dict:
    """Export the outputs, write summary.json, then the report (which shows the summary)."""
    from ssd3d.report.run_page import write_run_report

    written = export_run(run_dir, report=False)
    summary = {
        "train_seconds": round(seconds, 2),
        "files": {k: str(Path(v).name) for k, v in written.items()},
    }
    (run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))
    write_run_report(run_dir)
    return summary


def generate(
    cfg: GenerateConfig,
    out_root: Path = Path("outputs"),
    *,
    prior=None,
    stop_after: int | None = None,
    progress: bool = True,
    run_dir: Path | None = None,
) -> Path:
    """Run ``cfg`` into a new folder under ``out_root``; returns the folder.

    ``run_dir``: write into this existing, empty folder instead (batches name their own).
    """
    run = prepare(cfg, prior)
    run_dir = new_run_dir(out_root, cfg.prompt) if run_dir is None else Path(run_dir)
    write_config(run_dir, cfg)
    start = time.perf_counter()
    if train(run, run_dir, stop_after, progress):
        finish(run_dir, time.perf_counter() - start)
    return run_dir


def resume(run_dir: Path, *, prior=None, stop_after=None, progress=True, steps=None) -> Path:
    """Continue a run folder from its last checkpoint (optionally to a new step count)."""
    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    if steps is not None and steps != cfg.steps:
        from dataclasses import replace

        cfg = replace(cfg, steps=steps)
        write_config(run_dir, cfg)
    run = prepare(cfg, prior)
    run.load(run_dir)
    truncate_log(run_dir, run.step)
    start = time.perf_counter()
    if train(run, run_dir, stop_after, progress):
        finish(run_dir, time.perf_counter() - start)
    return run_dir


__all__ = [
    "LOG_FILE",
    "SUMMARY_FILE",
    "RunInterrupted",
    "generate",
    "new_run_dir",
    "resume",
    "run_steps",
    "slugify",
]
