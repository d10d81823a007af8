"""The distillation loop: render views, score them with the prior, step the scene.

One step (docs/architecture.md): cameras -> scene.render -> prior.encode -> noise at t ->
one batched prior call -> estimator -> surrogate loss (+ regularisers) -> Adam. The scene
is any ``ssd3d.scene.Scene``: the loop never asks which representation it is.
Everything random comes from one seeded ``torch.Generator`` whose state is checkpointed,
so an interrupted and resumed CPU run ends with the same parameters as an uninterrupted one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ssd3d.errors import SSD3DError
from ssd3d.estimators import Estimator, build_estimator, surrogate_loss
from ssd3d.estimators.base import Branch
from ssd3d.guidance import predictions
from ssd3d.pipeline.checkpoint import TrainingState
from ssd3d.pipeline.config import GenerateConfig, Weight, weight_at
from ssd3d.pipeline.run_dir import RunDir
from ssd3d.pipeline.variational import VariationalScore
from ssd3d.priors.base import DiffusionPrior
from ssd3d.scene import (
    VIEW_LABELS,
    Cameras,
    Scene,
    Shading,
    build_scene,
    opacity_entropy,
    opacity_sparsity,
    orientation_loss,
    sample_cameras,
    sample_shading,
    view_labels,
    view_prompt,
)

REGULARISER_FUNCTIONS = {
    "opacity_sparsity": opacity_sparsity,
    "orientation": orientation_loss,
    "opacity_entropy": opacity_entropy,
}


class NonFiniteGradient(SSD3DError):
    """The estimator or the backward pass produced NaN or inf."""


def build_optimizer(cfg: GenerateConfig, scene: Scene) -> torch.optim.Adam:
    # On CUDA one fused kernel for every parameter instead of a launch per tensor; the CPU
    # keeps torch's default implementation (its bits are what resume is tested against).
    fused = torch.device(cfg.device).type == "cuda"
    return torch.optim.Adam(
        scene.param_groups(), betas=cfg.optim.betas, eps=cfg.optim.eps, fused=fused or None
    )


@dataclass
class Conditioning:
    """The prompt's conditioning rows, embedded once per run.

    ``table`` rows: the base prompt, one per view label, the empty prompt, the negative.
    """

    table: Tensor
    view_dependent: bool

    @staticmethod
    def embed(prior: DiffusionPrior, cfg: GenerateConfig, scene: Scene) -> Conditioning:
        view_dependent = cfg.view_prompts.enabled and scene.is_3d
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
    # Network evaluations of the batch this step (rows evaluated / B: SDS with guidance 2,
    # ISM and SDI more for their DDIM inversion; 0 under supervision).
    prior_calls: float = 0.0


class Distillation:
    """A run in progress: scene, optimiser, prior, estimator and the random generator.

    ``supervision``: known target images instead of the prior, a callable (cameras, shading)
    -> target renders [B, 3, H, W]; the benchmark's oracle row gives it, and the step is then
    a photometric fit with everything else the same. Such a run needs no prior (None)."""

    def __init__(
        self,
        cfg: GenerateConfig,
        prior: DiffusionPrior | None,
        supervision: Callable[[Cameras, Shading | None], Tensor] | None = None,
    ) -> None:
        if prior is None and supervision is None:
            raise SSD3DError("a run needs a prior to distil from, or target images")
        self.cfg = cfg
        self.prior = prior
        self.device = torch.device(cfg.device)
        self.estimator: Estimator = build_estimator(cfg.estimator)
        # A stateful companion (a running control-variate coefficient), None for the pure
        # estimators; checkpointed with the scene.
        self.estimator_state = self.estimator.make_state()
        self.schedule = cfg.timesteps.build()
        self.scene: Scene = build_scene(cfg).to(self.device)
        self.conditioning = (
            Conditioning.embed(prior, cfg, self.scene) if prior is not None else None
        )
        # VSD's score of the scene's own renders, fitted beside the scene and checkpointed
        # with it; None for the other estimators (and under supervision).
        self.particle = (
            VariationalScore.build(cfg, prior, self.estimator, self.conditioning.table)
            if self.conditioning is not None
            else None
        )
        self.optimizer = build_optimizer(cfg, self.scene)
        # The regularisers that are on and mean something for this representation: name ->
        # weight (a number, or a ramp over the steps evaluated at each step).
        self.regularisers: dict[str, Weight] = {
            name: weight
            for name, weight in cfg.regularisers.weights().items()
            if name in self.scene.supported_regularisers
        }
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.step = 0
        self.supervision = supervision

    # -- state ---------------------------------------------------------------------------
    def state(self) -> TrainingState:
        return TrainingState(
            self.step,
            self.scene.state_dict(),
            self.optimizer.state_dict(),
            self.generator.get_state(),
            {} if self.estimator_state is None else self.estimator_state.state_dict(),
            {} if self.particle is None else self.particle.state_dict(),
        )

    def save(self, run_dir: RunDir) -> None:
        run_dir.save_checkpoint(self.state())

    def load(self, run_dir: RunDir) -> None:
        state = run_dir.load_checkpoint()
        try:
            self.scene.load_state_dict(state.scene)
            # A restructured scene (grown grid, densified Gaussians) has new parameters.
            self.optimizer = build_optimizer(self.cfg, self.scene)
            self.optimizer.load_state_dict(state.optimizer)
            if self.particle is not None and state.particle:
                self.particle.load_state_dict(state.particle)
        except (RuntimeError, ValueError, KeyError) as e:
            raise SSD3DError(
                f"checkpoint in {run_dir.path} does not match its config: {e}"
            ) from None
        if self.estimator_state is not None:
            # A checkpoint written without one (an older run) resumes with empty sums.
            if state.estimator:
                self.estimator_state.load_state_dict(state.estimator)
        self.generator.set_state(state.rng_state)
        self.step = state.step

    # -- one step ------------------------------------------------------------------------
    def run_step(self) -> StepRecord:
        cfg, gen = self.cfg, self.generator
        if self.scene.restructure(self.step):
            self.optimizer = build_optimizer(cfg, self.scene)  # fresh moments for new params
        timings: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[name] = (now - clock) * 1e3
            clock = now

        cameras = sample_cameras(cfg.camera, cfg.views_per_step, gen)
        labels = view_labels(cameras, cfg.view_prompts)  # on the host: no device round trip
        cameras = cameras.to(self.device)
        shading = sample_shading(cfg.shading, cameras, gen, self.step)
        out = self.scene.render(cameras, shading, gen)
        if self.supervision is not None:
            return self._supervised_step(out, cameras, shading, timings, lap)
        x0 = self.prior.encode(out.rgb)
        lap("render")
        t_host = self.schedule.sample(self.step, cfg.steps, cfg.views_per_step, gen)
        # Only the branches this step's t need (SSD's branch per t asks for one prediction),
        # decided on the host copy of t: no device round trip.
        branches = self.estimator.branches(t_host)
        t = t_host.to(self.device)
        noise = torch.randn(x0.shape, generator=gen, dtype=x0.dtype).to(self.device)
        rows = self.conditioning.rows(labels)
        # x_t as the estimator's noising step says (random noise, or DDIM inversion of x0).
        predicted = predictions(
            self.prior, self.estimator.noising, x0, t, noise, rows, branches, gen
        )
        preds = predicted.predictions
        if self.particle is not None:
            preds = self.particle.attach(preds, cameras)
        lap("prior")
        grad = self.estimator(preds, state=self.estimator_state)
        if self.estimator_state is not None:
            self.estimator_state.update(preds)  # after the gradient: it uses earlier steps only
        lap("estimator")
        if self.particle is not None:
            self.particle.train(x0, cameras, gen)  # on this step's renders, after the gradient
            lap("particle")
        if not torch.isfinite(grad).all():
            raise NonFiniteGradient(
                f"non-finite score-distillation gradient at step {self.step} "
                f"(t = {t_host.tolist()}); lower the learning rates or the guidance scale"
            )
        record = self._descend(out, x0, grad, t_host.tolist(), timings, lap)
        record.prior_calls = predicted.prior_calls
        return record

    def _descend(self, out, x0: Tensor, grad: Tensor, t: list[int], timings, lap) -> StepRecord:
        """Surrogate loss on x0 (+ regularisers on the render), backward, Adam; the record."""
        loss = surrogate_loss(x0, grad)
        regularisers = self._regularisers(out)
        total = loss + sum(w * v for w, v in regularisers.values())
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.scene.observe_gradients(self.step)
        lap("backward")
        self._check_parameter_gradients()
        rates = self.scene.learning_rates(self.step, self.cfg.steps)
        for group in self.optimizer.param_groups:
            group["lr"] = rates.get(group.get("name"), group["lr"])
        self.optimizer.step()
        lap("optimizer")
        self.step += 1
        # Every logged number in one device-to-host copy (one sync on a GPU, not one each).
        scalars = torch.stack(
            [loss.detach(), grad.flatten(1).norm(dim=1).mean()]
            + [v.detach().to(loss.dtype) for _, v in regularisers.values()]
        ).tolist()
        return StepRecord(
            step=self.step,
            t=t,
            loss=scalars[0],
            grad_norm=scalars[1],
            regularisers=dict(zip(regularisers, scalars[2:], strict=True)),
            timings_ms=timings,
        )

    def _regularisers(self, out) -> dict[str, tuple[float, Tensor]]:
        """The render's regularisers that are on, then the scene's own (on its parameters)."""
        on_render = {
            name: (weight_at(weight, self.step), REGULARISER_FUNCTIONS[name](out))
            for name, weight in self.regularisers.items()
        }
        return {**on_render, **self.scene.scene_losses()}

    def _supervised_step(self, out, cameras, shading, timings, lap) -> StepRecord:
        """The step's second half under ``supervision``: the gradient on the render is its
        difference to the target (that of 0.5 ||render - target||^2), then as always."""
        lap("render")
        target = self.supervision(cameras, shading)
        lap("prior")
        grad = out.rgb.detach() - target
        return self._descend(out, out.rgb, grad, [], timings, lap)

    def _check_parameter_gradients(self) -> None:
        """NonFiniteGradient naming the first group with NaN or inf, from one reduction."""
        named = [
            (group.get("name", "params"), p.grad)
            for group in self.optimizer.param_groups
            for p in group["params"]
            if p.grad is not None
        ]
        if not named:
            return
        finite = torch.stack([torch.isfinite(g).all() for _, g in named])
        if bool(finite.all()):
            return
        bad = next(name for (name, _), ok in zip(named, finite.tolist(), strict=True) if not ok)
        raise NonFiniteGradient(f"non-finite parameter gradient ({bad}) at step {self.step}")
