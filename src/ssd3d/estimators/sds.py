"""Score Distillation Sampling (DreamFusion, Poole et al. 2022)."""

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
class SDS(Estimator):
    """``g = w(t) (eps_cfg - eps)``

    ``= w(t) [omega h + eps_cond - eps]`` with omega = s - 1: the three terms of docs/method.md with
    the variance-reducing coefficient fixed to 1.
    """

    guidance_scale: float = 100.0  # DreamFusion and threestudio's dreamfusion-sd use 100
    weighting: str = "sds"

    name = "sds"

    def __post_init__(self) -> None:
        check_guidance_scale(self.guidance_scale)
        check_weighting(self.weighting)

    def branches(self, t: Tensor | None = None) -> frozenset[Branch]:
        # At s = 1 the guided prediction is eps_cond itself: eps_uncond would be unused.
        return frozenset({"cond"}) if self.guidance_scale == 1.0 else self.needs

    def __call__(self, p: NoisePredictions, state: EstimatorState | None = None) -> Tensor:
        if self.guidance_scale == 1.0:
            eps_cfg = p.eps_cond
        else:
            eps_cfg = classifier_free_guidance(p.eps_cond, p.require("uncond"), self.guidance_scale)
        return per_sample(weight(self.weighting, p.alpha_bar), p.x0) * (eps_cfg - p.noise)
