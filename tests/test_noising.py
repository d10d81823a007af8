"""The noising step (guidance.predictions): random noise as before, DDIM inversion against
hand-computed references, and the prior calls each costs."""

import pytest
import torch

from ssd3d.estimators import (
    CSD,
    ESTIMATORS,
    ISM,
    NFSD,
    RANDOM_NOISING,
    SDI,
    SDS,
    SSD,
    DDIMInversion,
    RandomNoising,
)
from ssd3d.guidance import ddim_invert, distillation_gradient, noise_predictions, predictions
from ssd3d.priors import make_alphas_cumprod

A = make_alphas_cumprod().double()


class PointMassPrior:
    """Data that is a point mass at mu[y]: the exact eps is (x_t - sqrt(a_t) mu[y]) / sqrt(1 - a_t).

    Its CFG at scale s is the exact eps of the point mass mu_s = mu_u + s (mu_c - mu_u),
    since the formula is affine in mu. Calls are counted (rows per call).
    """

    def __init__(self, mu_cond, mu_uncond):
        self.alphas_cumprod = A
        self.mu = torch.stack([torch.as_tensor(mu_uncond), torch.as_tensor(mu_cond)]).double()
        self.calls = []

    def embed(self, prompts):
        return torch.tensor([{"": 0, "y": 1, "neg": 2}[p] for p in prompts])

    def encode(self, images):
        return images

    def predict_noise(self, x_t, t, cond):
        self.calls.append(x_t.shape[0])
        a = A[t].reshape(-1, 1)
        mu = self.mu[cond.clamp(max=1)]
        return (x_t - a.sqrt() * mu) / (1 - a).sqrt()


class LinearPrior(PointMassPrior):
    """eps = k[y] x_t + t / 1000: linear in x_t, each branch its own slope."""

    def __init__(self):
        super().__init__([0.0], [0.0])

    def predict_noise(self, x_t, t, cond):
        self.calls.append(x_t.shape[0])
        k = torch.tensor([0.1, 0.5, 0.9], dtype=x_t.dtype)[cond]
        return x_t * k.reshape(-1, 1) + t.reshape(-1, 1).to(x_t.dtype) / 1000


def rows(prior, b):
    e = prior.embed(["y", "", "neg"])
    return {"cond": e[0].repeat(b), "uncond": e[1].repeat(b), "neg": e[2].repeat(b)}


def test_random_noising_is_the_old_formula_bit_for_bit():
    prior = LinearPrior()
    x0 = torch.randn(3, 4, dtype=torch.float64)
    noise = torch.randn(3, 4, dtype=torch.float64)
    t = torch.tensor([10, 500, 990])
    out = predictions(prior, RANDOM_NOISING, x0, t, noise, rows(prior, 3), SDS().branches())
    a = A[t].reshape(-1, 1)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
    r = rows(prior, 3)
    eps = prior.predict_noise(x_t.repeat(2, 1), t.repeat(2), torch.cat([r["cond"], r["uncond"]]))
    p = out.predictions
    assert torch.equal(p.eps_cond, eps[:3]) and torch.equal(p.eps_uncond, eps[3:])
    assert torch.equal(p.noise, noise) and p.eps_start is None and p.t_start is None
    assert out.prior_calls == 2
    legacy = noise_predictions(prior, x0, t, noise, rows(prior, 3), SDS().branches())
    assert torch.equal(legacy.eps_cond, p.eps_cond)


def test_every_earlier_estimator_keeps_random_noising():
    for name, cls in ESTIMATORS.items():
        if name not in ("ism", "sdi"):
            assert isinstance(cls().noising, RandomNoising), name


def test_inversion_of_a_point_mass_has_a_closed_form():
    """DDIM with the exact eps of a point mass mu is exact.

    From x_u, x0_hat = (x_u - sqrt(1 - a_u) e) / sqrt(a_u) = mu for every u > 0 (the eps is
    the point mass's), so the noise e stays constant after the first step. The first step
    starts at x0 itself (a = 1, predicted at t = 0): x0_hat = x0 and
    e0 = (x0 - sqrt(a_0) mu) / sqrt(1 - a_0). At the first path point p:
    x_p = sqrt(a_p) x0 + sqrt(1 - a_p) e0, whose eps is
    e1 = sqrt(a_p / (1 - a_p)) (x0 - mu) + e0; every later step keeps e1, so
    x_t = sqrt(a_t) mu + sqrt(1 - a_t) e1, with any number of steps after the first.
    With guidance s the prior is the point mass mu_s = mu_u + s (mu_c - mu_u).
    """
    mu_c, mu_u = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 0.5])
    prior = PointMassPrior(mu_c, mu_u)
    x0 = torch.tensor([[0.3, 0.7], [-1.0, 2.0]], dtype=torch.float64)
    t = torch.tensor([730, 260])
    for s in (0.0, 1.0, -7.5, 3.0):
        mu = (mu_u + s * (mu_c - mu_u)).double()
        e0 = (x0 - A[0].sqrt() * mu) / (1 - A[0]).sqrt()
        for spacing in (100, 250):  # first points 100 and 250: different e1, both exact
            noising = DDIMInversion(spacing=spacing, guidance_scale=s)
            x_t, _, _, _ = ddim_invert(prior, noising, x0, t, rows(prior, 2))
            a_p = A[spacing]
            e1 = (a_p / (1 - a_p)).sqrt() * (x0 - mu) + e0
            a_t = A[t].reshape(-1, 1)
            torch.testing.assert_close(x_t, a_t.sqrt() * mu + (1 - a_t).sqrt() * e1)
    # A path of one step: x_t = sqrt(a_t) x0 + sqrt(1 - a_t) e0, the implied noise is e0.
    small = torch.tensor([40, 90])
    out = predictions(
        prior, DDIMInversion(spacing=100), x0, small, torch.zeros_like(x0), rows(prior, 2), {"cond"}
    )
    mu = mu_u.double()
    torch.testing.assert_close(out.predictions.noise, (x0 - A[0].sqrt() * mu) / (1 - A[0]).sqrt())


def test_inversion_of_a_linear_eps_step_by_step_and_its_calls():
    """eps = 0.1 x + t / 1000 (the empty prompt), t = 150 and 50, steps of 100.

    Sample 1 visits 100 then 150: e0 = 0.1 x0 (at x0, t = 0); x_100 = sqrt(a_100) x0 +
    sqrt(1 - a_100) e0; e1 = 0.1 x_100 + 0.1; x0_hat = (x_100 - sqrt(1 - a_100) e1) /
    sqrt(a_100); x_150 = sqrt(a_150) x0_hat + sqrt(1 - a_150) e1. Sample 2 visits 50 only.
    Two calls: both samples, then sample 1 alone: (2 + 1) / 2 = 1.5 evaluations of the batch.
    """
    prior = LinearPrior()
    x0 = torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=torch.float64)
    noising = DDIMInversion(spacing=100, keep_start=True)
    x_t, start, eps_start, calls = ddim_invert(
        prior, noising, x0, torch.tensor([150, 50]), rows(prior, 2)
    )
    a100, a150, a50 = A[100], A[150], A[50]
    e0 = 0.1 * x0[0]
    x100 = a100.sqrt() * x0[0] + (1 - a100).sqrt() * e0
    e1 = 0.1 * x100 + 0.1
    x0_hat = (x100 - (1 - a100).sqrt() * e1) / a100.sqrt()
    torch.testing.assert_close(x_t[0], a150.sqrt() * x0_hat + (1 - a150).sqrt() * e1)
    torch.testing.assert_close(x_t[1], a50.sqrt() * x0[1] + (1 - a50).sqrt() * 0.1 * x0[1])
    assert start.tolist() == [100, 0]
    torch.testing.assert_close(eps_start, torch.stack([e1, 0.1 * x0[1]]))
    assert prior.calls == [2, 1] and calls == 1.5


def test_prior_calls_are_what_each_method_costs():
    prior = LinearPrior()
    x0 = torch.randn(3, 2, dtype=torch.float64)
    noise = torch.randn(3, 2, dtype=torch.float64)
    r = rows(prior, 3)

    def cost(est, t):
        prior.calls.clear()
        out = predictions(prior, est.noising, x0, t, noise, r, est.branches(t))
        assert sum(prior.calls) / 3 == out.prior_calls  # rows evaluated / B
        return out.prior_calls

    t = torch.tensor([300, 700, 50])
    assert cost(SDS(guidance_scale=7.5), t) == 2
    assert cost(SDS(guidance_scale=1.0), t) == 1
    assert cost(CSD(), t) == 2
    assert cost(NFSD(), t) == 3
    assert cost(SSD(tau=999), t) == 1  # every t on the mode-seeking branch: eps_cond only
    # ISM (steps of 200, delta_t 80): t = 300 visits 200, 220, 300 (3 unconditional calls);
    # 700 visits 200, 400, 600, 620, 700 (5); 50 visits 0, 50 (2); then cond + uncond at x_t.
    assert cost(ISM(), t) == pytest.approx((3 + 5 + 2) / 3 + 2)
    # SDI (steps of 100, guided: 2 a step): 300 -> 3 steps, 700 -> 7, 50 -> 1; then 2.
    assert cost(SDI(eta=0.0), t) == pytest.approx(2 * (3 + 7 + 1) / 3 + 2)


def test_ism_gradient_by_hand_on_point_masses():
    """ISM on point masses: g = s (mu_u - mu_c) exactly, at any t and x0.

    The unconditional inversion follows the point mass mu_u: after its first step its eps
    is a constant e1, so eps_uncond(x_s; s) = eps_uncond(x_t; t) = e1. eps_cond(x_t; t) =
    e1 + sqrt(a / (1 - a)) (mu_u - mu_c), so eps_cfg - eps_uncond(x_s; s) =
    s sqrt(a / (1 - a)) (mu_u - mu_c), and the "ism" weighting sqrt((1 - a) / a) cancels it.
    """
    mu_c, mu_u = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 0.5])
    prior = PointMassPrior(mu_c, mu_u)
    x0 = torch.tensor([[0.3, 0.7], [-1.0, 2.0], [4.0, 0.0]], dtype=torch.float64)
    t = torch.tensor([900, 150, 40])
    g, p = distillation_gradient(prior, ISM(), x0, t, torch.zeros_like(x0), rows(prior, 3))
    torch.testing.assert_close(g, (7.5 * (mu_u - mu_c)).double().expand(3, 2))
    assert p.t_start.tolist() == [820, 70, 0]


def test_sdi_gradient_by_hand_on_a_linear_eps():
    """SDI, t = 60 (below the first step of 100: one inversion step from x0).

    Inversion with guidance -7.5 of eps_c = 0.5 x + t/1000, eps_u = 0.1 x + t/1000 at (x0, 0):
    e0 = 0.1 x0 - 7.5 (0.4 x0) = -2.9 x0, and x_t = sqrt(a) x0 + sqrt(1 - a) e0, so the
    implied noise is e0. At (x_t, 60) the guided eps is 0.1 x_t + 0.06 + 7.5 (0.4 x_t);
    g = (1 - a) (that - e0).
    """
    prior = LinearPrior()
    x0 = torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=torch.float64)
    t = torch.tensor([60, 60])
    g, p = distillation_gradient(
        prior, SDI(eta=0.0), x0, t, torch.randn(2, 2, dtype=torch.float64), rows(prior, 2)
    )
    a = A[60]
    e0 = -2.9 * x0
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * e0
    torch.testing.assert_close(p.noise, e0)
    torch.testing.assert_close(g, (1 - a) * (0.1 * x_t + 0.06 + 7.5 * 0.4 * x_t - e0))


def test_sdi_eta_draws_its_noise_from_the_given_generator():
    prior = LinearPrior()
    x0 = torch.randn(2, 3, dtype=torch.float64)
    t = torch.tensor([450, 830])
    r = rows(prior, 2)

    def run(seed, eta):
        gen = torch.Generator().manual_seed(seed)
        noising = SDI(eta=eta).noising
        return predictions(prior, noising, x0, t, torch.zeros_like(x0), r, {"cond"}, gen)

    assert torch.equal(run(0, 0.3).predictions.noise, run(0, 0.3).predictions.noise)
    assert not torch.equal(run(0, 0.3).predictions.noise, run(1, 0.3).predictions.noise)
    assert torch.equal(run(0, 0.0).predictions.noise, run(1, 0.0).predictions.noise)
