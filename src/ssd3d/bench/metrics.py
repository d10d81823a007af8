"""Scores of a generated object against ToyWorld's ground truth.

Pure functions of the generated field, given as callables: ``density_fn(points [N, 3]) ->
[N]`` and ``albedo_fn(points [N, 3]) -> [N, 3]`` (and, for Chamfer, its surface as a
trimesh mesh or points [M, 3]). Nothing here knows how the object was made.

A generated object may come out turned about the up axis (the prior has no preferred
front), so the geometry is scored at the yaw that best aligns the true shape with it: IoU
is maximised over yaw, and Chamfer and colour are measured at that yaw.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from ssd3d.errors import SSD3DError
from ssd3d.export.mesh import DEFAULT_DENSITY_THRESHOLD, AlbedoFn, DensityFn
from ssd3d.scene.cameras import Cameras, surround_cameras
from ssd3d.toyworld.shapes import (
    SHAPE_RADIUS,
    get_shape,
    rotate_yaw,
    sdf,
    surface_points,
)
from ssd3d.toyworld.vocabulary import colour_rgb, parse_prompt

# Generated occupancy is density > the mesh exporter's iso-level (docs/measurements.md: "density > 1
# to 2 was best"), so the scored mesh and the scored occupancy are the same surface. (A
# GroundTruthField is exactly its shape at threshold = field.surface_density.)
DEFAULT_OCCUPANCY_THRESHOLD = DEFAULT_DENSITY_THRESHOLD
# IoU grid points per axis over [-1, 1]^3: voxel 0.031, half a pixel of a 32x32 render.
DEFAULT_IOU_RESOLUTION = 64
# Yaw candidates: every 10 degrees.
DEFAULT_N_YAW = 36
# Surface points for Chamfer and colour: enough for a ~1e-3 standard error of the means.
DEFAULT_N_SURFACE = 4096
# Points per density_fn / albedo_fn / cdist call (bounded memory).
DEFAULT_CHUNK = 65536
# Rows of the first point set per cdist block: 1024 x M floats.
CDIST_CHUNK = 1024


def grid_points(resolution: int = DEFAULT_IOU_RESOLUTION, device=None) -> Tensor:
    """Voxel centres of a resolution^3 grid over [-1, 1]^3, [resolution^3, 3]."""
    if not (isinstance(resolution, int) and resolution >= 2):
        raise SSD3DError(f"resolution must be an integer >= 2; got {resolution!r}")
    lin = -1 + (torch.arange(resolution, device=device, dtype=torch.float32) + 0.5) * (
        2 / resolution
    )
    return torch.stack(torch.meshgrid(lin, lin, lin, indexing="ij"), dim=-1).reshape(-1, 3)


def _chunked(fn: Callable[[Tensor], Tensor], points: Tensor, chunk: int) -> Tensor:
    with torch.no_grad():
        return torch.cat([fn(p) for p in points.split(chunk)])


def yaw_candidates_deg(n_yaw: int = DEFAULT_N_YAW) -> list[float]:
    """``n_yaw`` yaws evenly spaced over [0, 360) degrees, starting at 0."""
    if n_yaw < 1:
        raise SSD3DError(f"n_yaw must be >= 1; got {n_yaw}")
    return [360.0 * k / n_yaw for k in range(n_yaw)]


def iou_over_yaw(
    density_fn: DensityFn,
    shape: str,
    *,
    threshold: float = DEFAULT_OCCUPANCY_THRESHOLD,
    resolution: int = DEFAULT_IOU_RESOLUTION,
    n_yaw: int = DEFAULT_N_YAW,
    chunk: int = DEFAULT_CHUNK,
    device=None,
) -> tuple[float, float]:
    """Best 3D IoU of occupancy over yaw, and that yaw in degrees: (iou, yaw_deg).

    Generated occupancy (density > threshold) is evaluated once on the grid; the true shape
    turned by each candidate yaw is queried at the same grid points (only points within
    SHAPE_RADIUS can be inside it). Ties keep the smallest yaw; shapes symmetric under any
    yaw are scored at yaw 0 only. An empty generated field scores 0.
    """
    points = grid_points(resolution, device)
    generated = _chunked(density_fn, points, chunk).reshape(-1) > threshold
    near = points.norm(dim=-1) <= SHAPE_RADIUS + 2 / resolution
    near_points, generated_near = points[near], generated[near]
    yaws = [0.0] if get_shape(shape).yaw_symmetric else yaw_candidates_deg(n_yaw)
    # The grid turned backwards by every candidate yaw, in one batch [Y * M, 3]: one SDF pass
    # instead of one per yaw (the per-op overhead dominates at these sizes).
    queries = torch.cat([rotate_yaw(near_points, -math.radians(y)) for y in yaws])
    true = (_chunked(lambda p: sdf(shape, p), queries, chunk) < 0).reshape(len(yaws), -1)
    inter = (true & generated_near).sum(dim=1)
    union = int(generated.sum()) + true.sum(dim=1) - inter
    iou = torch.where(union > 0, inter / union.clamp(min=1), 0.0)
    best = int(iou.argmax())  # the first maximum: ties keep the smallest yaw
    best_iou, best_yaw = float(iou[best]), yaws[best]
    return best_iou, best_yaw


def chamfer_distance(a: Tensor, b: Tensor, chunk: int = CDIST_CHUNK) -> float:
    """Symmetric Chamfer distance of point sets a [N, 3] and b [M, 3].

    ``(mean_a min_b |a - b| + mean_b min_a |a - b|) / 2``: Euclidean (not squared), in
    scene units, so it reads as "the average distance to the other surface". inf when
    either set is empty. Two independent n-point samplings of one surface of area A are
    about 0.5 sqrt(A / n) apart (0.01 for the torus at n = 4096): that is the floor.
    """
    if a.shape[0] == 0 or b.shape[0] == 0:
        return math.inf
    b = b.to(a.device, a.dtype)

    def directed(x: Tensor, y: Tensor) -> Tensor:
        # Direct differences, not cdist's |x|^2 - 2 x.y + |y|^2 shortcut, whose cancellation
        # error (~1e-4 in float32) is a visible fraction of the distances measured here.
        mode = "donot_use_mm_for_euclid_dist"
        return torch.cat(
            [torch.cdist(part, y, compute_mode=mode).min(dim=1).values for part in x.split(chunk)]
        )

    return float((directed(a, b).mean() + directed(b, a).mean()) / 2)


def sample_surface(
    surface, n: int = DEFAULT_N_SURFACE, generator: torch.Generator | None = None
) -> Tensor:
    """Points [M, 3] on a generated surface given as a trimesh mesh (``n`` area-weighted
    samples, deterministic for the generator) or as points [M, 3] (returned as they are)."""
    if isinstance(surface, Tensor):
        if surface.dim() != 2 or surface.shape[-1] != 3:
            raise ValueError(f"surface points must be [M, 3], got {tuple(surface.shape)}")
        return surface
    if not hasattr(surface, "faces") or not hasattr(surface, "vertices"):
        raise ValueError(f"surface must be a trimesh mesh or points [M, 3]; got {type(surface)}")
    if len(surface.faces) == 0:
        return torch.zeros(0, 3)
    tri = torch.as_tensor(surface.vertices, dtype=torch.float64)[
        torch.as_tensor(surface.faces, dtype=torch.long)
    ]  # [F, 3, 3]
    areas = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]).norm(dim=-1)
    face = torch.multinomial(areas, n, replacement=True, generator=generator)
    r1, r2 = torch.rand(2, n, 1, generator=generator, dtype=torch.float64)
    s, t = r1.sqrt(), tri[face]
    return ((1 - s) * t[:, 0] + s * (1 - r2) * t[:, 1] + s * r2 * t[:, 2]).float()


def colour_error(
    albedo_fn: AlbedoFn, true_points: Tensor, colour: str, chunk: int = DEFAULT_CHUNK
) -> tuple[float, tuple[float, float, float]]:
    """(mean L2 RGB distance to the true colour, mean predicted colour) over true_points [N, 3].

    RGB in [0, 1]; the error is at most sqrt(3).
    """
    rgb = _chunked(albedo_fn, true_points, chunk).reshape(-1, 3).float()
    target = torch.tensor(colour_rgb(colour), device=rgb.device)
    err = (rgb - target).norm(dim=-1).mean()
    mean = rgb.mean(dim=0)
    return float(err), (float(mean[0]), float(mean[1]), float(mean[2]))


def psnr(images: Tensor, reference: Tensor) -> float:
    """PSNR in dB of images [B, 3, H, W] against reference [B, 3, H, W], both in [0, 1].

    ``-10 log10(MSE)`` with the MSE over the whole batch (peak 1). Identical batches give
    inf: no cap, so a perfect match is never confused with a merely close one.
    """
    if images.shape != reference.shape or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(
            f"psnr needs two [B, 3, H, W] batches of one shape; got {tuple(images.shape)} "
            f"and {tuple(reference.shape)}"
        )
    mse = float(((images.double() - reference.to(images.device).double()) ** 2).mean())
    return math.inf if mse == 0 else -10 * math.log10(mse)


def score_object(
    density_fn: DensityFn,
    albedo_fn: AlbedoFn,
    prompt: str,
    *,
    surface=None,
    renders: Tensor | None = None,
    true_renders: Tensor | None = None,
    threshold: float = DEFAULT_OCCUPANCY_THRESHOLD,
    resolution: int = DEFAULT_IOU_RESOLUTION,
    n_yaw: int = DEFAULT_N_YAW,
    n_surface: int = DEFAULT_N_SURFACE,
    generator: torch.Generator | None = None,
    chunk: int = DEFAULT_CHUNK,
    device=None,
) -> dict[str, float]:
    """Every metric of a generated object against the prompt's true object, in one dict.

    Keys: ``iou``, ``yaw_deg`` (the best yaw, at which the rest are measured),
    ``chamfer`` (NaN when no ``surface`` [mesh or points] is given; inf for an empty one),
    ``colour_error``, ``mean_r``/``mean_g``/``mean_b`` (mean predicted surface colour),
    ``psnr`` (NaN unless ``renders`` and ``true_renders`` [B, 3, H, W] are given) and
    ``threshold``. A view suffix on the prompt is ignored.
    """
    shape, colour, _ = parse_prompt(prompt)
    iou, yaw = iou_over_yaw(
        density_fn,
        shape,
        threshold=threshold,
        resolution=resolution,
        n_yaw=n_yaw,
        chunk=chunk,
        device=device,
    )
    true_points = surface_points(shape, n_surface, generator, yaw_deg=yaw).to(device)
    err, mean = colour_error(albedo_fn, true_points, colour, chunk)
    chamfer = math.nan
    if surface is not None:
        chamfer = chamfer_distance(sample_surface(surface, n_surface, generator), true_points)
    has_renders = renders is not None and true_renders is not None
    return {
        "iou": iou,
        "yaw_deg": yaw,
        "chamfer": chamfer,
        "colour_error": err,
        "mean_r": mean[0],
        "mean_g": mean[1],
        "mean_b": mean[2],
        "psnr": psnr(renders, true_renders) if has_renders else math.nan,
        "threshold": float(threshold),
    }


# --- metrics that do not hinge on one density threshold ------------------------------------
# A photometric or distilled density field leaves its interior density free (any value above
# a few renders opaque), so "density > 2" reads the same good surface as anything from IoU
# 0.6 to 0.95. The renders' opacity and depth, and a mesh taken at the level its exporter
# uses, are defined by what the field draws, not by one density value.

# A pixel is covered when its rendered opacity exceeds one half: the level where the object
# and the background contribute equally, so it is the same for any field that renders opaque.
DEFAULT_OPACITY_THRESHOLD = 0.5


def silhouette_iou(
    opacity: Tensor, true_opacity: Tensor, threshold: float = DEFAULT_OPACITY_THRESHOLD
) -> float:
    """IoU of covered pixels (opacity > threshold), pooled over every view.

    opacity, true_opacity: renders' opacity of one shape, e.g. [B, 1, H, W], in [0, 1], of
    the same cameras. Pooled (not a mean of per-view IoUs) so a view where the object is
    small does not weigh as much as one where it fills the frame. Two empty silhouettes
    agree: 1.
    """
    if opacity.shape != true_opacity.shape:
        raise ValueError(
            f"opacity maps differ in shape: {tuple(opacity.shape)} vs {tuple(true_opacity.shape)}"
        )
    a = opacity > threshold
    b = true_opacity.to(opacity.device) > threshold
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def depth_error(
    depth: Tensor,
    opacity: Tensor,
    true_depth: Tensor,
    true_opacity: Tensor,
    threshold: float = DEFAULT_OPACITY_THRESHOLD,
) -> float:
    """Mean |E[t | hit] - true E[t | hit]| over pixels covered in both renders (scene units).

    depth is the render's ``sum_i w_i t_i`` and opacity its ``sum_i w_i`` (so depth / opacity
    is the expected distance given the ray stops), all of one shape, e.g. [B, 1, H, W].
    Pixels covered in only one render are the silhouette's business, not this one's. NaN
    when no pixel is covered in both.
    """
    shapes = {tuple(t.shape) for t in (depth, opacity, true_depth, true_opacity)}
    if len(shapes) != 1:
        raise ValueError(f"depth and opacity maps must share one shape; got {sorted(shapes)}")
    dev = depth.device
    true_depth, true_opacity = true_depth.to(dev), true_opacity.to(dev)
    both = (opacity > threshold) & (true_opacity > threshold)
    if not bool(both.any()):
        return math.nan
    expected = depth[both] / opacity[both]
    true_expected = true_depth[both] / true_opacity[both]
    return float((expected - true_expected).abs().mean())


def sample_surface_with_normals(
    mesh, n: int = DEFAULT_N_SURFACE, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """``n`` area-weighted points [n, 3] on a trimesh mesh and its unit face normals [n, 3].

    The normals follow the faces' winding (counter-clockwise seen from outside points out,
    as ``export.extract_mesh`` winds them). A mesh without faces gives two empty [0, 3].
    """
    if len(mesh.faces) == 0:
        return torch.zeros(0, 3), torch.zeros(0, 3)
    # np.array copies: a reversed-winding view (faces[:, ::-1]) has negative strides.
    tri = torch.as_tensor(np.array(mesh.vertices), dtype=torch.float64)[
        torch.as_tensor(np.array(mesh.faces), dtype=torch.long)
    ]  # [F, 3, 3]
    cross = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    areas = cross.norm(dim=-1)
    face = torch.multinomial(areas, n, replacement=True, generator=generator)
    r1, r2 = torch.rand(2, n, 1, generator=generator, dtype=torch.float64)
    s, t = r1.sqrt(), tri[face]
    points = (1 - s) * t[:, 0] + s * (1 - r2) * t[:, 1] + s * r2 * t[:, 2]
    normals = cross[face] / areas[face, None].clamp(min=1e-30)
    return points.float(), normals.float()


# Step of the central differences that give the true surface's normals (scene units): far
# below the thinnest part (0.09) and far above float64 rounding of the distances.
NORMAL_STEP = 1e-4


def surface_normals(shape: str, points: Tensor, *, yaw_deg: float = 0.0) -> Tensor:
    """Unit outward normals [N, 3] of ``shape`` (turned by ``yaw_deg``) at points [N, 3].

    Central differences of the SDF in float64, not its autograd gradient: on the surface
    itself an extruded polygon's distance is sign * sqrt(d^2) with d^2 = 0, whose autograd
    gradient there is 0 or of either sign, while the difference across the surface is
    +h - (-h), well defined.
    """
    p = points.double()
    offsets = NORMAL_STEP * torch.eye(3, dtype=torch.float64)
    yaw = math.radians(yaw_deg)
    grad = torch.stack([sdf(shape, p + o, yaw) - sdf(shape, p - o, yaw) for o in offsets], dim=-1)
    return (grad / grad.norm(dim=-1, keepdim=True).clamp(min=1e-30)).float()


def _nearest(x: Tensor, y: Tensor, chunk: int = CDIST_CHUNK) -> tuple[Tensor, Tensor]:
    """For each row of x [N, 3]: distance to and index of its nearest row of y [M, 3]."""
    mode = "donot_use_mm_for_euclid_dist"  # see chamfer_distance: no cancellation error
    dist, index = [], []
    for part in x.split(chunk):
        d = torch.cdist(part, y, compute_mode=mode).min(dim=1)
        dist.append(d.values)
        index.append(d.indices)
    return torch.cat(dist), torch.cat(index)


def surface_metrics(
    mesh,
    shape: str,
    *,
    yaw_deg: float = 0.0,
    n_surface: int = DEFAULT_N_SURFACE,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Chamfer distance and normal consistency of a mesh against the true surface.

    ``mesh``: the generated surface (a trimesh mesh, outward-wound, e.g. ``extract_mesh`` at
    the level the field is exported at); ``shape`` turned by ``yaw_deg`` is the truth.
    ``chamfer``: as ``chamfer_distance`` (a shrunken sphere scores its loss of radius; a
    sphere shifted by d about d / 2, the mean of d |cos|). ``normal_consistency``: the mean,
    over both directions, of the dot product of each sample's outward normal with that of
    its nearest point on the other surface, in [-1, 1]: 1 for parallel surfaces, negative
    for inside-out ones (signed, unlike the |dot| of the occupancy-network papers, because
    the exporter's winding is known). inf / NaN for an empty mesh.
    """
    true_points = surface_points(shape, n_surface, generator, yaw_deg=yaw_deg)
    true_normals = surface_normals(shape, true_points, yaw_deg=yaw_deg)
    points, normals = sample_surface_with_normals(mesh, n_surface, generator)
    if points.shape[0] == 0:
        return {"chamfer": math.inf, "normal_consistency": math.nan}
    d_ab, i_ab = _nearest(points, true_points)
    d_ba, i_ba = _nearest(true_points, points)
    consistency = ((normals * true_normals[i_ab]).sum(-1).mean()) / 2 + (
        (true_normals * normals[i_ba]).sum(-1).mean()
    ) / 2
    return {
        "chamfer": float((d_ab.mean() + d_ba.mean()) / 2),
        "normal_consistency": float(consistency),
    }


# --- the space every view sees behind the surface (space carving) ---------------------------
# 3D IoU at a density level asks the field for an interior the renders never pin down (a
# hollow shell of Gaussians renders like a solid, and the best level differs from scene to
# scene). Carving asks only what the renders show: a point is occupied when every view of a
# fixed set covers it (opacity > 0.5) and sees its surface in front of it. The same carving
# of the true renders is the reference, so a scene that renders like the truth from every
# view scores 1 however its interior is filled, and a cavity counts when a view sees into it.

# 64 px: a pixel is 0.037 scene units at the object, about the IoU grid's 0.031.
CARVE_RESOLUTION = 64
# Neighbouring pixels whose depths differ by more than this straddle a depth edge (scene
# units: far above a smooth surface's change from pixel to pixel, below any gap between two
# ToyWorld surfaces behind one another).
CARVE_DEPTH_EDGE = 0.1


def carving_cameras(resolution: int = CARVE_RESOLUTION, device=None) -> Cameras:
    """The fixed views occupancy is carved from: 3 rings of 8 and the 2 poles (26 cameras)."""
    return surround_cameras(resolution, device)


def carved_occupancy(
    opacity: Tensor,
    depth: Tensor,
    cameras: Cameras,
    points: Tensor,
    threshold: float = DEFAULT_OPACITY_THRESHOLD,
    depth_tolerance: float = 0.0,
) -> Tensor:
    """Which points [P, 3] every view covers and sees behind its surface: bool [P].

    opacity, depth: the renders [B, 1, H, W] of ``cameras`` (depth the renderer's
    ``sum_i w_i t_i``, so the surface's distance along a ray is depth / opacity). Coverage is
    the bilinearly interpolated opacity above ``threshold`` (the silhouette's level); the
    surface's distance at a point's projection is the bilinear mean of the four nearest
    pixels' where they lie on one smooth surface, and the nearest of them across a depth edge
    (more than CARVE_DEPTH_EDGE apart, or a pixel off the silhouette), so the farther surface
    behind an edge never carves what lies in front of the nearer one. A point outside a view's
    image is not covered by it.
    """
    b, _, h, w = opacity.shape
    if depth.shape != opacity.shape or cameras.batch_size != b:
        raise ValueError(
            f"carving needs opacity and depth [B, 1, H, W] of B cameras; got "
            f"{tuple(opacity.shape)}, {tuple(depth.shape)} and {cameras.batch_size} cameras"
        )
    inf = torch.tensor(math.inf, device=points.device)
    occupied = torch.ones(points.shape[0], dtype=torch.bool, device=points.device)
    opacity, depth = opacity.to(points.device), depth.to(points.device)
    # The surface's distance along each pixel's ray; inf off the silhouette.
    surface = torch.where(opacity[:, 0] > threshold, depth[:, 0] / opacity[:, 0], inf)
    surface = torch.nn.functional.pad(surface, (1, 1, 1, 1), value=math.inf)  # [B, H+2, W+2]
    focal = cameras.focal_px
    for view in range(b):
        rotation, eye = cameras.c2w[view, :3, :3], cameras.c2w[view, :3, 3]
        local = (points - eye) @ rotation  # camera coordinates: looks down -z, y up
        z = (-local[:, 2]).clamp(min=1e-6)
        u = focal[view] * local[:, 0] / z + w / 2  # pixels from the left edge
        v = -focal[view] * local[:, 1] / z + h / 2  # from the top edge
        grid = torch.stack([u / w * 2 - 1, v / h * 2 - 1], dim=-1)[None, None]
        covered = torch.nn.functional.grid_sample(
            opacity[view : view + 1], grid, align_corners=False
        )[0, 0, 0]
        occupied &= covered > threshold
        # The four pixel centres around (u, v) and the bilinear weights (index 0 is the pad).
        col, row = torch.floor(u - 0.5), torch.floor(v - 0.5)
        fu, fv = (u - 0.5 - col).clamp(0, 1), (v - 0.5 - row).clamp(0, 1)
        c0 = (col.long() + 1).clamp(0, w + 1)
        c1 = (col.long() + 2).clamp(0, w + 1)
        r0 = (row.long() + 1).clamp(0, h + 1)
        r1 = (row.long() + 2).clamp(0, h + 1)
        s = surface[view]
        corners = torch.stack([s[r0, c0], s[r0, c1], s[r1, c0], s[r1, c1]], dim=-1)
        weights = torch.stack([(1 - fv) * (1 - fu), (1 - fv) * fu, fv * (1 - fu), fv * fu], -1)
        finite = torch.isfinite(corners)
        nearest = corners.amin(dim=-1)
        farthest = torch.where(finite, corners, -inf).amax(dim=-1)
        mean = (torch.where(finite, corners, 0.0) * weights).sum(-1) / (
            (weights * finite).sum(-1).clamp(min=1e-12)
        )
        smooth = finite.all(dim=-1) & (farthest - nearest < CARVE_DEPTH_EDGE)
        distance = (points - eye).norm(dim=-1)
        occupied &= distance >= torch.where(smooth, mean, nearest) - depth_tolerance
    return occupied


def occupancy_iou(a: Tensor, b: Tensor) -> float:
    """IoU of two boolean occupancies of the same points; two empty ones agree: 1."""
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union
