"""The true object of a ToyWorld prompt as a radiance field (what the renders and metrics see)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ssd3d.errors import SSD3DError
from ssd3d.scene.fields import RadianceField
from ssd3d.toyworld.shapes import get_shape, sdf, sdf_normals
from ssd3d.toyworld.vocabulary import colour_rgb, parse_prompt

# Ground-truth density = DENSITY_SCALE * sigmoid(-sdf / SURFACE_WIDTH).
# Scale: the renderer spreads 48 samples over a ray's chord of the scene cube (2 to 3.5
# units), a step of 0.04-0.07; 100 per unit is optical depth 4-7 per step, so one sample
# inside is >= 98% opaque and the surface renders solid.
DENSITY_SCALE = 100.0
# Width: a quarter of the smallest sample step and a seventh of a pixel at 32x32 (0.07 units
# at the orbit's distance 2.25 and fov 55), so edges are sharp at the render's resolution
# while a surface falling between two samples still gives the nearer outside sample partial
# opacity instead of snapping to the sample grid. The rendered surface therefore sits about
# one width (0.01) outside sdf = 0.
SURFACE_WIDTH = 0.01


class GroundTruthField(RadianceField):
    """The true object for one prompt as a radiance field: density and albedo at points.

    ``density = density_scale * sigmoid(-sdf / surface_width)``: ``density_scale`` inside,
    0 outside, exactly ``density_scale / 2`` (``surface_density``) on sdf = 0. Albedo is the
    colour everywhere (the renderer only sees it where the density is). Normals are the
    analytic SDF normals, which equal the scene's "minus normalised density gradient".
    ``yaw_deg`` turns the object about the up axis. It has no parameters.
    """

    def __init__(
        self,
        shape: str,
        colour: str,
        *,
        yaw_deg: float = 0.0,
        density_scale: float = DENSITY_SCALE,
        surface_width: float = SURFACE_WIDTH,
    ) -> None:
        super().__init__()
        get_shape(shape)
        if not (density_scale > 0 and surface_width > 0):
            raise SSD3DError(
                f"density_scale and surface_width must be positive; got {density_scale}, "
                f"{surface_width}"
            )
        self.shape, self.colour = shape, colour
        self.yaw_rad = math.radians(yaw_deg)
        self.density_scale, self.surface_width = density_scale, surface_width
        self.register_buffer("rgb", torch.tensor(colour_rgb(colour), dtype=torch.float32))

    @classmethod
    def from_prompt(cls, prompt: str, **kwargs) -> GroundTruthField:
        """The true object of a ToyWorld prompt (a view suffix is ignored)."""
        shape, colour, _ = parse_prompt(prompt)
        return cls(shape, colour, **kwargs)

    @property
    def surface_density(self) -> float:
        """The density on the true surface: the occupancy threshold that gives sdf < 0."""
        return self.density_scale / 2

    def sdf(self, points: Tensor) -> Tensor:
        """Signed distance [N] at world points [N, 3]."""
        return sdf(self.shape, points, self.yaw_rad)

    def normals(self, points: Tensor) -> Tensor:
        """Unit outward SDF normals [N, 3] at points [N, 3] (not differentiable)."""
        return sdf_normals(self.shape, points, self.yaw_rad)

    def forward(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """points [N, 3] -> (density [N], albedo [N, 3])."""
        density = self.density_scale * torch.sigmoid(-self.sdf(points) / self.surface_width)
        albedo = self.rgb.to(points.device, points.dtype).expand(points.shape[0], 3)
        return density, albedo

    def albedo(self, points: Tensor) -> Tensor:
        """Albedo [N, 3] alone (an ``albedo_fn``)."""
        return self(points)[1]
