"""ToyWorld's shapes: exact signed distance functions and surface samples.

Every shape is written in a local frame with x, y horizontal and z up, then placed in the
world by a cyclic permutation of the axes so that local z lands on ``UP_AXIS`` (cyclic, so
handedness and therefore the chirality of asymmetric shapes is kept). Change ``UP_AXIS`` and
nothing else to follow another up convention.

Signed distance: negative inside, positive outside, batched over points [N, 3] -> [N].
Primitives (sphere, box, capped cylinder, flat torus, extruded polygon) are exact Euclidean
distances (Inigo Quilez's formulas). The mug is built with min / max of exact pieces (cup
minus cavity, union a clipped handle): its sign is exact everywhere, but its distance is
only a lower bound, |sdf| <= true distance (min of exact parts is exact outside a union,
but a difference or intersection underestimates, e.g. above the mug's opening).

All shapes fit inside radius ``SHAPE_RADIUS`` = 0.6 of the origin (the scene cube is
[-1, 1]^3 and the pipeline's initial density blob has radius 0.5), with their bounding
boxes centred on the origin.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from skimage import measure
from torch import Tensor

from ssd3d.errors import SSD3DError

# World axis that points up (0 = x, 1 = y, 2 = z): +z, as in scene/cameras.py.
UP_AXIS = 2
# Every shape lies inside this radius (checked by the tests on surface samples).
SHAPE_RADIUS = 0.6

# Marching-cubes grid for the true surface: 96 points over [-0.7, 0.7] is a spacing of
# 0.015, a sixth of the thinnest part (the mug's handle tube, 0.09 across); the samples are
# then projected onto the exact surface, so the grid only has to get the topology right.
SURFACE_GRID_RESOLUTION = 96
SURFACE_GRID_BOUND = 0.7
# Newton steps p <- p - sdf(p) grad(p) that move marching-cubes samples onto sdf = 0.
SURFACE_PROJECTION_STEPS = 2
# Points per SDF call when filling a grid (bounded memory).
SDF_CHUNK = 262144


# --- frames ------------------------------------------------------------------------------

_H1, _H2 = (UP_AXIS + 1) % 3, (UP_AXIS + 2) % 3
_LOCAL_TO_WORLD = (_H1, _H2, UP_AXIS)  # world index of local x, y, z


def to_local(points: Tensor) -> Tensor:
    """World points [N, 3] -> local frame [N, 3] (x, y horizontal, z up)."""
    return points[..., list(_LOCAL_TO_WORLD)]


def rotate_yaw(points: Tensor, yaw_rad: float | Tensor) -> Tensor:
    """Rotate world points [N, 3] by ``yaw_rad`` about the up axis (counter-clockwise seen
    from above: the first horizontal axis turns towards the second)."""
    yaw = torch.as_tensor(yaw_rad, dtype=points.dtype, device=points.device)
    c, s = torch.cos(yaw), torch.sin(yaw)
    out = points.clone()
    out[..., _H1] = c * points[..., _H1] - s * points[..., _H2]
    out[..., _H2] = s * points[..., _H1] + c * points[..., _H2]
    return out


# --- exact primitives (local frame) ----------------------------------------------------------


def _length(*parts: Tensor) -> Tensor:
    # The clamp keeps the gradient finite (zero) where every part is 0, e.g. at a box's
    # outside corner region's boundary; it moves values by at most 1e-15.
    return torch.sqrt(sum(p * p for p in parts).clamp(min=1e-30))


def _box2(dx: Tensor, dy: Tensor) -> Tensor:
    """Exact 2D combination of two slab distances (IQ's sdBox / opExtrusion core)."""
    outside = _length(dx.clamp(min=0), dy.clamp(min=0))
    return outside + torch.maximum(dx, dy).clamp(max=0)


def sdf_sphere(p: Tensor, radius: float) -> Tensor:
    """Sphere at the origin. Exact."""
    return _length(p[:, 0], p[:, 1], p[:, 2]) - radius


def sdf_box(p: Tensor, half: tuple[float, float, float]) -> Tensor:
    """Axis-aligned box at the origin with half-extents ``half``. Exact."""
    q = p.abs() - torch.tensor(half, dtype=p.dtype, device=p.device)
    return q.clamp(min=0).norm(dim=-1) + q.max(dim=-1).values.clamp(max=0)


def sdf_cylinder(p: Tensor, radius: float, half_height: float) -> Tensor:
    """Capped cylinder about local z. Exact."""
    return _box2(_length(p[:, 0], p[:, 1]) - radius, p[:, 2].abs() - half_height)


def sdf_torus(p: Tensor, major: float, minor: float) -> Tensor:
    """Torus lying flat (axis local z). Exact."""
    return _length(_length(p[:, 0], p[:, 1]) - major, p[:, 2]) - minor


def sdf_polygon(u: Tensor, v: Tensor, vertices: tuple[tuple[float, float], ...]) -> Tensor:
    """Exact 2D signed distance to a simple polygon (IQ's sdPolygon), points (u, v) [N].

    All K edges at once: [N, K] tensors, the distance to the nearest edge and the parity of
    the edges crossed by a ray along +u (odd = inside), either winding.
    """
    vi = torch.tensor(vertices, dtype=u.dtype, device=u.device)  # [K, 2], edge i: v_i -> v_i-1
    e = vi.roll(1, dims=0) - vi  # [K, 2]
    wu, wv = u[:, None] - vi[:, 0], v[:, None] - vi[:, 1]  # [N, K]
    h = ((wu * e[:, 0] + wv * e[:, 1]) / (e * e).sum(dim=1)).clamp(0, 1)
    d2 = ((wu - e[:, 0] * h) ** 2 + (wv - e[:, 1] * h) ** 2).min(dim=1).values
    # The edge straddles v (half-open, so a vertex is counted once) and the point is on the
    # side the crossing-number test needs: all three true or all three false.
    c1 = v[:, None] >= vi[:, 1]
    c2 = v[:, None] < vi.roll(1, dims=0)[:, 1]
    c3 = e[:, 0] * wv > e[:, 1] * wu
    inside = ((c1 & c2 & c3) | (~c1 & ~c2 & ~c3)).sum(dim=1) % 2 == 1
    return torch.where(inside, -1.0, 1.0).to(u.dtype) * torch.sqrt(d2.clamp(min=1e-30))


def sdf_prism(
    p: Tensor, vertices: tuple[tuple[float, float], ...], plane: str, half_depth: float
) -> Tensor:
    """A polygon in the local ``plane`` ("yx" or "yz": polygon coordinates (u, v) are those
    local axes) extruded +-half_depth along the third local axis. Exact (IQ's opExtrusion is
    exact for an exact 2D distance)."""
    axes = {"yx": (1, 0, 2), "yz": (1, 2, 0)}[plane]
    d2 = sdf_polygon(p[:, axes[0]], p[:, axes[1]], vertices)
    return _box2(d2, p[:, axes[2]].abs() - half_depth)


# --- the vocabulary of shapes -------------------------------------------------------------
# The scene's front camera (azimuth 0) sits on +x with +y to the image's right
# (scene/cameras.py), so the asymmetric shapes point along +y: the front view shows their
# profile facing right and the back view its mirror image, the pair a Janus failure confuses.

# Wedge: a ramp whose right-triangle profile (y, z) rises towards +y (a vertical wall at +y,
# a slope facing -y), extruded along x.
WEDGE_PROFILE = ((-0.35, -0.3), (0.35, -0.3), (0.35, 0.3))
# Arrow: a flat arrow pointing along +y, outline in (y, x), 0.24 thick.
ARROW_OUTLINE = (
    (-0.45, -0.1),
    (0.05, -0.1),
    (0.05, -0.28),
    (0.45, 0.0),
    (0.05, 0.28),
    (0.05, 0.1),
    (-0.45, 0.1),
)
# Mug: an open-topped cup with a handle on its +y side.
MUG_RADIUS, MUG_HALF_HEIGHT, MUG_WALL, MUG_BOTTOM = 0.26, 0.3, 0.05, 0.08
MUG_HANDLE_MAJOR, MUG_HANDLE_MINOR = 0.14, 0.045


def _sdf_mug(p: Tensor) -> Tensor:
    """Cup minus cavity, union a clipped torus handle. Exact sign; |sdf| a distance bound."""
    cup = sdf_cylinder(p, MUG_RADIUS, MUG_HALF_HEIGHT)
    # Cavity: from the top of the bottom slab up past the rim (so the mug is open).
    cavity_bottom = -MUG_HALF_HEIGHT + MUG_BOTTOM
    cavity_half = MUG_HALF_HEIGHT  # tall enough to reach past the rim
    cavity_centre = cavity_bottom + cavity_half
    shifted = torch.stack([p[:, 0], p[:, 1], p[:, 2] - cavity_centre], dim=-1)
    cavity = sdf_cylinder(shifted, MUG_RADIUS - MUG_WALL, cavity_half)
    body = torch.maximum(cup, -cavity)
    # Handle: a torus standing in the y-z plane (axis along x) centred on the +y wall, kept
    # only outside the middle of the wall so it never shows in the cavity.
    hy = p[:, 1] - MUG_RADIUS
    ring = _length(_length(hy, p[:, 2]) - MUG_HANDLE_MAJOR, p[:, 0]) - MUG_HANDLE_MINOR
    handle = torch.maximum(ring, (MUG_RADIUS - MUG_WALL / 2) - p[:, 1])
    return torch.minimum(body, handle)


@dataclass(frozen=True)
class Shape:
    """One word of the shape vocabulary."""

    name: str  # the word used in prompts
    local_sdf: Callable[[Tensor], Tensor]  # local-frame points [N, 3] -> signed distance [N]
    exact: bool  # True: exact Euclidean distance; False: exact sign, |sdf| <= distance
    yaw_symmetric: bool  # True: unchanged by any rotation about the up axis
    # True: a render tells its front, side and back views apart (the view labels can be
    # read off an image). The cube is not yaw-symmetric but looks the same every 90
    # degrees, so, like the sphere, its view labels cannot be read off a render.
    distinct_views: bool = False


SHAPE_TABLE: dict[str, Shape] = {
    s.name: s
    for s in (
        Shape("sphere", lambda p: sdf_sphere(p, 0.45), exact=True, yaw_symmetric=True),
        Shape("cube", lambda p: sdf_box(p, (0.3, 0.3, 0.3)), exact=True, yaw_symmetric=False),
        Shape("cylinder", lambda p: sdf_cylinder(p, 0.3, 0.35), exact=True, yaw_symmetric=True),
        Shape("torus", lambda p: sdf_torus(p, 0.33, 0.13), exact=True, yaw_symmetric=True),
        Shape(
            "wedge",
            lambda p: sdf_prism(p, WEDGE_PROFILE, "yz", 0.25),
            exact=True,
            yaw_symmetric=False,
            distinct_views=True,
        ),
        Shape(
            "arrow",
            lambda p: sdf_prism(p, ARROW_OUTLINE, "yx", 0.12),
            exact=True,
            yaw_symmetric=False,
            distinct_views=True,
        ),
        Shape("mug", _sdf_mug, exact=False, yaw_symmetric=False, distinct_views=True),
    )
}
SHAPES: tuple[str, ...] = tuple(SHAPE_TABLE)
# The shapes whose view labels can be read off a render (the judge's view head learns, and
# the benchmark's multi-face score is taken, on these only).
VIEW_DISTINCT_SHAPES: tuple[str, ...] = tuple(
    s.name for s in SHAPE_TABLE.values() if s.distinct_views
)


def get_shape(name: str) -> Shape:
    """The shape called ``name``; SSD3DError listing the shapes otherwise."""
    if name not in SHAPE_TABLE:
        raise SSD3DError(f"unknown shape {name!r}; ToyWorld shapes: {', '.join(SHAPES)}")
    return SHAPE_TABLE[name]


def sdf(shape: str, points: Tensor, yaw_rad: float = 0.0) -> Tensor:
    """Signed distance [N] of world points [N, 3] to ``shape`` turned by ``yaw_rad`` about up."""
    if points.dim() != 2 or points.shape[-1] != 3:
        raise ValueError(f"points must be [N, 3], got {tuple(points.shape)}")
    if yaw_rad != 0.0:
        points = rotate_yaw(points, -yaw_rad)  # query the unrotated shape
    return get_shape(shape).local_sdf(to_local(points))


def sdf_normals(shape: str, points: Tensor, yaw_rad: float = 0.0) -> Tensor:
    """Unit outward normals [N, 3]: the normalised autograd gradient of the SDF."""
    with torch.enable_grad():
        p = points.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(sdf(shape, p, yaw_rad).sum(), p)
    return grad / grad.norm(dim=-1, keepdim=True).clamp(min=1e-12)


# --- true surface ---------------------------------------------------------------------------


@cache
def _surface_mesh_arrays(shape: str, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes of the SDF at level 0: (vertices [V, 3] world, faces [F, 3]). Cached."""
    lin = torch.linspace(-SURFACE_GRID_BOUND, SURFACE_GRID_BOUND, resolution, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(lin, lin, lin, indexing="ij"), dim=-1).reshape(-1, 3)
    values = torch.cat([sdf(shape, chunk) for chunk in grid.split(SDF_CHUNK)])
    volume = values.reshape(resolution, resolution, resolution).numpy()
    verts, faces, _, _ = measure.marching_cubes(volume, level=0.0, allow_degenerate=False)
    spacing = 2 * SURFACE_GRID_BOUND / (resolution - 1)
    return -SURFACE_GRID_BOUND + verts * spacing, faces.astype(np.int64)


def surface_mesh(shape: str, resolution: int = SURFACE_GRID_RESOLUTION):
    """The true surface as a trimesh mesh (world frame, yaw 0), from marching cubes."""
    import trimesh

    get_shape(shape)
    verts, faces = _surface_mesh_arrays(shape, resolution)
    return trimesh.Trimesh(vertices=verts.copy(), faces=faces.copy(), process=False)


def surface_points(
    shape: str,
    n: int,
    generator: torch.Generator | None = None,
    *,
    yaw_deg: float = 0.0,
    resolution: int = SURFACE_GRID_RESOLUTION,
) -> Tensor:
    """``n`` points [n, 3] (float32, CPU) uniformly distributed on the true surface.

    Area-weighted samples of the marching-cubes mesh, then ``SURFACE_PROJECTION_STEPS``
    Newton steps onto sdf = 0 (so they are on the exact surface, not the mesh), then turned
    by ``yaw_deg``. Deterministic for a given generator state.
    """
    get_shape(shape)
    if n < 1:
        raise SSD3DError(f"n must be a positive number of surface points; got {n}")
    verts_np, faces_np = _surface_mesh_arrays(shape, resolution)
    tri = torch.from_numpy(verts_np)[torch.from_numpy(faces_np)]  # [F, 3, 3] float64
    areas = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]).norm(dim=-1) / 2
    face = torch.multinomial(areas, n, replacement=True, generator=generator)
    r1, r2 = torch.rand(2, n, 1, generator=generator, dtype=torch.float64)
    s = r1.sqrt()  # uniform barycentric coordinates on a triangle
    t = tri[face]
    p = (1 - s) * t[:, 0] + s * (1 - r2) * t[:, 1] + s * r2 * t[:, 2]
    for _ in range(SURFACE_PROJECTION_STEPS):
        with torch.enable_grad():
            q = p.detach().requires_grad_(True)
            d = sdf(shape, q)
            (g,) = torch.autograd.grad(d.sum(), q)
        p = (q - d.unsqueeze(-1) * g / (g * g).sum(-1, keepdim=True).clamp(min=1e-12)).detach()
    if yaw_deg != 0.0:
        p = rotate_yaw(p, math.radians(yaw_deg))
    return p.float()
