"""Peer estimators under the same interface: CSD, NFSD, and the single SDS terms."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ssd3d.estimators.base import (
    Branch,
    Estimator,
    EstimatorState,
    NoisePredictions,
    check_choice,
    check_guidance_scale,
    check_timestep,
)
from ssd3d.estimators.control_variate import RunningCoefficient
from ssd3d.estimators.ssd import COEFFICIENTS, NUM_TRAIN_TIMESTEPS, reduced_mode_seeking
from ssd3d.estimators.terms import mode_disengaging, per_sample
from ssd3d.estimators.weighting import check_weighting, weight


@dataclass(frozen=True)
class CSD(Estimator):
    """Classifier Score Distillation (Yu et al. 2023): ``g = w(t) s (eps_cond - eps_ref)``.

    ``eps_ref`` is the empty prompt's prediction, or the negative prompt's with
    ``use_negative``.
    """

    guidance_scale: float = 7.5
    use_negative: bool = False
    weighting: str = "sds"

    name = "csd"

    def __post_init__(self) -> None:
        check_guidance_scale(self.guidance_scale)
        check_weighting(self.weighting)

    def branches(self, t: Tensor | None = None) -> frozenset[Branch]:
        return frozenset({"cond", "neg" if self.use_negative else "uncond"})

    def __call__(self, p: NoisePredictions, state: EstimatorState | None = None) -> Tensor:
        reference = p.require("neg" if self.use_negative else "uncond")
        w = per_sample(weight(self.weighting, p.alpha_bar), p.x0)
        return w * self.guidance_scale * mode_disengaging(p.eps_cond, reference)


@dataclass(frozen=True)
class NFSD(Estimator):
    """Noise-Free Score Distillation (Katzir et al. 2023).

    ``g = w(t) (s (eps_cond - eps_uncond) + delta_D)`` with ``delta_D = eps_uncond`` for
    ``t < t_threshold`` and ``eps_uncond - eps_neg`` otherwise.
    """

    guidance_scale: float = 7.5
    t_threshold: int = 200  # NFSD's paper switches at t = 200 of 1000
    weighting: str = "sds"

    name = "nfsd"
    needs = frozenset({"cond", "uncond", "neg"})

    def __post_init__(self) -> None:
        check_guidance_scale(self.guidance_scale)
        check_timestep("t_threshold", self.t_threshold, NUM_TRAIN_TIMESTEPS)
        check_weighting(self.weighting)

    def branches(self, t: Tensor | None = None) -> frozenset[Branch]:
        # The negative prompt's prediction only enters delta_D at t >= t_threshold.
        if t is not None and not bool((t >= self.t_threshold).any()):
            return frozenset({"cond", "uncond"})
        return self.needs

    def __call__(self, p: NoisePredictions, state: EstimatorState | None = None) -> Tensor:
        eps_uncond = p.require("uncond")
        low_t = p.t < self.t_threshold
        if bool(low_t.all()):
            delta_d = eps_uncond
        else:
            low = per_sample(low_t, p.x0).bool()
            delta_d = torch.where(low, eps_uncond, eps_uncond - p.require("neg"))
        w = per_sample(weight(self.weighting, p.alpha_bar), p.x0)
        return w * (self.guidance_scale * mode_disengaging(p.eps_cond, eps_uncond) + delta_d)


@dataclass(frozen=True)
class ModeSeeking(Estimator):
    """The mode-seeking term alone, with a control variate: ``g = w(t) (eps_cond - c eps)``.

    With coefficient "one" this is SDS at guidance 1; "running" needs ``make_state()``'s
    companion (without it c = 1), as in SSD.
    """

    coefficient: str = "one"
    weighting: str = "sds"

    name = "mode-seeking"
    needs = frozenset({"cond"})

    def __post_init__(self) -> None:
        check_choice("coefficient", self.coefficient, COEFFICIENTS)
        check_weighting(self.weighting)

    def make_state(self) -> RunningCoefficient | None:
        return RunningCoefficient() if self.coefficient == "running" else None

    def __call__(self, p: NoisePredictions, state: EstimatorState | None = None) -> Tensor:
        w = per_sample(weight(self.weighting, p.alpha_bar), p.x0)
        return w * reduced_mode_seeking(self.coefficient, p, state)


@dataclass(frozen=True)
class ModeDisengaging(Estimator):
    """The mode-disengaging term alone: ``g = w(t) omega (eps_cond - eps_uncond)``.

    The same gradient as SSD's high-t branch, at every t.
    """

    guidance_scale: float = 7.5
    weighting: str = "sds"

    name = "mode-disengaging"

    def __post_init__(self) -> None:
        check_guidance_scale(self.guidance_scale)
        check_weighting(self.weighting)

    def __call__(self, p: NoisePredictions, state: EstimatorState | None = None) -> Tensor:
        w = per_sample(weight(self.weighting, p.alpha_bar), p.x0)
        return w * (self.guidance_scale - 1.0) * mode_disengaging(p.eps_cond, p.require("uncond"))
