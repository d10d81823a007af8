"""Score-distillation estimators as pure tensor functions (they know nothing of 3D).

Usage in any pipeline::

    est = build_estimator("ssd tau=200")
    state = est.make_state()                 # None unless the estimator keeps running sums
    preds = NoisePredictions(x0, noise, t, alpha_bar, eps_cond, eps_uncond)
    # (est.noising says how x_t was made: random noise, or DDIM inversion for ISM and SDI;
    # ssd3d.guidance.predictions runs it with the prior and fills these fields.)
    loss = surrogate_loss(x0, est(preds, state=state))  # backward() sends it into x0's graph
    if state is not None:
        state.update(preds)                  # after the gradient: later steps see this one
"""

from ssd3d.estimators.base import (
    RANDOM_NOISING,
    Branch,
    DDIMInversion,
    Estimator,
    EstimatorState,
    NoisePredictions,
    Noising,
    RandomNoising,
)
from ssd3d.estimators.control_variate import RunningCoefficient
from ssd3d.estimators.inversion import ISM, SDI
from ssd3d.estimators.loss import surrogate_loss
from ssd3d.estimators.peers import CSD, NFSD, ModeDisengaging, ModeSeeking
from ssd3d.estimators.registry import ESTIMATORS, build_estimator, describe
from ssd3d.estimators.schedules import SCHEDULES, Annealed, DreamTime, Uniform
from ssd3d.estimators.sds import SDS
from ssd3d.estimators.ssd import SSD
from ssd3d.estimators.terms import (
    classifier_free_guidance,
    mode_disengaging,
    mode_seeking,
    optimal_coefficient,
    variance_reducing,
)
from ssd3d.estimators.vsd import VSD
from ssd3d.estimators.weighting import WEIGHTINGS, weight

__all__ = [
    "CSD",
    "ESTIMATORS",
    "ISM",
    "NFSD",
    "RANDOM_NOISING",
    "SCHEDULES",
    "SDI",
    "SDS",
    "SSD",
    "VSD",
    "WEIGHTINGS",
    "Annealed",
    "Branch",
    "DDIMInversion",
    "DreamTime",
    "Estimator",
    "EstimatorState",
    "ModeDisengaging",
    "ModeSeeking",
    "NoisePredictions",
    "Noising",
    "RandomNoising",
    "RunningCoefficient",
    "Uniform",
    "build_estimator",
    "classifier_free_guidance",
    "describe",
    "mode_disengaging",
    "mode_seeking",
    "optimal_coefficient",
    "surrogate_loss",
    "variance_reducing",
    "weight",
]
