"""The estimators whose x_t comes from DDIM inversion of x0 instead of random noise: ISM, SDI.

Each declares its noising step (``noising``: a ``DDIMInversion``), which the caller runs with
the prior (``ssd3d.guidance.predictions``); the estimator itself stays a pure function of the
``NoisePredictions`` it is handed. Costs in network evaluations of the batch per step
(docs/method.md), with d = T / inversion_steps: ISM ``max(ceil(s / d), 1) + 1``
unconditional ones on the way to x_t plus 2 at x_t (about 5.7 on average over t in
[20, 980]); SDI ``2 ceil(t / d)`` on the way (guided: two each) plus 2 at x_t (about 15
over t in [250, 980]).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ssd3d.estimators.base import (
    NUM_TRAIN_TIMESTEPS,
    DDIMInversion,
    Estimator,
    EstimatorState,
    NoisePredictions,
    check_guidance_scale,
    check_timestep,
)
from ssd3d.estimators.terms import classifier_free_guidance, per_sample
from ssd3d.estimators.weighting import check_weighting, weight


def _check_inversion_steps(value: int) -> None:
    if not 1 <= value <= NUM_TRAIN_TIMESTEPS:
        raise ValueError(f"inversion_steps must be in [1, {NUM_TRAIN_TIMESTEPS}]; got {value}")


@dataclass(frozen=True)
class ISM(Estimator):
    """Interval Score Matching (LucidDreamer, Liang et al. 2023, arXiv 2311.11284).

    ``g = w(t) (eps_cfg(x_t, t) - eps_phi(x_s; s))`` with s = max(t - delta_t, 0): x_s is x0
    run by unconditional DDIM inversion to s in steps of T / inversion_steps, x_t one more
    DDIM step from s to t with eps_phi(x_s; s); eps_cfg the guided prediction at
    ``guidance_scale``, w(t) = sqrt((1 - a) / a) (weighting "ism").

    Defaults: LucidDreamer's configs (guidance_scale 7.5, delta_t 80, xs_delta_t 200 with
    xs_inv_steps 5: five inversion steps of 200 over T = 1000, xs_eta 0, inversion with the
    empty prompt). LucidDreamer starts the inversion from x0 noised to t = 0 and anneals
    delta_t from 100 to 80 over its warm-up; here the path starts at x0 and delta_t is fixed.
    Its timesteps: t in [20, 500] after a warm-up from 980 (``recommended_timesteps``).
    """

    guidance_scale: float = 7.5
    delta_t: int = 80
    inversion_steps: int = 5
    weighting: str = "ism"

    name = "ism"
    recommended_timesteps = "timesteps.schedule=annealed timesteps.t_max_end=500"

    def __post_init__(self) -> None:
        check_guidance_scale(self.guidance_scale)
        check_timestep("delta_t", self.delta_t, NUM_TRAIN_TIMESTEPS)
        if self.delta_t < 1:  # the interval's two ends must differ
            raise ValueError(f"delta_t must be >= 1; got {self.delta_t}")
        _check_inversion_steps(self.inversion_steps)
        check_weighting(self.weighting)

    @property
    def noising(self) -> DDIMInversion:
        return DDIMInversion(
            spacing=NUM_TRAIN_TIMESTEPS // self.inversion_steps,
            guidance_scale=0.0,
            interval=self.delta_t,
            keep_start=True,
        )

    def __call__(self, p: NoisePredictions, state: EstimatorState | None = None) -> Tensor:
        if p.eps_start is None:
            raise ValueError("ISM needs eps_start: run its noising step (guidance.predictions)")
        eps_cfg = classifier_free_guidance(p.eps_cond, p.require("uncond"), self.guidance_scale)
        return per_sample(weight(self.weighting, p.alpha_bar), p.x0) * (eps_cfg - p.eps_start)


@dataclass(frozen=True)
class SDI(Estimator):
    """Score Distillation via Inversion (SDI; Lukoianov et al. 2024, arXiv 2405.15891).

    The paper is "Score Distillation via Reparametrized DDIM"; threestudio's guidance is
    stable-diffusion-sdi-guidance.

    ``g = w(t) (eps_cfg(x_t, t) - eps_inv)``: SDS with its random noise replaced by the noise
    that DDIM inversion implies. x_t is x0 run by DDIM inversion to t in steps of
    T / inversion_steps, each prediction guided at ``inversion_guidance_scale`` with the
    prompt, plus eta times the DDPM posterior noise per step;
    ``eps_inv = (x_t - sqrt(a) x0) / sqrt(1 - a)``.

    Defaults: threestudio's configs/sdi.yaml (guidance_scale 7.5, inversion guidance -7.5,
    10 inversion steps, eta 0.3, weighting "sds", t in [0.25, 0.98] of T:
    ``recommended_timesteps``). threestudio inverts to t plus a random offset below T / 10
    and lowers t deterministically over the run; here the inversion ends at the drawn t.
    """

    guidance_scale: float = 7.5
    inversion_guidance_scale: float = -7.5
    inversion_steps: int = 10
    eta: float = 0.3
    weighting: str = "sds"

    name = "sdi"
    recommended_timesteps = "timesteps.t_min=250 timesteps.t_max=980"

    def __post_init__(self) -> None:
        check_guidance_scale(self.guidance_scale)
        _check_inversion_steps(self.inversion_steps)
        if not self.eta >= 0:
            raise ValueError(f"eta must be >= 0; got {self.eta}")
        check_weighting(self.weighting)

    @property
    def noising(self) -> DDIMInversion:
        return DDIMInversion(
            spacing=NUM_TRAIN_TIMESTEPS // self.inversion_steps,
            guidance_scale=self.inversion_guidance_scale,
            eta=self.eta,
        )

    def __call__(self, p: NoisePredictions, state: EstimatorState | None = None) -> Tensor:
        eps_cfg = classifier_free_guidance(p.eps_cond, p.require("uncond"), self.guidance_scale)
        return per_sample(weight(self.weighting, p.alpha_bar), p.x0) * (eps_cfg - p.noise)
