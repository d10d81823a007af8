"""Volume rendering by alpha compositing (NeRF / DreamFusion), stateless and vectorised.

For S samples at distances t_i along a ray, each standing for an interval of length delta_i:

    alpha_i = 1 - exp(-sigma_i delta_i)
    T_i     = exp(-sum_{j < i} sigma_j delta_j)        (transmittance before sample i)
    w_i     = T_i alpha_i
    rgb     = sum_i w_i c_i + (1 - sum_i w_i) * background(d)

Samples are stratified between the ray's entry and exit of the scene cube: S equal bins,
one sample per bin (jittered uniformly inside it when a generator is given, at its
midpoint otherwise), and delta_i is the bin width. Because the scene is bounded there is
no "infinite last interval": a ray that crosses empty space keeps its background.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ssd3d.errors import SSD3DError
from ssd3d.scene._random import rand
from ssd3d.scene.background import Background
from ssd3d.scene.cameras import Cameras
from ssd3d.scene.fields import RadianceField
from ssd3d.scene.rays import generate_rays
from ssd3d.scene.shading import Shading, fixed_shading, shade


@dataclass(frozen=True)
class RenderConfig:
    """Sampling along rays."""

    # Samples per ray; docs/measurements.md: 48 at 32x32 keeps a step under 0.2 s on 2 cores.
    num_samples: int = 48
    # Compute normals even when no view is lit: the orientation loss and the normal map need
    # them. False saves the gradient-grid work on albedo-only steps.
    always_normals: bool = True

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise SSD3DError(f"num_samples must be >= 1; got {self.num_samples}")


@dataclass
class RenderOutput:
    """What one render returns. Per-pixel maps are [B, C, H, W]; per-sample ones [B, H, W, S]."""

    rgb: Tensor  # [B, 3, H, W] in [0, 1], composited over the background
    opacity: Tensor  # [B, 1, H, W] sum of weights, in [0, 1]
    depth: Tensor  # [B, 1, H, W] sum_i w_i t_i (0 on empty rays; divide by opacity for E[t|hit])
    # [B, 3, H, W] opacity-weighted world normals sum_i w_i n_i, in [-1, 1] (length <= 1;
    # zero on empty rays); None when normals were not computed. normal_image() maps to [0, 1].
    normal: Tensor | None
    weights: Tensor | None  # [B, H, W, S] compositing weights w_i
    sample_normals: Tensor | None  # [B, H, W, S, 3] n_i at the samples, None if not computed
    directions: Tensor | None  # [B, H, W, 3] unit ray directions

    @property
    def batch_size(self) -> int:
        return self.rgb.shape[0]


def normal_image(output: RenderOutput, background: float = 1.0) -> Tensor:
    """The normal map as an image: (n + 1) / 2 over ``background``. [B, 3, H, W] in [0, 1]"""
    if output.normal is None:
        raise SSD3DError("this render has no normals (RenderConfig.always_normals was off)")
    return (output.normal + output.opacity) / 2 + (1 - output.opacity) * background


def composite(sigma: Tensor, colour: Tensor, delta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Alpha-composite samples front to back.

    sigma [..., S] >= 0, colour [..., S, 3], delta [..., S] ->
    (weights [..., S], rgb [..., 3] without background, opacity [...]).
    """
    optical = sigma * delta
    # Exclusive cumulative sum: optical depth in front of each sample.
    before = torch.cumsum(optical, dim=-1) - optical
    weights = torch.exp(-before) * (1 - torch.exp(-optical))
    rgb = (weights[..., None] * colour).sum(dim=-2)
    return weights, rgb, weights.sum(dim=-1)


def composite_reference(
    sigma: Tensor, colour: Tensor, delta: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Slow per-ray, per-sample loop computing the same as ``composite`` (for tests).

    sigma [R, S], colour [R, S, 3], delta [R, S] -> (weights [R, S], rgb [R, 3], opacity [R]).
    """
    r, s = sigma.shape
    assert colour.shape == (r, s, 3) and delta.shape == (r, s)
    all_weights, all_rgb, all_opacity = [], [], []
    for ray in range(r):
        transmittance = sigma.new_ones(())
        rgb = sigma.new_zeros(3)
        ray_weights = []
        for i in range(s):
            alpha = 1 - torch.exp(-sigma[ray, i] * delta[ray, i])
            w = transmittance * alpha
            rgb = rgb + w * colour[ray, i]
            transmittance = transmittance * (1 - alpha)
            ray_weights.append(w)
        w_ray = torch.stack(ray_weights)
        all_weights.append(w_ray)
        all_rgb.append(rgb)
        all_opacity.append(w_ray.sum())
    return torch.stack(all_weights), torch.stack(all_rgb), torch.stack(all_opacity)


def sample_distances(
    near: Tensor,
    far: Tensor,
    num_samples: int,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Stratified distances between near and far: (t [..., S], delta [..., S]).

    Jittered uniformly within each of the S equal bins when ``generator`` is given, bin
    midpoints otherwise. delta is the bin width, the length each sample stands for.
    """
    if generator is None:
        u = torch.full((*near.shape, num_samples), 0.5, dtype=near.dtype, device=near.device)
    else:
        u = rand((*near.shape, num_samples), generator, near.device, near.dtype)
    steps = torch.arange(num_samples, dtype=near.dtype, device=near.device)
    width = (far - near)[..., None] / num_samples
    t = near[..., None] + (steps + u) * width
    return t, width.expand_as(t)


def render(
    field: RadianceField,
    cameras: Cameras,
    background: Background,
    config: RenderConfig = RenderConfig(),
    shading: Shading | None = None,
    generator: torch.Generator | None = None,
) -> RenderOutput:
    """Render every pixel of every camera in one vectorised pass.

    shading: per-view modes and lights; None renders albedo for every view. generator: given
    (training), samples are jittered inside their bins; None (evaluation), bin midpoints,
    so the render is deterministic.
    """
    rays = generate_rays(cameras)
    b, h, w = rays.shape
    s = config.num_samples
    if shading is None:
        shading = fixed_shading("albedo", cameras)
    if len(shading.modes) != b:
        raise SSD3DError(f"shading has {len(shading.modes)} views but cameras have {b}")

    t, delta = sample_distances(rays.near, rays.far, s, generator)  # [B, H, W, S]
    points = rays.origins[..., None, :] + t[..., None] * rays.directions[..., None, :]
    flat = points.reshape(-1, 3)
    with_normals = config.always_normals or shading.needs_normals
    if with_normals:
        sigma, albedo, normals = field.forward_with_normals(flat)
        normals = normals.reshape(b, h, w, s, 3)
    else:
        sigma, albedo = field(flat)
        normals = None
    sigma = sigma.reshape(b, h, w, s)
    colour = shade(albedo.reshape(b, h, w, s, 3), normals, points, shading)

    weights, rgb, opacity = composite(sigma, colour, delta)
    rgb = rgb + (1 - opacity[..., None]) * background(rays.directions)
    depth = (weights * t).sum(dim=-1)
    normal_map = None
    if normals is not None:
        normal_map = (weights[..., None] * normals).sum(dim=-2).permute(0, 3, 1, 2).contiguous()
    return RenderOutput(
        rgb=rgb.permute(0, 3, 1, 2).contiguous(),
        opacity=opacity[:, None],
        depth=depth[:, None],
        normal=normal_map,
        weights=weights,
        sample_normals=normals,
        directions=rays.directions,
    )
