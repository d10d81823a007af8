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

import torch
from torch import Tensor

from ssd3d.errors import SSD3DError
from ssd3d.export.mesh import DEFAULT_DENSITY_THRESHOLD, AlbedoFn, DensityFn
from ssd3d.toyworld.shapes import SHAPE_RADIUS, get_shape, rotate_yaw, sdf, surface_points
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
