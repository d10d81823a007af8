"""A pixel-space diffusion model behind ``DiffusionPrior``: the adapter of the shipped toy prior.

The adapter is handed what it wraps: a noise predictor ``unet(x_t, t, tokens)``, a tokenizer
of its closed vocabulary, and the cumulative alphas it was trained with. The network, its
weights file and its training live in ``ssd3d.models`` (``load_toy_prior`` builds this
adapter from a weights file). Pixel space: x0 = 2 * image - 1 at the prior's resolution;
conditioning rows are token ids [N, L].

Also here: DDIM sampling with classifier-free guidance (Song et al. 2021, eta = 0, as
diffusers' ``DDIMScheduler`` with its defaults and the prior's betas), for the model card's
sample grids and for checking a trained prior by eye.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ssd3d.errors import SSD3DError
from ssd3d.estimators.terms import classifier_free_guidance

# Guidance scale of the sample grids, far below SD's 7.5: on a small UNet trained 3,000 steps
# on the synthetic stand-in, guidance 3 left speckle noise over the samples (mean
# neighbour-pixel difference 0.13 vs 0.09 at guidance 1 and 0.04 in the data), because
# the guided eps amplifies the cond/uncond models' errors at low t. Check by eye after
# the real training run.
DEFAULT_SAMPLE_GUIDANCE = 2.0
# DDIM steps for samples (DDIM paper, Table 1: 50 steps is close to 1000 for eta = 0).
DEFAULT_SAMPLE_STEPS = 50
TimestepSpacing = Literal["leading", "trailing"]


class Tokenizer(Protocol):
    """Prompts -> token ids [N, L] int64 (SSD3DError for a prompt outside its vocabulary)."""

    prompts: Sequence[str]

    def __call__(self, prompts: Sequence[str]) -> Tensor: ...


class ToyPrior:
    """A pixel noise predictor behind ``DiffusionPrior``.

    Attributes: ``alphas_cumprod`` [T] on ``device``; ``unet`` (eval, frozen);
    ``tokenizer``; ``resolution`` (side of the square images it models); ``prompts`` (the
    base prompts it knows); ``metadata`` (what the weights file records).
    """

    def __init__(
        self,
        unet: torch.nn.Module,
        tokenizer: Tokenizer,
        alphas_cumprod: Tensor,
        resolution: int,
        metadata: dict[str, str] | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.device = torch.device(device)
        self.unet = unet.requires_grad_(False).eval().to(self.device)
        self.tokenizer = tokenizer
        self.resolution = resolution
        self.metadata = dict(metadata or {})
        self.alphas_cumprod: Tensor = alphas_cumprod.to(self.device)

    @property
    def prompts(self) -> list[str]:
        """The base prompts this prior was trained on (each also takes ", {view} view")."""
        return list(self.tokenizer.prompts)

    def embed(self, prompts: Sequence[str]) -> Tensor:
        """Token ids [N, L] int64 on the prior's device; ``""`` is the unconditional row.

        Unknown prompts raise ``SSD3DError`` listing the prompts this prior knows.
        """
        if isinstance(prompts, str):
            raise TypeError("embed takes a sequence of prompts, not a single str")
        return self.tokenizer(prompts).to(self.device)

    def encode(self, images: Tensor) -> Tensor:
        """Renders [B, 3, H, W] in [0, 1] -> x0 = 2 * image - 1 [B, 3, R, R]; differentiable.

        Renders of another size are resized to the prior's R (bilinear, antialiased when
        shrinking so that thin parts average instead of aliasing).
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"encode expects images [B, 3, H, W]; got {tuple(images.shape)}")
        size = (self.resolution, self.resolution)
        if tuple(images.shape[-2:]) != size:
            shrink = images.shape[-1] > self.resolution or images.shape[-2] > self.resolution
            images = F.interpolate(
                images, size=size, mode="bilinear", align_corners=False, antialias=shrink
            )
        return 2 * images - 1

    def decode(self, x0: Tensor) -> Tensor:
        """x0 [B, 3, R, R] in [-1, 1] -> images in [0, 1] (clamped)."""
        return ((x0 + 1) / 2).clamp(0, 1)

    def predict_noise(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        """eps for x_t [B, 3, R, R], integer t [B] and token rows cond [B, L]: one UNet call.

        Runs without autograd in float32; returns eps in ``x_t``'s dtype and device.
        """
        batch = x_t.shape[0]
        size = (3, self.resolution, self.resolution)
        if tuple(x_t.shape[1:]) != size or t.shape != (batch,) or cond.shape[0] != batch:
            raise ValueError(
                f"predict_noise expects x_t [B, {size[0]}, {size[1]}, {size[2]}], t [B], "
                f"cond [B, L]; got {tuple(x_t.shape)}, {tuple(t.shape)}, {tuple(cond.shape)}"
            )
        if cond.dtype != torch.int64:
            raise ValueError(f"toy prior cond rows are int64 token ids (embed); got {cond.dtype}")
        with torch.no_grad():
            eps = self.unet(
                x_t.to(self.device, torch.float32), t.to(self.device), cond.to(self.device)
            )
        return eps.to(x_t.device, x_t.dtype)


# --- sampling ------------------------------------------------------------------------------


def ddim_timesteps(
    num_train_timesteps: int, steps: int, spacing: TimestepSpacing = "leading"
) -> Tensor:
    """DDIM timesteps [steps], descending, with diffusers' two spacings.

    "leading" (diffusers' default, e.g. 980 .. 0) starts below the last training timestep;
    "trailing" (e.g. 999 .. 19; Lin et al. 2024, "Common diffusion noise schedules and
    sample steps are flawed") starts at it, where x_T is closest to the pure noise that
    sampling begins from.
    """
    if not 1 <= steps <= num_train_timesteps:
        raise SSD3DError(f"sampling 'steps' must lie in [1, {num_train_timesteps}]; got {steps}")
    if spacing == "leading":
        return (torch.arange(steps) * (num_train_timesteps // steps)).flip(0)
    if spacing == "trailing":
        ratio = num_train_timesteps / steps
        return torch.arange(num_train_timesteps, 0, -ratio).round().long() - 1
    raise SSD3DError(f"sampling 'spacing' must be 'leading' or 'trailing'; got {spacing!r}")


def ddim_step(
    x_t: Tensor,
    eps: Tensor,
    alpha_bar_t: Tensor | float,
    alpha_bar_prev: Tensor | float,
    clip_x0: bool = True,
) -> Tensor:
    """One deterministic DDIM update (eta = 0), DDIM paper eq. (12):

    x0_hat = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t), clipped to [-1, 1] (pixel data);
    x_prev = sqrt(a_prev) x0_hat + sqrt(1 - a_prev) eps.
    """
    a_t = torch.as_tensor(alpha_bar_t, dtype=x_t.dtype, device=x_t.device)
    a_prev = torch.as_tensor(alpha_bar_prev, dtype=x_t.dtype, device=x_t.device)
    x0 = (x_t - (1 - a_t).sqrt() * eps) / a_t.sqrt()
    if clip_x0:
        x0 = x0.clamp(-1, 1)
    return a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps


@torch.no_grad()
def sample(
    prior: ToyPrior,
    prompts: Sequence[str],
    n: int = 1,
    guidance_scale: float = DEFAULT_SAMPLE_GUIDANCE,
    steps: int = DEFAULT_SAMPLE_STEPS,
    generator: torch.Generator | None = None,
    spacing: TimestepSpacing = "leading",
) -> Tensor:
    """n images per prompt, prompt-major: [len(prompts) * n, 3, R, R] in [0, 1].

    DDIM (eta = 0) from x_T ~ N(0, I) drawn with ``generator`` (CPU), guided with
    eps_cfg = eps_uncond + s (eps_cond - eps_uncond); the cond and uncond branches go
    through the UNet as one batch. Ends at alpha_bar = 1, i.e. returns x0_hat.
    """
    if isinstance(prompts, str):
        raise TypeError("sample takes a sequence of prompts, not a single str")
    if n < 1:
        raise SSD3DError(f"sampling 'n' must be >= 1; got {n}")
    if guidance_scale < 0:
        raise SSD3DError(f"sampling 'guidance_scale' must be >= 0; got {guidance_scale}")
    rows = prior.embed([p for p in prompts for _ in range(n)])
    uncond = prior.embed([""]).expand_as(rows)
    cond = torch.cat([rows, uncond])
    b, r = rows.shape[0], prior.resolution
    x = torch.randn(b, 3, r, r, generator=generator).to(prior.device)
    alphas = prior.alphas_cumprod
    timesteps = ddim_timesteps(len(alphas), steps, spacing).tolist()
    for t, t_prev in zip(timesteps, [*timesteps[1:], -1], strict=True):
        t_batch = torch.full((2 * b,), t, dtype=torch.int64, device=prior.device)
        eps_cond, eps_uncond = prior.predict_noise(torch.cat([x, x]), t_batch, cond).chunk(2)
        eps = classifier_free_guidance(eps_cond, eps_uncond, guidance_scale)
        prev = alphas[t_prev] if t_prev >= 0 else 1.0  # diffusers' set_alpha_to_one
        x = ddim_step(x, eps, alphas[t], prev)
    return prior.decode(x)


def sample_grid(
    prior: ToyPrior,
    prompts: Sequence[str],
    n: int = 8,
    guidance_scale: float = DEFAULT_SAMPLE_GUIDANCE,
    steps: int = DEFAULT_SAMPLE_STEPS,
    generator: torch.Generator | None = None,
    scale: int = 1,
    pad: int = 2,
) -> np.ndarray:
    """One row of n samples per prompt as a uint8 image [rows, cols, 3] (white gutters of
    ``pad`` pixels; each sample enlarged ``scale`` times by pixel repetition)."""
    images = sample(prior, prompts, n, guidance_scale, steps, generator)
    return image_grid(images, ncols=n, scale=scale, pad=pad)


def image_grid(images: Tensor, ncols: int, scale: int = 1, pad: int = 2) -> np.ndarray:
    """Images [B, 3, H, W] in [0, 1] -> a uint8 grid [rows, cols, 3], row-major."""
    if scale > 1:
        images = images.repeat_interleave(scale, dim=-1).repeat_interleave(scale, dim=-2)
    b, _, h, w = images.shape
    nrows = -(-b // ncols)
    grid = torch.ones(3, nrows * (h + pad) + pad, ncols * (w + pad) + pad)
    for i, image in enumerate(images.float().cpu()):
        y, x = pad + (i // ncols) * (h + pad), pad + (i % ncols) * (w + pad)
        grid[:, y : y + h, x : x + w] = image
    return (grid.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
