"""ssd3d: text-to-3D generation with Stable Score Distillation.

Layout follows the data flow of one optimisation step:
``estimators`` (pure tensor maths) and ``priors`` (frozen diffusion models) know nothing
of each other or of 3D; ``guidance`` asks a prior for the predictions an estimator needs;
``scene`` renders; ``distill`` ties them together.
"""

__version__ = "0.1.0"
