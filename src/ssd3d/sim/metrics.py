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

from ssd3d.estimators import Branch, Estimator, EstimatorState, RunningCoefficient
from ssd3d.estimators.terms import optimal_coefficient
from ssd3d.guidance import noise_predictions, predictions
from ssd3d.priors.gmm import GaussianMixturePrior
from ssd3d.sim.stacked import Stacked, StackedState, block_of, noising_groups, with_particle_scores

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
    states: Sequence[EstimatorState | None] | None = None,
    particles: Tensor | None = None,
) -> list[GradientVariance]:
    """Each estimator's gradient variance at fixed x0 [S, D] and one timestep t.

    Every estimator sees the same ``draws`` noise draws per point (one prior call for all);
    ``rows[branch]`` holds one conditioning row, [1]. ``states``: each estimator's
    companion as it stands (read, never updated here), None for none. ``particles``
    [E, N, D]: each estimator's particles, for VSD's particle score (a Gaussian fitted to
    them); required when an estimator needs it.
    """
    e, (s, d) = len(estimators), x0.shape
    noise = torch.randn(draws * s, d, generator=torch.Generator().manual_seed(seed), dtype=x0.dtype)
    # SDI's inversion noise (eta): its own stream, so the shared draws stay the same.
    inversion_gen = torch.Generator().manual_seed(seed + 10_000)
    grad = torch.empty(e * draws * s, d, dtype=x0.dtype)
    block = draws * s
    for idx in noising_groups(tuple(estimators)):
        k = len(idx)
        batch = k * block
        stacked = Stacked(tuple(estimators[i] for i in idx), block)
        ts = torch.full((batch,), t, dtype=torch.long)
        preds = predictions(
            prior,
            stacked.noising,
            x0.repeat(k * draws, 1),
            ts,
            noise.repeat(k, 1),
            {b: r.expand(batch) for b, r in rows.items()},
            stacked.branches(ts),
            inversion_gen,
        ).predictions
        if "particle" in stacked.branches(ts):
            if particles is None:
                raise ValueError("an estimator needs the particles' score: pass particles")
            preds = with_particle_scores(preds, [particles[i] for i in idx], prior.alphas_cumprod)
        members = [states[i] for i in idx] if states is not None else None
        state = StackedState(members, block) if members is not None else None
        part = stacked(preds, state=state)
        if len(idx) == e:
            grad = part
        else:
            for j, i in enumerate(idx):
                grad[i * block : (i + 1) * block] = part[j * block : (j + 1) * block]
    g = grad.reshape(e, draws, s, d)
    var = (g - g.mean(1, keepdim=True)).square().sum(-1).mean(1)  # [E, S]
    energy = g.square().sum(-1).mean(1)  # [E, S]
    relative = (var / energy.clamp_min(1e-300)).mean(1)
    return [
        GradientVariance(variance=float(v), relative=float(r))
        for v, r in zip(var.mean(1), relative, strict=True)
    ]


@dataclass(frozen=True)
class CoefficientCurvePoint:
    """Bias and variance of ``eps_cond - c eps`` at one t, averaged over fixed x0 points."""

    variance: float  # E ||g - E[g]||^2 over noise draws
    relative: float  # variance / E ||g||^2
    bias2: float  # ||E[g] - E[eps_cond]||^2 = ||E[c eps]||^2, debiased (can dip below 0)
    bias2_floor: float  # standard error of bias2 (what a zero bias reads as)
    coefficient: float  # mean c over draws and points


# The coefficient forms of the bias/variance-vs-t figure, in plot order.
COEFFICIENT_FORMS = ("per_sample", "running", "one", "zero")


def coefficient_curves(
    prior: GaussianMixturePrior,
    x0: Tensor,
    timesteps: Sequence[int],
    cond_row: Tensor,
    draws: int,
    seed: int,
) -> dict[str, list[CoefficientCurvePoint]]:
    """Bias and variance of the mode-seeking term ``eps_cond - c eps`` (w = 1) against t.

    At fixed x0 [S, D] and each t, ``draws`` fresh noise draws per point. The running
    coefficient is what a RunningCoefficient holds after an independent set of ``draws``
    earlier draws at the same x0 and t (the sums a loop would have gathered), so its c does
    not depend on the measured noise. E[g] - E[eps_cond] = -E[c eps] is estimated from the
    same draws, with the 1/n noise of the squared norm removed.
    """
    s, d = x0.shape
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, list[CoefficientCurvePoint]] = {k: [] for k in COEFFICIENT_FORMS}
    for t in timesteps:
        ts = torch.full((2 * draws * s,), int(t), dtype=torch.long)
        noise = torch.randn(2 * draws * s, d, generator=gen, dtype=x0.dtype)
        preds = noise_predictions(
            prior, x0.repeat(2 * draws, 1), ts, noise, {"cond": cond_row.expand(len(ts))}, {"cond"}
        )
        half = draws * s
        past, now = slice(0, half), slice(half, 2 * half)
        running = RunningCoefficient(num_train_timesteps=prior.alphas_cumprod.shape[0])
        running.update(block_of(preds, past))
        eps_cond, eps = preds.eps_cond[now], preds.noise[now]
        forms = {
            "per_sample": optimal_coefficient(eps_cond, eps),
            "running": running.coefficient(preds.t[now]).to(eps.dtype),
            "one": eps.new_ones(half),
            "zero": eps.new_zeros(half),
        }
        for kind, c in forms.items():
            g = (eps_cond - c[:, None] * eps).reshape(draws, s, d)
            shift = (c[:, None] * eps).reshape(draws, s, d)  # g = eps_cond - shift
            var = (g - g.mean(0)).square().sum(-1).mean(0)  # [S], 1/n normalised
            energy = g.square().sum(-1).mean(0)
            mean_shift = shift.mean(0)  # [S, D]
            # E||mean||^2 = ||mu||^2 + tr(Cov)/n: subtract an unbiased tr(Cov)/n.
            cov_tr = (shift - mean_shift).square().sum(-1).sum(0) / (draws - 1)  # [S]
            per_point = mean_shift.square().sum(-1) - cov_tr / draws
            out[kind].append(
                CoefficientCurvePoint(
                    variance=float(var.mean()),
                    relative=float((var / energy.clamp_min(1e-300)).mean()),
                    bias2=float(per_point.mean()),
                    # sd of the estimate when the bias is 0 (isotropic approximation)
                    bias2_floor=float((cov_tr / draws).mean() * (2 / d) ** 0.5 / s**0.5),
                    coefficient=float(c.mean()),
                )
            )
    return out
