"""Frozen diffusion priors behind one interface (see ``base.DiffusionPrior``).

``GaussianMixturePrior`` (exact scores in any dimension, for the simulations),
``ExactPrior`` (the exact denoiser of a finite image set: ToyWorld's true score),
``ToyPrior`` (``ssd3d.priors.toy``, the shipped ToyWorld UNet) and
``StableDiffusionPrior`` (``ssd3d.priors.stable_diffusion``, needs the ``sd`` extra);
``load_prior(name, ...)`` builds any of the 3D ones by name.
"""

from ssd3d.priors.base import DiffusionPrior, add_noise, make_alphas_cumprod
from ssd3d.priors.exact import ExactPrior, ExactPriorConfig
from ssd3d.priors.gmm import GaussianMixturePrior, MixtureClass
from ssd3d.priors.load import PRIOR_NAMES, load_prior

__all__ = [
    "PRIOR_NAMES",
    "DiffusionPrior",
    "ExactPrior",
    "ExactPriorConfig",
    "GaussianMixturePrior",
    "MixtureClass",
    "add_noise",
    "load_prior",
    "make_alphas_cumprod",
]
