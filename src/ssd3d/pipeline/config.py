"""The configuration of one text-to-3D run: a frozen dataclass per component.

Presets under ``ssd3d/configs/<prior>.yaml`` are these dataclasses written out (partially:
missing fields keep the defaults below); ``key=value`` overrides address nested fields
(``grid.resolution=32``, ``optim.lr_density=0.01``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Literal

from ssd3d.config import apply_overrides, from_dict, load_yaml, merge, nest, parse_override
from ssd3d.errors import SSD3DError
from ssd3d.estimators import SCHEDULES
from ssd3d.estimators.schedules import DEFAULT_T_MAX, DEFAULT_T_MIN
from ssd3d.export.mesh import DEFAULT_DENSITY_THRESHOLD
from ssd3d.priors.load import PRIOR_NAMES
from ssd3d.scene import CameraConfig, RenderConfig, ShadingConfig, ViewPromptConfig, VoxelGridConfig

PRIORS = PRIOR_NAMES


# The prior of `ssd3d generate` and `ssd3d batch` when none is named: the shipped toy UNet
# loads at once on any CPU; "exact" first renders its dataset (minutes).
DEFAULT_PRIOR = "toy"


@dataclass(frozen=True)
class TimestepConfig:
    """How t is drawn each step (``ssd3d.estimators.schedules``)."""

    # "uniform" (DreamFusion), "annealed" (threestudio/HiFA) or "dreamtime".
    schedule: str = "uniform"
    # threestudio's min_step_percent 0.02 / max_step_percent 0.98 of T = 1000.
    t_min: int = DEFAULT_T_MIN
    t_max: int = DEFAULT_T_MAX
    # "annealed" only: where the upper bound ends, and how it falls ("linear" or "sqrt").
    t_max_end: int = 500
    anneal: str = "linear"

    def build(self):
        if self.schedule not in SCHEDULES:
            raise SSD3DError(
                f"timesteps.schedule must be one of {', '.join(SCHEDULES)}; got {self.schedule!r}"
            )
        try:
            if self.schedule == "annealed":
                return SCHEDULES["annealed"](self.t_min, self.t_max, self.t_max_end, self.anneal)
            return SCHEDULES[self.schedule](self.t_min, self.t_max)
        except ValueError as e:
            raise SSD3DError(f"timesteps: {e}") from None


@dataclass(frozen=True)
class GrowthConfig:
    """Coarse-to-fine growth of the voxel grid: at ``steps[i]`` grow to ``resolutions[i]``."""

    steps: tuple[int, ...] = ()
    resolutions: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if len(self.steps) != len(self.resolutions):
            raise SSD3DError("growth.steps and growth.resolutions must have the same length")
        if list(self.steps) != sorted(self.steps):
            raise SSD3DError("growth.steps must be increasing")


@dataclass(frozen=True)
class BackgroundConfig:
    """What is behind the object."""

    # "solid" (fixed colour; ToyWorld renders on white) or "learned" (low-order SH of the view
    # direction, threestudio's neural environment map made smooth).
    kind: Literal["solid", "learned"] = "solid"
    colour: tuple[float, float, float] = (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class OptimConfig:
    """Adam with one learning rate per parameter group."""

    # measured.md: lr 0.05 on a 24^3 grid gives a clean shape in 600 steps; 48^3 needs 0.01.
    lr_density: float = 0.05
    lr_albedo: float = 0.05
    lr_background: float = 0.01
    # threestudio's Adam: betas (0.9, 0.99), eps 1e-15.
    betas: tuple[float, float] = (0.9, 0.99)
    eps: float = 1e-15


@dataclass(frozen=True)
class RegulariserConfig:
    """Weights of the regularisers practitioners expect (0 = off)."""

    # threestudio's sparsity sqrt(opacity^2 + 0.01): pushes empty space to stay empty.
    opacity_sparsity: float = 0.0
    # DreamFusion's orientation loss: normals must not face away from the camera.
    orientation: float = 0.0
    # Binary entropy of the opacity: pushes pixels to fully empty or fully opaque.
    opacity_entropy: float = 0.0


@dataclass(frozen=True)
class ExportConfig:
    """What a finished run writes."""

    # Marching-cubes grid per side and density level (ssd3d.export's default, measured.md:
    # density > 1 to 2 matched the true shapes best; also ToyWorld's IoU threshold).
    mesh_resolution: int = 96
    density_threshold: float = DEFAULT_DENSITY_THRESHOLD
    mesh_formats: tuple[str, ...] = ("glb", "obj", "ply")
    # Turntable video: frames per revolution, frame rate, render size in pixels.
    turntable_frames: int = 48
    fps: int = 16
    video_resolution: int = 128
    # Contact sheet: views around the object, render size in pixels.
    contact_views: int = 8
    contact_resolution: int = 96


@dataclass(frozen=True)
class ExactPriorOptions:
    """The exact prior's data (prior: exact, no ``model`` file given)."""

    # Rendered views per prompt of the cached ToyWorld dataset it reads (rendered on first
    # use; 200 takes a few minutes on 2 cores, the posterior then moves smoothly with view).
    views_per_prompt: int = 200
    # Std of a Gaussian around each stored image, in [-1, 1] pixel units: at low noise the
    # posterior then blends neighbouring views instead of snapping to one (0 = off).
    smoothing: float = 0.0

    def __post_init__(self) -> None:
        if self.views_per_prompt < 1 or self.smoothing < 0:
            raise SSD3DError(
                "exact.views_per_prompt must be >= 1 and exact.smoothing >= 0; got "
                f"{self.views_per_prompt}, {self.smoothing}"
            )


@dataclass(frozen=True)
class GenerateConfig:
    """One text-to-3D run."""

    prompt: str = ""
    # Which frozen prior: "toy" (shipped ToyWorld UNet), "exact" (ToyWorld's exact score),
    # "stable-diffusion" (diffusers, GPU recommended).
    prior: str = DEFAULT_PRIOR
    # Prior weights: a local folder or hub id (stable-diffusion), a .safetensors file (toy,
    # or a ToyWorld dataset for exact).
    model: str | None = None
    # stable-diffusion only: renders are resized to this before the VAE (SD's 512 by default).
    encode_resolution: int | None = None
    # "nerf" (voxel radiance field) or "image" (optimise pixels: quick estimator studies).
    representation: Literal["nerf", "image"] = "nerf"
    # Estimator spec for ssd3d.estimators.build_estimator.
    estimator: str = "ssd"
    # Negative prompt for estimators that need one (NFSD, CSD use_negative); "" = unconditional.
    negative_prompt: str = ""
    steps: int = 600
    # Views rendered per step, all sent through the prior in one batched call.
    views_per_step: int = 2
    seed: int = 0
    device: str = "cpu"
    # Save a checkpoint every N steps (and at the end, and on Ctrl-C).
    checkpoint_every: int = 100
    timesteps: TimestepConfig = field(default_factory=TimestepConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    view_prompts: ViewPromptConfig = field(default_factory=ViewPromptConfig)
    shading: ShadingConfig = field(default_factory=ShadingConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    grid: VoxelGridConfig = field(default_factory=VoxelGridConfig)
    growth: GrowthConfig = field(default_factory=GrowthConfig)
    background: BackgroundConfig = field(default_factory=BackgroundConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    regularisers: RegulariserConfig = field(default_factory=RegulariserConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    exact: ExactPriorOptions = field(default_factory=ExactPriorOptions)

    def __post_init__(self) -> None:
        if self.prior not in PRIORS:
            raise SSD3DError(f"unknown prior '{self.prior}' (known: {', '.join(PRIORS)})")
        if self.steps <= 0:
            raise SSD3DError(f"steps must be > 0; got {self.steps}")
        if self.views_per_step <= 0:
            raise SSD3DError(f"views_per_step must be > 0; got {self.views_per_step}")
        if self.checkpoint_every <= 0:
            raise SSD3DError(f"checkpoint_every must be > 0; got {self.checkpoint_every}")


def preset(prior: str) -> dict:
    """The preset for a prior as a plain mapping (``ssd3d/configs/<prior>.yaml``)."""
    if prior not in PRIORS:
        raise SSD3DError(f"unknown prior '{prior}' (known: {', '.join(PRIORS)})")
    with resources.as_file(resources.files("ssd3d") / "configs" / f"{prior}.yaml") as path:
        return load_yaml(path)


def resolve_config(prior: str, fields: dict, overrides: list[str]) -> GenerateConfig:
    """Preset for ``prior``, then explicit fields (from CLI options), then ``key=value``s."""
    data = merge(preset(prior), {**fields, "prior": prior})
    data = merge(data, nest([parse_override(o) for o in overrides]))
    return from_dict(GenerateConfig, data)


__all__ = [
    "DEFAULT_PRIOR",
    "BackgroundConfig",
    "ExactPriorOptions",
    "ExportConfig",
    "GenerateConfig",
    "GrowthConfig",
    "OptimConfig",
    "RegulariserConfig",
    "TimestepConfig",
    "apply_overrides",
    "preset",
    "resolve_config",
]
