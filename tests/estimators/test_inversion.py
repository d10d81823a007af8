"""ISM and SDI as pure functions of NoisePredictions, and the noising steps they declare."""

import pytest
import torch

from ssd3d.errors import SSD3DError
from ssd3d.estimators import ISM, SDI, DDIMInversion, NoisePredictions, build_estimator, describe


def preds(**extra):
    g = torch.Generator().manual_seed(0)
    x0, noise, ec, eu, es = (torch.randn(2, 3, generator=g, dtype=torch.float64) for _ in range(5))
    a = torch.tensor([0.9, 0.2], dtype=torch.float64)
    p = NoisePredictions(
        x0,
        noise,
        torch.tensor([100, 800]),
        a,
        ec,
        eu,
        eps_start=es,
        t_start=torch.tensor([20, 720]),
    )
    return p, a.reshape(-1, 1)


def test_ism_is_its_formula():
    p, a = preds()
    cfg = p.eps_uncond + 7.5 * (p.eps_cond - p.eps_uncond)
    torch.testing.assert_close(ISM()(p), ((1 - a) / a).sqrt() * (cfg - p.eps_start))
    g = ISM(guidance_scale=2.0, weighting="sds")(p)
    torch.testing.assert_close(
        g, (1 - a) * (p.eps_uncond + 2 * (p.eps_cond - p.eps_uncond) - p.eps_start)
    )


def test_ism_needs_its_noising_steps_prediction():
    p, _ = preds()
    bare = NoisePredictions(p.x0, p.noise, p.t, p.alpha_bar, p.eps_cond, p.eps_uncond)
    with pytest.raises(ValueError, match="eps_start"):
        ISM()(bare)


def test_sdi_is_sds_on_the_implied_noise():
    p, a = preds()
    cfg = p.eps_uncond + 7.5 * (p.eps_cond - p.eps_uncond)
    torch.testing.assert_close(SDI()(p), (1 - a) * (cfg - p.noise))


def test_the_declared_noising_steps_are_the_published_settings():
    assert ISM().noising == DDIMInversion(
        spacing=200, guidance_scale=0.0, interval=80, keep_start=True
    )
    assert SDI().noising == DDIMInversion(spacing=100, guidance_scale=-7.5, eta=0.3)
    assert ISM().noising.branches() == {"uncond"} and SDI().noising.branches() == {"cond", "uncond"}
    assert ISM().noising.path(300) == [200, 220, 300]
    assert ISM().noising.path(50) == [0, 50]  # s = max(t - delta_t, 0)
    assert SDI().noising.path(300) == [100, 200, 300]
    assert SDI().noising.path(60) == [60]
    assert DDIMInversion(spacing=100, guidance_scale=1.0).branches() == {"cond"}


def test_specs_round_trip_and_bad_values_are_refused():
    for spec in ("ism delta_t=50 inversion_steps=10", "sdi eta=0 inversion_guidance_scale=-5"):
        est = build_estimator(spec)
        assert build_estimator(describe(est)) == est
    for bad in ("ism delta_t=0", "ism inversion_steps=0", "sdi eta=-1", "sdi inversion_steps=2000"):
        with pytest.raises(SSD3DError):
            build_estimator(bad)
