"""Turn an estimator's gradient into a loss that autograd can push through a renderer."""

from __future__ import annotations

from torch import Tensor


def surrogate_loss(x0: Tensor, grad: Tensor) -> Tensor:
    """``0.5 ||x0 - sg(x0 - g)||^2``, summed per sample and averaged over the batch.

    d/dx0 of one sample's term is exactly that sample's ``g``; the batch mean makes the
    gradient on x0 equal ``g / B`` (so the step size does not grow with views per step).
    The loss value itself is ``0.5 ||g||^2 / B``, a useful diagnostic, not an objective.
    """
    if grad.shape != x0.shape:
        raise ValueError(f"grad has shape {tuple(grad.shape)}, x0 has {tuple(x0.shape)}")
    target = (x0 - grad).detach()
    return 0.5 * (x0 - target).pow(2).flatten(1).sum(dim=1).mean()
