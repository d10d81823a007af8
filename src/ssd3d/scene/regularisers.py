"""Regularisers on a render: pure functions of a ``RenderOutput`` returning a scalar tensor.

Each is zero (a constant without gradient) for outputs that lack what it needs, so the
loop can apply the same losses to the 2D ``ImageScene``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ssd3d.scene.render import RenderOutput

# threestudio's sparsity loss: sqrt(opacity^2 + 0.01), a smoothed |opacity|.
SPARSITY_EPS = 0.01
# Keeps log() finite at opacity 0 or 1.
ENTROPY_EPS = 1e-5


def mean_opacity(output: RenderOutput) -> Tensor:
    """Mean opacity over all pixels: pushes empty space to stay empty."""
    return output.opacity.mean()


def opacity_sparsity(output: RenderOutput, eps: float = SPARSITY_EPS) -> Tensor:
    """threestudio's sparsity term: mean of sqrt(opacity^2 + eps)."""
    return (output.opacity**2 + eps).sqrt().mean()


def binary_entropy(p: Tensor, eps: float = ENTROPY_EPS) -> Tensor:
    """Elementwise binary entropy (nats) of probabilities ``p``; its gradient pushes each
    value away from 0.5, toward 0 below it and toward 1 above it."""
    o = p.clamp(eps, 1 - eps)
    return -(o * torch.log(o) + (1 - o) * torch.log(1 - o))


def opacity_entropy(output: RenderOutput, eps: float = ENTROPY_EPS) -> Tensor:
    """Mean binary entropy of the opacity (nats): pushes each pixel to 0 or 1."""
    return binary_entropy(output.opacity, eps).mean()


def orientation_loss(output: RenderOutput, detach_weights: bool = True) -> Tensor:
    """DreamFusion's orientation loss, mean over rays of sum_i w_i max(0, n_i . d)^2.

    Penalises normals that face away from the camera (n . d > 0, d the ray direction) where
    the ray stops. DreamFusion's R_orient and threestudio stop the gradient
    through the weights so the loss turns normals instead of removing density.
    """
    if output.weights is None or output.sample_normals is None or output.directions is None:
        return output.rgb.new_zeros(())
    weights = output.weights.detach() if detach_weights else output.weights
    facing_away = (output.sample_normals * output.directions[..., None, :]).sum(-1).clamp(min=0)
    return (weights * facing_away**2).sum(dim=-1).mean()
