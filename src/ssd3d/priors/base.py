"""The interface every frozen diffusion prior offers the rest of ssd3d.

A prior knows nothing of estimators or 3D. Conditioning is a tensor with one row per
prompt (``embed``); the empty prompt ``""`` is the unconditional row. The caller gathers
rows into a batch, so the cond / uncond / negative branches of one step go through a
single ``predict_noise`` call.

Dimension names used across ssd3d: B batch, C channels, H height, W width, D data dims,
T training timesteps, K mixture components, R rays, S samples per ray.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

import torch
from torch import Tensor

from ssd3d.estimators.base import NUM_TRAIN_TIMESTEPS

BetaSchedule = Literal["scaled_linear", "linear"]

# Stable Diffusion's DDPMScheduler: scaled_linear betas from 0.00085 to 0.012 over 1000 steps.
SD_BETA_START = 0.00085
SD_BETA_END = 0.012


def make_alphas_cumprod(
    num_train_timesteps: int = NUM_TRAIN_TIMESTEPS,
    beta_start: float = SD_BETA_START,
    beta_end: float = SD_BETA_END,
    beta_schedule: BetaSchedule = "scaled_linear",
) -> Tensor:
    """``alpha_bar[t]`` for t in [0, T), as diffusers' DDPMScheduler computes it. [T] float64."""
    if beta_schedule == "scaled_linear":
        betas = (
            torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float64)
            ** 2
        )
    elif beta_schedule == "linear":
        betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float64)
    else:
        raise ValueError(
            f"beta_schedule must be 'scaled_linear' or 'linear', got {beta_schedule!r}"
        )
    return torch.cumprod(1.0 - betas, dim=0)


def add_noise(x0: Tensor, noise: Tensor, alpha_bar: Tensor) -> Tensor:
    """Forward noising ``x_t = sqrt(a) x0 + sqrt(1 - a) eps`` with ``alpha_bar`` of shape [B]."""
    a = alpha_bar.to(x0.dtype).reshape(-1, *([1] * (x0.dim() - 1)))
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


@runtime_checkable
class DiffusionPrior(Protocol):
    """A frozen epsilon-prediction diffusion model (diffusers conventions)."""

    alphas_cumprod: Tensor  # [T]

    def embed(self, prompts: Sequence[str]) -> Tensor:
        """One conditioning row per prompt, [N, ...]; ``""`` gives the unconditional row.

        Closed-vocabulary priors raise ``SSD3DError`` listing what they know.
        """
        ...

    def encode(self, images: Tensor) -> Tensor:
        """Rendered images [B, 3, H, W] in [0, 1] -> x0 in the prior's space; differentiable."""
        ...

    def predict_noise(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        """eps_phi(x_t; y, t) for x_t [B, ...], integer t [B] and cond rows [B, ...]."""
        ...
