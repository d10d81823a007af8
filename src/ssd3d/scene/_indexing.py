"""Index arithmetic the rasterisers share: pixel boxes and ragged enumeration.

Splats and triangles are both drawn by listing, for each primitive, the pixels of a box
around it, so a render costs what the primitives cover rather than primitives x pixels.
"""

from __future__ import annotations

import torch
from torch import Tensor


def pixel_box(
    u_lo: Tensor, u_hi: Tensor, v_lo: Tensor, v_hi: Tensor, width: int, height: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The columns x0..x1 and rows y0..y1 (inclusive, long) of the pixels whose centres,
    at j + 0.5, lie in [u_lo, u_hi] x [v_lo, v_hi]; empty (x1 < x0) off the image."""
    x0 = torch.ceil((u_lo - 0.5).clamp(-1, width)).long().clamp(min=0)
    x1 = torch.floor((u_hi - 0.5).clamp(-1, width)).long().clamp(max=width - 1)
    y0 = torch.ceil((v_lo - 0.5).clamp(-1, height)).long().clamp(min=0)
    y1 = torch.floor((v_hi - 0.5).clamp(-1, height)).long().clamp(max=height - 1)
    return x0, x1, y0, y1


def ragged_arange(counts: Tensor) -> tuple[Tensor, Tensor]:
    """For counts [K] >= 0: (owner [sum], local [sum]), item i of run k being (k, i)."""
    owner = torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)
    starts = torch.cumsum(counts, 0) - counts
    local = torch.arange(len(owner), device=counts.device) - starts.repeat_interleave(counts)
    return owner, local
