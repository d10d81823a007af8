"""Gaussian splatting against a per-pixel reference, depth order, normals, shading, SH, gsplat."""

import math

import pytest
import torch

from ssd3d.errors import SSD3DError
from ssd3d.scene import (
    SolidBackground,
    SphericalHarmonicsBackground,
    fixed_shading,
    generate_rays,
    sh_basis,
    spherical_cameras,
)
from ssd3d.scene.splat import sh_basis_3dgs, splat

BG = (0.2, 0.4, 0.6)


def cameras(width=10, height=8, elevations=(20.0, -35.0), azimuths=(30.0, -120.0)):
    e = torch.tensor(elevations)
    a = torch.tensor(azimuths)
    return spherical_cameras(e, a, torch.full_like(e, 2.5), torch.full_like(e, 50.0), width, height)


def rotation_reference(q):
    """(w^2 - v.v) I + 2 v v^T + 2 w [v]x: another route to the quaternion's rotation."""
    q = q / q.norm()
    w, v = q[0], q[1:]
    zero = torch.zeros((), dtype=q.dtype)
    cross = torch.stack(
        [
            torch.stack([zero, -v[2], v[1]]),
            torch.stack([v[2], zero, -v[0]]),
            torch.stack([-v[1], v[0], zero]),
        ]
    )
    return (w * w - v @ v) * torch.eye(3) + 2 * torch.outer(v, v) + 2 * w * cross


def reference_render(means, log_scales, quats, logits, dc, cams, bg):
    """One pixel and one Gaussian at a time, as 3DGS's CUDA kernel does; the Jacobian of the
    projection by autograd instead of the closed form."""
    images = []
    bg = torch.tensor(bg)
    for b in range(cams.batch_size):
        w2c = torch.linalg.inv(cams.c2w[b])
        f = float(cams.focal_px[b])
        width, height = cams.width, cams.height

        def to_pixel(pc, f=f, width=width, height=height):
            depth = -pc[2]
            return torch.stack([f * pc[0] / depth + width / 2, -f * pc[1] / depth + height / 2])

        items = []
        for i in range(means.shape[0]):
            pc = w2c[:3, :3] @ means[i] + w2c[:3, 3]
            jac = torch.autograd.functional.jacobian(to_pixel, pc, create_graph=True)
            rs = rotation_reference(quats[i]) @ torch.diag(torch.exp(log_scales[i]))
            cov = jac @ w2c[:3, :3] @ rs @ rs.T @ w2c[:3, :3].T @ jac.T + 0.3 * torch.eye(2)
            colour = 0.5 + dc[i] / (2 * math.sqrt(math.pi))
            items.append(
                (float(-pc[2].detach()), to_pixel(pc), torch.linalg.inv(cov), logits[i], colour)
            )
        items.sort(key=lambda item: item[0])
        rows = []
        for r in range(height):
            row = []
            for c in range(width):
                x = torch.tensor([c + 0.5, r + 0.5])
                transmittance = torch.ones(())
                rgb = torch.zeros(3)
                for _, mu, precision, logit, colour in items:
                    d = x - mu
                    alpha = (torch.sigmoid(logit) * torch.exp(-0.5 * d @ precision @ d)).clamp(
                        max=0.99
                    )
                    if alpha < 1 / 255:
                        continue
                    if transmittance * (1 - alpha) < 1e-4:
                        break
                    rgb = rgb + transmittance * alpha * colour
                    transmittance = transmittance * (1 - alpha)
                row.append(rgb + transmittance * bg)
            rows.append(torch.stack(row))
        images.append(torch.stack(rows).permute(2, 0, 1))
    return torch.stack(images)


def gaussian_set(kind):
    g = torch.Generator().manual_seed(3)
    if kind == "mixed":
        n = 5
        means = 0.4 * (torch.rand(n, 3, generator=g) - 0.5)
        log_scales = torch.log(0.15 + 0.25 * torch.rand(n, 3, generator=g))
        quats = torch.randn(n, 4, generator=g)
        logits = torch.randn(n, generator=g)
    else:  # three opaque Gaussians in a row, then a fourth: pixels stop at T < 1e-4
        n = 4
        means = torch.tensor([[0.0, 0, 0], [0.05, 0, 0], [0.1, 0, 0], [0.3, 0.0, 0.0]])
        log_scales = torch.log(torch.full((n, 3), 0.3))
        quats = torch.randn(n, 4, generator=g)
        logits = torch.full((n,), 8.0)
    dc = torch.randn(n, 3, generator=g)
    return [t.requires_grad_() for t in (means, log_scales, quats, logits, dc)]


@pytest.mark.parametrize("kind", ["mixed", "opaque"])
def test_matches_per_pixel_reference_forward_and_gradients(kind):
    params = gaussian_set(kind)
    means, log_scales, quats, logits, dc = params
    cams = cameras()
    out = splat(
        means, log_scales, quats, logits, dc[:, None, :], cams, SolidBackground(BG), backend="torch"
    ).render
    ref = reference_render(means, log_scales, quats, logits, dc, cams, BG)
    torch.testing.assert_close(out.rgb, ref, atol=1e-5, rtol=1e-4)
    assert out.rgb.shape == (2, 3, 8, 10)
    if kind == "opaque":  # the early stop was exercised: some pixel is nearly fully covered
        assert float(out.opacity.detach().max()) > 1 - 1e-3
    weights = torch.rand(out.rgb.shape, generator=torch.Generator().manual_seed(1))
    grads = torch.autograd.grad((out.rgb * weights).sum(), params)
    grads_ref = torch.autograd.grad((ref * weights).sum(), params)
    for name, got, want in zip(
        ("means", "scales", "quats", "logits", "dc"), grads, grads_ref, strict=True
    ):
        assert want.abs().max() > 0, name
        torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-3, msg=name)


def _two_on_axis(near_colour, far_colour):
    """An opaque Gaussian at x = 0.3 and another at x = -0.3, seen from +x (near) or -x."""
    means = torch.tensor([[0.3, 0.0, 0.0], [-0.3, 0.0, 0.0]])
    log_scales = torch.log(torch.full((2, 3), 0.3))
    quats = torch.tensor([[1.0, 0, 0, 0], [1.0, 0, 0, 0]])
    logits = torch.full((2,), 8.0)
    colours = torch.tensor([near_colour, far_colour])
    dc = (colours - 0.5) * 2 * math.sqrt(math.pi)
    return means, log_scales, quats, logits, dc[:, None, :]


def _centre(image):
    h, w = image.shape[-2:]
    return image[..., h // 2 - 1 : h // 2 + 1, w // 2 - 1 : w // 2 + 1].mean(dim=(-1, -2))


def test_the_near_opaque_gaussian_hides_the_far_one_whatever_the_input_order():
    red, green = (0.9, 0.1, 0.1), (0.1, 0.9, 0.1)
    g = _two_on_axis(red, green)
    cams = cameras(16, 16, elevations=(0.0, 0.0), azimuths=(0.0, 180.0))
    out = splat(*g, cams, SolidBackground(), backend="torch").render
    front, back = _centre(out.rgb)
    assert front[0] > 0.8 and front[1] < 0.2  # from +x: red in front
    assert back[1] > 0.8 and back[0] < 0.2  # from -x: green in front
    swapped = [t.flip(0) for t in g]
    again = splat(*swapped, cams, SolidBackground(), backend="torch").render
    torch.testing.assert_close(again.rgb, out.rgb)
    # Depth is a ray distance, as the voxel renderer's: about 2.5 - 0.3 at the centre.
    depth = _centre(out.depth / out.opacity)[:, 0]
    torch.testing.assert_close(depth, torch.tensor([2.2, 2.2]), atol=0.05, rtol=0)


def _disc(colour=(0.8, 0.2, 0.2)):
    """A flat opaque Gaussian in the z = 0 plane (its shortest axis is world z)."""
    means = torch.zeros(1, 3)
    log_scales = torch.log(torch.tensor([[0.4, 0.4, 0.02]]))
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    logits = torch.tensor([8.0])
    dc = ((torch.tensor([colour]) - 0.5) * 2 * math.sqrt(math.pi))[:, None, :]
    return means, log_scales, quats, logits, dc


def test_normals_are_the_shortest_axis_turned_towards_the_camera():
    cams = cameras(12, 12, elevations=(80.0, -80.0), azimuths=(0.0, 0.0))
    out = splat(*_disc(), cams, SolidBackground(), backend="torch").render
    n_top, n_bottom = _centre(out.normal / out.opacity)
    torch.testing.assert_close(n_top, torch.tensor([0.0, 0.0, 1.0]), atol=1e-4, rtol=0)
    torch.testing.assert_close(n_bottom, torch.tensor([0.0, 0.0, -1.0]), atol=1e-4, rtol=0)


def test_shading_modes_use_the_gaussian_normals_and_light():
    cams = cameras(12, 12, elevations=(80.0,), azimuths=(0.0,))
    above = cams.positions
    below = above * torch.tensor([1.0, 1.0, -1.0])
    red, blue = _disc((0.8, 0.2, 0.2)), _disc((0.2, 0.2, 0.8))
    bg = SolidBackground((0.0, 0.0, 0.0))

    def centre(g, mode, light):
        out = splat(*g, cams, bg, fixed_shading(mode, cams, light), backend="torch").render
        return _centre(out.rgb)[0]

    albedo = centre(red, "albedo", above)
    lit = centre(red, "lambertian", above)
    unlit = centre(red, "lambertian", below)
    # Headlight nearly along the normal: about albedo; light behind the disc: ambient only.
    torch.testing.assert_close(lit, albedo, atol=0.02, rtol=0)
    torch.testing.assert_close(unlit, 0.1 * albedo, atol=1e-3, rtol=0)
    # Textureless ignores the colour.
    torch.testing.assert_close(
        centre(red, "textureless", above), centre(blue, "textureless", above)
    )


def test_empty_views_show_the_background_along_the_voxel_renderer_rays():
    bg = SphericalHarmonicsBackground(degree=2)
    with torch.no_grad():
        bg.coefficients.normal_(generator=torch.Generator().manual_seed(0))
    means, log_scales, quats, _, dc = _disc()
    cams = cameras()
    out = splat(means, log_scales, quats, torch.tensor([-20.0]), dc, cams, bg, backend="torch")
    expected = bg(generate_rays(cams).directions).permute(0, 3, 1, 2)
    torch.testing.assert_close(out.render.rgb, expected)
    torch.testing.assert_close(out.render.directions, generate_rays(cams).directions)
    assert float(out.render.opacity.max()) == 0.0


def test_pixel_chunks_give_the_same_render():
    params = gaussian_set("mixed")
    cams = cameras()
    args = (*params[:4], params[4][:, None, :], cams, SolidBackground(BG))
    whole = splat(*args, backend="torch").render
    chunked = splat(*args, backend="torch", chunk_elements=7).render
    torch.testing.assert_close(chunked.rgb, whole.rgb, atol=1e-6, rtol=0)
    torch.testing.assert_close(chunked.depth, whole.depth, atol=1e-5, rtol=0)


def test_sh_basis_matches_the_scene_basis_up_to_3dgs_signs_and_is_orthonormal():
    d = torch.nn.functional.normalize(
        torch.randn(50, 3, generator=torch.Generator().manual_seed(0))
    )
    signs = torch.tensor([1.0, -1, 1, -1, 1, -1, 1, -1, 1])
    torch.testing.assert_close(sh_basis_3dgs(d, 2), sh_basis(d, 2) * signs)
    # Fibonacci-sphere quadrature: mean of Y_i Y_j over the sphere is delta_ij / (4 pi).
    n = 20000
    k = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1 - 2 * k / n
    phi = math.pi * (3 - math.sqrt(5)) * k
    r = (1 - z * z).sqrt()
    dirs = torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], dim=-1)
    y = sh_basis_3dgs(dirs, 3)
    gram = 4 * math.pi * (y.T @ y) / n
    torch.testing.assert_close(gram, torch.eye(16, dtype=torch.float64), atol=1e-3, rtol=0)


def test_view_dependent_colour_changes_with_the_view_only_with_higher_bands():
    means, log_scales, quats, logits, dc = _disc()
    rest = torch.zeros(1, 3, 3)
    rest[0, 1] = 0.5  # band 1's z term (coefficient 2 overall), every channel
    cams = cameras(12, 12, elevations=(80.0, -80.0), azimuths=(0.0, 0.0))
    bg = SolidBackground()
    flat = splat(means, log_scales, quats, logits, dc, cams, bg, backend="torch").render
    top, bottom = _centre(flat.rgb)
    torch.testing.assert_close(top, bottom)
    sh = torch.cat([dc, rest], dim=1)
    shaded = splat(means, log_scales, quats, logits, sh, cams, bg, backend="torch").render
    top, bottom = _centre(shaded.rgb)
    # 3DGS's direction is camera -> Gaussian: from above it points down (-z), so the
    # band C1 * z * 0.5 darkens the top view and brightens the bottom one.
    assert (bottom - top).min() > 0.3


def test_bad_inputs_are_one_line_errors():
    means, log_scales, quats, logits, dc = _disc()
    cams = cameras()
    with pytest.raises(SSD3DError, match="sh \\[N, K, 3\\]"):
        splat(means, log_scales, quats, logits, dc.repeat(1, 2, 1), cams, SolidBackground())
    with pytest.raises(SSD3DError, match="backend"):
        splat(means, log_scales, quats, logits, dc, cams, SolidBackground(), backend="cuda")
    with pytest.raises(SSD3DError, match="shading has 1 views"):
        shading = fixed_shading("albedo", cams[0])
        splat(means, log_scales, quats, logits, dc, cams, SolidBackground(), shading)


def test_antialiased_mode_keeps_a_small_splats_mass_whatever_the_filter():
    # A round Gaussian of about 0.7 px at the image centre, seen head on: its summed alpha
    # over the pixels is its 2D integral, o * 2 pi sigma_u sigma_v (under the 0.99 clamp, and
    # the tails cut at alpha 1/255 hold under 1% of it at this opacity). The classic filter adds low_pass to both variances, and so mass; the
    # antialiased mode's compensation keeps the undilated integral.
    cams = cameras(32, 32, elevations=(0.0,), azimuths=(0.0,))
    focal = float(cams.focal_px[0])
    sigma = 0.7 / focal * 2.5  # world units at the camera's distance 2.5 -> 0.7 px
    means, quats = torch.zeros(1, 3), torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    log_scales = torch.log(torch.full((1, 3), sigma))
    opacity = 0.9
    logits = torch.logit(torch.tensor([opacity]))
    dc = torch.zeros(1, 1, 3)

    def mass(low_pass, mode):
        out = splat(
            means, log_scales, quats, logits, dc, cams, SolidBackground(), backend="torch",
            low_pass=low_pass, rasterize_mode=mode,
        )  # fmt: skip
        return float(out.render.opacity.sum())

    undilated = opacity * 2 * math.pi * 0.7**2
    for low_pass in (0.01, 0.3, 1.0):
        assert mass(low_pass, "antialiased") == pytest.approx(undilated, rel=0.015)
        dilated = opacity * 2 * math.pi * (0.7**2 + low_pass)
        assert mass(low_pass, "classic") == pytest.approx(dilated, rel=0.015)
    with pytest.raises(SSD3DError, match="rasterize_mode"):
        mass(0.3, "mip")


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["classic", "antialiased"])
def test_gsplat_agrees_with_the_plain_renderer(mode):
    gsplat = pytest.importorskip("gsplat")
    del gsplat
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    g = torch.Generator().manual_seed(0)
    n = 300
    means = 0.5 * (torch.rand(n, 3, generator=g) - 0.5)
    log_scales = torch.log(0.03 + 0.05 * torch.rand(n, 3, generator=g))
    quats = torch.randn(n, 4, generator=g)
    logits = torch.randn(n, generator=g)
    sh = 0.5 * torch.randn(n, 4, 3, generator=g)
    cams = cameras(64, 48).to("cuda")
    params = [t.cuda().requires_grad_() for t in (means, log_scales, quats, logits, sh)]
    shading = fixed_shading("lambertian", cams)
    bg = SolidBackground(BG).cuda()
    outs, grads = [], []
    for backend in ("torch", "gsplat"):
        out = splat(*params, cams, bg, shading, backend=backend, rasterize_mode=mode).render
        outs.append(out)
        grads.append(torch.autograd.grad(out.rgb.square().sum(), params))
    plain, fast = outs
    # gsplat culls at a 3-sigma footprint per tile, the plain path only at alpha < 1/255.
    assert (plain.rgb - fast.rgb).abs().mean() < 2e-3
    assert (plain.rgb - fast.rgb).abs().max() < 5e-2
    assert (plain.opacity - fast.opacity).abs().mean() < 2e-3
    for got, want in zip(grads[1], grads[0], strict=True):
        cos = torch.nn.functional.cosine_similarity(got.flatten(), want.flatten(), dim=0)
        assert cos > 0.99


def _crowd(n=300, seed=5):
    """Many Gaussians of mixed sizes and opacities, some behind the cameras or off-screen,
    opaque enough in places for pixels to reach the transmittance stop."""
    g = torch.Generator().manual_seed(seed)
    means = 1.2 * (torch.rand(n, 3, generator=g) - 0.5)
    means[:5] = torch.tensor([0.0, 0.0, 2.4]) + 0.3 * torch.randn(5, 3, generator=g)
    log_scales = torch.log(0.02 + 0.15 * torch.rand(n, 3, generator=g))
    quats = torch.randn(n, 4, generator=g)
    logits = 4 * torch.randn(n, generator=g)
    dc = torch.randn(n, 1, 3, generator=g)
    return [t.requires_grad_() for t in (means, log_scales, quats, logits, dc)]


@pytest.mark.parametrize("chunk", [1 << 22, 500])
def test_sparse_compositing_equals_the_dense_path_forward_and_gradients(chunk):
    params = _crowd()
    cams = cameras(width=24, height=20, elevations=(20.0, 80.0), azimuths=(30.0, 0.0))
    shading = fixed_shading("lambertian", cams)
    outs = {
        kind: splat(
            *params,
            cams,
            SolidBackground(BG),
            shading,
            backend="torch",
            compositor=kind,
            chunk_elements=chunk,
        )
        for kind in ("sparse", "dense")
    }
    sparse, dense = outs["sparse"].render, outs["dense"].render
    assert float(dense.opacity.detach().max()) > 1 - 1e-3  # the early stop is exercised
    for name in ("rgb", "opacity", "depth", "normal"):
        torch.testing.assert_close(
            getattr(sparse, name), getattr(dense, name), atol=2e-5, rtol=1e-4, msg=name
        )
    weights = torch.rand(sparse.rgb.shape, generator=torch.Generator().manual_seed(1))
    depth_w = torch.rand(sparse.depth.shape, generator=torch.Generator().manual_seed(2))
    got, want = (
        torch.autograd.grad(
            (out.render.rgb * weights).sum() + (out.render.depth * depth_w).sum(),
            [*params, out.means2d],
        )
        for out in (outs["sparse"], outs["dense"])
    )
    names = ("means", "scales", "quats", "logits", "dc", "means2d")
    for name, a, b in zip(names, got, want, strict=True):
        assert b.abs().max() > 0, name
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3, msg=name)


def test_sparse_lists_hold_exactly_the_pairs_the_dense_path_blends():
    from ssd3d.scene.splat import _pack, _pixel_lists, covariances, project

    means, log_scales, quats, logits, _ = (t.detach() for t in _crowd())
    cams = cameras(width=24, height=20)
    proj = project(means, covariances(log_scales, quats), cams)
    gauss, pixel, _ = _pixel_lists(proj, _pack(proj, torch.sigmoid(logits)), 24, 20, 1 << 22)
    # The dense path's contributing pairs: alpha >= 1/255, in front, before the stop.
    b, n = proj.depths.shape
    ones = torch.eye(n).expand(b, n, n)
    from ssd3d.scene.splat import composite_gaussians

    per_gaussian, _ = composite_gaussians(proj, torch.sigmoid(logits), ones, 24, 20)
    dense_pairs = {
        (v * 24 * 20 + p, v * n + i) for v, p, i in torch.nonzero(per_gaussian > 0).tolist()
    }
    sparse_pairs = set(zip(pixel.tolist(), gauss.tolist(), strict=True))
    assert len(sparse_pairs) == len(pixel) > 1000
    assert sparse_pairs == dense_pairs
    assert len(pixel) < 0.2 * b * 24 * 20 * n  # a fraction of pixels x Gaussians
