"""The configuration of one text-to-3D run: a frozen dataclass per component.

Presets under ``ssd3d/configs/<prior>.yaml`` are these dataclasses written out (partially:
missing fields keep the defaults below); ``key=value`` overrides address nested fields
(``grid.resolution=32``, ``optim.lr_density=0.01``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from typing import Literal

from ssd3d.config import apply_overrides, from_dict, load_yaml, merge, nest, parse_override
from ssd3d.errors import SSD3DError
from ssd3d.estimators import SCHEDULES, build_estimator
from ssd3d.estimators.schedules import DEFAULT_T_MAX, DEFAULT_T_MIN
from ssd3d.export.mesh import DEFAULT_DENSITY_THRESHOLD, MESH_FORMATS
from ssd3d.pipeline.priors import (
    PRIOR_NAMES,
    ExactPriorSettings,
    ExactPriorSpec,
    PriorSpec,
    ToyPriorSpec,
)
from ssd3d.priors.stable_diffusion import StableDiffusionConfig
from ssd3d.priors.variational import ParticleScoreConfig
from ssd3d.scene import (
    REPRESENTATIONS,
    CameraConfig,
    GaussianConfig,
    GrowthConfig,
    MeshConfig,
    RenderConfig,
    ShadingConfig,
    ViewPromptConfig,
    VoxelGridConfig,
)

PRIORS = PRIOR_NAMES
# The largest voxel grid a run may ask for: 256^3 x 4 floats is 256 MiB of parameters, four
# times that with Adam's moments and gradients; beyond it a typo would exhaust memory.
MAX_GRID_RESOLUTION = 256


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

    # Config fields named otherwise in the schedule classes.
    _RENAMED = {"kind": "anneal"}

    def build(self):
        """The schedule object: each schedule takes the fields it declares."""
        if self.schedule not in SCHEDULES:
            raise SSD3DError(
                f"timesteps.schedule must be one of {', '.join(SCHEDULES)}; got {self.schedule!r}"
            )
        cls = SCHEDULES[self.schedule]
        values = {}
        for f in dataclasses.fields(cls):
            name = self._RENAMED.get(f.name, f.name)
            if hasattr(self, name):
                values[f.name] = getattr(self, name)
        return from_dict(cls, values, where="timesteps.")


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

    # lr 0.05 on a 24^3 grid gives a clean shape in 600 steps; 48^3 needs 0.01
    # (docs/measurements.md).
    lr_density: float = 0.05
    lr_albedo: float = 0.05
    lr_background: float = 0.01
    # threestudio's Adam: betas (0.9, 0.99), eps 1e-15.
    betas: tuple[float, float] = (0.9, 0.99)
    eps: float = 1e-15

    def __post_init__(self) -> None:
        for name in ("lr_density", "lr_albedo", "lr_background", "eps"):
            if not getattr(self, name) >= 0:  # also NaN
                raise SSD3DError(f"optim.{name} must be >= 0; got {getattr(self, name)}")
        if not all(0 <= b < 1 for b in self.betas):
            raise SSD3DError(f"optim.betas must lie in [0, 1); got {list(self.betas)}")


# A regulariser's weight: a number, or threestudio's ramp [start_step, start_value, end_value,
# end_step] (start_value before start_step, end_value after end_step, linear between).
Weight = float | tuple[int, float, float, int]


def weight_at(weight: Weight, step: int) -> float:
    """The value of a regulariser ``weight`` at ``step``."""
    if isinstance(weight, (int, float)):
        return float(weight)
    start_step, start_value, end_value, end_step = weight
    if step <= start_step:
        return start_value
    if step >= end_step:
        return end_value
    return start_value + (end_value - start_value) * (step - start_step) / (end_step - start_step)


def _weight_values(weight: Weight) -> tuple[float, ...]:
    """The values a weight takes (a ramp's lie between its two ends)."""
    return (weight,) if isinstance(weight, (int, float)) else (weight[1], weight[2])


@dataclass(frozen=True)
class RegulariserConfig:
    """Weights of the regularisers practitioners expect (0 = off), each a number or a ramp
    over the steps (``Weight``)."""

    # threestudio's sparsity sqrt(opacity^2 + 0.01): pushes empty space to stay empty.
    opacity_sparsity: Weight = 0.0
    # DreamFusion's orientation loss: normals must not face away from the camera.
    orientation: Weight = 0.0
    # Binary entropy of the opacity: pushes pixels to fully empty or fully opaque.
    opacity_entropy: Weight = 0.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            weight = getattr(self, f.name)
            if not all(v >= 0 for v in _weight_values(weight)):  # also NaN
                raise SSD3DError(f"regularisers.{f.name} must be >= 0; got {weight}")
            if not isinstance(weight, (int, float)) and not 0 <= weight[0] < weight[3]:
                raise SSD3DError(
                    f"regularisers.{f.name}: a ramp [start_step, start_value, end_value, "
                    f"end_step] needs 0 <= start_step < end_step; got {list(weight)}"
                )

    def weights(self) -> dict[str, Weight]:
        """name -> weight (a number or a ramp) of the regularisers that are on at some step."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if any(v > 0 for v in _weight_values(getattr(self, f.name)))
        }


@dataclass(frozen=True)
class ExportConfig:
    """What a finished run writes."""

    # Marching-cubes grid per side and the voxel grid's density level (ssd3d.export's default:
    # density > 1 to 2 matched the true shapes best, docs/measurements.md; also the benchmark's
    # IoU level). None: measured from the scene's renders, the level whose silhouettes match
    # what it renders (ssd3d.scene.surface), as the 3D Gaussians' mesh_threshold None.
    mesh_resolution: int = 96
    density_threshold: float | None = DEFAULT_DENSITY_THRESHOLD
    mesh_formats: tuple[str, ...] = ("glb", "obj", "ply")
    # Turntable video: frames per revolution, frame rate, render size in pixels.
    turntable_frames: int = 48
    fps: int = 16
    video_resolution: int = 128
    # Contact sheet: views around the object, render size in pixels.
    contact_views: int = 8
    contact_resolution: int = 96

    def __post_init__(self) -> None:
        unknown = [f for f in self.mesh_formats if f not in MESH_FORMATS]
        if unknown:
            raise SSD3DError(
                f"export.mesh_formats: unknown format {unknown[0]!r} (known: {', '.join(MESH_FORMATS)})"
            )
        if self.density_threshold is not None and not self.density_threshold > 0:
            raise SSD3DError(f"export.density_threshold must be > 0; got {self.density_threshold}")
        for name in (
            "mesh_resolution",
            "turntable_frames",
            "fps",
            "video_resolution",
            "contact_views",
            "contact_resolution",
        ):
            if getattr(self, name) < 1 or (name == "mesh_resolution" and self.mesh_resolution < 2):
                raise SSD3DError(f"export.{name} is too small: {getattr(self, name)}")


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
    # stable-diffusion only: torch.compile mode of the UNet and the VAE encode ("none",
    # "default", "reduce-overhead", "max-autotune"; benchmarks/sd_step.py measures each).
    compile: str = "none"
    # A name of ssd3d.scene.REPRESENTATIONS: "nerf" (voxel radiance field), "gaussians"
    # (3D Gaussian splatting), "mesh" (3D Gaussians, then their mesh refined for the last
    # mesh.steps steps) or "image" (optimise pixels: quick estimator studies).
    representation: str = "nerf"
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
    gaussians: GaussianConfig = field(default_factory=GaussianConfig)
    mesh: MeshConfig = field(default_factory=MeshConfig)
    background: BackgroundConfig = field(default_factory=BackgroundConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    regularisers: RegulariserConfig = field(default_factory=RegulariserConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    exact: ExactPriorSettings = field(default_factory=ExactPriorSettings)
    # VSD only: the particles' own score (LoRA copy of the prior, or a fitted Gaussian).
    particle_score: ParticleScoreConfig = field(default_factory=ParticleScoreConfig)

    def __post_init__(self) -> None:
        if self.prior not in PRIORS:
            raise SSD3DError(f"unknown prior '{self.prior}' (known: {', '.join(PRIORS)})")
        if self.steps <= 0:
            raise SSD3DError(f"steps must be > 0; got {self.steps}")
        if self.views_per_step <= 0:
            raise SSD3DError(f"views_per_step must be > 0; got {self.views_per_step}")
        if self.checkpoint_every <= 0:
            raise SSD3DError(f"checkpoint_every must be > 0; got {self.checkpoint_every}")
        if self.representation not in REPRESENTATIONS:
            raise SSD3DError(
                f"unknown representation {self.representation!r} "
                f"(known: {', '.join(REPRESENTATIONS)})"
            )
        largest = max((self.grid.resolution, *self.growth.resolutions))
        if largest > MAX_GRID_RESOLUTION:
            raise SSD3DError(
                f"grid resolution {largest} is above the limit {MAX_GRID_RESOLUTION} "
                "(memory grows with its cube)"
            )

    def validate(self) -> None:
        """Every check that needs more than one field, or building a component: run before
        anything is written, so that a bad config fails before step 1, not after training."""
        build_estimator(self.estimator)
        self.timesteps.build()
        if self.prior == "stable-diffusion":
            self.prior_spec()  # the SD config's own checks

    def prior_spec(self) -> PriorSpec:
        """What this run's prior loads (equal specs can share one loaded prior)."""
        if self.prior == "toy":
            return ToyPriorSpec(self.model, self.device)
        if self.prior == "exact":
            return ExactPriorSpec(self.model, self.camera.height, self.exact, self.device)
        kwargs = {"device": self.device, "compile": self.compile}
        kwargs |= {"model": self.model} if self.model else {}
        if self.encode_resolution is not None:
            kwargs["encode_resolution"] = self.encode_resolution
        return StableDiffusionConfig(**kwargs)


# A preset's section of settings that hold for one representation only, merged over the rest
# of the preset when a run picks that representation: a regulariser's weight is tuned on one
# scene's parameters and means something else on another's.
PER_REPRESENTATION = "per_representation"


def preset(prior: str, representation: str | None = None) -> dict:
    """The preset for a prior as a plain mapping (``ssd3d/configs/<prior>.yaml``), with its
    ``per_representation`` section for ``representation`` (the preset's own when None)
    merged in."""
    if prior not in PRIORS:
        raise SSD3DError(f"unknown prior '{prior}' (known: {', '.join(PRIORS)})")
    with resources.as_file(resources.files("ssd3d") / "configs" / f"{prior}.yaml") as path:
        data = load_yaml(path)
    sections = data.pop(PER_REPRESENTATION, {})
    chosen = representation or data.get("representation", GenerateConfig.representation)
    return merge(data, sections.get(chosen, {}))


def resolve_config(prior: str, fields: dict, overrides: list[str]) -> GenerateConfig:
    """Preset for ``prior`` (with its section for the chosen representation), then explicit
    fields (from CLI options), then ``key=value``s: what the user gives always wins."""
    user = merge({**fields, "prior": prior}, nest([parse_override(o) for o in overrides]))
    data = merge(preset(prior, user.get("representation")), user)
    return from_dict(GenerateConfig, data)


__all__ = [
    "DEFAULT_PRIOR",
    "BackgroundConfig",
    "ExactPriorSettings",
    "ExportConfig",
    "GenerateConfig",
    "GrowthConfig",
    "OptimConfig",
    "ParticleScoreConfig",
    "RegulariserConfig",
    "TimestepConfig",
    "apply_overrides",
    "preset",
    "resolve_config",
]
