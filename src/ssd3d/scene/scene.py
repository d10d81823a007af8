"""The Scene protocol: what the distillation loop, the exports and the benchmark ask of any
representation, so that none of them asks which representation it is.

A representation lives in one module (``radiance.py``: a radiance field such as the voxel
grid; ``image.py``: a 2D image) and is named in ``registry.py``. Parameter groups carry their
own learning rates (from the representation's config) and a "name" for logging; Adam keeps
the extra key.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
import trimesh
from torch import Tensor, nn

from ssd3d.scene.cameras import Cameras
from ssd3d.scene.render import RenderOutput
from ssd3d.scene.shading import Shading

# The regularisers a scene may support (``ssd3d.scene.regularisers``).
REGULARISERS = ("opacity_sparsity", "orientation", "opacity_entropy")


@runtime_checkable
class Scene(Protocol):
    """Any representation the loop can optimise (an ``nn.Module``: its ``state_dict`` is
    what a checkpoint holds, and loading it restores any structural change)."""

    # The value of ``representation`` in a run's config that builds it.
    name: ClassVar[str]
    # False for a 2D image: no views, so no view-dependent prompts and no mesh.
    is_3d: ClassVar[bool]
    # Names from REGULARISERS that mean something for this representation.
    supported_regularisers: ClassVar[frozenset[str]]

    def render(
        self,
        cameras: Cameras,
        shading: Shading | None = None,
        generator: torch.Generator | None = None,
    ) -> RenderOutput: ...

    def param_groups(self) -> list[dict[str, Any]]:
        """Adam groups ``{"params", "lr", "name"}``, learning rates from the scene's config."""
        ...

    def restructure(self, step: int) -> bool:
        """Structural changes scheduled before ``step`` (grid growth, densification): True
        when the parameters changed, so the loop rebuilds its optimiser."""
        ...

    def observe_gradients(self, step: int) -> None:
        """After backward, before the optimiser step: gradient statistics (densification)."""
        ...

    def scene_losses(self) -> dict[str, tuple[float, Tensor]]:
        """The representation's own regularisers on its parameters (not on a render), as
        name -> (weight, value), added to the loss and logged like the render ones; {} when
        none are on."""
        ...

    def learning_rates(self, step: int, steps: int) -> dict[str, float]:
        """Rates the representation schedules itself at optimiser step ``step`` of a
        ``steps``-step run, by param-group name (3D Gaussians' decays); a function of the
        step only, so resume stays exact. Groups left out keep the optimiser's rate."""
        ...

    def export_mesh(self, resolution: int) -> trimesh.Trimesh:
        """The surface as a coloured, outward-wound mesh (SSD3DError when empty)."""
        ...

    def export_files(self, folder: Path) -> dict[str, Path]:
        """Files only this representation writes (e.g. a splat .ply); {} when none."""
        ...


@runtime_checkable
class VolumeScene(Scene, Protocol):
    """A 3D scene that can be queried at points: what geometric metrics need."""

    # The density level of the scene's surface (its mesh and its occupancy).
    surface_level: float
    # True when surface_level is measured from the scene's current renders each time it is
    # read (ssd3d.scene.surface), False when it is a constant of the representation's config.
    measures_surface_level: bool
    # The levels a measurement picks from (ascending).
    surface_level_candidates: tuple[float, ...]

    def density(self, points: Tensor) -> Tensor:
        """points [N, 3] -> density [N] >= 0."""
        ...

    def albedo(self, points: Tensor) -> Tensor:
        """points [N, 3] -> albedo [N, 3] in [0, 1]."""
        ...


def named_groups(
    parameters: Mapping[str, list[nn.Parameter]], lr: Mapping[str, float]
) -> list[dict[str, Any]]:
    """Adam param groups in ``parameters``' order, skipping empty ones (a solid background
    has no parameters)."""
    return [
        {"params": params, "lr": lr[name], "name": name}
        for name, params in parameters.items()
        if len(params) > 0
    ]
