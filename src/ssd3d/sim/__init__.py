"""Numerical simulations: score-distillation estimators on analytic Gaussian mixtures.

The optimised "scene" is a set of particles (x0 = theta); ``ssd3d simulate`` runs every
estimator on each scenario (``scenarios/*.yaml``) and writes figures, metrics.json and a
markdown report (``report.markdown_report``).
"""
