"""Simulation metrics on hand-built particle sets, and gradient variance in closed form."""

from __future__ import annotations

import math

import pytest
import torch

from ssd3d.estimators import ModeSeeking, build_estimator
from ssd3d.guidance import distillation_gradient
from ssd3d.priors.gmm import GaussianMixturePrior, MixtureClass
from ssd3d.sim.metrics import gradient_variance, particle_metrics, support_radius
from ssd3d.sim.stacked import Stacked


def _prior() -> GaussianMixturePrior:
    # Class "a": two unit-weight components, std 0.5 at (-2, 0) and std 1 at (2, 0).
    return GaussianMixturePrior(
        [
            MixtureClass("a", [[-2.0, 0.0], [2.0, 0.0]], [0.5, 1.0]),
            MixtureClass("b", [[0.0, 5.0]], 1.0),
        ]
    )


def test_support_radius_is_three_in_2d_and_holds_the_same_mass_in_4d() -> None:
    assert support_radius(2) == pytest.approx(3.0, abs=1e-9)
    r = support_radius(4)
    x = r * r  # chi2 with 4 dof: CDF = 1 - exp(-x/2) (1 + x/2)
    assert 1 - math.exp(-x / 2) * (1 + x / 2) == pytest.approx(1 - math.exp(-4.5), abs=1e-9)
    assert support_radius(64) > 8.0  # a 64D sample sits ~sqrt(64) sds from its mean


def test_particles_on_the_means() -> None:
    prior = _prior()
    x = torch.tensor([[-2.0, 0.0]] * 10 + [[2.0, 0.0]] * 10, dtype=torch.float64)
    m = particle_metrics(prior, x, "a")
    # log p at a mean: log(0.5 N(0; 0, s^2 I) + tiny other-component term).
    at_first = math.log(0.5 / (2 * math.pi * 0.25) + 0.5 / (2 * math.pi) * math.exp(-8.0))
    at_second = math.log(0.5 / (2 * math.pi) + 0.5 / (2 * math.pi * 0.25) * math.exp(-32.0))
    assert m.mean_log_prob == pytest.approx((at_first + at_second) / 2, rel=1e-9)
    assert m.support_fraction == 1.0
    assert (m.modes_covered, m.num_modes, m.mode_coverage) == (2, 2, 1.0)
    assert m.mean_nearest_mean_distance == pytest.approx(0.0, abs=1e-12)
    # RMS distance to E[x|y] = (0, 0): particles 2; data sqrt(0.5 (4 + 0.5) + 0.5 (4 + 2)).
    assert m.spread_ratio == pytest.approx(2.0 / math.sqrt(5.25), rel=1e-9)


def test_support_uses_each_components_own_scale() -> None:
    prior = _prior()
    # 1.4 from the std-0.5 mean (Mahalanobis 2.8: inside) and 1.6 (3.2: outside);
    # 3.1 from the std-1 mean (3.1: outside) and 2.9 (inside).
    x = torch.tensor([[-2.0, 1.4], [-2.0, 1.6], [2.0, 3.1], [2.0, -2.9]], dtype=torch.float64)
    m = particle_metrics(prior, x, "a")
    assert m.support_fraction == 0.5
    assert m.mean_nearest_mean_distance == pytest.approx((1.4 + 1.6 + 3.1 + 2.9) / 4)


def test_coverage_needs_five_percent_inside_the_support() -> None:
    prior = _prior()
    near_first = [[-2.0, 0.0]] * 95
    # 5 of 100 at the second mean: exactly 5%, covered; far-off particles cover nothing.
    x = torch.tensor(near_first + [[2.0, 0.0]] * 5, dtype=torch.float64)
    assert particle_metrics(prior, x, "a").modes_covered == 2
    x = torch.tensor(near_first + [[2.0, 0.0]] * 4 + [[40.0, 0.0]], dtype=torch.float64)
    m = particle_metrics(prior, x, "a")
    assert m.modes_covered == 1 and m.support_fraction == 0.99
    far = torch.tensor([[30.0, 30.0]] * 8, dtype=torch.float64)
    m = particle_metrics(prior, far, "a")
    assert (m.support_fraction, m.modes_covered) == (0.0, 0)


@pytest.mark.parametrize(("kind", "t"), [("one", 100), ("zero", 100), ("one", 800), ("zero", 800)])
def test_gradient_variance_matches_closed_form(kind: str, t: int) -> None:
    """One isotropic Gaussian class N(mu, s^2 I): eps_cond is linear in the noise.

    eps_cond = sqrt(1-a) (sqrt(a)(x0 - mu) + sqrt(1-a) eps) / v, v = a s^2 + 1 - a, so
    g = eps_cond - c eps has variance D ((1 - a) / v - c)^2 over eps.
    """
    d, s = 8, 0.5
    prior = GaussianMixturePrior([MixtureClass("a", [[1.0] * d], s)])
    a = float(prior.alphas_cumprod[t])
    c = {"one": 1.0, "zero": 0.0}[kind]
    expected = d * ((1 - a) / (a * s * s + 1 - a) - c) ** 2
    x0 = prior.sample("a", 4, torch.Generator().manual_seed(0))
    rows = {"cond": prior.embed(["a"]), "uncond": prior.embed([""])}
    (var,) = gradient_variance(
        prior, [ModeSeeking(kind, weighting="uniform")], x0, t, rows, draws=4000, seed=1
    )
    assert var.variance == pytest.approx(expected, rel=0.06)


def test_stacked_equals_separate_calls() -> None:
    prior = _prior()
    specs = ["ssd", "sds guidance_scale=100", "mode-seeking coefficient=per_sample", "nfsd"]
    estimators = [build_estimator(s) for s in specs]
    g = torch.Generator().manual_seed(0)
    x0 = 2 * torch.randn(5, 2, generator=g, dtype=torch.float64)
    t = torch.tensor([10, 150, 300, 600, 900])
    noise = torch.randn(5, 2, generator=g, dtype=torch.float64)
    rows = {
        "cond": prior.embed(["a"] * 5),
        "uncond": prior.embed([""] * 5),
        "neg": prior.embed(["b"] * 5),
    }
    e = len(estimators)
    stacked, _ = distillation_gradient(
        prior,
        Stacked(tuple(estimators), 5),
        x0.repeat(e, 1),
        t.repeat(e),
        noise.repeat(e, 1),
        {b: r.repeat(e) for b, r in rows.items()},
    )
    for i, est in enumerate(estimators):
        alone, _ = distillation_gradient(prior, est, x0, t, noise, rows)
        torch.testing.assert_close(stacked[5 * i : 5 * (i + 1)], alone)
