"""Stable Score Distillation (Tang, Wang, Wu, Zhang; arXiv 2312.09305), as in docs/method.md."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ssd3d.estimators.base import (
    NUM_TRAIN_TIMESTEPS,
    Branch,
    Estimator,
    EstimatorState,
    NoisePredictions,
    check_choice,
    check_timestep,
)
from ssd3d.estimators.control_variate import RunningCoefficient
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

# How c of the control variate -c eps is chosen:
# running    - E[<eps_cond, eps>] / E[<eps, eps>] per timestep bin, from earlier steps only
#              (unbiased; needs the companion of make_state(), else c = 1);
# per_sample - <eps_cond, eps> / <eps, eps> of the sample's own noise (biased, see
#              control_variate.py);
# one        - c = 1 (SDS); zero - c = 0 (no control variate).
COEFFICIENTS = ("running", "per_sample", "one", "zero")


def coefficient(kind: str, p: NoisePredictions, state: EstimatorState | None = None) -> Tensor:
    """Per-sample c for ``-c eps``, one of COEFFICIENTS. [B]"""
    if kind == "per_sample":
        return optimal_coefficient(p.eps_cond, p.noise)
    if kind == "running" and state is not None:
        if not isinstance(state, RunningCoefficient):
            raise ValueError(
                f"coefficient 'running' needs the RunningCoefficient of make_state(); "
                f"got {type(state).__name__}"
            )
        return state.coefficient(p.t).to(p.noise.dtype)
    # "running" without a companion is the companion's empty-bin value: c = 1.
    fixed = 0.0 if kind == "zero" else 1.0
    return p.noise.new_full((p.noise.shape[0],), fixed)


def reduced_mode_seeking(
    kind: str, p: NoisePredictions, state: EstimatorState | None = None
) -> Tensor:
    """``eps_tilde = eps_cond - c eps``: the mode-seeking term with its shared noise removed."""
    return mode_seeking(p.eps_cond) + variance_reducing(p.noise, coefficient(kind, p, state))


def check_ssd_guidance_scale(value: float) -> None:
    # omega = s - 1 weighs the classifier term and, through norm matching, the mode-seeking
    # one: s = 1 makes every SSD gradient exactly 0, s < 1 reverses the high-t branch
    # (away from the prompt) while the matched low-t branch keeps its sign. Neither is an
    # estimator of anything, so they are refused rather than given a made-up meaning.
    if not value > 1:  # also rejects NaN
        raise ValueError(
            f"guidance_scale must be > 1 (omega = s - 1 scales both branches: s = 1 gives a "
            f"zero gradient, s < 1 reverses the high-t one); got {value}"
        )


@dataclass(frozen=True)
class SSD(Estimator):
    """Timestep-aware orchestration of the SDS terms with a variance-reducing coefficient.

    With ``h_w = w(t) omega (eps_cond - eps_uncond)``, omega = s - 1, and
    ``eps_tilde = eps_cond - c eps`` (c: ``coefficient``):

    - ``t > tau``: ``g = h_w`` (mode-disengaging: structure and semantics at high noise);
    - ``t <= tau``: ``g = (||h_w|| / ||eps_tilde||) eps_tilde`` with match_norm, else
      ``w(t) eps_tilde`` (variance-reduced mode-seeking: detail at low noise).

    ``three_interval`` splits ``t <= tau`` at ``tau_low``: for ``tau_low < t <= tau`` the
    guided prediction without a control variate, ``w(t) (eps_cond + omega h)``; the
    mode-seeking branch only for ``t <= tau_low``.

    tau = 0 gives mode-disengaging almost everywhere; tau = T - 1 gives mode-seeking
    everywhere. With match_norm (and two intervals) the guidance scale only rescales every
    gradient by omega, so under Adam SSD barely depends on it. guidance_scale must be > 1.

    Defaults from the simulations (docs/results/ssd_claims.md): tau = 800 (InstructHumans'
    threshold; with PGC-3D's 100 or method.md's 200 four steps in five or more take the
    classifier branch and SSD acts like CSD) and no norm matching (matched to the tiny
    classifier term near the data, the mode-seeking branch all but vanishes under Adam).
    """

    guidance_scale: float = 7.5
    tau: int = 800
    coefficient: str = "running"
    match_norm: bool = False
    three_interval: bool = False
    tau_low: int = 150  # only with three_interval
    weighting: str = "sds"

    name = "ssd"
    num_train_timesteps: ClassVar[int] = NUM_TRAIN_TIMESTEPS

    def __post_init__(self) -> None:
        check_ssd_guidance_scale(self.guidance_scale)
        check_timestep("tau", self.tau, self.num_train_timesteps)
        check_timestep("tau_low", self.tau_low, self.num_train_timesteps)
        if self.three_interval and self.tau_low > self.tau:
            raise ValueError(f"tau_low must be <= tau; got tau_low={self.tau_low}, tau={self.tau}")
        check_choice("coefficient", self.coefficient, COEFFICIENTS)
        check_weighting(self.weighting)

    @property
    def seek_below(self) -> int:
        """The mode-seeking branch serves t <= seek_below."""
        return self.tau_low if self.three_interval else self.tau

    def make_state(self) -> RunningCoefficient | None:
        if self.coefficient != "running":
            return None
        return RunningCoefficient(num_train_timesteps=self.num_train_timesteps)

    def branches(self, t: Tensor | None = None) -> frozenset[Branch]:
        # The mode-seeking branch needs eps_uncond only for the norm it is matched to.
        if self.match_norm or t is None or bool((t > self.seek_below).any()):
            return frozenset({"cond", "uncond"})
        return frozenset({"cond"})

    def __call__(self, p: NoisePredictions, state: EstimatorState | None = None) -> Tensor:
        w = per_sample(weight(self.weighting, p.alpha_bar), p.x0)
        omega = self.guidance_scale - 1.0
        eps_tilde = reduced_mode_seeking(self.coefficient, p, state)
        needs_uncond = self.match_norm or bool((p.t > self.seek_below).any())
        if not needs_uncond:  # every sample is on the unmatched mode-seeking branch
            return w * eps_tilde
        h = mode_disengaging(p.eps_cond, p.require("uncond"))
        h_w = w * omega * h
        if self.match_norm:
            scale = norm(h_w) / norm(eps_tilde).clamp_min(NORM_EPS)
            seek = per_sample(scale, p.x0) * eps_tilde
        else:
            seek = w * eps_tilde
        out = torch.where(per_sample(p.t > self.seek_below, p.x0).bool(), h_w, seek)
        if self.three_interval:
            middle = w * (p.eps_cond + omega * h)
            in_middle = (p.t > self.tau_low) & (p.t <= self.tau)
            out = torch.where(per_sample(in_middle, p.x0).bool(), middle, out)
        return out
