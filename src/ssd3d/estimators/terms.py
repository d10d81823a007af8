"""The pieces every estimator is built from, each written once.

Notation (docs/method.md): ``h = eps_cond - eps_uncond`` (mode-disengaging),
``eps_cond`` (mode-seeking), ``-c * eps`` (variance-reducing, SDS fixes c = 1).
"""

from __future__ import annotations

from torch import Tensor

# Guards a division by a per-sample norm; far below any norm a real sample has.
NORM_EPS = 1e-12


def per_sample(values: Tensor, like: Tensor) -> Tensor:
    """Broadcast a [B] tensor against ``like`` [B, ...]."""
    return values.to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


def dot(a: Tensor, b: Tensor) -> Tensor:
    """Per-sample inner product over all non-batch elements: [B, ...] x [B, ...] -> [B]."""
    return (a * b).flatten(1).sum(dim=1)


def norm(a: Tensor) -> Tensor:
    """Per-sample L2 norm over all non-batch elements: [B, ...] -> [B]."""
    return a.flatten(1).norm(dim=1)


def classifier_free_guidance(eps_cond: Tensor, eps_uncond: Tensor, guidance_scale: float) -> Tensor:
    """diffusers' CFG: ``eps_uncond + s (eps_cond - eps_uncond)``; s = 1 is plain conditional."""
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)


def mode_disengaging(eps_cond: Tensor, eps_uncond: Tensor) -> Tensor:
    """``h = eps_cond - eps_uncond``: an implicit classifier's direction (docs/method.md, term 1)."""
    return eps_cond - eps_uncond


def mode_seeking(eps_cond: Tensor) -> Tensor:
    """``eps_cond``: pulls toward the conditional modes (docs/method.md, term 2)."""
    return eps_cond


def variance_reducing(noise: Tensor, coefficient: Tensor | float) -> Tensor:
    """``-c * eps``: a control variate, zero-mean only while c does not depend on this eps.

    ``coefficient`` is a float or per-sample [B].
    """
    if isinstance(coefficient, Tensor):
        coefficient = per_sample(coefficient, noise)
    return -coefficient * noise


def optimal_coefficient(eps_cond: Tensor, noise: Tensor) -> Tensor:
    """Per-sample ``c = <eps_cond, eps> / <eps, eps>``: minimises ``||eps_cond - c eps||``. [B]

    The least-squares projection of the mode-seeking term on the noise. It uses the sample's
    own eps, so ``-c eps`` is not zero-mean (SSD's coefficient="per_sample"); the unbiased
    estimate of the same population ratio is ``control_variate.RunningCoefficient``.
    """
    return dot(eps_cond, noise) / dot(noise, noise).clamp_min(NORM_EPS)
