"""Random draws from a caller's generator, on the generator's device, moved to the target device.

A CPU ``torch.Generator`` cannot draw CUDA tensors, so draws happen where the generator lives
and are then moved: the same seed gives the same numbers on every device.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _generator_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def rand(
    shape: tuple[int, ...],
    generator: torch.Generator | None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """U[0, 1) draws of ``shape`` on ``device``."""
    out = torch.rand(shape, generator=generator, device=_generator_device(generator), dtype=dtype)
    return out.to(device) if device is not None else out


def randn(
    shape: tuple[int, ...],
    generator: torch.Generator | None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """N(0, 1) draws of ``shape`` on ``device``."""
    out = torch.randn(shape, generator=generator, device=_generator_device(generator), dtype=dtype)
    return out.to(device) if device is not None else out
