"""Variational Score Distillation (ProlificDreamer, Wang et al. 2023, eq. 9).

VSD treats the scene as a sample of a distribution q and replaces SDS's injected noise
with the score of q's own noised renders:

    g = w(t) (eps_cfg(x_t; y, t) - eps_q(x_t; y, c, t))

where ``eps_cfg = eps_uncond + s (eps_cond - eps_uncond)`` is the frozen prior's guided
prediction and ``eps_q`` (``NoisePredictions.eps_particle``) that of the particles'
distribution at the same x_t. In ProlificDreamer eps_q is a LoRA of the prior conditioned
on the camera c and trained on the renders alongside the scene; in ssd3d the caller
provides it (``ssd3d.priors.variational``: a LoRA of the toy UNet or of Stable Diffusion,
or a fitted Gaussian for the exact priors). The estimator only sees the prediction.

If eps_q were the injected noise itself (q a point mass at this render, known exactly) VSD
would be SDS; if q is the prior's own distribution (a copy of the prior) at s = 1 the
gradient is zero: the scene is already a sample.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ssd3d.estimators.base import (
    Branch,
    Estimator,
    EstimatorState,
    NoisePredictions,
    check_guidance_scale,
)
from ssd3d.estimators.terms import classifier_free_guidance, per_sample
from ssd3d.estimators.weighting import check_weighting, weight


@dataclass(frozen=True)
class VSD(Estimator):
    """``g = w(t) (eps_cfg - eps_particle)``: VSD with the particles' score given."""

    # ProlificDreamer and threestudio's stable-diffusion-vsd-guidance: guidance_scale 7.5.
    guidance_scale: float = 7.5
    # threestudio's VSD guidance weights by w = 1 - alpha_bar ("sds").
    weighting: str = "sds"

    name = "vsd"
    needs = frozenset({"cond", "uncond", "particle"})

    def __post_init__(self) -> None:
        check_guidance_scale(self.guidance_scale)
        check_weighting(self.weighting)

    def branches(self, t: Tensor | None = None) -> frozenset[Branch]:
        # At s = 1 the guided prediction is eps_cond itself: eps_uncond would be unused.
        return frozenset({"cond", "particle"}) if self.guidance_scale == 1.0 else self.needs

    def __call__(self, p: NoisePredictions, state: EstimatorState | None = None) -> Tensor:
        if self.guidance_scale == 1.0:
            eps_cfg = p.eps_cond
        else:
            eps_cfg = classifier_free_guidance(p.eps_cond, p.require("uncond"), self.guidance_scale)
        eps_particle = p.require("particle")
        return per_sample(weight(self.weighting, p.alpha_bar), p.x0) * (eps_cfg - eps_particle)
