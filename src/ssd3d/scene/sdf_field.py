"""A radiance field whose geometry is a grid of signed distances (VolSDF's density).

A density grid fitted to renders stays soft: any interior density above a few renders
opaque, so its values stay near the initial blob's and which level is "the surface" is
arbitrary. Parameterising the geometry by a signed distance d and deriving the density
from it fixes both: the surface is d = 0, and its sharpness is one number, beta.

    density(p) = Psi_beta(-d(p)) / beta        (VolSDF, Yariv et al. 2021, eq. 2-3)

with Psi_beta the CDF of a zero-mean Laplace distribution of scale beta: the density is
1 / beta deep inside, 1 / (2 beta) on the surface and decays as exp(-d / beta) outside.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssd3d.errors import SSD3DError
from ssd3d.scene.fields import RadianceField, normalize
from ssd3d.scene.rays import SCENE_BOUND


def laplace_cdf(s: Tensor, beta: Tensor | float) -> Tensor:
    """CDF of a zero-mean Laplace distribution of scale ``beta`` at s, in (0, 1).

    Written as 0.5 + 0.5 sign(s) (1 - exp(-|s| / beta)) so neither branch overflows.
    """
    return 0.5 + 0.5 * torch.sign(s) * -torch.expm1(-s.abs() / beta)


@dataclass(frozen=True)
class SDFGridConfig:
    """A dense grid of signed distances and raw albedo, started as a sphere."""

    # Grid nodes per side; grow() refines it. measured.md: 32^3 fits the cube to IoU 0.95
    # in 200 photometric steps, the torus and wedge want more steps or nodes.
    resolution: int = 32
    # Radius of the initial sphere d = |p| - r: the density grid's blob crosses zero at 0.5.
    init_radius: float = 0.5
    # Initial Laplace scale (scene units): the density falls from 1 / beta to 0 over a few
    # beta. 0.03 is half a 32^3 voxel and 1.6 optical depth per sample at the renderer's
    # ~0.05 step: soft enough that the surface's neighbourhood gets gradient.
    beta: float = 0.03
    # Floor of beta: below a tenth of a sample step a surface can fall between samples and
    # vanish from the render.
    beta_min: float = 0.005
    # Learn beta with the geometry (VolSDF) or leave it to a schedule (``set_beta``).
    learn_beta: bool = True

    def __post_init__(self) -> None:
        if self.resolution < 2:
            raise SSD3DError(f"grid resolution must be >= 2; got {self.resolution}")
        if not 0 < self.beta_min < self.beta:
            raise SSD3DError(f"need 0 < beta_min < beta; got {self.beta_min}, {self.beta}")
        if not 0 < self.init_radius < SCENE_BOUND:
            raise SSD3DError(f"init_radius must be in (0, {SCENE_BOUND}); got {self.init_radius}")


class SDFGridField(RadianceField):
    """Grids of signed distance [R, R, R] and raw albedo [3, R, R, R] over [-1, 1]^3.

    density = laplace_cdf(-trilinear(sdf)(p), beta) / beta
    albedo  = sigmoid(trilinear(albedo_raw)(p))
    normals = normalised trilinear(grad sdf)(p), the gradient grid taken by central
              differences on the nodes (one-sided on the faces)

    Layout as ``VoxelGridField``: index [z, y, x], align_corners nodes on the cube's faces;
    density, albedo and the gradient are one 7-channel ``grid_sample``. The normals are the
    SDF's own gradient, not the density's: outward by construction, and differentiable, so
    lit views shape the geometry. beta = beta_min + exp(log_beta).

    ``grow(r)`` replaces the grids (rebuild the optimiser after); the resolution round-trips
    through ``state_dict`` as the voxel grid's does.
    """

    def __init__(self, config: SDFGridConfig = SDFGridConfig()) -> None:
        super().__init__()
        self.config = config
        r = config.resolution
        self.sdf_grid = nn.Parameter(self._sphere(r, config.init_radius))
        self.albedo_raw = nn.Parameter(torch.zeros(3, r, r, r))
        self.log_beta = nn.Parameter(
            torch.tensor(math.log(config.beta - config.beta_min)),
            requires_grad=config.learn_beta,
        )

    # -- geometry ---------------------------------------------------------------------------
    @staticmethod
    def _node_points(resolution: int, device=None) -> Tensor:
        """World (x, y, z) of the nodes laid out [R, R, R, 3] at [z, y, x]."""
        axis = torch.linspace(-SCENE_BOUND, SCENE_BOUND, resolution, device=device)
        z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
        return torch.stack([x, y, z], dim=-1)

    @classmethod
    def _sphere(cls, resolution: int, radius: float) -> Tensor:
        return cls._node_points(resolution).norm(dim=-1) - radius

    @property
    def resolution(self) -> int:
        return self.sdf_grid.shape[-1]

    @property
    def beta(self) -> Tensor:
        """The Laplace scale, a scalar tensor (differentiable when learnt)."""
        return self.config.beta_min + self.log_beta.exp()

    @torch.no_grad()
    def set_beta(self, beta: float) -> None:
        """Set beta (for a schedule). Values at or below beta_min are refused."""
        if not beta > self.config.beta_min:
            raise SSD3DError(f"beta must exceed beta_min {self.config.beta_min}; got {beta}")
        self.log_beta.fill_(math.log(beta - self.config.beta_min))

    @property
    def surface_density(self) -> float:
        """Density on d = 0, 1 / (2 beta): the level to export and score the surface at."""
        return float(0.5 / self.beta.detach())

    def _gradient_grid(self, sdf: Tensor | None = None) -> Tensor:
        """d sdf / d(x, y, z) on the nodes by central differences, of ``sdf`` [R, R, R] over
        [-1, 1]^3 (default: the field's grid). [3, R, R, R]"""
        sdf = self.sdf_grid if sdf is None else sdf
        spacing = 2 * SCENE_BOUND / (sdf.shape[-1] - 1)
        dz, dy, dx = torch.gradient(sdf, spacing=spacing)
        return torch.stack([dx, dy, dz], dim=0)

    def eikonal_loss(self) -> Tensor:
        """Mean of (|grad sdf| - 1)^2 over the nodes: keeps the grid a distance field."""
        return (self._gradient_grid().norm(dim=0) - 1).square().mean()

    # -- queries ----------------------------------------------------------------------------
    def _sample(self, grid: Tensor, points: Tensor) -> Tensor:
        """Trilinear lookup of a [C, R, R, R] grid at points [N, 3] -> [N, C]."""
        coords = (points / SCENE_BOUND).reshape(1, -1, 1, 1, 3).to(grid.dtype)
        out = F.grid_sample(
            grid[None], coords, mode="bilinear", padding_mode="border", align_corners=True
        )
        return out.reshape(grid.shape[0], -1).T

    def sdf(self, points: Tensor) -> Tensor:
        """Signed distance [N] at points [N, 3] (negative inside)."""
        return self._sample(self.sdf_grid[None], points)[:, 0]

    def density_from_sdf(self, sdf: Tensor) -> Tensor:
        beta = self.beta
        return laplace_cdf(-sdf, beta) / beta

    def density(self, points: Tensor) -> Tensor:
        return self.density_from_sdf(self.sdf(points))

    def forward(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """points [N, 3] -> (density [N] in (0, 1 / beta), albedo [N, 3] in [0, 1])."""
        raw = self._sample(torch.cat([self.sdf_grid[None], self.albedo_raw]), points)
        return self.density_from_sdf(raw[:, 0]), torch.sigmoid(raw[:, 1:4])

    def normals(self, points: Tensor) -> Tensor:
        """Outward unit normals: the normalised SDF gradient. [N, 3] -> [N, 3]"""
        return normalize(self._sample(self._gradient_grid(), points))

    def forward_with_normals(self, points: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        sdf = self.sdf_grid  # read once: a subclass may compose it
        grid = torch.cat([sdf[None], self.albedo_raw, self._gradient_grid(sdf)], dim=0)
        raw = self._sample(grid, points)
        return (
            self.density_from_sdf(raw[:, 0]),
            torch.sigmoid(raw[:, 1:4]),
            normalize(raw[:, 4:7]),
        )

    def density_parameters(self) -> list[nn.Parameter]:
        """The SDF grid, and beta when it is learnt (one learning rate for the geometry)."""
        return [self.sdf_grid] + ([self.log_beta] if self.log_beta.requires_grad else [])

    def albedo_parameters(self) -> list[nn.Parameter]:
        return [self.albedo_raw]

    # -- coarse to fine -----------------------------------------------------------------------
    @torch.no_grad()
    def grow(self, resolution: int) -> SDFGridField:
        """Trilinearly upsample the SDF and albedo grids to ``resolution`` per side, in place.

        Exact where (resolution - 1) is a multiple of (R - 1) (a trilinear cell restricted
        to a sub-cell is trilinear); otherwise within the interpolation error. New
        ``nn.Parameter`` objects: rebuild the optimiser after. Returns self.
        """
        if resolution < 2:
            raise SSD3DError(f"grid resolution must be >= 2; got {resolution}")
        size = (resolution,) * 3
        sdf = F.interpolate(
            self.sdf_grid[None, None], size=size, mode="trilinear", align_corners=True
        )[0, 0]
        albedo = F.interpolate(
            self.albedo_raw[None], size=size, mode="trilinear", align_corners=True
        )[0]
        self.sdf_grid = nn.Parameter(sdf.contiguous())
        self.albedo_raw = nn.Parameter(albedo.contiguous())
        return self

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # Resize to the stored resolution first, so a grown grid resumes into a coarse one.
        for name in ("sdf_grid", "albedo_raw"):
            stored = state_dict.get(prefix + name)
            current = getattr(self, name)
            if stored is not None and stored.shape != current.shape:
                setattr(
                    self,
                    name,
                    nn.Parameter(
                        torch.empty(stored.shape, dtype=current.dtype, device=current.device)
                    ),
                )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


@dataclass(frozen=True)
class MultiResSDFConfig:
    """Signed distance as a sum of grids at several resolutions, started as a sphere."""

    # Nodes per side of each level, coarse to fine. Nested sizes (R_fine - 1 a multiple of
    # R_coarse - 1) make a coarse level's trilinear upsampling exact, so the rendered field
    # is exactly the sum of each level's own trilinear field.
    levels: tuple[int, ...] = (9, 17, 33)
    # The start is the sphere d = |p| - r on the finest nodes: the coarsest level holds it
    # and the finest the coarse level's interpolation error (its facets), the others 0.
    init_radius: float = 0.5
    beta: float = 0.03
    beta_min: float = 0.005
    learn_beta: bool = True
    # None: the finer levels add their raw values. Else each adds residual_max * tanh(raw),
    # so the detail can never move the surface more than residual_max per level.
    residual_max: float | None = None

    def __post_init__(self) -> None:
        if not self.levels or any(r < 2 for r in self.levels):
            raise SSD3DError(f"every level needs >= 2 nodes per side; got {self.levels}")
        if list(self.levels) != sorted(set(self.levels)):
            raise SSD3DError(f"levels must increase strictly; got {self.levels}")
        if not 0 < self.beta_min < self.beta:
            raise SSD3DError(f"need 0 < beta_min < beta; got {self.beta_min}, {self.beta}")
        if not 0 < self.init_radius < SCENE_BOUND:
            raise SSD3DError(f"init_radius must be in (0, {SCENE_BOUND}); got {self.init_radius}")
        if self.residual_max is not None and not self.residual_max > 0:
            raise SSD3DError(f"residual_max must be > 0 or None; got {self.residual_max}")


class MultiResSDFField(SDFGridField):
    """An ``SDFGridField`` whose signed-distance grid is the sum of several levels.

    sdf_grid = sum_k upsample(level_k) at the finest level's resolution (trilinear,
    align_corners), read-only and recomputed from the parameters ``sdf_levels``; the
    density, normals, eikonal term and albedo (one grid at the finest resolution) are the
    parent's. A coarse node's gradient is the sum of the fine nodes' gradients under the
    upsampling's weights, so an optimiser moving the coarse levels moves a smooth shape;
    the finer levels can be given a lower rate or a decay (their own parameter groups,
    ``level_parameters``). No ``grow``: the finest level is the resolution.
    """

    def __init__(self, config: MultiResSDFConfig = MultiResSDFConfig()) -> None:
        nn.Module.__init__(self)
        self.config = config
        coarse, *finer = config.levels
        levels = [self._sphere(coarse, config.init_radius)] + [torch.zeros(r, r, r) for r in finer]
        r = config.levels[-1]
        if finer:
            up = F.interpolate(
                levels[0][None, None], size=(r,) * 3, mode="trilinear", align_corners=True
            )
            error = self._sphere(r, config.init_radius) - up[0, 0]
            if config.residual_max is not None:  # as close as the bound allows
                error = torch.atanh((error / config.residual_max).clamp(-0.99, 0.99))
            levels[-1] = error
        self.sdf_levels = nn.ParameterList([nn.Parameter(x.contiguous()) for x in levels])
        self.albedo_raw = nn.Parameter(torch.zeros(3, r, r, r))
        self.log_beta = nn.Parameter(
            torch.tensor(math.log(config.beta - config.beta_min)),
            requires_grad=config.learn_beta,
        )

    @property
    def resolution(self) -> int:
        return self.config.levels[-1]

    def level_values(self, k: int) -> Tensor:
        """Level k's own signed-distance contribution on its nodes [R_k, R_k, R_k]."""
        raw = self.sdf_levels[k]
        if k == 0 or self.config.residual_max is None:
            return raw
        return self.config.residual_max * torch.tanh(raw)

    def composed(self, upto: int | None = None) -> Tensor:
        """Sum of levels 0..upto (default: all) at level ``upto``'s resolution."""
        upto = len(self.config.levels) - 1 if upto is None else upto
        size = (self.config.levels[upto],) * 3
        total = self.level_values(upto)
        for k in range(upto):
            total = (
                total
                + F.interpolate(
                    self.level_values(k)[None, None],
                    size=size,
                    mode="trilinear",
                    align_corners=True,
                )[0, 0]
            )
        return total

    @property
    def sdf_grid(self) -> Tensor:
        return self.composed()

    def eikonal_loss(self, upto: int | None = None) -> Tensor:
        """Mean (|grad sdf| - 1)^2 over the nodes of level ``upto``'s composed grid
        (default: the finest, the rendered field; 0: the coarse shape alone)."""
        return (self._gradient_grid(self.composed(upto)).norm(dim=0) - 1).square().mean()

    def level_parameters(self) -> list[nn.Parameter]:
        """The levels, coarse to fine (each may get its own optimiser group)."""
        return list(self.sdf_levels)

    def density_parameters(self) -> list[nn.Parameter]:
        return self.level_parameters() + ([self.log_beta] if self.log_beta.requires_grad else [])

    def grow(self, resolution: int) -> SDFGridField:
        raise SSD3DError("a multi-resolution SDF has fixed levels; it does not grow")
