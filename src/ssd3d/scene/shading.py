"""DreamFusion's shading modes and the random point light, chosen per view.

- "albedo":      colour = albedo (no light; DreamFusion's "albedo-only" render)
- "lambertian":  colour = albedo * (ambient + diffuse * max(0, n . l))
- "textureless": colour = ambient + diffuse * max(0, n . l)  (lambertian on white albedo)

l is the unit vector from the shaded point to the point light. Shading geometry with the
light forces the density to form surfaces whose normals make sense (DreamFusion section 3.1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ssd3d.errors import SSD3DError
from ssd3d.scene._random import rand, randn
from ssd3d.scene.cameras import Cameras
from ssd3d.scene.fields import normalize

SHADING_MODES = ("albedo", "lambertian", "textureless")

# threestudio's DiffuseWithPointLightMaterial: ambient light 0.1, diffuse light 0.9.
DEFAULT_AMBIENT = 0.1
DEFAULT_DIFFUSE = 0.9


@dataclass(frozen=True)
class ShadingConfig:
    """Per-view random shading (threestudio's point-light material and light sampler)."""

    # P(albedo) = 1 - diffuse_prob, threestudio diffuse_prob 0.75.
    albedo_prob: float = 0.25
    # P(lambertian) = diffuse_prob * (1 - textureless_prob) = 0.75 * 0.5 in threestudio.
    lambertian_prob: float = 0.375
    # P(textureless) = diffuse_prob * textureless_prob = 0.75 * 0.5 in threestudio.
    textureless_prob: float = 0.375
    # Ambient light intensity; threestudio ambient_light_color 0.1.
    ambient: float = DEFAULT_AMBIENT
    # Diffuse light intensity; threestudio diffuse_light_color 0.9.
    diffuse: float = DEFAULT_DIFFUSE
    # Light distance from the origin, uniform; same scale as the cameras (CameraConfig's
    # [2.0, 2.5]) so the light always sits outside the object and lights it from afar.
    light_distance_range: tuple[float, float] = (2.0, 3.0)
    # Std of the Gaussian jitter added to the unit camera direction before normalising (light
    # "near the camera"); threestudio "dreamfusion" strategy: std 1.0 around camera positions
    # at distance ~1.25, i.e. ~0.8 of the distance.
    light_direction_std: float = 0.8
    # Steps at the start that render albedo only (threestudio ambient_only_steps 1000 of its
    # 10k; our runs are ~600 steps, so off by default).
    albedo_only_steps: int = 0

    def __post_init__(self) -> None:
        probs = (self.albedo_prob, self.lambertian_prob, self.textureless_prob)
        if any(p < 0 for p in probs) or not math.isclose(sum(probs), 1.0, abs_tol=1e-6):
            raise SSD3DError(
                "shading probabilities (albedo_prob, lambertian_prob, textureless_prob) must be "
                f">= 0 and sum to 1; got {probs}"
            )
        lo, hi = self.light_distance_range
        if not 0 < lo <= hi:
            raise SSD3DError(
                f"light_distance_range must satisfy 0 < low <= high; got {self.light_distance_range}"
            )
        if self.light_direction_std < 0 or self.albedo_only_steps < 0:
            raise SSD3DError("light_direction_std and albedo_only_steps must be >= 0")


@dataclass(frozen=True)
class Shading:
    """How each of B views is shaded."""

    modes: tuple[str, ...]  # [B] one of SHADING_MODES
    light_positions: Tensor  # [B, 3] point light, world coordinates
    ambient: float = DEFAULT_AMBIENT
    diffuse: float = DEFAULT_DIFFUSE

    def __post_init__(self) -> None:
        bad = [m for m in self.modes if m not in SHADING_MODES]
        if bad:
            raise SSD3DError(
                f"shading mode must be one of {', '.join(SHADING_MODES)}; got {bad[0]!r}"
            )
        if self.light_positions.shape != (len(self.modes), 3):
            raise SSD3DError(
                f"light_positions must have shape [{len(self.modes)}, 3]; "
                f"got {tuple(self.light_positions.shape)}"
            )

    @property
    def textured(self) -> Tensor:
        """Views that use the albedo (all but textureless). [B] bool"""
        return torch.tensor([m != "textureless" for m in self.modes], dtype=torch.bool)

    @property
    def lit(self) -> Tensor:
        """Views that use the light, hence normals (all but albedo). [B] bool"""
        return torch.tensor([m != "albedo" for m in self.modes], dtype=torch.bool)

    @property
    def needs_normals(self) -> bool:
        return any(m != "albedo" for m in self.modes)


def fixed_shading(
    mode: str,
    cameras: Cameras,
    light_positions: Tensor | None = None,
    ambient: float = DEFAULT_AMBIENT,
    diffuse: float = DEFAULT_DIFFUSE,
) -> Shading:
    """The same mode for every view; the light defaults to a headlight at each camera."""
    if light_positions is None:
        light_positions = cameras.positions
    return Shading((mode,) * cameras.batch_size, light_positions, ambient, diffuse)


def sample_shading(
    config: ShadingConfig,
    cameras: Cameras,
    generator: torch.Generator | None = None,
    step: int | None = None,
) -> Shading:
    """Draw a mode and a point light per view (deterministic for a seeded generator).

    Before ``config.albedo_only_steps`` every view is "albedo" (the same random numbers are
    still drawn, so later steps do not depend on the warm-up length).
    """
    b, dev = cameras.batch_size, cameras.device
    u = rand((2, b), generator, dev)
    jitter = randn((b, 3), generator, dev)
    cut_albedo = config.albedo_prob
    cut_lambertian = config.albedo_prob + config.lambertian_prob
    warm = step is not None and step < config.albedo_only_steps
    modes = tuple(
        "albedo"
        if warm or x < cut_albedo
        else ("lambertian" if x < cut_lambertian else "textureless")
        for x in u[0].tolist()
    )
    towards_camera = F.normalize(cameras.positions, dim=-1)
    direction = F.normalize(towards_camera + config.light_direction_std * jitter, dim=-1)
    lo, hi = config.light_distance_range
    distance = lo + (hi - lo) * u[1]
    return Shading(modes, direction * distance[:, None], config.ambient, config.diffuse)


def _per_view(mask: list[bool], on: Tensor, off: Tensor | float) -> Tensor | float:
    """Select ``on`` for views where mask is True, ``off`` elsewhere (views on axis 0)."""
    if all(mask):
        return on
    if not any(mask):
        return off
    m = torch.tensor(mask, device=on.device).reshape(-1, *([1] * (on.dim() - 1)))
    return torch.where(m, on, off)


def shade(albedo: Tensor, normals: Tensor | None, points: Tensor, shading: Shading) -> Tensor:
    """Colour of samples under each view's shading. Returns [B, ..., 3].

    albedo, normals, points [B, ..., 3] (view first); normals may be None when no view is lit.
    """
    textured = [m != "textureless" for m in shading.modes]
    lit = [m != "albedo" for m in shading.modes]
    if not any(lit):
        return albedo  # every view is "albedo"
    if normals is None:
        raise SSD3DError("lit shading modes need normals; render computed none")
    b = points.shape[0]
    light = shading.light_positions.to(points).reshape(b, *([1] * (points.dim() - 2)), 3)
    to_light = normalize(light - points)
    cosine = (normals * to_light).sum(-1, keepdim=True).clamp(min=0.0)
    intensity = _per_view(lit, shading.ambient + shading.diffuse * cosine, 1.0)  # [B, ..., 1]
    base = _per_view(textured, albedo, 1.0)  # white where textureless
    return (base * intensity).expand_as(albedo)
