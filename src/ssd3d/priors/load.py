"""Build a prior by name: the one place the pipeline learns which priors exist."""

from __future__ import annotations

from ssd3d.errors import SSD3DError
from ssd3d.priors.base import DiffusionPrior

PRIOR_NAMES = ("toy", "exact", "stable-diffusion")


def load_prior(
    name: str,
    model: str | None = None,
    device: str = "cpu",
    resolution: int = 32,
    encode_resolution: int | None = None,
    views_per_prompt: int = 200,
    smoothing: float = 0.0,
    compile: str = "none",
) -> DiffusionPrior:
    """``toy``: the shipped ToyWorld UNet (``model`` = another .safetensors file);
    ``exact``: ToyWorld's exact posterior over its rendered dataset (cached on first use,
    ``views_per_prompt`` views at ``resolution``; ``model`` = a dataset file instead), its
    images blurred by ``smoothing``;
    ``stable-diffusion``: a diffusers checkpoint (``model`` = hub id or local folder),
    its UNet and VAE encode torch.compiled in mode ``compile`` unless "none".
    """
    if name == "toy":
        from ssd3d.priors.toy import ToyPrior

        return ToyPrior.load(model, device=device)
    if name == "exact":
        from ssd3d.priors.exact import ExactPrior, ExactPriorConfig
        from ssd3d.toyworld.render_dataset import DatasetConfig, cached_dataset

        if model is not None:
            from ssd3d.toyworld.dataset_format import ToyDataset

            data = ToyDataset.load(model)
        else:
            data = cached_dataset(
                DatasetConfig(views_per_prompt=views_per_prompt, resolution=resolution)
            )
        views = [data.view_names[int(v)] for v in data.view_labels]
        prior = ExactPrior(
            data.images.float() / 255,
            data.labels,
            data.prompts,
            views=views,
            config=ExactPriorConfig(smoothing=smoothing),
        )
        return prior.to(device)
    if name == "stable-diffusion":
        from ssd3d.priors.stable_diffusion import StableDiffusionConfig, StableDiffusionPrior

        kwargs = {"device": device, "compile": compile} | ({"model": model} if model else {})
        if encode_resolution is not None:
            kwargs["encode_resolution"] = encode_resolution
        return StableDiffusionPrior(StableDiffusionConfig(**kwargs))
    raise SSD3DError(f"unknown prior '{name}' (known: {', '.join(PRIOR_NAMES)})")
