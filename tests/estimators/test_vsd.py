"""VSD against hand-computed values on a tiny case."""

from __future__ import annotations

import pytest
import torch

from ssd3d.errors import SSD3DError
from ssd3d.estimators import VSD, NoisePredictions, build_estimator, describe


def tiny(eps_particle=None) -> NoisePredictions:
    """Two samples of two numbers: alpha_bar 0.75 and 0.5, so w = 1 - a = 0.25 and 0.5."""
    return NoisePredictions(
        x0=torch.tensor([[0.5, -1.0], [2.0, 0.0]]),
        noise=torch.tensor([[0.3, 0.1], [-0.2, 0.4]]),
        t=torch.tensor([200, 600]),
        alpha_bar=torch.tensor([0.75, 0.5]),
        eps_cond=torch.tensor([[1.0, 2.0], [0.0, -1.0]]),
        eps_uncond=torch.tensor([[0.5, 1.0], [1.0, -1.0]]),
        eps_particle=eps_particle,
    )


def test_zero_when_the_particle_score_is_the_prior_at_guidance_one():
    p = tiny()
    p = NoisePredictions(**{**vars(p), "eps_particle": p.eps_cond.clone()})
    grad = VSD(guidance_scale=1.0)(p)
    assert torch.equal(grad, torch.zeros_like(p.x0))
    # ... while SDS's gradient on the same case is not zero: the particle score is no noise.
    assert build_estimator("sds guidance_scale=1")(p).abs().sum() > 0


def test_hand_computed_gradient_at_guidance_three():
    eps_q = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    grad = VSD(guidance_scale=3.0)(tiny(eps_q))
    # eps_cfg = uncond + 3 (cond - uncond): [[2, 4], [-2, -1]]; minus eps_q: [[2, 3], [-4, -1]];
    # times w = [0.25, 0.5].
    assert torch.allclose(grad, torch.tensor([[0.5, 0.75], [-2.0, -0.5]]))


def test_needs_the_particle_prediction_and_says_so():
    with pytest.raises(ValueError, match="'particle' prediction"):
        VSD()(tiny())
    assert VSD().branches() == {"cond", "uncond", "particle"}
    assert VSD(guidance_scale=1.0).branches() == {"cond", "particle"}


def test_registered_with_prolificdreamers_defaults():
    est = build_estimator("vsd")
    assert isinstance(est, VSD)
    assert describe(est) == "vsd guidance_scale=7.5 weighting=sds"
    with pytest.raises(SSD3DError):
        build_estimator("vsd weighting=nope")
