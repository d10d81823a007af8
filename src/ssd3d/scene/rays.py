"""Camera rays through pixel centres, clipped to the scene cube [-1, 1]^3.

Rays keep the image layout [B, H, W, ...] (row 0 is the top of the image) so that
renders reshape to [B, C, H, W] without bookkeeping; ``render`` flattens them as it needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ssd3d.scene.cameras import Cameras

# Half-width of the scene cube: the object and every field live in [-1, 1]^3.
SCENE_BOUND = 1.0


@dataclass(frozen=True)
class Rays:
    """One ray per pixel centre; points along a ray are ``origins + t * directions``."""

    origins: Tensor  # [B, H, W, 3] camera centres
    directions: Tensor  # [B, H, W, 3] unit length
    near: Tensor  # [B, H, W] where the ray enters the cube (>= 0)
    far: Tensor  # [B, H, W] where it leaves; far == near where it misses
    hit: Tensor  # [B, H, W] bool, the ray crosses the cube

    @property
    def shape(self) -> tuple[int, int, int]:
        """(B, H, W)"""
        b, h, w = self.near.shape
        return b, h, w


def camera_directions(cameras: Cameras) -> Tensor:
    """Unit directions through pixel centres in camera coordinates (OpenGL). [B, H, W, 3]"""
    h, w = cameras.height, cameras.width
    dev, dt = cameras.device, cameras.c2w.dtype
    # Pixel centres: column j at x = j + 0.5, row i at y = i + 0.5, measured from the top-left.
    x = (torch.arange(w, device=dev, dtype=dt) + 0.5 - w / 2)[None, None, :]
    y = (torch.arange(h, device=dev, dtype=dt) + 0.5 - h / 2)[None, :, None]
    f = cameras.focal_px.to(dt)[:, None, None]
    x, y = torch.broadcast_tensors(x / f, -y / f)  # image rows go down, camera y goes up
    return F.normalize(torch.stack([x, y, -torch.ones_like(x)], dim=-1), dim=-1)


def project_points(points: Tensor, cameras: Cameras, near: float) -> tuple[Tensor, Tensor, Tensor]:
    """World points [N, 3] in every camera: camera coordinates [B, N, 3], pixel coordinates
    [B, N, 2] (the pixel centres' convention of ``camera_directions``) and view depth [B, N]
    (points nearer than ``near`` are divided by ``near``)."""
    c2w = cameras.c2w.to(points)
    rotation, position = c2w[:, :3, :3], c2w[:, :3, 3]
    # Camera coordinates R^T (p - t); the camera looks down -z, so depth is -z.
    p_cam = torch.einsum("bji,bnj->bni", rotation, points[None] - position[:, None])
    depth = -p_cam[..., 2]
    d = depth.clamp(min=near)
    f = cameras.focal_px.to(points)[:, None]
    u = f * p_cam[..., 0] / d + cameras.width / 2
    v = -f * p_cam[..., 1] / d + cameras.height / 2
    return p_cam, torch.stack([u, v], dim=-1), depth


def intersect_cube(
    origins: Tensor, directions: Tensor, bound: float = SCENE_BOUND
) -> tuple[Tensor, Tensor, Tensor]:
    """Slab test against [-bound, bound]^3: (near, far, hit), each [...].

    origins, directions [..., 3]. near is clamped at 0 (a camera inside the cube starts at its
    centre); rays that miss get near = far = 0 so every sample of them has zero length.
    """
    tiny = 1e-9
    safe = torch.where(directions.abs() < tiny, torch.full_like(directions, tiny), directions)
    t1 = (-bound - origins) / safe
    t2 = (bound - origins) / safe
    near = torch.minimum(t1, t2).amax(dim=-1).clamp(min=0.0)
    far = torch.maximum(t1, t2).amin(dim=-1)
    hit = far > near
    zero = torch.zeros_like(near)
    return torch.where(hit, near, zero), torch.where(hit, far, zero), hit


def generate_rays(cameras: Cameras, bound: float = SCENE_BOUND) -> Rays:
    """World-space rays for every pixel of every camera, clipped to the scene cube."""
    rotation = cameras.c2w[:, None, None, :3, :3]  # [B, 1, 1, 3, 3]
    directions = (rotation @ camera_directions(cameras)[..., None])[..., 0]
    origins = cameras.positions[:, None, None, :].expand_as(directions)
    near, far, hit = intersect_cube(origins, directions, bound)
    return Rays(origins, directions, near, far, hit)
