"""Frozen diffusion priors behind one interface (see ``base.DiffusionPrior``)."""

from ssd3d.priors.base import DiffusionPrior, add_noise, make_alphas_cumprod

__all__ = ["DiffusionPrior", "add_noise", "make_alphas_cumprod"]
