"""3D Gaussians as a scene: initialisation, densification, checkpoints, mesh and .ply export.

The recipe is 3DGS's adaptive density control as DreamGaussian and GaussianDreamer use it for
text-to-3D: start from random points in a ball, then every few steps clone small Gaussians and
split large ones where the view-space positional gradient is large, prune transparent and
oversized ones, and periodically reset opacities. The schedule is off by default
(``GaussianConfig.densify_stop``): under distillation its splits leave fog. The loop drives it
through ``restructure`` (start of a step) and ``observe_gradients`` (after backward); both are
deterministic functions of the step and of buffers in the ``state_dict``, so a resumed run is
bit-exact.

Longer than the project's 400-line mark: initialisation, adaptive density control and its
checkpointed statistics change the same parameter tensors and must stay in step (the
renderer is splat.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import trimesh
from torch import Tensor, nn

from ssd3d.errors import SSD3DError
from ssd3d.export.mesh import extract_mesh
from ssd3d.export.splat_ply import SplatData, write_splat_ply
from ssd3d.scene.background import Background, SolidBackground, build_background
from ssd3d.scene.cameras import Cameras
from ssd3d.scene.rays import SCENE_BOUND
from ssd3d.scene.regularisers import binary_entropy
from ssd3d.scene.render import RenderOutput
from ssd3d.scene.shading import Shading, fixed_shading
from ssd3d.scene.splat import (
    BACKENDS,
    DEFAULT_CHUNK_ELEMENTS,
    RASTERIZE_MODES,
    SH_C0,
    quaternion_to_rotation,
    sh_coefficient_count,
    splat,
)
from ssd3d.scene.surface import (
    SURFACE_GRID_RESOLUTION,
    VIEW_RESOLUTION,
    measure_surface_level,
)

INIT_SHAPES = ("blob", "sphere")
# 3DGS splits a Gaussian into two children whose scales are divided by 0.8 * 2.
SPLIT_CHILDREN = 2
SPLIT_SCALE_DIVISOR = 1.6
# 3DGS's opacity reset: every opacity is capped at 0.01, so only what the views keep revives.
RESET_OPACITY = 0.01
# Gaussians are evaluated out to this Mahalanobis distance (3 sigma) for meshes and colours.
CUTOFF_SIGMA = 3.0
# Cells per axis of the binning that culls Gaussians in ``density`` and ``albedo``.
BLEND_CELLS = 8
# The measured surface level (GaussianConfig.mesh_threshold None): candidates a quarter of an
# octave apart from 1/16 to 1 (the best level of the fits measured lay between 0.15 and 0.7)
# on ssd3d.scene.surface's 96^3 density grid. The renders keep
# almost none of the splats' antialiasing dilation (0.3 px^2 in training): it widens every
# splat by about half a pixel, which at 64 px is half a Gaussian's width, so the silhouettes
# grow and the level measured falls (benchmarks/surface_level.py --dilation). 0.01 px^2 keeps
# every projected covariance invertible.
SURFACE_LOW_PASS = 0.01
SURFACE_LEVEL_CANDIDATES = tuple(0.5 * 2 ** (k / 4) for k in range(-12, 5))


@dataclass(frozen=True)
class GaussianConfig:
    """3D Gaussians for text-to-3D in the unit-cube scene (the object within radius ~0.6).

    Learning rates are DreamGaussian's, whose object and cameras live at the same scale as
    ours (radius-0.5 init ball, cameras at ~2.5): its scene units need no rescaling, unlike
    3DGS's per-scene ``cameras_extent``. Position decay (``lr_position_final``) and a late
    decay of every rate (``lr_late_final``) are options, off by default (docs/gaussians.md,
    "Toward the ceiling bar").
    """

    # Gaussians at the start. DreamGaussian uses 5000 at 512 px; at 32x32 a pixel covers
    # ~0.07 scene units at the object, and 1024 Gaussians in a radius-0.5 ball are ~0.08 apart,
    # so each starts about a pixel wide.
    initial_count: int = 1024
    # "blob": uniform in a ball (DreamGaussian, GaussianDreamer's random init); "sphere":
    # on its surface (a hollow shell, for shapes that should stay thin-walled).
    init_shape: str = "blob"
    # Radius of the init ball; the voxel grid's blob_radius 0.5, DreamGaussian's radius 0.5.
    init_radius: float = 0.5
    # Initial scale as a multiple of 3DGS's (the root mean squared distance to the 3 nearest
    # other points).
    init_scale: float = 1.0
    # Opacity at the start; 3DGS and DreamGaussian use 0.1.
    init_opacity: float = 0.1
    # Spherical-harmonic degree of the colour (0 view-independent, up to 3); DreamGaussian 0:
    # view-dependent colour lets the prior paint each view separately (the Janus problem).
    sh_degree: int = 0
    # Seeds the initial points and every split's child positions (per step: resume-safe).
    seed: int = 0
    # Adam learning rates per group: DreamGaussian's position_lr_init, scaling_lr,
    # rotation_lr and opacity_lr. Colour is 5x its feature_lr (0.01): the SH DC coefficient
    # moves the colour by SH_C0 = 0.28 per unit, so 0.01 is 0.003 of colour per step, and a
    # red from the initial grey takes ~180 steps of a 200-step benchmark; 0.05 is the voxel
    # grid's albedo step (lr 0.05 on a logit, 0.25 per unit at grey) and halves the oracle's
    # colour error (docs/gaussians.md). Higher SH bands get colour / 20, as in 3DGS.
    lr_position: float = 1e-3
    lr_scale: float = 5e-3
    lr_rotation: float = 5e-3
    lr_opacity: float = 5e-2
    lr_colour: float = 5e-2
    # The background is seen by every pixel; the voxel scene's rate (DEFAULT_LR_BACKGROUND).
    lr_background: float = 1e-2
    # Position rate at the run's last step, as a fraction of lr_position: 3DGS's (and
    # DreamGaussian's) exponential decay, log-linear from lr_position at step 0 to
    # lr_position * lr_position_final at the run's end (3DGS: 1.6e-4 -> 1.6e-6, 0.01). 1 off.
    lr_position_final: float = 1.0
    # Every rate (but the background's) decays log-linearly from the fraction lr_late_start of
    # the run to lr_late_final of itself at its end; 1 off.
    lr_late_final: float = 1.0
    lr_late_start: float = 0.5
    # Densify (and prune, and reset opacities) at steps densify_start, +every, ... while
    # <= densify_stop; DreamGaussian: density_start_iter 100, densification_interval 100,
    # density_end_iter 3000. Off by default (densify_stop 0): 3DGS's split replaces a Gaussian
    # by two of its scale / 1.6 at its opacity, half its summed density, and distillation does
    # not restore it, so every split left fog under the mesh level (docs/gaussians.md, "What
    # makes distilled Gaussians solid": 3D IoU of SDS 0.33 with it, 0.66 without, the oracle's
    # 0.87 -> 0.9). gaussians.densify_stop=3000 turns DreamGaussian's schedule back on.
    densify_start: int = 100
    densify_stop: int = 0
    densify_every: int = 100
    # Mean norm of the view-space positional gradient (in NDC, as 3DGS measures it) above which
    # a Gaussian is cloned or split; DreamGaussian's densify_grad_threshold for SDS, 0.01.
    grad_threshold: float = 0.01
    # Gaussians whose largest scale is above this are split, the others cloned (3DGS's
    # percent_dense 0.01 of its extent; here about a pixel at 32x32, where a smaller clone
    # cannot add detail and a larger Gaussian blurs it).
    split_scale: float = 0.05
    # Prune below this opacity (DreamGaussian min_opacity 0.01; 3DGS 0.005).
    prune_opacity: float = 0.01
    # After the first opacity reset (as 3DGS), also prune Gaussians whose screen radius
    # exceeded this fraction of the image height or whose largest scale exceeds max_world_size
    # (3DGS: 20 px of ~800, 0.1 of the extent; DreamGaussian's extent 4 gives 0.4).
    max_screen_fraction: float = 0.5
    max_world_size: float = 0.4
    # Cap opacities at 0.01 every this many steps while densifying (DreamGaussian 700); 0 off.
    opacity_reset_every: int = 700
    # Densification stops adding Gaussians at this count (bounds memory and the CPU render:
    # the plain renderer's cost grows with the pixels each Gaussian covers).
    max_count: int = 4096
    # Candidate (pixel, Gaussian) pairs the plain renderer enumerates at once (see
    # ssd3d.scene.splat).
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS
    # "auto" (gsplat on CUDA when installed), "torch", "gsplat".
    backend: str = "auto"
    # gsplat's rasterize_mode: "classic" (3DGS: the 0.3 px^2 low-pass filter widens every
    # splat) or "antialiased" (Mip-Splatting: the widened splat's opacity is scaled down to
    # keep its mass). See ssd3d.scene.splat.
    rasterize_mode: str = "classic"
    # Weight of the mean binary entropy of the Gaussians' own opacities (not the rendered
    # pixels' opacity, regularisers.opacity_entropy): it pushes each opacity away from 0.5,
    # toward 0 (then pruned) or 1; 0 off.
    opacity_entropy: float = 0.0
    # Iso-level of the summed density sum_i o_i exp(-m_i^2 / 2) for meshes and occupancy.
    # None: measured from the Gaussians' own renders each time it is asked for, the level
    # whose silhouettes match the rendered ones (ssd3d.scene.surface; an isolated opaque
    # Gaussian measures 0.5, half its peak). A fixed 0.5 lost the shapes whose opacities a
    # regulariser or a long run thinned (docs/results/surface-level.md).
    mesh_threshold: float | None = None

    def __post_init__(self) -> None:
        if self.initial_count < 1 or self.max_count < self.initial_count:
            raise SSD3DError(
                "Gaussians need 1 <= initial_count <= max_count; got "
                f"{self.initial_count} and {self.max_count}"
            )
        if self.init_shape not in INIT_SHAPES:
            raise SSD3DError(
                f"init_shape must be one of {', '.join(INIT_SHAPES)}; got {self.init_shape!r}"
            )
        if not 0 < self.init_radius <= SCENE_BOUND:
            raise SSD3DError(f"init_radius must be in (0, {SCENE_BOUND}]; got {self.init_radius}")
        if not self.init_scale > 0:
            raise SSD3DError(f"init_scale must be > 0; got {self.init_scale}")
        if not (0 < self.lr_position_final <= 1 and 0 < self.lr_late_final <= 1):
            raise SSD3DError(
                "lr_position_final and lr_late_final must be in (0, 1]; got "
                f"{self.lr_position_final} and {self.lr_late_final}"
            )
        if not 0 <= self.lr_late_start < 1:
            raise SSD3DError(f"lr_late_start must be in [0, 1); got {self.lr_late_start}")
        if not 0 < self.init_opacity < 1:
            raise SSD3DError(f"init_opacity must be in (0, 1); got {self.init_opacity}")
        if self.rasterize_mode not in RASTERIZE_MODES:
            raise SSD3DError(
                f"rasterize_mode must be one of {', '.join(RASTERIZE_MODES)}; "
                f"got {self.rasterize_mode!r}"
            )
        sh_coefficient_count(self.sh_degree)
        lrs = (
            self.lr_position,
            self.lr_scale,
            self.lr_rotation,
            self.lr_opacity,
            self.lr_colour,
            self.lr_background,
        )
        if any(not lr >= 0 for lr in lrs):
            raise SSD3DError(f"Gaussian learning rates must be >= 0; got {lrs}")
        if self.densify_start < 0 or self.densify_stop < 0 or self.densify_every < 1:
            raise SSD3DError(
                "densify_start and densify_stop must be >= 0 and densify_every >= 1; got "
                f"{self.densify_start}, {self.densify_stop}, {self.densify_every}"
            )
        if self.grad_threshold <= 0 or self.split_scale <= 0:
            raise SSD3DError("grad_threshold and split_scale must be > 0")
        if not 0 <= self.prune_opacity < 1:
            raise SSD3DError(f"prune_opacity must be in [0, 1); got {self.prune_opacity}")
        if self.max_screen_fraction <= 0 or self.max_world_size <= 0:
            raise SSD3DError("max_screen_fraction and max_world_size must be > 0")
        if self.opacity_reset_every < 0:
            raise SSD3DError(f"opacity_reset_every must be >= 0; got {self.opacity_reset_every}")
        if self.chunk_elements < 1:
            raise SSD3DError(f"chunk_elements must be >= 1; got {self.chunk_elements}")
        if self.backend not in BACKENDS:
            raise SSD3DError(f"backend must be one of {', '.join(BACKENDS)}; got {self.backend!r}")
        if not self.opacity_entropy >= 0:
            raise SSD3DError(f"opacity_entropy must be >= 0; got {self.opacity_entropy}")
        if self.mesh_threshold is not None and not self.mesh_threshold > 0:
            raise SSD3DError(f"mesh_threshold must be > 0 or null; got {self.mesh_threshold}")


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _nearest_neighbour_scale(points: Tensor, k: int = 3, chunk: int = 1024) -> Tensor:
    """sqrt of the mean squared distance to the k nearest other points (3DGS's init). [N]"""
    n = points.shape[0]
    if n <= 1:
        return points.new_full((n,), 0.1)
    k = min(k, n - 1)
    out = []
    for start in range(0, n, chunk):
        d2 = torch.cdist(points[start : start + chunk], points).square()
        d2 = d2.topk(k + 1, dim=1, largest=False).values[:, 1:]  # drop the point itself
        out.append(d2.mean(dim=1).clamp(min=1e-7).sqrt())
    return torch.cat(out)


class GaussianScene(nn.Module):
    """N anisotropic 3D Gaussians and a background (the ``Scene`` protocol, name "gaussians").

    Parameters: ``means`` [N, 3], ``log_scales`` [N, 3], ``quaternions`` [N, 4] (w, x, y, z),
    ``opacity_logits`` [N], ``sh_dc`` [N, 1, 3] and, for sh_degree > 0, ``sh_rest``
    [N, K - 1, 3] (3DGS's features_dc / features_rest). Buffers, checkpointed with them:
    ``grad_accum`` and ``grad_count`` [N] (summed view-space gradient norms and the number of
    views that saw each Gaussian since the last densification) and ``max_radii`` [N] (largest
    screen radius seen, as a fraction of the image height).

    ``restructure`` replaces the parameters: rebuild the optimiser from ``param_groups`` when
    it returns True. ``load_state_dict`` accepts any Gaussian count.
    """

    name: ClassVar[str] = "gaussians"
    is_3d: ClassVar[bool] = True
    # No per-sample weights along rays: the orientation loss has nothing to act on.
    supported_regularisers: ClassVar[frozenset[str]] = frozenset(
        {"opacity_sparsity", "opacity_entropy"}
    )

    @classmethod
    def from_config(cls, cfg: Any) -> GaussianScene:
        """From a run's config: its ``gaussians`` and ``background`` sections."""
        return cls(cfg.gaussians, build_background(cfg.background.kind, cfg.background.colour))

    @staticmethod
    def describe(cfg: Any) -> str:
        g = cfg.gaussians
        if g.densify_stop < max(g.densify_start, 1):
            return f"{g.initial_count} 3D Gaussians ({g.init_shape}), not densified"
        return (
            f"{g.initial_count} 3D Gaussians ({g.init_shape}), at most {g.max_count}, "
            f"densified every {g.densify_every} steps from {g.densify_start} "
            f"to {g.densify_stop}"
        )

    # The ladder ``measure_surface_level`` picks from.
    surface_level_candidates = SURFACE_LEVEL_CANDIDATES

    @property
    def measures_surface_level(self) -> bool:
        return self.config.mesh_threshold is None

    @property
    def surface_level(self) -> float:
        """The summed density of the mesh's surface (and of occupancy): ``mesh_threshold``,
        or when that is None the level measured from 26 renders all round (a second or two)."""
        if self.config.mesh_threshold is not None:
            return self.config.mesh_threshold
        return self.measure_surface_level()

    def measure_surface_level(
        self, resolution: int = VIEW_RESOLUTION, low_pass: float = SURFACE_LOW_PASS
    ) -> float:
        """The level whose level set draws the silhouettes these Gaussians render
        (``ssd3d.scene.surface``), from views of ``resolution`` px splatted with ``low_pass``."""

        def opacity(cameras: Cameras) -> Tensor:
            cameras = cameras.to(self.means.device)
            return splat(
                self.means,
                self.log_scales,
                self.quaternions,
                self.opacity_logits,
                self.sh_dc,  # opacity does not depend on colour
                cameras,
                self.background,
                fixed_shading("albedo", cameras),
                chunk_elements=self.config.chunk_elements,
                backend=self.config.backend,
                low_pass=low_pass,
                rasterize_mode=self.config.rasterize_mode,
            ).render.opacity.cpu()

        grid = self.density_grid(SURFACE_GRID_RESOLUTION)
        return measure_surface_level(opacity, grid, self.surface_level_candidates, resolution)

    def __init__(
        self, config: GaussianConfig = GaussianConfig(), background: Background | None = None
    ) -> None:
        super().__init__()
        self.config = config
        self.background = SolidBackground() if background is None else background
        n = config.initial_count
        g = torch.Generator().manual_seed(config.seed)
        direction = torch.randn(n, 3, generator=g)
        direction = direction / direction.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        if config.init_shape == "blob":
            radius = config.init_radius * torch.rand(n, 1, generator=g) ** (1 / 3)
        else:
            radius = torch.full((n, 1), config.init_radius)
        means = direction * radius
        scale = _nearest_neighbour_scale(means) * config.init_scale
        k = sh_coefficient_count(config.sh_degree)
        self.means = nn.Parameter(means)
        self.log_scales = nn.Parameter(torch.log(scale)[:, None].repeat(1, 3))
        quaternions = torch.zeros(n, 4)
        quaternions[:, 0] = 1.0
        self.quaternions = nn.Parameter(quaternions)
        self.opacity_logits = nn.Parameter(torch.full((n,), _logit(config.init_opacity)))
        # Zero DC is colour 0.5, the voxel grid's initial grey.
        self.sh_dc = nn.Parameter(torch.zeros(n, 1, 3))
        if k > 1:
            self.sh_rest = nn.Parameter(torch.zeros(n, k - 1, 3))
        else:
            self.register_parameter("sh_rest", None)
        self.register_buffer("grad_accum", torch.zeros(n))
        self.register_buffer("grad_count", torch.zeros(n))
        self.register_buffer("max_radii", torch.zeros(n))
        self._last_render = None

    # -- the Scene protocol ------------------------------------------------------------------
    @property
    def count(self) -> int:
        return self.means.shape[0]

    def sh(self) -> Tensor:
        """All SH coefficients [N, K, 3]."""
        if self.sh_rest is None:
            return self.sh_dc
        return torch.cat([self.sh_dc, self.sh_rest], dim=1)

    def opacities(self) -> Tensor:
        return torch.sigmoid(self.opacity_logits)

    def render(
        self,
        cameras: Cameras,
        shading: Shading | None = None,
        generator: torch.Generator | None = None,
    ) -> RenderOutput:
        """Splat every Gaussian into every camera. The generator is unused: splatting draws no
        samples, so training and evaluation renders are the same function."""
        out = splat(
            self.means,
            self.log_scales,
            self.quaternions,
            self.opacity_logits,
            self.sh(),
            cameras,
            self.background,
            shading,
            chunk_elements=self.config.chunk_elements,
            backend=self.config.backend,
            rasterize_mode=self.config.rasterize_mode,
        )
        if out.means2d.requires_grad:
            # Kept for observe_gradients: the gradient of the projected means is only
            # available on this tensor, after the loop's backward.
            self._last_render = (out.means2d, out.radii, out.visible, cameras.width, cameras.height)
        return out.render

    def param_groups(self) -> list[dict[str, Any]]:
        c = self.config
        named = [
            ("position", [self.means], c.lr_position),
            ("scale", [self.log_scales], c.lr_scale),
            ("rotation", [self.quaternions], c.lr_rotation),
            ("opacity", [self.opacity_logits], c.lr_opacity),
            ("colour", [self.sh_dc], c.lr_colour),
            ("colour_rest", [self.sh_rest] if self.sh_rest is not None else [], c.lr_colour / 20),
            ("background", list(self.background.parameters()), c.lr_background),
        ]
        return [{"params": p, "lr": lr, "name": name} for name, p, lr in named if len(p) > 0]

    def learning_rates(self, step: int, steps: int) -> dict[str, float]:
        """Each group's rate at optimiser step ``step`` (0-based) of a ``steps``-step run:
        ``param_groups``' rates under the position and late decays (a function of the step
        only, so a resumed run is bit-exact)."""
        c = self.config
        t = min(max(step / max(steps - 1, 1), 0.0), 1.0)
        late = max(t - c.lr_late_start, 0.0) / (1 - c.lr_late_start)
        late_factor = c.lr_late_final**late
        rates = {g["name"]: g["lr"] * late_factor for g in self.param_groups()}
        rates["position"] *= c.lr_position_final**t
        rates["background"] = c.lr_background
        return rates

    def _densifying(self, step: int) -> bool:
        return step <= self.config.densify_stop

    @torch.no_grad()
    def observe_gradients(self, step: int) -> None:
        """Accumulate the view-space positional gradient of the last render (3DGS's
        add_densification_stats), per view that saw each Gaussian."""
        last, self._last_render = self._last_render, None
        if last is None or not self._densifying(step):
            return
        means2d, radii, visible, width, height = last
        grad = means2d.grad
        if grad is None or grad.shape[1] != self.count:
            return
        # Pixel -> NDC units (x_ndc = 2 u / W - 1, likewise y), so the threshold means what it
        # does in 3DGS, whatever the image size.
        norms = (grad * grad.new_tensor([width / 2, height / 2])).norm(dim=-1)  # [B, N]
        visible = visible.to(norms.dtype)
        self.grad_accum += (norms * visible).sum(dim=0)
        self.grad_count += visible.sum(dim=0)
        radii = (radii * visible / height).amax(dim=0)
        self.max_radii.copy_(torch.maximum(self.max_radii, radii))

    def scene_losses(self) -> dict[str, tuple[float, Tensor]]:
        """``gaussian_opacity_entropy``: the mean binary entropy of the opacities, when on."""
        w = self.config.opacity_entropy
        if w <= 0:
            return {}
        return {"gaussian_opacity_entropy": (w, binary_entropy(self.opacities()).mean())}

    def restructure(self, step: int) -> bool:
        """Densify/prune and reset opacities when the schedule says so; True if anything
        changed (the optimiser must then be rebuilt)."""
        c = self.config
        changed = False
        in_window = step > 0 and step >= c.densify_start and self._densifying(step)
        if in_window and step % c.densify_every == 0:
            prune_size = c.opacity_reset_every > 0 and step > c.opacity_reset_every
            self.densify_and_prune(step, prune_size=prune_size)
            changed = True
        if (
            c.opacity_reset_every > 0
            and step > 0
            and step % c.opacity_reset_every == 0
            and self._densifying(step)
        ):
            self.reset_opacity()
            changed = True
        return changed

    # -- adaptive density control ------------------------------------------------------------
    def _tensors(self) -> dict[str, Tensor]:
        out = {
            "means": self.means.detach(),
            "log_scales": self.log_scales.detach(),
            "quaternions": self.quaternions.detach(),
            "opacity_logits": self.opacity_logits.detach(),
            "sh_dc": self.sh_dc.detach(),
        }
        if self.sh_rest is not None:
            out["sh_rest"] = self.sh_rest.detach()
        return out

    def _replace(self, tensors: dict[str, Tensor]) -> None:
        """New parameters (fresh nn.Parameter objects) and zeroed statistics."""
        for name, value in tensors.items():
            setattr(self, name, nn.Parameter(value.contiguous()))
        n = tensors["means"].shape[0]
        like = tensors["means"]
        self.grad_accum = like.new_zeros(n)
        self.grad_count = like.new_zeros(n)
        self.max_radii = like.new_zeros(n)
        self._last_render = None

    @torch.no_grad()
    def densify_and_prune(self, step: int, prune_size: bool = False) -> None:
        """3DGS's densify_and_prune: clone small and split large Gaussians whose mean
        view-space gradient is at least ``grad_threshold`` (at most max_count in all, the
        largest gradients first), then prune transparent ones (and oversized ones when
        ``prune_size``). Statistics restart from zero."""
        c = self.config
        t = self._tensors()
        n = self.count
        grads = torch.where(
            self.grad_count > 0, self.grad_accum / self.grad_count.clamp(min=1), 0.0
        )
        largest = torch.exp(t["log_scales"]).amax(dim=-1)
        chosen = grads >= c.grad_threshold
        budget = c.max_count - n
        if int(chosen.sum()) > budget:
            # Each clone or split adds one Gaussian; keep the strongest gradients.
            order = torch.argsort(torch.where(chosen, grads, -1.0), descending=True, stable=True)
            chosen = torch.zeros_like(chosen)
            chosen[order[: max(budget, 0)]] = True
        clone = chosen & (largest <= c.split_scale)
        split = chosen & (largest > c.split_scale)

        parts = {k: [v[~split], v[clone]] for k, v in t.items()}
        if split.any():
            g = torch.Generator().manual_seed(c.seed * 1_000_003 + step)
            m = int(split.sum())
            scales = torch.exp(t["log_scales"][split]).repeat(SPLIT_CHILDREN, 1)
            noise = torch.randn(m * SPLIT_CHILDREN, 3, generator=g).to(scales) * scales
            rotation = quaternion_to_rotation(t["quaternions"][split]).repeat(SPLIT_CHILDREN, 1, 1)
            children = {
                k: v[split].repeat(SPLIT_CHILDREN, *([1] * (v.dim() - 1))) for k, v in t.items()
            }
            children["means"] = children["means"] + (rotation @ noise[..., None])[..., 0]
            children["log_scales"] = torch.log(scales / SPLIT_SCALE_DIVISOR)
            for k, v in children.items():
                parts[k].append(v)
        merged = {k: torch.cat(v, dim=0) for k, v in parts.items()}

        prune = torch.sigmoid(merged["opacity_logits"]) < c.prune_opacity
        if prune_size:
            radii = torch.cat([self.max_radii[~split], self.max_radii[clone]])
            radii = torch.cat([radii, radii.new_zeros(len(prune) - len(radii))])
            too_big_screen = radii > c.max_screen_fraction
            too_big_world = torch.exp(merged["log_scales"]).amax(dim=-1) > c.max_world_size
            prune = prune | too_big_screen | too_big_world
        self._replace({k: v[~prune] for k, v in merged.items()})

    @torch.no_grad()
    def reset_opacity(self) -> None:
        """Cap every opacity at RESET_OPACITY (3DGS's reset_opacity)."""
        t = self._tensors()
        t["opacity_logits"] = t["opacity_logits"].clamp(max=_logit(RESET_OPACITY))
        accum, count, radii = self.grad_accum, self.grad_count, self.max_radii
        self._replace(t)
        # The statistics survive a reset (3DGS only restarts them at densification).
        self.grad_accum, self.grad_count, self.max_radii = accum, count, radii

    # -- checkpoints ---------------------------------------------------------------------------
    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # Resize to the stored Gaussian count first, so a densified scene can be resumed into
        # a freshly built one. Only the first axis may differ: another SH degree is an error.
        names = ["means", "log_scales", "quaternions", "opacity_logits", "sh_dc", "sh_rest"]
        for name in names:
            stored, current = state_dict.get(prefix + name), getattr(self, name)
            if stored is None or current is None or stored.shape == current.shape:
                continue
            if stored.shape[1:] == current.shape[1:]:
                empty = torch.empty(stored.shape, dtype=current.dtype, device=current.device)
                setattr(self, name, nn.Parameter(empty))
        for name in ("grad_accum", "grad_count", "max_radii"):
            stored, current = state_dict.get(prefix + name), getattr(self, name)
            if stored is not None and stored.shape != current.shape and stored.dim() == 1:
                setattr(self, name, current.new_empty(stored.shape))
        self._last_render = None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # -- density, meshes and files -----------------------------------------------------------
    def _precisions(self) -> Tensor:
        """Inverse covariances R S^-2 R^T. [N, 3, 3]"""
        rotation = quaternion_to_rotation(self.quaternions.detach())
        r_scaled = rotation * torch.exp(-self.log_scales.detach())[:, None, :]
        return r_scaled @ r_scaled.transpose(-1, -2)

    @torch.no_grad()
    def density(self, points: Tensor, chunk: int = 512) -> Tensor:
        """sum_i o_i exp(-m_i^2 / 2) over Gaussians within 3 sigma (m Mahalanobis). [P, 3] -> [P]"""
        return self._blend(points, None, chunk)[0]

    @torch.no_grad()
    def albedo(self, points: Tensor, chunk: int = 512) -> Tensor:
        """View-independent colour (SH band 0) averaged over the Gaussians' contributions at
        each point. [P, 3] -> [P, 3] (grey where none reaches)"""
        colours = (0.5 + SH_C0 * self.sh_dc.detach()[:, 0]).clamp(0, 1)
        density, rgb = self._blend(points, colours, chunk)
        return torch.where(density[:, None] > 0, rgb / density.clamp(min=1e-12)[:, None], 0.5)

    def _blend(self, points: Tensor, colours: Tensor | None, chunk: int) -> tuple[Tensor, Tensor]:
        """Opacity-weighted sums over the Gaussians whose 3-sigma ellipsoid reaches each point.

        Points are binned into a coarse grid of cells over their bounding box and each cell
        only meets the Gaussians whose 3-sigma box overlaps it: a benchmark's 64^3 scoring grid
        against a few thousand Gaussians is then a few percent of points x Gaussians."""
        means = self.means.detach().to(points)
        # m^2 = |d^T R S^-1|^2, the precision R S^-2 R^T's quadratic form without forming it.
        rotation = quaternion_to_rotation(self.quaternions.detach()).to(points)
        whiten = rotation * torch.exp(-self.log_scales.detach()).to(points)[:, None, :]
        opacity = self.opacities().detach().to(points)
        rgb_all = colours.to(points) if colours is not None else None
        # The 3-sigma ellipsoid's half-extent along each axis: 3 sqrt(Sigma_kk).
        rs = rotation * torch.exp(self.log_scales.detach()).to(points)[:, None, :]
        half = CUTOFF_SIGMA * rs.square().sum(-1).sqrt()  # [N, 3]
        out_d = points.new_zeros(points.shape[0])
        out_c = points.new_zeros(points.shape[0], 3)
        if points.shape[0] == 0:
            return out_d, out_c if colours is not None else points.new_zeros(0)
        lo, hi = points.min(dim=0).values, points.max(dim=0).values
        size = ((hi - lo) / BLEND_CELLS).clamp(min=1e-6)
        cell = ((points - lo) / size).long().clamp(0, BLEND_CELLS - 1)
        key = (cell[:, 0] * BLEND_CELLS + cell[:, 1]) * BLEND_CELLS + cell[:, 2]
        order = torch.argsort(key, stable=True)
        keys, counts = torch.unique_consecutive(key[order], return_counts=True)
        # Which Gaussians' 3-sigma boxes overlap each occupied cell's box. [cells, N]
        c = torch.stack(
            [keys // BLEND_CELLS**2, (keys // BLEND_CELLS) % BLEND_CELLS, keys % BLEND_CELLS], -1
        )
        cell_lo = lo + c * size
        cell_hi = torch.where(c == BLEND_CELLS - 1, hi, cell_lo + size)
        nearest = torch.minimum(torch.maximum(means[None], cell_lo[:, None]), cell_hi[:, None])
        overlap = ((means[None] - nearest).abs() <= half[None]).all(dim=-1)
        starts = (torch.cumsum(counts, 0) - counts).tolist()
        for i, count in enumerate(counts.tolist()):
            near = torch.nonzero(overlap[i])[:, 0]
            if len(near) == 0:
                continue
            ids = order[starts[i] : starts[i] + count]
            m, w_near, o_near = means[near], whiten[near], opacity[near]
            # As many points at once as chunk points against every Gaussian would hold.
            per = max(chunk, chunk * len(means) // len(near))
            for first in range(0, count, per):
                sel = ids[first : first + per]
                d = points[sel, None, :] - m[None]  # [P, n, 3]
                m2 = (d[..., :, None] * w_near).sum(dim=-2).square().sum(dim=-1)
                w = torch.where(m2 <= CUTOFF_SIGMA**2, o_near * torch.exp(-0.5 * m2), 0.0)
                out_d[sel] = w.sum(dim=1)
                if rgb_all is not None:
                    out_c[sel] = w @ rgb_all[near]
        return out_d, out_c if colours is not None else points.new_zeros(0)

    @torch.no_grad()
    def density_grid(self, resolution: int, bound: float = SCENE_BOUND) -> Tensor:
        """``density`` on the grid of ``ssd3d.export.mesh.density_grid`` ([x, y, z] order,
        endpoints included), by splatting each Gaussian onto the nodes of its 3-sigma box:
        O(N box) instead of O(N D^3) for evaluating every Gaussian at every node."""
        spacing = 2 * bound / (resolution - 1)
        means = self.means.detach().float().cpu()
        precision = self._precisions().float().cpu()
        opacity = self.opacities().detach().float().cpu()
        sigma_max = torch.exp(self.log_scales.detach().float().cpu()).amax(dim=-1)
        half = torch.ceil(CUTOFF_SIGMA * sigma_max / spacing + 0.5).clamp(max=resolution)
        half = half.long()
        centre = torch.round((means + bound) / spacing).long()
        grid = torch.zeros(resolution**3)
        for k in torch.unique(half).tolist():
            ids = torch.nonzero(half == k)[:, 0]
            r = torch.arange(-k, k + 1)
            offsets = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), dim=-1).reshape(-1, 3)
            per = max(1, (1 << 21) // len(offsets))
            for start in range(0, len(ids), per):
                sel = ids[start : start + per]
                idx = centre[sel, None, :] + offsets[None]  # [n, M, 3]
                inside = ((idx >= 0) & (idx < resolution)).all(dim=-1)
                d = (-bound + idx * spacing) - means[sel, None, :]
                m2 = torch.einsum("nmi,nij,nmj->nm", d, precision[sel], d)
                value = opacity[sel, None] * torch.exp(-0.5 * m2)
                keep = inside & (m2 <= CUTOFF_SIGMA**2)
                flat = (idx[..., 0] * resolution + idx[..., 1]) * resolution + idx[..., 2]
                grid.index_add_(0, flat[keep], value[keep])
        return grid.reshape(resolution, resolution, resolution)

    def export_mesh(self, resolution: int = 128) -> trimesh.Trimesh:
        """Marching cubes of the summed density at ``surface_level`` (DreamGaussian's path),
        coloured by the Gaussians around each vertex; SSD3DError when nothing reaches it."""
        if not (isinstance(resolution, int) and resolution >= 2):
            raise SSD3DError(f"resolution must be an integer >= 2; got {resolution!r}")
        bound = SCENE_BOUND
        grid = self.density_grid(resolution, bound).reshape(-1)
        spacing = 2 * bound / (resolution - 1)

        def lookup(points: Tensor) -> Tensor:
            # extract_mesh asks for exactly the grid nodes; rounding recovers their indices.
            i = torch.round((points.cpu() + bound) / spacing).long().clamp(0, resolution - 1)
            return grid[(i[:, 0] * resolution + i[:, 1]) * resolution + i[:, 2]]

        return extract_mesh(
            lookup,
            lambda p: self.albedo(p.to(self.means.device)).cpu(),
            resolution=resolution,
            bound=bound,
            threshold=self.surface_level,
        )

    def splat_data(self) -> SplatData:
        t = {k: v.float().cpu().numpy() for k, v in self._tensors().items()}
        rest = t.get("sh_rest", np.zeros((self.count, 0, 3), dtype=np.float32))
        return SplatData(
            means=t["means"],
            log_scales=t["log_scales"],
            quaternions=t["quaternions"],
            opacity_logits=t["opacity_logits"],
            sh_dc=t["sh_dc"][:, 0],
            sh_rest=rest,
        )

    def export_files(self, folder: Path) -> dict[str, Path]:
        """The Gaussians as a standard 3DGS .ply (``gaussians.ply``), for splat viewers."""
        return {"splat_ply": write_splat_ply(Path(folder) / "gaussians.ply", self.splat_data())}
