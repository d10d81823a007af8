"""Stable Score Distillation (Tang, Wang, Wu, Zhang; arXiv 2312.09305), as in docs/method.md."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ssd3d.estimators.base import (
    NUM_TRAIN_TIMESTEPS,
    Estimator,
    NoisePredictions,
    check_choice,
    check_guidance_scale,
    check_timestep,
)
from ssd3d.estimators.terms import (
    NORM_EPS,
    mode_disengaging,
    mode_seeking,
    norm,
    optimal_coefficient,
    per_sample,
    variance_reducing,
)
from ssd3d.estimators.weighting import check_weighting, weight

VARIANCE_REDUCTIONS = ("adaptive", "sds", "none")


def control_variate_coefficient(kind: str, eps_cond: Tensor, noise: Tensor) -> Tensor:
    """Per-sample c for ``-c eps``: adaptive (least squares), sds (1) or none (0). [B]"""
    if kind == "adaptive":
        return optimal_coefficient(eps_cond, noise)
    fixed = {"sds": 1.0, "none": 0.0}[kind]
    return noise.new_full((noise.shape[0],), fixed)


def reduced_mode_seeking(kind: str, p: NoisePredictions) -> Tensor:
    """``eps_tilde = eps_cond - c eps``: the mode-seeking term with its shared noise removed."""
    c = control_variate_coefficient(kind, p.eps_cond, p.noise)
    return mode_seeking(p.eps_cond) + variance_reducing(p.noise, c)


@dataclass(frozen=True)
class SSD(Estimator):
    """Timestep-aware orchestration of the SDS terms with adaptive variance reduction.

    With ``h_w = w(t) omega (eps_cond - eps_uncond)``:

    - ``t > tau``:  ``g = h_w`` (mode-disengaging: structure and semantics at high noise);
    - ``t <= tau``: ``g = (||h_w|| / ||eps_tilde||) eps_tilde`` with match_norm, else
      ``w(t) eps_tilde`` (variance-reduced mode-seeking: detail at low noise).

    tau = 0 gives mode-disengaging almost everywhere; tau = T - 1 gives mode-seeking
    everywhere. With match_norm the guidance scale only rescales every gradient by omega,
    so under Adam SSD barely depends on it.
    """

    guidance_scale: float = 7.5
    tau: int = 200
    variance_reduction: str = "adaptive"
    match_norm: bool = True
    weighting: str = "sds"

    name = "ssd"
    num_train_timesteps: ClassVar[int] = NUM_TRAIN_TIMESTEPS

    def __post_init__(self) -> None:
        check_guidance_scale(self.guidance_scale)
        check_timestep("tau", self.tau, self.num_train_timesteps)
        check_choice("variance_reduction", self.variance_reduction, VARIANCE_REDUCTIONS)
        check_weighting(self.weighting)

    def __call__(self, p: NoisePredictions) -> Tensor:
        w = per_sample(weight(self.weighting, p.alpha_bar), p.x0)
        omega = self.guidance_scale - 1.0
        h_w = w * omega * mode_disengaging(p.eps_cond, p.require("uncond"))
        eps_tilde = reduced_mode_seeking(self.variance_reduction, p)
        if self.match_norm:
            scale = norm(h_w) / norm(eps_tilde).clamp_min(NORM_EPS)
            low_t = per_sample(scale, p.x0) * eps_tilde
        else:
            low_t = w * eps_tilde
        high_t = per_sample(p.t > self.tau, p.x0).bool()
        return torch.where(high_t, h_w, low_t)
