"""Scenes: what the distillation loop optimises, behind two methods.

``scene.render(cameras, shading, generator) -> RenderOutput`` and
``scene.param_groups(lr_density, lr_albedo, lr_background) -> list[dict]`` for
``torch.optim.Adam`` with one learning rate per group. Each group dict also carries a
"name" key ("density", "albedo", "background", "pixels") for logging; Adam keeps extra keys.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from ssd3d.scene.background import Background
from ssd3d.scene.cameras import Cameras
from ssd3d.scene.fields import RadianceField
from ssd3d.scene.render import RenderConfig, RenderOutput, render
from ssd3d.scene.shading import Shading

# measured.md: lr 0.05 on a 24^3 grid forms a clean cube in 600 steps (48^3 wants 0.01).
DEFAULT_LR_DENSITY = 0.05
DEFAULT_LR_ALBEDO = 0.05
# The background is a handful of SH coefficients seen by every pixel; a lower rate keeps it
# from racing the object to explain the image.
DEFAULT_LR_BACKGROUND = 0.01


@runtime_checkable
class Scene(Protocol):
    """What the loop needs from any representation (3D radiance field or 2D image)."""

    def render(
        self,
        cameras: Cameras,
        shading: Shading | None = None,
        generator: torch.Generator | None = None,
    ) -> RenderOutput: ...

    def param_groups(
        self,
        lr_density: float = DEFAULT_LR_DENSITY,
        lr_albedo: float = DEFAULT_LR_ALBEDO,
        lr_background: float = DEFAULT_LR_BACKGROUND,
    ) -> list[dict[str, Any]]: ...


def _groups(named: list[tuple[str, list[nn.Parameter], float]]) -> list[dict[str, Any]]:
    """Adam param groups, skipping empty ones (a solid background has no parameters)."""
    return [
        {"params": params, "lr": lr, "name": name} for name, params, lr in named if len(params) > 0
    ]


class RadianceScene(nn.Module):
    """A radiance field and a background, rendered with one ``RenderConfig``.

    Its ``state_dict`` holds field and background (a grown voxel grid reloads at its grown
    resolution). After ``field.grow(...)`` rebuild the optimiser from ``param_groups``.
    """

    def __init__(
        self,
        field: RadianceField,
        background: Background,
        config: RenderConfig = RenderConfig(),
    ) -> None:
        super().__init__()
        self.field = field
        self.background = background
        self.config = config

    def render(
        self,
        cameras: Cameras,
        shading: Shading | None = None,
        generator: torch.Generator | None = None,
    ) -> RenderOutput:
        """See ``ssd3d.scene.render.render``: jittered samples iff a generator is given."""
        return render(self.field, cameras, self.background, self.config, shading, generator)

    def param_groups(
        self,
        lr_density: float = DEFAULT_LR_DENSITY,
        lr_albedo: float = DEFAULT_LR_ALBEDO,
        lr_background: float = DEFAULT_LR_BACKGROUND,
    ) -> list[dict[str, Any]]:
        return _groups(
            [
                ("density", self.field.density_parameters(), lr_density),
                ("albedo", self.field.albedo_parameters(), lr_albedo),
                ("background", list(self.background.parameters()), lr_background),
            ]
        )
