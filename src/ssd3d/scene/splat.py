"""Differentiable splatting of anisotropic 3D Gaussians (3D Gaussian Splatting, Kerbl et al. 2023).

Each Gaussian i has a mean mu_i, a covariance Sigma_i = R_i S_i S_i^T R_i^T (S_i = diag of
exp(log-scales), R_i from a unit quaternion w, x, y, z), an opacity o_i = sigmoid(logit) and a
colour from spherical-harmonic coefficients in the 3DGS convention (colour = 0.5 + SH(d), d the
unit direction from the camera to the mean). Per view:

- EWA projection: the camera-space covariance W Sigma W^T is mapped through the Jacobian J of
  the perspective projection at the mean, Sigma' = J W Sigma W^T J^T, and dilated by 0.3 px^2
  on the diagonal (3DGS's low-pass filter: every splat covers at least about a pixel). In
  ``rasterize_mode="antialiased"`` (Mip-Splatting's 2D filter, gsplat's mode of that name) the
  opacity is scaled by sqrt(det Sigma' / det(Sigma' + 0.3 I)), so the dilation spreads a
  splat's mass instead of adding to it.
- Gaussians are sorted by view-space depth of their means and composited front to back:
  alpha_i = min(0.99, o_i exp(-0.5 delta^T Sigma'^-1 delta)), skipped when below 1/255, and a
  pixel stops at the Gaussian that would bring its transmittance under 1e-4, as 3DGS does.
- rgb = sum_i T_i alpha_i c_i + (1 - opacity) * background(ray direction), as the voxel
  renderer composites its background.

Pixel centres and directions are those of ``ssd3d.scene.rays``: pixel (row i, column j) sits at
image coordinates (j + 0.5, i + 0.5), the principal point at (W / 2, H / 2).

The plain path composites each pixel over its own list of Gaussians (gsplat's tiles, one pixel
wide): every Gaussian's box of pixels where its alpha can reach 1/255 (its opacity-aware
ellipse, as gsplat bounds it) is enumerated, the (pixel, Gaussian) pairs that pass are sorted by
pixel and depth, and the transmittance is one cumulative sum over all pairs, restarted per pixel.
At 32x32 that is a few tens of thousands of pairs per view instead of pixels x Gaussians (about
a million): the dense path (``compositor="dense"``, every Gaussian at every pixel) is kept as the
reference it is tested and timed against. Candidate pairs (and the dense path's pixels) are
processed in chunks of at most ``chunk_elements``.

With CUDA and ``gsplat`` installed, ``backend="auto"`` rasterises with ``gsplat.rasterization``
instead; shading, SH colours and the background stay in this module for both paths.

Longer than the project's 400-line mark: projection, sorting, compositing, spherical
harmonics and the gsplat path must agree to the tolerance the tests hold them to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ssd3d.errors import SSD3DError
from ssd3d.scene._indexing import pixel_box, ragged_arange
from ssd3d.scene.background import Background
from ssd3d.scene.cameras import Cameras
from ssd3d.scene.rays import camera_directions, project_points
from ssd3d.scene.render import RenderOutput
from ssd3d.scene.shading import Shading, fixed_shading, shade

# 3DGS's low-pass filter: added to both eigenvalues of every projected covariance (px^2).
LOW_PASS = 0.3
# 3DGS: alpha is clamped so one Gaussian never makes a pixel fully opaque (its gradient lives).
ALPHA_MAX = 0.99
# 3DGS: contributions below 1/255 cannot change an 8-bit pixel and are skipped.
ALPHA_MIN = 1.0 / 255.0
# 3DGS: a pixel is done once its transmittance would fall below this.
TRANSMITTANCE_MIN = 1e-4
# 3DGS's frustum test: Gaussians closer than this (view-space depth) are culled.
NEAR_PLANE = 0.2
# 3DGS clamps the mean's x/z and y/z to 1.3 times the half field of view in the Jacobian, so
# Gaussians far outside the frame do not get huge, ill-conditioned footprints.
FRUSTUM_SLACK = 1.3
# Default bound on alphas held at once per chunk of pixels (16 MB of float32 per tensor).
DEFAULT_CHUNK_ELEMENTS = 1 << 22

BACKENDS = ("auto", "torch", "gsplat")
# gsplat's names: "classic" dilates every splat (3DGS); "antialiased" dilates and compensates.
RASTERIZE_MODES = ("classic", "antialiased")
MAX_SH_DEGREE = 3

# Real SH constants in the sign convention of 3DGS's sh_utils (PlenOctrees), which the .ply
# files and splat viewers assume.
SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (
    1.0925484305920792,
    -1.0925484305920792,
    0.31539156525252005,
    -1.0925484305920792,
    0.5462742152960396,
)
SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


def sh_coefficient_count(degree: int) -> int:
    """(degree + 1)^2 coefficients per colour channel."""
    if not 0 <= degree <= MAX_SH_DEGREE:
        raise SSD3DError(f"sh_degree must be 0..{MAX_SH_DEGREE}; got {degree}")
    return (degree + 1) ** 2


def sh_basis_3dgs(directions: Tensor, degree: int) -> Tensor:
    """The 3DGS real SH basis of unit directions, bands 0..degree. [..., 3] -> [..., K]"""
    sh_coefficient_count(degree)
    x, y, z = directions.unbind(-1)
    terms = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        terms += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        terms += [
            SH_C2[0] * x * y,
            SH_C2[1] * y * z,
            SH_C2[2] * (2 * zz - xx - yy),
            SH_C2[3] * x * z,
            SH_C2[4] * (xx - yy),
        ]
    if degree >= 3:
        terms += [
            SH_C3[0] * y * (3 * xx - yy),
            SH_C3[1] * x * y * z,
            SH_C3[2] * y * (4 * zz - xx - yy),
            SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy),
            SH_C3[4] * x * (4 * zz - xx - yy),
            SH_C3[5] * z * (xx - yy),
            SH_C3[6] * x * (xx - 3 * yy),
        ]
    return torch.stack(terms, dim=-1)


def sh_to_colour(sh: Tensor, directions: Tensor | None) -> Tensor:
    """Colour in [0, 1] from SH coefficients [..., K, 3]: clamp(0.5 + sum_k Y_k(d) c_k).

    directions [..., 3] unit vectors (broadcast against sh's leading axes); None or K = 1 uses
    the constant band only (view-independent). The clamp at 1 as well as 0 (3DGS clamps at 0
    only) keeps albedo in the range ``shade`` and the priors expect.
    """
    k = sh.shape[-2]
    if k == 1 or directions is None:
        return (0.5 + SH_C0 * sh[..., 0, :]).clamp(0.0, 1.0)
    degree = math.isqrt(k) - 1
    basis = sh_basis_3dgs(directions, degree)  # [..., K]
    return (0.5 + (basis[..., None] * sh).sum(dim=-2)).clamp(0.0, 1.0)


def quaternion_to_rotation(quaternions: Tensor) -> Tensor:
    """Rotation matrices from quaternions (w, x, y, z), normalised first. [N, 4] -> [N, 3, 3]"""
    q = quaternions * torch.rsqrt((quaternions * quaternions).sum(-1, keepdim=True).clamp(1e-24))
    w, x, y, z = q.unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z),
        2 * (x * y - w * z),
        2 * (x * z + w * y),
        2 * (x * y + w * z),
        1 - 2 * (x * x + z * z),
        2 * (y * z - w * x),
        2 * (x * z - w * y),
        2 * (y * z + w * x),
        1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).reshape(*q.shape[:-1], 3, 3)


def covariances(log_scales: Tensor, quaternions: Tensor) -> Tensor:
    """Sigma = R S S^T R^T. [N, 3], [N, 4] -> [N, 3, 3]"""
    rs = quaternion_to_rotation(quaternions) * torch.exp(log_scales)[..., None, :]
    return rs @ rs.transpose(-1, -2)


def shortest_axes(log_scales: Tensor, quaternions: Tensor) -> Tensor:
    """Unit direction of each Gaussian's shortest axis (sign arbitrary). [N, 3]"""
    rotation = quaternion_to_rotation(quaternions)
    axis = log_scales.argmin(dim=-1)  # [N]
    return torch.gather(rotation, 2, axis[:, None, None].expand(-1, 3, 1))[..., 0]


@dataclass(frozen=True)
class Projection:
    """Per-view screen-space Gaussians (pixel units). B views, N Gaussians."""

    means2d: Tensor  # [B, N, 2] (u, v): u along image columns, v down the rows
    conics: Tensor  # [B, N, 3] (a, b, c) of the inverse 2D covariance [[a, b], [b, c]]
    depths: Tensor  # [B, N] view-space depth of the means (> 0 in front of the camera)
    in_front: Tensor  # [B, N] bool, beyond the near plane
    radii: Tensor  # [B, N] 3-sigma screen radius in pixels (3DGS's), 0 when culled
    visible: Tensor  # [B, N] bool, in front and its 3-sigma box overlaps the image
    # [B, N] sqrt(det Sigma' / det(Sigma' + low_pass I)) in (0, 1]: the factor on the opacity
    # that keeps a dilated splat's integral (rasterize_mode "antialiased"); None unless asked
    compensation: Tensor | None = None


def project(
    means: Tensor,
    cov3d: Tensor,
    cameras: Cameras,
    low_pass: float = LOW_PASS,
    *,
    compensate: bool = False,
) -> Projection:
    """EWA projection of 3D Gaussians into every camera (OpenGL cameras, see ``cameras``),
    each projected covariance dilated by ``low_pass`` px^2; ``compensate`` also returns the
    antialiased mode's opacity factor (the classic mode's hot path skips it)."""
    rotation = cameras.c2w.to(means)[:, :3, :3]
    p_cam, means2d, depth = project_points(means, cameras, NEAR_PLANE)
    in_front = depth > NEAR_PLANE
    d = depth.clamp(min=NEAR_PLANE)
    f = cameras.focal_px.to(means)[:, None]  # [B, 1]
    w, h = cameras.width, cameras.height
    u, v = means2d.unbind(-1)

    lim_x = FRUSTUM_SLACK * (w / 2) / f
    lim_y = FRUSTUM_SLACK * (h / 2) / f
    tx = torch.maximum(torch.minimum(p_cam[..., 0] / d, lim_x), -lim_x)
    ty = torch.maximum(torch.minimum(p_cam[..., 1] / d, lim_y), -lim_y)
    zero = torch.zeros_like(d)
    # d(u, v) / d(x, y, z) of u = f x / (-z) + W/2, v = -f y / (-z) + H/2 at the mean.
    jac = torch.stack(
        [
            torch.stack([f / d, zero, f * tx / d], dim=-1),
            torch.stack([zero, -f / d, -f * ty / d], dim=-1),
        ],
        dim=-2,
    )  # [B, N, 2, 3]
    cov_cam = rotation.transpose(-1, -2)[:, None] @ cov3d[None] @ rotation[:, None]
    cov2d = jac @ cov_cam @ jac.transpose(-1, -2)
    a = cov2d[..., 0, 0] + low_pass
    b = cov2d[..., 0, 1]
    c = cov2d[..., 1, 1] + low_pass
    det = a * c - b * b
    compensation = None
    if compensate:
        det_undilated = cov2d[..., 0, 0] * cov2d[..., 1, 1] - b * b
        compensation = torch.sqrt((det_undilated / det).clamp(min=0.0))
    conics = torch.stack([c / det, -b / det, a / det], dim=-1)

    with torch.no_grad():
        mid = 0.5 * (a + c)
        lam = mid + torch.sqrt((mid * mid - det).clamp(min=0.1))
        radii = torch.ceil(3.0 * torch.sqrt(lam))
        on_screen = (u + radii > 0) & (u - radii < w) & (v + radii > 0) & (v - radii < h) & in_front
        radii = torch.where(on_screen, radii, torch.zeros_like(radii))
    return Projection(means2d, conics, depth, in_front, radii, on_screen, compensation)


def _sorted(values: Tensor, order: Tensor) -> Tensor:
    """Gather [B, N, ...] along N by a per-view order [B, N]."""
    index = order.reshape(*order.shape, *([1] * (values.dim() - 2))).expand_as(values)
    return torch.gather(values, 1, index)


def composite_gaussians(
    proj: Projection,
    opacities: Tensor,
    features: Tensor,
    width: int,
    height: int,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> tuple[Tensor, Tensor]:
    """Front-to-back alpha compositing of every Gaussian at every pixel centre.

    opacities [N] (or per view [B, N]) in (0, 1); features [B, N, C] per-view per-Gaussian
    values to blend.
    Returns (blended [B, H * W, C] without background, opacity [B, H * W]).
    """
    b, n = proj.depths.shape
    order = torch.argsort(proj.depths.detach(), dim=1, stable=True)
    uv = _sorted(proj.means2d, order)  # [B, N, 2]
    conic = _sorted(proj.conics, order)  # [B, N, 3]
    opacity = _sorted(opacities.expand(b, n), order)  # [B, N]
    alive = _sorted(proj.in_front, order)  # [B, N]
    feats = _sorted(features, order)  # [B, N, C]

    dev, dt = uv.device, uv.dtype
    cols = torch.arange(width, device=dev, dtype=dt) + 0.5
    rows = torch.arange(height, device=dev, dtype=dt) + 0.5
    px = cols.repeat(height)  # [P] row-major
    py = rows.repeat_interleave(width)
    total = height * width
    chunk = max(1, chunk_elements // max(1, b * n))
    blended, coverage = [], []
    for start in range(0, total, chunk):
        dx = px[None, start : start + chunk, None] - uv[:, None, :, 0]  # [B, P, N]
        dy = py[None, start : start + chunk, None] - uv[:, None, :, 1]
        power = -0.5 * (conic[:, None, :, 0] * dx * dx + conic[:, None, :, 2] * dy * dy)
        power = power - conic[:, None, :, 1] * dx * dy
        alpha = (opacity[:, None, :] * torch.exp(power)).clamp(max=ALPHA_MAX)
        keep = (alpha >= ALPHA_MIN) & alive[:, None, :]
        alpha = torch.where(keep, alpha, 0.0)
        log_pass = torch.log1p(-alpha)
        # 3DGS stops a pixel at the first Gaussian that would take T below 1e-4; T only
        # decreases, so that one and every later one are dropped.
        done = torch.cumsum(log_pass, dim=-1).detach() < math.log(TRANSMITTANCE_MIN)
        alpha = torch.where(done, 0.0, alpha)
        log_pass = torch.where(done, 0.0, log_pass)
        log_t = torch.cumsum(log_pass, dim=-1)  # inclusive log transmittance
        weights = torch.exp(log_t - log_pass) * alpha  # exclusive transmittance * alpha
        blended.append(weights @ feats)  # [B, P, C]
        coverage.append(weights.sum(dim=-1))
    return torch.cat(blended, dim=1), torch.cat(coverage, dim=1)


def _segment_cumsum(values: Tensor, starts: Tensor) -> Tensor:
    """Inclusive cumulative sum within runs of a flat array (``starts`` [M]: the index of each
    element's run's first element), in float64 so that one cumulative sum over every run
    loses nothing to the subtraction of the run's base."""
    values = values.double()
    total = torch.cumsum(values, dim=0)
    return total - (total - values).index_select(0, starts)


def _run_starts(pixel: Tensor, pixels: int) -> Tensor:
    """For sorted pixel indices [M] in [0, pixels), the index of each one's first occurrence."""
    first = torch.cumsum(torch.bincount(pixel, minlength=pixels), dim=0)
    first = torch.cat([first.new_zeros(1), first[:-1]])
    return first.index_select(0, pixel)


def _alpha(packed: Tensor, px: Tensor, py: Tensor) -> Tensor:
    """3DGS's alpha of Gaussians packed [M, 6] (u, v, conic a, b, c, opacity) at pixel
    centres px, py [M]."""
    u, v, a, b, c, opacity = packed.unbind(-1)
    dx = px - u
    dy = py - v
    power = -0.5 * (a * dx * dx + c * dy * dy) - b * dx * dy
    return (opacity * torch.exp(power)).clamp(max=ALPHA_MAX)


def _pack(proj: Projection, opacities: Tensor) -> Tensor:
    """Per-view Gaussians as rows (u, v, conic a, b, c, opacity), flattened. [B * N, 6]"""
    b, n = proj.depths.shape
    packed = torch.cat([proj.means2d, proj.conics, opacities.expand(b, n)[..., None]], dim=-1)
    return packed.reshape(b * n, 6)


@torch.no_grad()
def _pixel_lists(
    proj: Projection, packed: Tensor, width: int, height: int, chunk_elements: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Every (view, pixel, Gaussian) whose alpha reaches ALPHA_MIN before the pixel's
    transmittance stop, grouped by pixel and front to back within each.

    Returns (gaussian [M] row of ``packed``, pixel [M] index into the flattened
    [B * H * W], starts [M] as ``_segment_cumsum`` takes them).
    """
    b, n = proj.depths.shape
    dev = packed.device
    order = torch.argsort(proj.depths, dim=1, stable=True)
    flat = (order + torch.arange(b, device=dev)[:, None] * n).reshape(-1)  # depth order
    rows = packed.detach().index_select(0, flat)
    alive = proj.in_front.reshape(-1).index_select(0, flat)
    u, v, ca, cb, cc, opacity = rows.unbind(-1)
    # alpha >= ALPHA_MIN needs o exp(-m^2 / 2) >= 1/255, m^2 <= 2 ln(255 o): inside an ellipse
    # whose half-extents along the image axes are sqrt(2 ln(255 o) Sigma'_xx) and likewise y
    # (Sigma' = conic^-1). A 1e-3 px margin absorbs rounding; the exact test follows.
    level = 2 * torch.log((opacity / ALPHA_MIN).clamp(min=1.0))
    det = ca * cc - cb * cb
    ok = alive & (level > 0) & (det > 0) & torch.isfinite(u) & torch.isfinite(v)
    det = torch.where(ok, det, 1.0)
    half_u = torch.sqrt((level * cc / det).clamp(min=0)) + 1e-3
    half_v = torch.sqrt((level * ca / det).clamp(min=0)) + 1e-3
    u = torch.where(ok, u, -1.0)
    v = torch.where(ok, v, -1.0)
    # Columns with |j + 0.5 - u| <= half_u, rows likewise.
    x0, x1, y0, y1 = pixel_box(u - half_u, u + half_u, v - half_v, v + half_v, width, height)
    nx = (x1 - x0 + 1).clamp(min=0)
    counts = torch.where(ok, nx * (y1 - y0 + 1).clamp(min=0), 0)
    # Row-major pixel of each box's first pixel, plus each view's offset in the flat images.
    base = (flat // n) * (height * width) + y0 * width + x0
    nx = nx.clamp(min=1)

    # Enumerate each Gaussian's box, at most about chunk_elements candidate pairs at a time.
    ends = torch.cumsum(counts, dim=0)
    keys, alphas = [], []
    first, total = 0, int(ends[-1]) if len(ends) else 0
    while first < len(counts) and total > 0:
        before = int(ends[first - 1]) if first > 0 else 0
        if before >= total:
            break
        last = int(torch.searchsorted(ends, before + chunk_elements, right=True))
        last = min(max(last, first + 1), len(counts))
        owner, local = ragged_arange(counts[first:last])
        g = owner + first
        row = torch.div(local, nx.index_select(0, g), rounding_mode="floor")
        col = local - row * nx.index_select(0, g)
        pixel = base.index_select(0, g) + row * width + col
        px = (x0.index_select(0, g) + col).to(rows.dtype) + 0.5
        py = (y0.index_select(0, g) + row).to(rows.dtype) + 0.5
        alpha = _alpha(rows.index_select(0, g), px, py)
        keep = torch.nonzero(alpha >= ALPHA_MIN)[:, 0]
        # Sort key: pixel, then depth rank (g's rank within its view, which base already
        # separates), so one sort groups pixels front to back.
        keys.append((pixel * n + g % n).index_select(0, keep))
        alphas.append(alpha.index_select(0, keep))
        first = last
    if not keys:
        empty = torch.zeros(0, dtype=torch.long, device=dev)
        return empty, empty, empty
    key, perm = torch.sort(torch.cat(keys))
    alpha = torch.cat(alphas).index_select(0, perm)
    pixel = torch.div(key, n, rounding_mode="floor")
    gauss = flat.index_select(
        0, key - pixel * n + torch.div(pixel, height * width, rounding_mode="floor") * n
    )
    starts = _run_starts(pixel, b * height * width)
    # 3DGS stops a pixel at the first Gaussian that would take T below 1e-4; T only
    # decreases, so that one and every later one in the pixel are dropped.
    log_t = _segment_cumsum(torch.log1p(-alpha), starts)
    stop = log_t < math.log(TRANSMITTANCE_MIN)
    if bool(stop.any()):
        keep = torch.nonzero(~stop)[:, 0]
        gauss, pixel = gauss.index_select(0, keep), pixel.index_select(0, keep)
        starts = _run_starts(pixel, b * height * width)
    return gauss, pixel, starts


def composite_gaussians_sparse(
    proj: Projection,
    opacities: Tensor,
    features: Tensor,
    width: int,
    height: int,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> tuple[Tensor, Tensor]:
    """``composite_gaussians`` over each pixel's own list of Gaussians (gsplat's tiles, one
    pixel each): only the (pixel, Gaussian) pairs inside each Gaussian's alpha >= 1/255
    ellipse are evaluated, so the cost follows the pairs that contribute rather than pixels
    x Gaussians. Same inputs and outputs, the same values to float rounding.
    """
    b, n = proj.depths.shape
    c = features.shape[-1]
    packed = _pack(proj, opacities)
    gauss, pixel, starts = _pixel_lists(proj, packed, width, height, chunk_elements)
    local = pixel % (height * width)
    py = torch.div(local, width, rounding_mode="floor")
    px = (local - py * width).to(packed.dtype) + 0.5
    alpha = _alpha(packed.index_select(0, gauss), px, py.to(packed.dtype) + 0.5)
    log_pass = torch.log1p(-alpha)
    exclusive = (_segment_cumsum(log_pass, starts) - log_pass.double()).to(alpha.dtype)
    weights = torch.exp(exclusive) * alpha  # [M]
    total = b * height * width
    values = weights[:, None] * features.reshape(-1, c).index_select(0, gauss)
    blended = features.new_zeros(total, c).index_add(0, pixel, values)
    coverage = weights.new_zeros(total).index_add(0, pixel, weights)
    return blended.reshape(b, -1, c), coverage.reshape(b, -1)


COMPOSITORS = {"sparse": composite_gaussians_sparse, "dense": composite_gaussians}


def gsplat_available(device: torch.device) -> bool:
    if device.type != "cuda":
        return False
    try:
        import gsplat  # noqa: F401
    except ImportError:
        return False
    return True


def _composite_gsplat(
    means: Tensor,
    log_scales: Tensor,
    quaternions: Tensor,
    opacities: Tensor,
    features: Tensor,
    cameras: Cameras,
    low_pass: float,
    rasterize_mode: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """gsplat's tiled CUDA rasteriser on the same per-view features.

    Returns (blended [B, H * W, C], opacity [B, H * W], means2d [B, N, 2], radii [B, N]).
    """
    import gsplat

    # gsplat wants world-to-camera in the OpenCV convention (x right, y down, looking down +z).
    flip = torch.diag(means.new_tensor([1.0, -1.0, -1.0, 1.0]))
    viewmats = flip @ torch.linalg.inv(cameras.c2w.to(means))
    f = cameras.focal_px.to(means)
    ks = torch.zeros(cameras.batch_size, 3, 3, dtype=means.dtype, device=means.device)
    ks[:, 0, 0], ks[:, 1, 1] = f, f
    ks[:, 0, 2], ks[:, 1, 2], ks[:, 2, 2] = cameras.width / 2, cameras.height / 2, 1.0
    colours, alphas, meta = gsplat.rasterization(
        means,
        quaternions,
        torch.exp(log_scales),
        opacities,
        features,
        viewmats,
        ks,
        cameras.width,
        cameras.height,
        near_plane=NEAR_PLANE,
        eps2d=low_pass,
        rasterize_mode=rasterize_mode,
        packed=False,
    )
    b = cameras.batch_size
    if meta["means2d"].requires_grad:
        meta["means2d"].retain_grad()
    radii = meta["radii"]
    if radii.dim() == 3:  # newer gsplat: one radius per image axis
        radii = radii.amax(dim=-1)
    return (
        colours.reshape(b, -1, features.shape[-1]),
        alphas.reshape(b, -1),
        meta["means2d"],
        radii.to(means.dtype),
    )


@dataclass
class SplatOutput:
    """A render plus the screen-space quantities densification needs."""

    render: RenderOutput
    # [B, N, 2] projected means; its .grad after backward is the view-space positional gradient
    # (pixel units) when the render was made with gradients enabled.
    means2d: Tensor
    radii: Tensor  # [B, N] screen radius in pixels, 0 where not visible
    visible: Tensor  # [B, N] bool


def splat(
    means: Tensor,
    log_scales: Tensor,
    quaternions: Tensor,
    opacity_logits: Tensor,
    sh: Tensor,
    cameras: Cameras,
    background: Background,
    shading: Shading | None = None,
    *,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    backend: str = "auto",
    compositor: str = "sparse",
    low_pass: float = LOW_PASS,
    rasterize_mode: str = "classic",
) -> SplatOutput:
    """Render N Gaussians into B cameras (see the module docstring).

    means [N, 3], log_scales [N, 3], quaternions [N, 4] (w, x, y, z; any norm),
    opacity_logits [N], sh [N, K, 3] (K = 1, 4, 9 or 16; 3DGS convention). shading: per-view
    modes and lights applied to each Gaussian's colour with its normal (the shortest axis,
    turned towards the camera) at its mean; None renders albedo. backend: "torch" (any device),
    "gsplat" (CUDA with gsplat installed), "auto" (gsplat when available). compositor, for the
    plain path: "sparse" (per-pixel lists, the default) or "dense" (every Gaussian at every
    pixel: the reference the sparse one is tested and timed against). low_pass: the px^2
    added to every projected covariance (3DGS's 0.3, an antialiasing filter that widens each
    splat by a fixed number of pixels, so its footprint in the scene grows as the render
    shrinks; measurements of the geometry turn it down). rasterize_mode: "classic" (3DGS) or
    "antialiased" (the dilated splat's opacity compensated, so the filter cannot widen a faint
    splat's coverage for free; see the module docstring).
    """
    n = means.shape[0]
    if (
        means.shape != (n, 3)
        or log_scales.shape != (n, 3)
        or quaternions.shape != (n, 4)
        or opacity_logits.shape != (n,)
        or sh.dim() != 3
        or sh.shape[0] != n
        or sh.shape[2] != 3
        or math.isqrt(sh.shape[1]) ** 2 != sh.shape[1]
        or sh.shape[1] > (MAX_SH_DEGREE + 1) ** 2
    ):
        raise SSD3DError(
            "Gaussians must be means [N, 3], log_scales [N, 3], quaternions [N, 4], "
            "opacity_logits [N] and sh [N, K, 3] with K in 1, 4, 9, 16; got "
            f"{[tuple(t.shape) for t in (means, log_scales, quaternions, opacity_logits, sh)]}"
        )
    if backend not in BACKENDS:
        raise SSD3DError(f"splat backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    use_gsplat = backend == "gsplat" or (backend == "auto" and gsplat_available(means.device))
    if backend == "gsplat" and not gsplat_available(means.device):
        raise SSD3DError("splat backend 'gsplat' needs a CUDA device and the gsplat package")
    if chunk_elements < 1:
        raise SSD3DError(f"chunk_elements must be >= 1; got {chunk_elements}")
    if not low_pass > 0:
        raise SSD3DError(f"low_pass must be > 0 px^2; got {low_pass}")
    if compositor not in COMPOSITORS:
        raise SSD3DError(f"compositor must be one of {', '.join(COMPOSITORS)}; got {compositor!r}")
    if rasterize_mode not in RASTERIZE_MODES:
        raise SSD3DError(
            f"rasterize_mode must be one of {', '.join(RASTERIZE_MODES)}; got {rasterize_mode!r}"
        )
    cameras = cameras.to(means.device)
    b, h, w = cameras.batch_size, cameras.height, cameras.width
    if shading is None:
        shading = fixed_shading("albedo", cameras)
    if len(shading.modes) != b:
        raise SSD3DError(f"shading has {len(shading.modes)} views but cameras have {b}")

    # Per-view, per-Gaussian inputs shared by both rasterisers.
    eye = cameras.positions.to(means)  # [B, 3]
    to_mean = means[None] - eye[:, None]  # [B, N, 3]
    view_dirs = to_mean * torch.rsqrt((to_mean * to_mean).sum(-1, keepdim=True).clamp(1e-24))
    albedo = sh_to_colour(sh[None].expand(b, -1, -1, -1), view_dirs)  # [B, N, 3]
    axes = shortest_axes(log_scales, quaternions)[None].expand(b, -1, -1)
    facing = (axes * view_dirs).sum(-1, keepdim=True) > 0  # pointing away from the camera
    normals = torch.where(facing, -axes, axes)  # [B, N, 3]
    colour = shade(albedo, normals, means[None].expand(b, -1, -1), shading)
    opacities = torch.sigmoid(opacity_logits)

    rotation = cameras.c2w[:, :3, :3].to(means)
    forward = -rotation[:, :, 2]  # [B, 3] the camera's viewing axis in world coordinates
    z = (to_mean * forward[:, None]).sum(-1, keepdim=True)  # [B, N, 1] view-space depth
    features = torch.cat([colour, normals, z], dim=-1)  # [B, N, 7]

    if use_gsplat:
        blended, coverage, means2d, radii = _composite_gsplat(
            means, log_scales, quaternions, opacities, features, cameras, low_pass, rasterize_mode
        )
        visible = radii > 0
    else:
        antialiased = rasterize_mode == "antialiased"
        proj = project(
            means, covariances(log_scales, quaternions), cameras, low_pass, compensate=antialiased
        )
        if torch.is_grad_enabled() and proj.means2d.requires_grad:
            proj.means2d.retain_grad()
        if antialiased:
            opacities = opacities * proj.compensation  # [B, N]: per view
        composite = COMPOSITORS[compositor]
        blended, coverage = composite(
            proj, opacities, features, w, h, chunk_elements=chunk_elements
        )
        means2d, radii, visible = proj.means2d, proj.radii, proj.visible

    dirs_cam = camera_directions(cameras).to(means)  # [B, H, W, 3]
    directions = (rotation[:, None, None] @ dirs_cam[..., None])[..., 0]
    blended = blended.reshape(b, h, w, -1)
    opacity = coverage.reshape(b, h, w)
    rgb = blended[..., :3] + (1 - opacity[..., None]) * background(directions)
    # Blended view-space depth -> distance along each pixel's ray, as the voxel renderer's
    # depth: a point at ray distance t has view depth t * (-d_z) in camera coordinates.
    depth = blended[..., 6] / (-dirs_cam[..., 2])
    render = RenderOutput(
        rgb=rgb.permute(0, 3, 1, 2).contiguous(),
        opacity=opacity[:, None],
        depth=depth[:, None],
        normal=blended[..., 3:6].permute(0, 3, 1, 2).contiguous(),
        weights=None,
        sample_normals=None,
        directions=directions,
    )
    return SplatOutput(render, means2d, radii, visible)
