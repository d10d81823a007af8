"""What the simulations measure: where the particles end, and how noisy each gradient is.

Particle metrics compare the final particles [N, D] with the prompt's class y of the
mixture; gradient variance is measured at fixed x0 over fresh noise draws.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ssd3d.estimators import Branch, Estimator
from ssd3d.guidance import distillation_gradient
from ssd3d.priors.gmm import GaussianMixturePrior
from ssd3d.sim.stacked import Stacked

# "Inside the support" = Mahalanobis distance < 3 in 2D, i.e. inside the ellipse that holds
# P(chi2_2 < 9) = 1 - exp(-4.5) = 98.9% of a component's mass. In D dimensions a sample's
# Mahalanobis distance is chi_D (about sqrt(D)), so the radius is the one that holds the
# same mass in D dimensions: 3 in 2D, about 9.7 in 64D.
SUPPORT_MASS = 1.0 - math.exp(-4.5)
# A component of class y "is covered" when it holds at least this share of the particles.
COVERAGE_MIN_SHARE = 0.05


def support_radius(dim: int, mass: float = SUPPORT_MASS) -> float:
    """Mahalanobis radius r with P(chi2_D < r^2) = mass (bisection on the regularised gamma)."""
    k = torch.tensor(dim / 2.0, dtype=torch.float64)
    lo, hi = 0.0, float(dim) + 100.0 * math.sqrt(dim) + 100.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if torch.special.gammainc(k, torch.tensor(mid / 2.0, dtype=torch.float64)) < mass:
            lo = mid
        else:
            hi = mid
    return math.sqrt(0.5 * (lo + hi))


def mahalanobis(x: Tensor, means: Tensor, stds: Tensor) -> Tensor:
    """Distance of each point to each diagonal Gaussian. x [N, D], means, stds [K, D] -> [N, K]"""
    return ((x[:, None, :] - means) / stds).square().sum(-1).sqrt()


@dataclass(frozen=True)
class ParticleMetrics:
    """Where a set of particles ended, judged against class y."""

    mean_log_prob: float  # mean of log p(x | y) over the particles
    support_fraction: float  # share of particles inside the support of some class-y component
    modes_covered: int  # class-y components holding >= COVERAGE_MIN_SHARE of the particles
    num_modes: int  # K, the number of class-y components
    mean_nearest_mean_distance: float  # mean Euclidean distance to the nearest class-y mean
    spread_ratio: float  # RMS distance to E[x | y], particles over data: < 1 collapsed, > 1 strayed

    @property
    def mode_coverage(self) -> float:
        """modes_covered / num_modes."""
        return self.modes_covered / self.num_modes


def particle_metrics(
    prior: GaussianMixturePrior, x: Tensor, y: str | int, min_share: float = COVERAGE_MIN_SHARE
) -> ParticleMetrics:
    """Metrics of particles x [N, D] against class y of ``prior``.

    A particle counts for a component only if that component is its Mahalanobis-nearest
    class-y component and the particle is inside its support, so particles far off the
    data cover nothing.
    """
    x = x.to(torch.float64)
    means, stds, weights = prior.components(y)
    dist = mahalanobis(x, means, stds)  # [N, K]
    nearest, which = dist.min(dim=1)
    inside = nearest < support_radius(x.shape[1])
    held = torch.bincount(which[inside], minlength=means.shape[0])
    euclid = torch.cdist(x, means).min(dim=1).values
    # E ||x - m||^2 under the class, m = E[x | y]: between-component plus within-component.
    centre = weights @ means
    data_ms = weights @ ((means - centre).square().sum(1) + stds.square().sum(1))
    particle_ms = (x - centre).square().sum(1).mean()
    return ParticleMetrics(
        mean_log_prob=float(prior.log_prob(x, y).mean()),
        support_fraction=float(inside.double().mean()),
        modes_covered=int((held >= min_share * x.shape[0]).sum()),
        num_modes=int(means.shape[0]),
        mean_nearest_mean_distance=float(euclid.mean()),
        spread_ratio=float((particle_ms / data_ms).sqrt()),
    )


@dataclass(frozen=True)
class GradientVariance:
    """Noise of an estimator's gradient at one t, averaged over fixed x0 points."""

    variance: float  # E ||g - E[g]||^2 over noise draws (total over the D coordinates)
    relative: float  # variance / E ||g||^2: the share of the gradient's energy that is noise


def gradient_variance(
    prior: GaussianMixturePrior,
    estimators: Sequence[Estimator],
    x0: Tensor,
    t: int,
    rows: dict[Branch, Tensor],
    draws: int,
    seed: int,
) -> list[GradientVariance]:
    """Each estimator's gradient variance at fixed x0 [S, D] and one timestep t.

    Every estimator sees the same ``draws`` noise draws per point (one prior call for all);
    ``rows[branch]`` holds one conditioning row, [1].
    """
    e, (s, d) = len(estimators), x0.shape
    noise = torch.randn(draws * s, d, generator=torch.Generator().manual_seed(seed), dtype=x0.dtype)
    batch = e * draws * s
    grad, _ = distillation_gradient(
        prior,
        Stacked(tuple(estimators), draws * s),
        x0.repeat(e * draws, 1),
        torch.full((batch,), t, dtype=torch.long),
        noise.repeat(e, 1),
        {b: r.expand(batch) for b, r in rows.items()},
    )
    g = grad.reshape(e, draws, s, d)
    var = (g - g.mean(1, keepdim=True)).square().sum(-1).mean(1)  # [E, S]
    energy = g.square().sum(-1).mean(1)  # [E, S]
    relative = (var / energy.clamp_min(1e-300)).mean(1)
    return [
        GradientVariance(variance=float(v), relative=float(r))
        for v, r in zip(var.mean(1), relative, strict=True)
    ]
