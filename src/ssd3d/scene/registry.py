"""Representations by name: the one place that lists them (a run's ``representation``)."""

from __future__ import annotations

from typing import Any

from ssd3d.errors import SSD3DError
from ssd3d.scene.gaussians import GaussianScene
from ssd3d.scene.image import ImageScene
from ssd3d.scene.mesh import GaussiansThenMesh
from ssd3d.scene.radiance import RadianceScene
from ssd3d.scene.scene import Scene

# name -> class; each has ``from_config(cfg)`` and ``describe(cfg)`` for a run's config
# (duck-typed: each reads the sections it needs, so the scene knows nothing of the pipeline).
REPRESENTATIONS: dict[str, Any] = {
    cls.name: cls for cls in (RadianceScene, GaussianScene, GaussiansThenMesh, ImageScene)
}


def build_scene(cfg: Any) -> Scene:
    """The scene of a run's config (``cfg.representation`` names it)."""
    return representation(cfg.representation).from_config(cfg)


def describe_scene(cfg: Any) -> str:
    """One line on the scene a run's config builds, for reports ("voxel grid 24³ → 32³ …")."""
    return representation(cfg.representation).describe(cfg)


def representation(name: str) -> Any:
    try:
        return REPRESENTATIONS[name]
    except KeyError:
        raise SSD3DError(
            f"unknown representation {name!r} (known: {', '.join(REPRESENTATIONS)})"
        ) from None
