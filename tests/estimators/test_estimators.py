"""Estimators against their closed forms (docs/method.md), per-sample behaviour, bad input."""

import pytest
import torch

from ssd3d.errors import SSD3DError
from ssd3d.estimators import (
    CSD,
    NFSD,
    SDS,
    SSD,
    ModeDisengaging,
    ModeSeeking,
    NoisePredictions,
    build_estimator,
    describe,
    optimal_coefficient,
    weight,
)

SHAPES = [(6, 2), (4, 3, 8, 8), (2, 4, 16, 16)]


def make_predictions(shape, t=None, seed=0, neg=True):
    g = torch.Generator().manual_seed(seed)
    b = shape[0]
    x0 = torch.randn(shape, generator=g, dtype=torch.float64)
    noise = torch.randn(shape, generator=g, dtype=torch.float64)
    if t is None:
        t = torch.randint(0, 1000, (b,), generator=g)
    alpha_bar = torch.linspace(0.99, 0.01, 1000, dtype=torch.float64)[t]
    # eps_cond shares part of the noise, as a real denoiser's prediction does
    eps_cond = 0.8 * noise + 0.5 * torch.randn(shape, generator=g, dtype=torch.float64)
    eps_uncond = 0.7 * noise + 0.5 * torch.randn(shape, generator=g, dtype=torch.float64)
    eps_neg = torch.randn(shape, generator=g, dtype=torch.float64) if neg else None
    return NoisePredictions(x0, noise, t, alpha_bar, eps_cond, eps_uncond, eps_neg)


def bcast(v, like):
    return v.reshape(-1, *([1] * (like.dim() - 1)))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("s", [1.0, 7.5, 100.0])
def test_sds_equals_closed_form_cfg(shape, s):
    p = make_predictions(shape)
    w = bcast(1 - p.alpha_bar, p.x0)
    eps_cfg = p.eps_uncond + s * (p.eps_cond - p.eps_uncond)
    torch.testing.assert_close(SDS(guidance_scale=s)(p), w * (eps_cfg - p.noise))
    # and the three-term decomposition with omega = s - 1
    three_terms = w * ((s - 1) * (p.eps_cond - p.eps_uncond) + p.eps_cond - p.noise)
    torch.testing.assert_close(SDS(guidance_scale=s)(p), three_terms)


def test_sds_guidance_one_is_mode_seeking_with_sds_control_variate():
    p = make_predictions((4, 3, 8, 8))
    torch.testing.assert_close(SDS(guidance_scale=1.0)(p), ModeSeeking("one")(p))


@pytest.mark.parametrize("shape", SHAPES)
def test_adaptive_coefficient_is_per_sample_least_squares(shape):
    p = make_predictions(shape)
    c = optimal_coefficient(p.eps_cond, p.noise)
    assert c.shape == (shape[0],)
    for i in range(shape[0]):
        single = optimal_coefficient(p.eps_cond[i : i + 1], p.noise[i : i + 1])
        torch.testing.assert_close(c[i : i + 1], single)  # independent of the rest of the batch
        best = (p.eps_cond[i] - c[i] * p.noise[i]).norm()
        for other in (c[i] - 0.1, c[i] + 0.1, torch.tensor(0.0), torch.tensor(1.0)):
            assert best <= (p.eps_cond[i] - other * p.noise[i]).norm() + 1e-12


def test_ssd_picks_branch_per_sample_in_mixed_batch():
    t = torch.tensor([50, 200, 201, 900])
    p = make_predictions((4, 3, 8, 8), t=t)
    est = SSD(guidance_scale=7.5, tau=200, coefficient="per_sample", match_norm=True)
    g = est(p)
    w = bcast(1 - p.alpha_bar, p.x0)
    h_w = w * 6.5 * (p.eps_cond - p.eps_uncond)
    c = bcast(optimal_coefficient(p.eps_cond, p.noise), p.x0)
    eps_tilde = p.eps_cond - c * p.noise
    for i, ti in enumerate(t.tolist()):
        if ti > 200:
            torch.testing.assert_close(g[i], h_w[i])
        else:
            expected = h_w[i].norm() / eps_tilde[i].norm() * eps_tilde[i]
            torch.testing.assert_close(g[i], expected)
            # the low-t gradient is parallel to eps_tilde and not to h
            cos = torch.nn.functional.cosine_similarity(g[i].flatten(), h_w[i].flatten(), dim=0)
            assert cos.abs() < 0.99


@pytest.mark.parametrize("shape", SHAPES)
def test_match_norm_gives_disengaging_norm_on_low_t_branch(shape):
    t = torch.full((shape[0],), 100)
    p = make_predictions(shape, t=t)
    g = SSD(tau=200, match_norm=True)(p)
    h_w = bcast(1 - p.alpha_bar, p.x0) * 6.5 * (p.eps_cond - p.eps_uncond)
    torch.testing.assert_close(g.flatten(1).norm(dim=1), h_w.flatten(1).norm(dim=1))
    # without norm matching, the low branch is w * eps_tilde, whose norm differs
    g_off = SSD(tau=200, match_norm=False)(p)
    assert not torch.allclose(g_off.flatten(1).norm(dim=1), h_w.flatten(1).norm(dim=1))


@pytest.mark.parametrize("kind,c", [("one", 1.0), ("zero", 0.0), ("running", 1.0)])
def test_ssd_fixed_coefficients(kind, c):
    # "running" without a companion (or with an empty one) is c = 1
    p = make_predictions((3, 2, 4, 4), t=torch.tensor([10, 20, 30]))
    g = SSD(tau=500, coefficient=kind, match_norm=False)(p)
    w = bcast(1 - p.alpha_bar, p.x0)
    torch.testing.assert_close(g, w * (p.eps_cond - c * p.noise))


def test_ssd_tau_extremes():
    p = make_predictions((8, 2))
    assert p.t.min() > 0
    torch.testing.assert_close(SSD(tau=0)(p), ModeDisengaging(guidance_scale=7.5)(p))
    low = SSD(tau=999, match_norm=False, coefficient="per_sample")(p)
    torch.testing.assert_close(low, ModeSeeking(coefficient="per_sample")(p))


def test_ssd_with_match_norm_scales_linearly_in_omega():
    p = make_predictions((5, 3, 4, 4))
    g1 = SSD(guidance_scale=7.5, match_norm=True)(p)
    g2 = SSD(guidance_scale=100.0, match_norm=True)(p)
    torch.testing.assert_close(g2, g1 * (99.0 / 6.5))


def test_nfsd_switches_at_threshold():
    t = torch.tensor([199, 200, 10, 700])
    p = make_predictions((4, 2, 4, 4), t=t)
    g = NFSD(guidance_scale=7.5, t_threshold=200)(p)
    w = bcast(1 - p.alpha_bar, p.x0)
    h = 7.5 * (p.eps_cond - p.eps_uncond)
    low = w * (h + p.eps_uncond)
    high = w * (h + p.eps_uncond - p.eps_neg)
    for i, ti in enumerate(t.tolist()):
        torch.testing.assert_close(g[i], (low if ti < 200 else high)[i])


def test_csd_reference_branch():
    p = make_predictions((3, 4))
    w = bcast(1 - p.alpha_bar, p.x0)
    torch.testing.assert_close(CSD(guidance_scale=5.0)(p), w * 5.0 * (p.eps_cond - p.eps_uncond))
    neg = CSD(guidance_scale=5.0, use_negative=True)
    assert neg.branches() == frozenset({"cond", "neg"})
    torch.testing.assert_close(neg(p), w * 5.0 * (p.eps_cond - p.eps_neg))


def test_needs_are_declared():
    assert ModeSeeking().branches() == frozenset({"cond"})
    assert NFSD().branches() == frozenset({"cond", "uncond", "neg"})
    assert SSD().branches() == frozenset({"cond", "uncond"})
    p = make_predictions((2, 3), neg=False)
    with pytest.raises(ValueError, match="'neg'"):
        NFSD()(p)


def test_weightings():
    a = torch.tensor([0.25, 0.81])
    torch.testing.assert_close(weight("sds", a), 1 - a)
    torch.testing.assert_close(weight("uniform", a), torch.ones(2))
    torch.testing.assert_close(weight("fantasia3d", a), a.sqrt() * (1 - a))


def test_registry_builds_with_parameters_and_round_trips():
    est = build_estimator("ssd tau=300 match_norm=false coefficient=one three_interval=true")
    assert est == SSD(tau=300, match_norm=False, coefficient="one", three_interval=True)
    assert build_estimator(describe(est)) == est
    assert build_estimator("sds", guidance_scale=7.5) == SDS(guidance_scale=7.5)


@pytest.mark.parametrize(
    "spec,needle",
    [
        ("ssdd", "unknown estimator 'ssdd'"),
        ("ssd tau=1000", "tau"),
        ("ssd tau=-1", "tau"),
        ("sds guidance_scale=-1", "guidance_scale"),
        ("ssd coefficient=foo", "coefficient"),
        ("ssd guidance_scale=1", "guidance_scale must be > 1"),
        ("ssd guidance_scale=0.5", "guidance_scale must be > 1"),
        ("ssd three_interval=true tau=100 tau_low=150", "tau_low must be <= tau"),
        ("ssd taux=3", "did you mean 'tau'"),
        ("ssd match_norm=3", "match_norm"),
        ("ssd tau=2.5", "tau"),
        ("nfsd weighting=bogus", "weighting"),
    ],
)
def test_bad_estimator_input_names_the_parameter(spec, needle):
    with pytest.raises(SSD3DError, match=needle):
        build_estimator(spec)


def test_mismatched_shapes_are_rejected_with_the_field_name():
    x0 = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="eps_cond"):
        NoisePredictions(x0, x0, torch.zeros(2).long(), torch.ones(2), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="alpha_bar"):
        NoisePredictions(x0, x0, torch.zeros(2).long(), torch.ones(3), x0)
