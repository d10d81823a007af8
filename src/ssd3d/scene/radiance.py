"""A radiance field and a background as a ``Scene``: the representation ``nerf`` (a voxel grid
of density and albedo, grown coarse to fine on a schedule)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import trimesh
from torch import Tensor, nn

from ssd3d.errors import SSD3DError
from ssd3d.export.mesh import DEFAULT_DENSITY_THRESHOLD, density_grid, extract_mesh
from ssd3d.scene.background import Background, build_background
from ssd3d.scene.cameras import Cameras
from ssd3d.scene.fields import RadianceField, VoxelGridField
from ssd3d.scene.render import RenderConfig, RenderOutput, render
from ssd3d.scene.scene import REGULARISERS, named_groups
from ssd3d.scene.shading import Shading, fixed_shading
from ssd3d.scene.surface import (
    SURFACE_GRID_RESOLUTION,
    VIEW_RESOLUTION,
    measure_surface_level,
)

# lr 0.05 on a 24^3 grid forms a clean cube in 600 steps; 48^3 wants 0.01
# (docs/measurements.md). The background is a handful of SH coefficients seen by every
# pixel: its lower rate keeps it from racing the object to explain the image.
DEFAULT_LR = {"density": 0.05, "albedo": 0.05, "background": 0.01}
# The levels a measured surface is picked from: a quarter of an octave apart, 0.5 to 8 about
# the fixed density 2 (the fits measured in docs/results/surface-level.md lay between 2 and 6).
SURFACE_LEVEL_CANDIDATES = tuple(DEFAULT_DENSITY_THRESHOLD * 2 ** (k / 4) for k in range(-8, 9))
# The measurement's renders sample along jittered rays; one fixed seed makes the level a
# function of the field alone.
SURFACE_RENDER_SEED = 0


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


class RadianceScene(nn.Module):
    """A radiance field and a background, rendered with one ``RenderConfig``.

    Its ``state_dict`` holds field and background (a grown voxel grid reloads at its grown
    resolution). ``restructure`` grows a voxel grid at the steps of ``growth``.
    """

    name: ClassVar[str] = "nerf"
    is_3d: ClassVar[bool] = True
    supported_regularisers: ClassVar[frozenset[str]] = frozenset(REGULARISERS)

    def __init__(
        self,
        field: RadianceField,
        background: Background,
        config: RenderConfig = RenderConfig(),
        *,
        lr: Mapping[str, float] = DEFAULT_LR,
        growth: GrowthConfig = GrowthConfig(),
        surface_level: float | None = DEFAULT_DENSITY_THRESHOLD,
    ) -> None:
        super().__init__()
        self.field = field
        self.background = background
        self.config = config
        self.lr = {**DEFAULT_LR, **lr}
        self.growth = growth
        # None: measured from the renders each time it is read (``measure_surface_level``).
        self.fixed_surface_level = surface_level

    # The ladder ``measure_surface_level`` picks from.
    surface_level_candidates = SURFACE_LEVEL_CANDIDATES

    @property
    def measures_surface_level(self) -> bool:
        return self.fixed_surface_level is None

    @classmethod
    def from_config(cls, cfg: Any) -> RadianceScene:
        """From a run's config (its ``grid``, ``growth``, ``render``, ``background``,
        ``optim`` and ``export`` sections)."""
        optim = cfg.optim
        return cls(
            VoxelGridField(cfg.grid),
            build_background(cfg.background.kind, cfg.background.colour),
            cfg.render,
            lr={
                "density": optim.lr_density,
                "albedo": optim.lr_albedo,
                "background": optim.lr_background,
            },
            growth=cfg.growth,
            surface_level=cfg.export.density_threshold,
        )

    @staticmethod
    def describe(cfg: Any) -> str:
        grid = f"voxel grid {cfg.grid.resolution}³"
        for step, resolution in zip(cfg.growth.steps, cfg.growth.resolutions, strict=True):
            grid += f" → {resolution}³ at step {step}"
        return grid

    def render(
        self,
        cameras: Cameras,
        shading: Shading | None = None,
        generator: torch.Generator | None = None,
    ) -> RenderOutput:
        """See ``ssd3d.scene.render.render``: jittered samples iff a generator is given."""
        return render(self.field, cameras, self.background, self.config, shading, generator)

    def param_groups(self) -> list[dict[str, Any]]:
        return named_groups(
            {
                "density": self.field.density_parameters(),
                "albedo": self.field.albedo_parameters(),
                "background": list(self.background.parameters()),
            },
            self.lr,
        )

    def restructure(self, step: int) -> bool:
        if step not in self.growth.steps:
            return False
        if not isinstance(self.field, VoxelGridField):
            raise SSD3DError("growth needs a voxel grid field")
        self.field.grow(self.growth.resolutions[self.growth.steps.index(step)])
        return True

    def observe_gradients(self, step: int) -> None:
        return None

    def scene_losses(self) -> dict[str, tuple[float, Tensor]]:
        return {}

    def learning_rates(self, step: int, steps: int) -> dict[str, float]:
        return {}

    def density(self, points: Tensor) -> Tensor:
        return self.field.density(points)

    def albedo(self, points: Tensor) -> Tensor:
        return self.field(points)[1]

    @property
    def surface_level(self) -> float:
        """The density of the mesh's surface (and of occupancy): ``export.density_threshold``,
        or when that is None the level measured from renders all round (a few seconds)."""
        if self.fixed_surface_level is not None:
            return self.fixed_surface_level
        return self.measure_surface_level()

    def measure_surface_level(self, resolution: int = VIEW_RESOLUTION) -> float:
        """The level whose level set draws the silhouettes this field renders
        (``ssd3d.scene.surface``), from views of ``resolution`` px."""
        device = self._device()

        def opacity(cameras: Cameras) -> Tensor:
            generator = torch.Generator().manual_seed(SURFACE_RENDER_SEED)
            cameras = cameras.to(device)
            shading = fixed_shading("albedo", cameras)
            return self.render(cameras, shading, generator=generator).opacity.cpu()

        grid = density_grid(self.density, resolution=SURFACE_GRID_RESOLUTION, device=device)
        return measure_surface_level(
            opacity, torch.from_numpy(grid), self.surface_level_candidates, resolution
        )

    def _device(self) -> torch.device:
        return next(iter(self.field.state_dict().values())).device

    def export_mesh(self, resolution: int) -> trimesh.Trimesh:
        device = self._device()
        return extract_mesh(
            self.density,
            self.albedo,
            resolution=resolution,
            threshold=self.surface_level,
            device=device,
        )

    def export_files(self, folder: Path) -> dict[str, Path]:
        return {}
