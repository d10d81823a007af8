"""VSD's particle score in a 3D run: which model each prior gets, and its two calls a step.

The distillation loop asks ``VariationalScore.build`` for one when its estimator needs the
"particle" prediction (``ssd3d.estimators.VSD``), then each step calls ``attach`` after the
prior's call (eps of the scene's own renders on the same x_t, one more network call) and
``train`` after the gradient (one fitting step on the detached renders, its t and noise
drawn from the run's generator, so a resumed run draws what an uninterrupted one draws).

Per prior (``ssd3d.priors.variational``): the toy UNet and Stable Diffusion get a LoRA copy
conditioned on the camera's extrinsics and on the view-independent prompt (threestudio's
VSD guidance gives its LoRA the plain prompt too); the exact prior, which has no network to
adapt, a Gaussian fitted to the renders.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from ssd3d.estimators import Estimator, NoisePredictions, build_estimator
from ssd3d.pipeline.config import GenerateConfig
from ssd3d.priors.base import DiffusionPrior
from ssd3d.priors.variational import (
    FittedGaussianScore,
    ParticleScore,
    StableDiffusionLoraScore,
    ToyLoraScore,
)
from ssd3d.scene import Cameras

# The priors with a network a LoRA copy can be made of, by the config's prior name; the
# others (exact, mixtures) have none and get a Gaussian fitted to the renders.
LORA_PRIORS = ("toy", "stable-diffusion")


def particle_score_for(cfg: GenerateConfig, prior: DiffusionPrior) -> ParticleScore:
    """The particle score of the run's prior kind (``cfg.prior``), with the run's settings."""
    settings, betas, eps = cfg.particle_score, cfg.optim.betas, cfg.optim.eps
    if cfg.prior == "toy":
        return ToyLoraScore(prior.unet, prior.alphas_cumprod, settings, betas, eps, cfg.seed)
    if cfg.prior == "stable-diffusion":
        return StableDiffusionLoraScore(prior, settings, betas, eps, cfg.seed)
    return FittedGaussianScore(prior.alphas_cumprod, settings.momentum)


def describe_particle_score(cfg: GenerateConfig) -> str | None:
    """One line on the particle score a run's config asks for (None unless VSD)."""
    if "particle" not in build_estimator(cfg.estimator).needs:
        return None
    p = cfg.particle_score
    if cfg.prior in LORA_PRIORS:
        camera = "camera-conditioned" if p.camera else "no camera"
        return f"LoRA copy of the prior, rank {p.rank}, AdamW lr {p.lr:g}, {camera}"
    return f"Gaussian fitted to the renders, momentum {p.momentum:g}"


@dataclasses.dataclass
class VariationalScore:
    """A run's particle score and the prompt row it is conditioned on ([1, ...])."""

    score: ParticleScore
    prompt_row: Tensor

    @staticmethod
    def build(
        cfg: GenerateConfig, prior: DiffusionPrior, estimator: Estimator, table: Tensor
    ) -> VariationalScore | None:
        """One when ``estimator`` needs the particles' score, else None; ``table`` is the
        run's conditioning table, whose first row is the plain prompt."""
        if "particle" not in estimator.needs:
            return None
        return VariationalScore(particle_score_for(cfg, prior), table[:1])

    def _rows(self, batch: int) -> Tensor:
        return self.prompt_row.expand(batch, *self.prompt_row.shape[1:])

    def attach(self, preds: NoisePredictions, cameras: Cameras) -> NoisePredictions:
        """``preds`` with ``eps_particle`` at the same x_t (x0, noise and t of ``preds``)."""
        b = preds.x0.shape[0]
        eps = self.score.predict(
            preds.x0, preds.noise, preds.t, self._rows(b), cameras.c2w.flatten(1)
        )
        return dataclasses.replace(preds, eps_particle=eps)

    def train(self, x0: Tensor, cameras: Cameras, generator: torch.Generator) -> float:
        """One fitting step on the detached renders x0 [B, ...]; returns its loss."""
        b = x0.shape[0]
        return self.score.update(x0.detach(), self._rows(b), cameras.c2w.flatten(1), generator)

    def state_dict(self) -> dict[str, Tensor]:
        return self.score.state_dict()

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.score.load_state_dict(state)
