"""Cameras: random training views, turntable orbits, and view-dependent prompt labels.

Conventions (threestudio's, so DreamFusion / threestudio users read the numbers the same way):

- World up is **+z**. The object sits at the origin inside the cube [-1, 1]^3.
- A camera at elevation e, azimuth a and distance d sits at
  ``d * (cos e cos a, cos e sin a, sin e)`` and looks at the origin: azimuth 0 sees the
  object's front from +x, azimuth 90 sees it from +y (counter-clockwise seen from above),
  elevation 90 looks straight down.
- ``c2w`` [B, 4, 4] maps camera to world coordinates in the OpenGL convention: the camera's
  x axis points right in the image, y points up, and the camera looks down its -z axis.
- ``fov_deg`` is the vertical field of view (threestudio's ``fovy``); pixels are square.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ssd3d.errors import SSD3DError
from ssd3d.scene._random import rand

# Radius of the sphere that circumscribes the scene cube [-1, 1]^3.
CUBE_CIRCUMRADIUS = math.sqrt(3.0)


@dataclass(frozen=True)
class CameraConfig:
    """How training views are sampled (threestudio's random-camera data module, simplified).

    threestudio's camera/centre/up perturbations are left out: at 32x32 a 0.1 jitter of the
    look-at point moves the object by about a pixel and only adds noise to the comparison of
    estimators.
    """

    # Image width in pixels; docs/measurements.md: 32x32 keeps a step near 0.2 s on 2 CPU cores.
    width: int = 32
    # Image height in pixels.
    height: int = 32
    # Camera distance from the origin, uniform in [low, high]. An object of radius r fills
    # tan(asin(r / d)) / tan(fov / 2) of the frame height: for r = 0.6 that is 86% at d 2.0,
    # fov 40 and 35% at d 2.5, fov 70, so the object is always well inside a 32x32 frame and
    # never much smaller than a third of it. d > sqrt(3) also keeps the camera outside the
    # scene cube. (threestudio's [1.5, 2.0] is for its radius-2 bounding box.)
    distance_range: tuple[float, float] = (2.0, 2.5)
    # Vertical field of view in degrees, uniform in [low, high]; threestudio dreamfusion fovy_range.
    fov_range_deg: tuple[float, float] = (40.0, 70.0)
    # Elevation in degrees (0 = horizon, 90 = straight down); threestudio dreamfusion [-10, 90].
    elevation_range_deg: tuple[float, float] = (-10.0, 90.0)
    # Azimuth in degrees (0 = front, from +x); threestudio dreamfusion [-180, 180].
    azimuth_range_deg: tuple[float, float] = (-180.0, 180.0)
    # Probability that a view's elevation is drawn uniformly on the sphere (area-uniform, fewer
    # top views) instead of uniformly in degrees; threestudio mixes the two 50/50 (per batch,
    # here per view).
    sphere_uniform_prob: float = 0.5
    # Stratify the azimuths of a batch over the range (one per equal slice, in order);
    # threestudio batch_uniform_azimuth = True. Guarantees a batch of 4 sees every side.
    stratified_azimuth: bool = True

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1:
            raise SSD3DError(
                f"camera width and height must be >= 1; got {self.width}x{self.height}"
            )
        _check_range("distance_range", self.distance_range, 0.0, math.inf, open_low=True)
        _check_range("fov_range_deg", self.fov_range_deg, 0.0, 180.0, open_low=True, open_high=True)
        _check_range("elevation_range_deg", self.elevation_range_deg, -90.0, 90.0)
        _check_range("azimuth_range_deg", self.azimuth_range_deg, -math.inf, math.inf)
        if not 0.0 <= self.sphere_uniform_prob <= 1.0:
            raise SSD3DError(
                f"sphere_uniform_prob must be in [0, 1]; got {self.sphere_uniform_prob}"
            )


def _check_range(
    name: str,
    value: tuple[float, float],
    low: float,
    high: float,
    open_low: bool = False,
    open_high: bool = False,
) -> None:
    if len(value) != 2 or value[0] > value[1]:
        raise SSD3DError(f"{name} must be (low, high) with low <= high; got {value}")
    too_low = value[0] <= low if open_low else value[0] < low
    too_high = value[1] >= high if open_high else value[1] > high
    if too_low or too_high:
        lo, hi = ("(" if open_low else "["), (")" if open_high else "]")
        raise SSD3DError(f"{name} must lie in {lo}{low}, {high}{hi}; got {value}")


@dataclass(frozen=True)
class Cameras:
    """A batch of B pinhole cameras looking at the origin (see the module docstring)."""

    c2w: Tensor  # [B, 4, 4] camera-to-world, OpenGL convention (looks down -z, y up)
    fov_deg: Tensor  # [B] vertical field of view in degrees
    elevation_deg: Tensor  # [B]
    azimuth_deg: Tensor  # [B]
    distance: Tensor  # [B] distance from the origin
    width: int  # pixels
    height: int  # pixels

    def __post_init__(self) -> None:
        b = self.c2w.shape[0]
        if self.c2w.shape != (b, 4, 4):
            raise SSD3DError(f"c2w must have shape [B, 4, 4]; got {tuple(self.c2w.shape)}")
        for name in ("fov_deg", "elevation_deg", "azimuth_deg", "distance"):
            if getattr(self, name).shape != (b,):
                raise SSD3DError(
                    f"{name} must have shape [{b}]; got {tuple(getattr(self, name).shape)}"
                )

    @property
    def batch_size(self) -> int:
        return self.c2w.shape[0]

    @property
    def device(self) -> torch.device:
        return self.c2w.device

    @property
    def positions(self) -> Tensor:
        """Camera centres in world coordinates. [B, 3]"""
        return self.c2w[:, :3, 3]

    @property
    def focal_px(self) -> Tensor:
        """Focal length in pixels, from the vertical fov. [B]"""
        return 0.5 * self.height / torch.tan(torch.deg2rad(self.fov_deg) / 2)

    def to(self, device: torch.device | str) -> Cameras:
        return Cameras(
            self.c2w.to(device),
            self.fov_deg.to(device),
            self.elevation_deg.to(device),
            self.azimuth_deg.to(device),
            self.distance.to(device),
            self.width,
            self.height,
        )

    def __getitem__(self, index: int | slice | Tensor) -> Cameras:
        """A sub-batch (an int keeps the batch dimension: B = 1)."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return Cameras(
            self.c2w[index],
            self.fov_deg[index],
            self.elevation_deg[index],
            self.azimuth_deg[index],
            self.distance[index],
            self.width,
            self.height,
        )


def look_at(eye: Tensor, target: Tensor | None = None, up: Tensor | None = None) -> Tensor:
    """Camera-to-world matrices for cameras at ``eye`` looking at ``target``. [B, 4, 4]

    eye [B, 3]; target [B, 3] or [3] (default the origin); up [3] (default +z). Where the
    view direction is parallel to ``up`` (looking straight down), +x stands in for ``up``'s
    role so the matrix stays a rotation.
    """
    if eye.dim() != 2 or eye.shape[-1] != 3:
        raise SSD3DError(f"eye must have shape [B, 3]; got {tuple(eye.shape)}")
    target = eye.new_zeros(3) if target is None else target.to(eye)
    up = eye.new_tensor([0.0, 0.0, 1.0]) if up is None else up.to(eye)
    forward = F.normalize(target.expand_as(eye) - eye, dim=-1)
    right = torch.linalg.cross(forward, up.expand_as(eye), dim=-1)
    degenerate = right.norm(dim=-1, keepdim=True) < 1e-6
    alt = torch.linalg.cross(forward, eye.new_tensor([1.0, 0.0, 0.0]).expand_as(eye), dim=-1)
    right = F.normalize(torch.where(degenerate, alt, right), dim=-1)
    return _c2w(right, forward, eye)


def _c2w(right: Tensor, forward: Tensor, eye: Tensor) -> Tensor:
    """Assemble [B, 4, 4] from unit right and forward vectors; up completes the frame."""
    back = -forward
    cam_up = torch.linalg.cross(back, right, dim=-1)  # right x up = back (right-handed)
    c2w = torch.zeros(eye.shape[0], 4, 4, dtype=eye.dtype, device=eye.device)
    c2w[:, :3, 0] = right
    c2w[:, :3, 1] = cam_up
    c2w[:, :3, 2] = back
    c2w[:, :3, 3] = eye
    c2w[:, 3, 3] = 1.0
    return c2w


def spherical_cameras(
    elevation_deg: Tensor,
    azimuth_deg: Tensor,
    distance: Tensor,
    fov_deg: Tensor,
    width: int,
    height: int,
) -> Cameras:
    """Cameras on spheres around the origin, looking at it. All angle/distance inputs [B].

    The image's right vector is the horizontal tangent (-sin a, cos a, 0), so the frame is
    well defined (and continuous in elevation) even looking straight down.
    """
    elev, azim = torch.deg2rad(elevation_deg), torch.deg2rad(azimuth_deg)
    eye = distance[:, None] * torch.stack(
        [torch.cos(elev) * torch.cos(azim), torch.cos(elev) * torch.sin(azim), torch.sin(elev)],
        dim=-1,
    )
    right = torch.stack([-torch.sin(azim), torch.cos(azim), torch.zeros_like(azim)], dim=-1)
    forward = -torch.stack(
        [torch.cos(elev) * torch.cos(azim), torch.cos(elev) * torch.sin(azim), torch.sin(elev)],
        dim=-1,
    )
    return Cameras(
        _c2w(right, forward, eye), fov_deg, elevation_deg, azimuth_deg, distance, width, height
    )


def _uniform(low: float, high: float, u: Tensor) -> Tensor:
    return low + (high - low) * u


def sample_cameras(
    config: CameraConfig,
    batch: int,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Cameras:
    """Draw ``batch`` random training cameras (deterministic for a seeded generator)."""
    if batch < 1:
        raise SSD3DError(f"camera batch must be >= 1; got {batch}")
    # One fixed block of draws per call, whatever the config, so a seed means the same views.
    u = rand((5, batch), generator, device)
    lo, hi = config.elevation_range_deg
    elev_degrees = _uniform(lo, hi, u[0])
    # Area-uniform on the sphere: sin(elevation) uniform between the sines of the bounds.
    s_lo, s_hi = math.sin(math.radians(lo)), math.sin(math.radians(hi))
    elev_sphere = torch.rad2deg(torch.asin(_uniform(s_lo, s_hi, u[0]).clamp(-1.0, 1.0)))
    elevation = torch.where(u[1] < config.sphere_uniform_prob, elev_sphere, elev_degrees)
    a_lo, a_hi = config.azimuth_range_deg
    if config.stratified_azimuth:
        slot = torch.arange(batch, device=u.device, dtype=u.dtype)
        azimuth = _uniform(a_lo, a_hi, (slot + u[2]) / batch)
    else:
        azimuth = _uniform(a_lo, a_hi, u[2])
    distance = _uniform(*config.distance_range, u[3])
    fov = _uniform(*config.fov_range_deg, u[4])
    return spherical_cameras(elevation, azimuth, distance, fov, config.width, config.height)


# Evaluation / turntable defaults: the middle of the training ranges, seen slightly from above.
ORBIT_ELEVATION_DEG = 15.0
ORBIT_DISTANCE = 2.25
ORBIT_FOV_DEG = 55.0


def orbit_cameras(
    n: int,
    elevation_deg: float = ORBIT_ELEVATION_DEG,
    distance: float = ORBIT_DISTANCE,
    fov_deg: float = ORBIT_FOV_DEG,
    width: int = 32,
    height: int = 32,
    device: torch.device | str = "cpu",
) -> Cameras:
    """``n`` cameras evenly spaced in azimuth (0, 360/n, ...), starting at the front (0 deg).

    Azimuths are wrapped into [-180, 180).
    """
    if n < 1:
        raise SSD3DError(f"orbit needs n >= 1 views; got {n}")
    if not -90.0 <= elevation_deg <= 90.0:
        raise SSD3DError(f"orbit elevation_deg must lie in [-90, 90]; got {elevation_deg}")
    if distance <= 0 or not 0 < fov_deg < 180:
        raise SSD3DError(
            f"orbit needs distance > 0 and fov_deg in (0, 180); got {distance}, {fov_deg}"
        )
    azimuth = torch.arange(n, dtype=torch.float32, device=device) * (360.0 / n)
    azimuth = wrap_azimuth(azimuth)
    full = torch.full_like
    return spherical_cameras(
        full(azimuth, elevation_deg),
        azimuth,
        full(azimuth, distance),
        full(azimuth, fov_deg),
        width,
        height,
    )


# Views all round the object, for what is measured from renders rather than trained on
# (space carving, the surface level): three rings of 8 (the middle one the orbit's 15 degrees,
# the others turned by half a step) and the two poles, so every face of a ToyWorld shape is
# seen within about 30 degrees of its normal, the tops and bottoms included.
SURROUND_ELEVATIONS_DEG = (-30.0, 15.0, 60.0)
SURROUND_RING_VIEWS = 8
SURROUND_POLE_DEG = 89.9  # straight down and up (the frame is defined at 90; 89.9 keeps yaw 0)


def surround_cameras(resolution: int, device: torch.device | str | None = None) -> Cameras:
    """26 square views at the orbit's distance and field of view: 3 rings of 8 and 2 poles."""
    elevation, azimuth = [], []
    for ring, elev in enumerate(SURROUND_ELEVATIONS_DEG):
        offset = 0.5 * (ring % 2) * 360.0 / SURROUND_RING_VIEWS
        for k in range(SURROUND_RING_VIEWS):
            elevation.append(elev)
            azimuth.append(offset + 360.0 * k / SURROUND_RING_VIEWS)
    elevation += [SURROUND_POLE_DEG, -SURROUND_POLE_DEG]
    azimuth += [0.0, 0.0]
    elev = torch.tensor(elevation, device=device)
    azim = torch.tensor(azimuth, device=device)
    return spherical_cameras(
        elev,
        azim,
        torch.full_like(elev, ORBIT_DISTANCE),
        torch.full_like(elev, ORBIT_FOV_DEG),
        resolution,
        resolution,
    )


def wrap_azimuth(azimuth_deg: Tensor) -> Tensor:
    """Azimuth in degrees wrapped into [-180, 180)."""
    return torch.remainder(azimuth_deg + 180.0, 360.0) - 180.0


# ---------------------------------------------------------------------------------------------
# View-dependent prompting (DreamFusion section 3.2; thresholds from threestudio's prompt
# processor: front_threshold 45, back_threshold 45, overhead_threshold 60).

VIEW_LABELS = ("front", "side", "back", "overhead")


@dataclass(frozen=True)
class ViewPromptConfig:
    """Whether and how a view's direction is appended to the prompt."""

    # Append ", <label> view" to the prompt (DreamFusion); False turns view prompting off.
    enabled: bool = True
    # front if |azimuth| < this (strict); threestudio front_threshold.
    front_threshold_deg: float = 45.0
    # back if |azimuth| > 180 - this (strict); threestudio back_threshold.
    back_threshold_deg: float = 45.0
    # overhead if elevation > this (strict), whatever the azimuth; threestudio overhead_threshold.
    overhead_threshold_deg: float = 60.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.front_threshold_deg <= 180.0 - self.back_threshold_deg <= 180.0:
            raise SSD3DError(
                "view thresholds need 0 <= front_threshold_deg <= 180 - back_threshold_deg; "
                f"got front {self.front_threshold_deg}, back {self.back_threshold_deg}"
            )


def view_label(
    elevation_deg: float, azimuth_deg: float, config: ViewPromptConfig = ViewPromptConfig()
) -> str:
    """The label ("front", "side", "back", "overhead") of one view; azimuth 0 = front."""
    if elevation_deg > config.overhead_threshold_deg:
        return "overhead"
    azimuth = (azimuth_deg + 180.0) % 360.0 - 180.0
    if abs(azimuth) < config.front_threshold_deg:
        return "front"
    if abs(azimuth) > 180.0 - config.back_threshold_deg:
        return "back"
    return "side"


def view_labels(
    cameras: Cameras, config: ViewPromptConfig = ViewPromptConfig(), object_yaw_deg: float = 0.0
) -> list[str]:
    """One label per camera. [B] strings

    ``object_yaw_deg``: the object is turned by this yaw (counter-clockwise seen from above,
    as ``toyworld.shapes.rotate_yaw``), so its front faces azimuth ``object_yaw_deg`` and a
    camera at azimuth a sees the side at a - yaw of the object's own frame.
    """
    return [
        view_label(float(e), float(a) - object_yaw_deg, config)
        for e, a in zip(cameras.elevation_deg.tolist(), cameras.azimuth_deg.tolist(), strict=True)
    ]


def view_prompt(prompt: str, label: str) -> str:
    """``view_prompt("a red cube", "front") == "a red cube, front view"``."""
    if label not in VIEW_LABELS:
        raise SSD3DError(f"view label must be one of {', '.join(VIEW_LABELS)}; got {label!r}")
    return f"{prompt}, {label} view"


def view_prompts(
    prompt: str, cameras: Cameras, config: ViewPromptConfig = ViewPromptConfig()
) -> list[str]:
    """The prompt for each camera: with its view suffix, or unchanged when disabled. [B]"""
    if not config.enabled:
        return [prompt] * cameras.batch_size
    return [view_prompt(prompt, label) for label in view_labels(cameras, config)]
