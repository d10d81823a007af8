"""The true object of a ToyWorld prompt: a field for the metrics, and its true renders.

The field (density and albedo at points) is what occupancy and colour metrics query. Its
renders (``render_truth``) are what the oracle is supervised by, the datasets hold and the
render metrics compare with: by default the exact surface, sphere-traced and antialiased.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor

from ssd3d.errors import SSD3DError
from ssd3d.scene.background import Background
from ssd3d.scene.cameras import Cameras
from ssd3d.scene.fields import RadianceField
from ssd3d.scene.rays import generate_rays
from ssd3d.scene.render import RenderConfig, RenderOutput, render
from ssd3d.scene.shading import Shading, fixed_shading, shade
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
# opacity instead of snapping to the sample grid. Rendered by volume rendering, the surface
# therefore sits about one width (0.01) outside sdf = 0 head-on, and further for grazing rays
# (TRUTH_RENDERERS below).
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


# How the true object is drawn. "surface": where each ray meets sdf = 0 (sphere tracing),
# antialiased by SUPERSAMPLE^2 rays a pixel; the outline is the shape's own. "volume": the
# field above through the volume renderer (what docs/results' tables were scored against);
# its soft step's tail,
# crossed along a long chord by a grazing ray, turns opaque 0.02-0.04 outside the shape, so
# its outlines are the shape's dilated (docs/mesh.md, benchmarks/truth_halo.py).
TRUTH_RENDERERS = ("surface", "volume")
DEFAULT_TRUTH_RENDERER = "surface"
# Rays a pixel side, box-filtered: 5 x 5 a pixel, an odd count, so one ray is the pixel
# centre's and no pixel sits at exactly half coverage (with 4 x 4, a pixel an edge halves
# reads 8/16 and falls out of every "opacity > 0.5" silhouette).
SUPERSAMPLE = 5
# Sphere tracing: a ray within HIT_DISTANCE of the surface has met it (a sixtieth of a
# supersampled 32x32 pixel); one still stepping after TRACE_STEPS grazes the surface closer
# than a thousandth over a long run and is counted a miss.
HIT_DISTANCE = 1e-3
TRACE_STEPS = 256
# Samples a ray for the "volume" renderer (the soft step is 0.01 wide).
VOLUME_SAMPLES = 96


@torch.no_grad()
def trace_surface(
    field: GroundTruthField, origins: Tensor, directions: Tensor, near: Tensor, far: Tensor
) -> tuple[Tensor, Tensor]:
    """Sphere tracing from ``near`` to ``far`` along rays [N, 3]: (t [N], hit [N] bool).
    The step is the SDF itself, a lower bound on the distance to the surface for every
    ToyWorld shape (unions and differences of exact SDFs), so no ray steps through it."""
    t = near.clone()
    hit = torch.zeros_like(near, dtype=torch.bool)
    active = torch.nonzero(far > near)[:, 0]
    for _ in range(TRACE_STEPS):
        if active.numel() == 0:
            break
        distance = field.sdf(origins[active] + t[active, None] * directions[active])
        reached = distance < HIT_DISTANCE
        hit[active[reached]] = True
        t[active] = t[active] + torch.where(reached, 0.0, distance)
        active = active[~reached & (t[active] < far[active])]
    return t, hit


@torch.no_grad()
def render_truth(
    field: GroundTruthField,
    cameras: Cameras,
    background: Background,
    shading: Shading | None = None,
    renderer: str = DEFAULT_TRUTH_RENDERER,
) -> RenderOutput:
    """The true object in every camera (rgb, opacity, depth and normal maps as the volume
    renderer returns them; no per-sample maps)."""
    if renderer not in TRUTH_RENDERERS:
        raise SSD3DError(
            f"unknown truth renderer {renderer!r} (known: {', '.join(TRUTH_RENDERERS)})"
        )
    if shading is None:
        shading = fixed_shading("albedo", cameras)
    if renderer == "volume":
        return render(field, cameras, background, RenderConfig(VOLUME_SAMPLES), shading)
    s = SUPERSAMPLE
    fine = replace(cameras, width=cameras.width * s, height=cameras.height * s)
    rays = generate_rays(fine)
    b, h, w = rays.shape
    origins, directions = rays.origins.reshape(-1, 3), rays.directions.reshape(-1, 3)
    t, hit = trace_surface(field, origins, directions, rays.near.reshape(-1), rays.far.reshape(-1))
    points = origins + t[:, None] * directions
    normals = field.normals(points).reshape(b, h, w, 3)
    albedo = field.albedo(points).reshape(b, h, w, 3)
    points = points.reshape(b, h, w, 3)
    alpha = hit.to(points.dtype).reshape(b, h, w, 1)
    rgb = alpha * shade(albedo, normals, points, shading) + (1 - alpha) * background(
        rays.directions
    )

    def pooled(values: Tensor) -> Tensor:  # [B, h, w, C] fine -> [B, C, H, W] box-filtered
        return F.avg_pool2d(values.permute(0, 3, 1, 2), s)

    return RenderOutput(
        rgb=pooled(rgb),
        opacity=pooled(alpha),
        depth=pooled(alpha * t.reshape(b, h, w, 1)),
        normal=pooled(alpha * normals),
        weights=None,
        sample_normals=None,
        directions=generate_rays(cameras).directions,
    )
