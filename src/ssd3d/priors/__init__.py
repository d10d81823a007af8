"""Frozen diffusion priors behind one interface (see ``base.DiffusionPrior``): adapters that
are handed what they wrap.

``GaussianMixturePrior`` (exact scores in any dimension, for the simulations),
``ExactPrior`` (the exact denoiser of a finite image set: ToyWorld's true score),
``ToyPrior`` (``ssd3d.priors.toy``, a pixel noise predictor such as the shipped ToyWorld
UNet) and ``StableDiffusionPrior`` (``ssd3d.priors.stable_diffusion``, needs the ``sd``
extra). ``ssd3d.pipeline.priors`` loads the 3D ones from a run's config.
"""

from ssd3d.priors.base import DiffusionPrior, add_noise, make_alphas_cumprod
from ssd3d.priors.exact import ExactPrior, ExactPriorConfig
from ssd3d.priors.gmm import GaussianMixturePrior, MixtureClass

__all__ = [
    "DiffusionPrior",
    "ExactPrior",
    "ExactPriorConfig",
    "GaussianMixturePrior",
    "MixtureClass",
    "add_noise",
    "make_alphas_cumprod",
]
