"""The density level of a scene's surface, measured from what the scene renders.

A volume's mesh and its occupancy are a level set of its density, but which level is the
surface is a convention the renders do not fix. For 3D Gaussians it is fragile: a solid of
many translucent Gaussians has a summed density inside that depends on how many overlap
there, so it sinks under a fixed level when a regulariser or a long run thins the opacities,
and the level that best matches the shape moves from fit to fit (docs/results/surface-level.md).

``silhouette_level`` asks the renders instead: seen from views all round the object, the
level set's silhouette (the pixels whose ray meets density above the level) should be the
silhouette the scene renders (opacity above one half). Of a ladder of candidate levels it
picks the one whose silhouettes overlap the rendered ones best. It needs no ground truth, so
a run's exported mesh and the benchmark's scores use the same measured level.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ssd3d.errors import SSD3DError
from ssd3d.scene.cameras import Cameras, surround_cameras
from ssd3d.scene.rays import SCENE_BOUND, generate_rays

# The rendered silhouette: opacity above one half, as the benchmark's silhouette IoU.
SILHOUETTE_OPACITY = 0.5
# Samples per ray through the scene cube: the longest chord (its diagonal, 3.5 units) at
# 0.014 a sample, finer than a 96^3 grid's spacing, so no crossing of the level is missed.
RAY_SAMPLES = 256
# The views a level is measured from: ``surround_cameras`` at 64 px (a pixel is 0.037 units at
# the object, about the 64^3 IoU grid's spacing).
VIEW_RESOLUTION = 64
# The density grid a level is measured on: 0.021 units a node over the scene cube, finer than
# the 64 px views' pixel.
SURFACE_GRID_RESOLUTION = 96


def peak_density(grid: Tensor, cameras: Cameras, bound: float = SCENE_BOUND) -> Tensor:
    """The largest trilinearly interpolated density along each pixel's ray. [B, H, W]

    grid: density [D, D, D] at the nodes of ``ssd3d.export.mesh.density_grid`` (axis 0 is x,
    endpoints at +-bound included). A pixel's ray meets the level set {density > L} exactly
    when its peak exceeds L, so one pass serves every candidate level.
    """
    if grid.dim() != 3 or len(set(grid.shape)) != 1:
        raise SSD3DError(f"density grid must be [D, D, D]; got {tuple(grid.shape)}")
    cameras = cameras.to(grid.device)
    rays = generate_rays(cameras, bound)
    s = torch.linspace(0.0, 1.0, RAY_SAMPLES, device=grid.device, dtype=grid.dtype)
    # grid_sample reads a [N, C, D_z, H_y, W_x] volume at (x, y, z) in [-1, 1].
    volume = grid.permute(2, 1, 0)[None, None]
    b, h, w = rays.shape
    peaks = []
    for view in range(b):  # one view at a time: [H, W, S, 3] points, not [B, H, W, S, 3]
        near, far = rays.near[view, ..., None], rays.far[view, ..., None]
        t = near + (far - near) * s  # [H, W, S]
        points = (
            rays.origins[view, ..., None, :] + t[..., None] * rays.directions[view, ..., None, :]
        )
        coords = (points / bound).reshape(1, h, w * RAY_SAMPLES, 1, 3).to(grid.dtype)
        values = F.grid_sample(volume, coords, align_corners=True)
        peaks.append(values.reshape(h, w, RAY_SAMPLES).amax(dim=-1))
    # A ray that misses the cube (near = far = 0) only samples its camera's position, outside
    # the grid; it sees nothing.
    return torch.stack(peaks) * rays.hit


def silhouette_level(
    grid: Tensor,
    opacity: Tensor,
    cameras: Cameras,
    candidates: Sequence[float],
    bound: float = SCENE_BOUND,
) -> float:
    """The candidate level whose silhouettes best match the rendered ones.

    grid: the scene's density [D, D, D] (``peak_density``); opacity: the scene's renders
    [B, 1, H, W] of ``cameras``. The score of a level is the IoU, pooled over every view's
    pixels, of the level set's silhouettes with opacity > 0.5; ties go to the lowest level.
    A scene that renders nothing matches the highest candidate (its emptiest level set).
    """
    if len(candidates) == 0 or not all(c > 0 for c in candidates):
        raise SSD3DError(f"surface level candidates must be positive densities; got {candidates}")
    if opacity.dim() != 4 or opacity.shape[0] != cameras.batch_size:
        raise SSD3DError(
            f"opacity must be [B, 1, H, W] of the {cameras.batch_size} cameras; "
            f"got {tuple(opacity.shape)}"
        )
    rendered = opacity[:, 0].to(grid.device) > SILHOUETTE_OPACITY
    if not rendered.any():
        return float(max(candidates))
    peaks = peak_density(grid, cameras, bound)
    best, best_iou = max(candidates), -1.0
    for level in sorted(candidates):
        drawn = peaks > level
        union = int((drawn | rendered).sum())
        iou = 1.0 if union == 0 else int((drawn & rendered).sum()) / union
        if iou > best_iou:
            best, best_iou = level, iou
    return float(best)


def measure_surface_level(
    render_opacity: Callable[[Cameras], Tensor],
    grid: Tensor,
    candidates: Sequence[float],
    resolution: int = VIEW_RESOLUTION,
) -> float:
    """``silhouette_level`` of a scene from the views all round it: ``render_opacity`` maps
    cameras to the scene's opacity [B, 1, H, W] (deterministic, so the level is too), ``grid``
    is its density [D, D, D] over the scene cube."""
    cameras = surround_cameras(resolution, grid.device)
    with torch.no_grad():
        opacity = render_opacity(cameras)
    return silhouette_level(grid, opacity, cameras, candidates)


__all__ = [
    "SURFACE_GRID_RESOLUTION",
    "VIEW_RESOLUTION",
    "measure_surface_level",
    "peak_density",
    "silhouette_level",
]
