"""Which prior a run distils from: one typed spec per prior, and the one place that loads them.

The adapters in ``ssd3d.priors`` are handed what they wrap; loading what they wrap (the toy
UNet's weights file, ToyWorld's rendered dataset, a diffusers checkpoint) happens here, so
that priors know nothing of ToyWorld or of the models' files. A spec is a frozen, hashable
dataclass: runs with equal specs can share one loaded prior (a batch keeps one per process,
the app keeps the last two).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from ssd3d.errors import SSD3DError
from ssd3d.priors.base import DiffusionPrior
from ssd3d.priors.exact import ExactPriorConfig
from ssd3d.priors.stable_diffusion import StableDiffusionConfig

PRIOR_NAMES = ("toy", "exact", "stable-diffusion")


@dataclass(frozen=True)
class ToyPriorSpec:
    """The shipped ToyWorld UNet, or another weights file of its format."""

    model: str | None = None  # a .safetensors file; None: the shipped weights
    device: str = "cpu"


@dataclass(frozen=True)
class ExactPriorSettings(ExactPriorConfig):
    """The ``exact:`` section of a run's config: the adapter's options and its data's size."""

    # Rendered views per prompt of the cached ToyWorld dataset it reads (rendered on first
    # use; 200 takes a few minutes on 2 cores, the posterior then moves smoothly with view).
    views_per_prompt: int = 200

    def __post_init__(self) -> None:
        if self.views_per_prompt < 1 or self.smoothing < 0:
            raise SSD3DError(
                "exact.views_per_prompt must be >= 1 and exact.smoothing >= 0; got "
                f"{self.views_per_prompt}, {self.smoothing}"
            )

    def adapter_config(self) -> ExactPriorConfig:
        """The options the adapter takes (the dataset's size is for the loader)."""
        return ExactPriorConfig(**{f.name: getattr(self, f.name) for f in fields(ExactPriorConfig)})


@dataclass(frozen=True)
class ExactPriorSpec:
    """ToyWorld's exact posterior over a rendered dataset."""

    model: str | None = None  # a dataset file; None: the cached dataset of these settings
    resolution: int = 32  # of the cached dataset's renders
    settings: ExactPriorSettings = field(default_factory=ExactPriorSettings)
    device: str = "cpu"


PriorSpec = ToyPriorSpec | ExactPriorSpec | StableDiffusionConfig


def load_prior(spec: PriorSpec) -> DiffusionPrior:
    """The prior a spec names, loaded on its device."""
    if isinstance(spec, ToyPriorSpec):
        from ssd3d.models.unet import load_toy_prior

        return load_toy_prior(spec.model, device=spec.device)
    if isinstance(spec, ExactPriorSpec):
        return _load_exact_prior(spec)
    if isinstance(spec, StableDiffusionConfig):
        from ssd3d.priors.stable_diffusion import StableDiffusionPrior

        return StableDiffusionPrior(spec)
    raise SSD3DError(f"not a prior spec: {spec!r}")


def _load_exact_prior(spec: ExactPriorSpec) -> DiffusionPrior:
    from ssd3d.priors.exact import ExactPrior
    from ssd3d.toyworld.dataset_format import ToyDataset
    from ssd3d.toyworld.render_dataset import DatasetConfig, cached_dataset

    if spec.model is not None:
        data = ToyDataset.load(spec.model)
    else:
        data = cached_dataset(
            DatasetConfig(
                views_per_prompt=spec.settings.views_per_prompt, resolution=spec.resolution
            )
        )
    views = [data.view_names[int(v)] for v in data.view_labels]
    prior = ExactPrior(
        data.images.float() / 255,
        data.labels,
        data.prompts,
        views=views,
        config=spec.settings.adapter_config(),
    )
    return prior.to(spec.device)


__all__ = [
    "PRIOR_NAMES",
    "ExactPriorSettings",
    "ExactPriorSpec",
    "PriorSpec",
    "ToyPriorSpec",
    "load_prior",
]
