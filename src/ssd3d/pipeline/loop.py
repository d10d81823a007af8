"""The distillation loop: render views, score them with the prior, step the scene.

One step (architecture.md): cameras -> render -> prior.encode -> noise at t ->
one batched prior call -> estimator -> surrogate loss (+ regularisers) -> Adam.
Everything random comes from one seeded ``torch.Generator`` whose state is checkpointed,
so an interrupted and resumed CPU run ends with the same parameters as an uninterrupted one.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ssd3d.errors import SSD3DError
from ssd3d.estimators import Estimator, build_estimator, surrogate_loss
from ssd3d.estimators.base import Branch
from ssd3d.guidance import noise_predictions
from ssd3d.pipeline.checkpoint import TrainingState, load_checkpoint, save_checkpoint
from ssd3d.pipeline.config import GenerateConfig
from ssd3d.priors.base import DiffusionPrior
from ssd3d.scene import (
    VIEW_LABELS,
    ImageScene,
    RadianceScene,
    SolidBackground,
    SphericalHarmonicsBackground,
    VoxelGridField,
    opacity_entropy,
    opacity_sparsity,
    orientation_loss,
    sample_cameras,
    sample_shading,
    view_labels,
    view_prompt,
)

CHECKPOINT_DIR = "checkpoint"
LOG_FILE = "log.jsonl"


class NonFiniteGradient(SSD3DError):
    """The estimator or the backward pass produced NaN or inf."""


def build_scene(cfg: GenerateConfig) -> RadianceScene | ImageScene:
    if cfg.representation == "image":
        return ImageScene(cfg.camera.height, cfg.camera.width)
    if cfg.background.kind == "solid":
        background = SolidBackground(cfg.background.colour)
    else:
        background = SphericalHarmonicsBackground(init_colour=cfg.background.colour)
    return RadianceScene(VoxelGridField(cfg.grid), background, cfg.render)


def build_optimizer(cfg: GenerateConfig, scene) -> torch.optim.Adam:
    groups = scene.param_groups(cfg.optim.lr_density, cfg.optim.lr_albedo, cfg.optim.lr_background)
    return torch.optim.Adam(groups, betas=cfg.optim.betas, eps=cfg.optim.eps)


@dataclass
class Conditioning:
    """The prompt's conditioning rows, embedded once per run.

    ``table`` rows: the base prompt, one per view label, the empty prompt, the negative.
    """

    table: Tensor
    view_dependent: bool

    @staticmethod
    def embed(prior: DiffusionPrior, cfg: GenerateConfig) -> Conditioning:
        view_dependent = cfg.view_prompts.enabled and cfg.representation == "nerf"
        views = [view_prompt(cfg.prompt, label) for label in VIEW_LABELS] if view_dependent else []
        prompts = [cfg.prompt, *views, "", cfg.negative_prompt]
        return Conditioning(prior.embed(prompts), view_dependent)

    def rows(self, labels: list[str]) -> dict[Branch, Tensor]:
        b = len(labels)
        if self.view_dependent:
            index = torch.tensor([1 + VIEW_LABELS.index(label) for label in labels])
        else:
            index = torch.zeros(b, dtype=torch.long)
        uncond, neg = len(self.table) - 2, len(self.table) - 1
        device = self.table.device
        return {
            "cond": self.table[index.to(device)],
            "uncond": self.table[[uncond] * b],
            "neg": self.table[[neg] * b],
        }


@dataclass
class StepRecord:
    step: int
    t: list[int]
    loss: float
    grad_norm: float
    regularisers: dict[str, float]
    timings_ms: dict[str, float]


class Distillation:
    """A run in progress: scene, optimiser, prior, estimator and the random generator."""

    def __init__(self, cfg: GenerateConfig, prior: DiffusionPrior) -> None:
        self.cfg = cfg
        self.prior = prior
        self.device = torch.device(cfg.device)
        self.estimator: Estimator = build_estimator(cfg.estimator)
        self.schedule = cfg.timesteps.build()
        self.conditioning = Conditioning.embed(prior, cfg)
        self.scene = build_scene(cfg).to(self.device)
        self.optimizer = build_optimizer(cfg, self.scene)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.step = 0

    # -- state ---------------------------------------------------------------------------
    def state(self) -> TrainingState:
        return TrainingState(
            self.step,
            self.scene.state_dict(),
            self.optimizer.state_dict(),
            self.generator.get_state(),
        )

    def save(self, run_dir: Path) -> None:
        save_checkpoint(run_dir / CHECKPOINT_DIR, self.state())

    def load(self, run_dir: Path) -> None:
        state = load_checkpoint(run_dir / CHECKPOINT_DIR)
        try:
            self.scene.load_state_dict(state.scene)
            self.optimizer = build_optimizer(self.cfg, self.scene)  # a grown grid has new params
            self.optimizer.load_state_dict(state.optimizer)
        except (RuntimeError, ValueError, KeyError) as e:
            raise SSD3DError(f"checkpoint in {run_dir} does not match its config: {e}") from None
        self.generator.set_state(state.rng_state)
        self.step = state.step

    # -- one step ------------------------------------------------------------------------
    def _grow_if_scheduled(self) -> None:
        growth = self.cfg.growth
        if self.cfg.representation != "nerf" or self.step not in growth.steps:
            return
        resolution = growth.resolutions[growth.steps.index(self.step)]
        self.scene.field.grow(resolution)
        self.optimizer = build_optimizer(self.cfg, self.scene)  # fresh moments for new params

    def run_step(self) -> StepRecord:
        cfg, gen = self.cfg, self.generator
        self._grow_if_scheduled()
        timings: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[name] = (now - clock) * 1e3
            clock = now

        cameras = sample_cameras(cfg.camera, cfg.views_per_step, gen).to(self.device)
        shading = sample_shading(cfg.shading, cameras, gen, self.step)
        out = self.scene.render(cameras, shading, gen)
        x0 = self.prior.encode(out.rgb)
        lap("render")
        t = self.schedule.sample(self.step, cfg.steps, cfg.views_per_step, gen).to(self.device)
        noise = torch.randn(x0.shape, generator=gen, dtype=x0.dtype).to(self.device)
        labels = view_labels(cameras, cfg.view_prompts)
        rows = self.conditioning.rows(labels)
        preds = noise_predictions(self.prior, x0, t, noise, rows, self.estimator.branches())
        lap("prior")
        grad = self.estimator(preds)
        lap("estimator")
        if not torch.isfinite(grad).all():
            raise NonFiniteGradient(
                f"non-finite score-distillation gradient at step {self.step} "
                f"(t = {t.tolist()}); lower the learning rates or the guidance scale"
            )
        loss = surrogate_loss(x0, grad)
        regularisers = self._regularisers(out)
        total = loss + sum(w * v for w, v in regularisers.values())
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        lap("backward")
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None and not torch.isfinite(p.grad).all():
                    raise NonFiniteGradient(
                        f"non-finite parameter gradient ({group.get('name', 'params')}) "
                        f"at step {self.step}"
                    )
        self.optimizer.step()
        lap("optimizer")
        self.step += 1
        return StepRecord(
            step=self.step,
            t=t.tolist(),
            loss=float(loss.detach()),
            grad_norm=float(grad.flatten(1).norm(dim=1).mean()),
            regularisers={k: float(v.detach()) for k, (_, v) in regularisers.items()},
            timings_ms=timings,
        )

    def _regularisers(self, out) -> dict[str, tuple[float, Tensor]]:
        weights = self.cfg.regularisers
        terms = {
            "opacity_sparsity": (weights.opacity_sparsity, opacity_sparsity),
            "orientation": (weights.orientation, orientation_loss),
            "opacity_entropy": (weights.opacity_entropy, opacity_entropy),
        }
        return {name: (w, fn(out)) for name, (w, fn) in terms.items() if w > 0}


def append_log(run_dir: Path, record: StepRecord) -> None:
    with open(run_dir / LOG_FILE, "a") as f:
        f.write(json.dumps(record.__dict__) + "\n")


def _log_step(line: str) -> int | None:
    """The step of one log line; None for a line that is not a whole record."""
    try:
        record = json.loads(line)
        return int(record["step"])
    except (ValueError, TypeError, KeyError):
        return None


def truncate_log(run_dir: Path, step: int) -> None:
    """Drop log lines past ``step`` (written after the checkpoint a resume starts from).

    A line that does not parse is dropped too: ``append_log`` writes whole lines, so the
    only such line is the last one, torn by a kill mid-write. The shortened log is written
    atomically, so a kill during the resume's own truncation cannot tear it again.
    """
    from ssd3d.atomic import atomic_write_bytes

    path = run_dir / LOG_FILE
    if not path.exists():
        return
    text = path.read_text(errors="replace")
    kept = [line for line in text.splitlines() if (n := _log_step(line)) is not None and n <= step]
    atomic_write_bytes(path, "".join(line + "\n" for line in kept).encode())
