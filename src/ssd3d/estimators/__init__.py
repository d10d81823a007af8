"""Score-distillation estimators as pure tensor functions (they know nothing of 3D).

Usage in any pipeline::

    est = build_estimator("ssd tau=200")
    preds = NoisePredictions(x0, noise, t, alpha_bar, eps_cond, eps_uncond)
    loss = surrogate_loss(x0, est(preds))   # backward() sends the gradient into x0's graph
"""

from ssd3d.estimators.base import Branch, Estimator, NoisePredictions
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
from ssd3d.estimators.weighting import WEIGHTINGS, weight

__all__ = [
    "CSD",
    "ESTIMATORS",
    "NFSD",
    "SCHEDULES",
    "SDS",
    "SSD",
    "WEIGHTINGS",
    "Annealed",
    "Branch",
    "DreamTime",
    "Estimator",
    "ModeDisengaging",
    "ModeSeeking",
    "NoisePredictions",
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
