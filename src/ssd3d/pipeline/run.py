"""A run in memory: every check that can fail on bad input, then the prior and the loop.

Nothing here writes: ``ssd3d.generation`` makes the run folder once ``prepare`` has passed,
so bad input leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ssd3d.errors import SSD3DError
from ssd3d.pipeline.config import GenerateConfig
from ssd3d.pipeline.loop import Distillation
from ssd3d.pipeline.priors import load_prior
from ssd3d.priors.base import DiffusionPrior
from ssd3d.scene import Cameras, Shading


def check_device(device: str) -> None:
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise SSD3DError(f"unknown device '{device}' (use cpu or cuda)") from None
    if dev.type not in ("cpu", "cuda"):
        raise SSD3DError(f"device '{device}' is not supported (use cpu or cuda)")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SSD3DError("device 'cuda' was asked for, but PyTorch sees no CUDA device")


def load_prior_for(cfg: GenerateConfig) -> DiffusionPrior:
    """The prior a run of ``cfg`` distils from (loaded on ``cfg.device``)."""
    return load_prior(cfg.prior_spec())


def prepare(
    cfg: GenerateConfig,
    prior: DiffusionPrior | None = None,
    supervision: Callable[[Cameras, Shading | None], Tensor] | None = None,
) -> Distillation:
    """Validate everything and build the run in memory (nothing written yet). The prior is
    loaded when none is given, unless the run is fitted to ``supervision``'s images."""
    check_device(cfg.device)
    if not cfg.prompt.strip():
        raise SSD3DError("the prompt is empty")
    cfg.validate()
    if prior is None and supervision is None:
        prior = load_prior_for(cfg)
    # With a prior this embeds the prompt: unknown prompts fail here.
    return Distillation(cfg, prior, supervision)


__all__ = ["check_device", "load_prior_for", "prepare"]
