"""The running control-variate coefficient, SSD's switches, and the branches a batch needs."""

from __future__ import annotations

import pytest
import torch

from ssd3d.errors import SSD3DError
from ssd3d.estimators import (
    CSD,
    NFSD,
    SDS,
    SSD,
    ModeSeeking,
    NoisePredictions,
    RunningCoefficient,
    build_estimator,
)
from ssd3d.guidance import noise_predictions
from ssd3d.sim.scenario import load_scenario


def predictions(shape, t, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(shape, generator=g, dtype=torch.float64)
    noise = torch.randn(shape, generator=g, dtype=torch.float64)
    alpha_bar = torch.linspace(0.99, 0.01, 1000, dtype=torch.float64)[t]
    eps_cond = 0.8 * noise + 0.5 * torch.randn(shape, generator=g, dtype=torch.float64)
    eps_uncond = 0.7 * noise + 0.5 * torch.randn(shape, generator=g, dtype=torch.float64)
    eps_neg = torch.randn(shape, generator=g, dtype=torch.float64)
    return NoisePredictions(x0, noise, t, alpha_bar, eps_cond, eps_uncond, eps_neg)


def bcast(v, like):
    return v.reshape(-1, *([1] * (like.dim() - 1)))


def test_coefficient_is_the_ratio_of_earlier_sums_per_bin_and_one_when_empty():
    rc = RunningCoefficient(bins=10)  # bins of 100 timesteps
    t = torch.tensor([5, 50, 950])
    p = predictions((3, 4), t)
    assert torch.equal(rc.coefficient(t), torch.ones(3, dtype=torch.float64))
    rc.update(p)
    cross = (p.eps_cond * p.noise).sum(1)
    nn = (p.noise * p.noise).sum(1)
    c = rc.coefficient(torch.tensor([99, 900, 500]))
    torch.testing.assert_close(c[0], (cross[0] + cross[1]) / (nn[0] + nn[1]))  # bin 0
    torch.testing.assert_close(c[1], cross[2] / nn[2])  # bin 9
    assert c[2] == 1.0  # bin 5 never seen


def test_estimator_reads_the_companion_and_never_writes_it():
    est = SSD(tau=999, match_norm=False)  # every t on the unmatched mode-seeking branch
    state = est.make_state()
    assert isinstance(state, RunningCoefficient)
    warm = predictions((6, 3), torch.full((6,), 100), seed=1)
    state.update(warm)
    before = {k: v.clone() for k, v in state.state_dict().items()}
    p = predictions((4, 3), torch.full((4,), 110), seed=2)
    g = est(p, state=state)
    for k, v in state.state_dict().items():
        assert torch.equal(v, before[k])
    c = (warm.eps_cond * warm.noise).sum() / (warm.noise * warm.noise).sum()
    w = bcast(1 - p.alpha_bar, p.x0)
    torch.testing.assert_close(g, w * (p.eps_cond - c * p.noise))
    # without a companion the running form is c = 1 (an empty companion's value)
    torch.testing.assert_close(est(p), w * (p.eps_cond - p.noise))
    assert SSD(coefficient="per_sample").make_state() is None
    assert SDS().make_state() is None and ModeSeeking("running").make_state() is not None


def test_state_round_trip_gives_identical_next_gradients(tmp_path):
    from safetensors.torch import load_file, save_file

    est = SSD(tau=400)
    a = est.make_state()
    for step in range(5):
        p = predictions((8, 2, 3), torch.randint(0, 1000, (8,)), seed=step)
        est(p, state=a)
        a.update(p)
    save_file(a.state_dict(), tmp_path / "companion.safetensors")
    b = est.make_state()
    b.load_state_dict(load_file(tmp_path / "companion.safetensors"))
    for step in range(5, 8):
        p = predictions((8, 2, 3), torch.randint(0, 1000, (8,)), seed=step)
        assert torch.equal(est(p, state=a), est(p, state=b))
        a.update(p)
        b.update(p)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])


def test_mismatched_state_is_a_one_line_error():
    rc = RunningCoefficient(bins=10)
    with pytest.raises(SSD3DError, match="10 bins"):
        RunningCoefficient(bins=50).load_state_dict(rc.state_dict())
    with pytest.raises(SSD3DError, match="lacks"):
        rc.load_state_dict({"count": torch.zeros(10)})


def _separated_at(t: int, draws: int, seed: int):
    """Predictions at one fixed x0 of the 2D 'separated' scenario, `draws` noise draws."""
    scenario = load_scenario("separated")
    prior = scenario.prior()
    x0 = torch.tensor([[-3.0, 1.0]], dtype=torch.float64).repeat(draws, 1)
    noise = torch.randn(draws, 2, generator=torch.Generator().manual_seed(seed), dtype=x0.dtype)
    ts = torch.full((draws,), t, dtype=torch.long)
    rows = {"cond": prior.embed([scenario.prompt]).expand(draws)}
    return noise_predictions(prior, x0, ts, noise, rows, frozenset({"cond"}))


def test_running_control_variate_is_zero_mean_and_the_per_sample_one_is_not():
    """At fixed x0 and t = 100 in 2D: E[-c eps] over 20k draws, against its standard error."""
    draws = 20000
    past, now = _separated_at(100, draws, seed=0), _separated_at(100, draws, seed=1)
    running = ModeSeeking("running", weighting="uniform")
    state = running.make_state()
    state.update(past)  # the sums of earlier steps at this x0 and t
    c_running = state.coefficient(now.t)
    assert 0.1 < float(c_running[0]) < 0.9  # a real coefficient, neither 0 nor 1
    for est, st, should_be_zero in (
        (running, state, True),
        (ModeSeeking("per_sample", weighting="uniform"), None, False),
        (ModeSeeking("one", weighting="uniform"), None, True),
    ):
        shift = now.eps_cond - est(now, state=st)  # = c eps
        mean = shift.mean(0)
        se = shift.std(0) / draws**0.5
        z = (mean / se).abs().max()
        if should_be_zero:
            assert z < 4.5, (est, mean, se)
        else:
            assert z > 10 and mean.norm() > 0.3, (est, mean, se)


def test_guidance_scale_one_is_refused_and_above_one_only_scales_ssd():
    for s in (1.0, 0.5, 0.0):
        with pytest.raises(ValueError, match="must be > 1"):
            SSD(guidance_scale=s)
    with pytest.raises(SSD3DError, match="zero gradient"):
        build_estimator("ssd guidance_scale=1")
    p = predictions((5, 3), torch.tensor([10, 100, 300, 700, 950]))
    matched = {"tau": 200, "match_norm": True}
    torch.testing.assert_close(
        SSD(guidance_scale=1.5, **matched)(p) * 13.0, SSD(guidance_scale=7.5, **matched)(p)
    )


def test_three_interval_form_against_hand_computed_values():
    t = torch.tensor([100, 150, 151, 400, 800, 801])
    p = predictions((6, 2), t)
    w = bcast(1 - p.alpha_bar, p.x0)
    omega = 6.5
    h = p.eps_cond - p.eps_uncond
    seek = w * (p.eps_cond - p.noise)  # coefficient one, no norm matching
    guided = w * (p.eps_cond + omega * h)  # the guided prediction, no control variate
    high = w * omega * h
    est = SSD(tau=800, three_interval=True, tau_low=150, match_norm=False, coefficient="one")
    g = est(p)
    expected = [seek, seek, guided, guided, guided, high]
    for i in range(6):
        torch.testing.assert_close(g[i], expected[i][i])
    # with norm matching the low branch takes ||w omega h||, the middle one is untouched
    g = SSD(tau=800, three_interval=True, tau_low=150, coefficient="one", match_norm=True)(p)
    for i in (0, 1):
        torch.testing.assert_close(g[i].norm(), high[i].norm())
    torch.testing.assert_close(g[3], guided[3])
    # two intervals: tau_low is ignored
    assert torch.equal(SSD(tau=800, tau_low=10)(p), SSD(tau=800, tau_low=150)(p))


def test_branches_follow_the_batch_timesteps():
    low, high, mixed = torch.tensor([10, 150]), torch.tensor([500, 900]), torch.tensor([10, 900])
    assert NFSD().branches(low) == {"cond", "uncond"}
    assert NFSD().branches(mixed) == {"cond", "uncond", "neg"}
    assert NFSD().branches() == {"cond", "uncond", "neg"}
    unmatched = SSD(tau=200, match_norm=False)
    assert unmatched.branches(low) == {"cond"} and unmatched.branches(mixed) == {"cond", "uncond"}
    # the norm it matches needs eps_uncond
    assert SSD(match_norm=True).branches(low) == {"cond", "uncond"}
    assert SDS(guidance_scale=1.0).branches() == {"cond"}
    assert CSD(use_negative=True).branches(high) == {"cond", "neg"}
    # what they need is enough: NFSD at low t and unmatched SSD run without the others
    p = predictions((2, 3), low)
    p_low = NoisePredictions(p.x0, p.noise, p.t, p.alpha_bar, p.eps_cond, p.eps_uncond)
    torch.testing.assert_close(NFSD()(p_low), NFSD()(p))
    p_cond = NoisePredictions(p.x0, p.noise, p.t, p.alpha_bar, p.eps_cond)
    torch.testing.assert_close(unmatched(p_cond), unmatched(p))
