"""Volume rendering: analytic opacities, vectorised vs per-ray compositing, the blob init."""

import math

import pytest
import torch

from ssd3d.errors import SSD3DError
from ssd3d.scene import (
    RadianceField,
    RenderConfig,
    Shading,
    SolidBackground,
    VoxelGridConfig,
    VoxelGridField,
    composite,
    composite_reference,
    fixed_shading,
    generate_rays,
    normal_image,
    orbit_cameras,
    render,
    sample_distances,
    spherical_cameras,
)


class ConstantSphere(RadianceField):
    """Density ``sigma`` inside a ball of radius ``radius`` at the origin, zero outside."""

    def __init__(self, sigma: float, radius: float, colour=(0.2, 0.4, 0.6)):
        super().__init__()
        self.sigma, self.radius = sigma, radius
        self.colour = torch.tensor(colour)

    def forward(self, points):
        inside = (points.norm(dim=-1) < self.radius).to(points.dtype)
        return self.sigma * inside, self.colour.expand(points.shape[0], 3)


def _analytic_opacity(rays, sigma, radius):
    """1 - exp(-sigma * chord), chord = 2 sqrt(r^2 - b^2), b the ray's distance to the origin."""
    o, d = rays.origins, rays.directions
    b2 = (o.cross(d, dim=-1) ** 2).sum(-1)
    chord = 2 * (radius**2 - b2).clamp(min=0).sqrt()
    return 1 - torch.exp(-sigma * chord)


@pytest.mark.parametrize("jitter", [False, True])
def test_constant_sphere_opacity_matches_the_chord_formula(jitter):
    sigma, radius = 2.0, 0.6
    cams = spherical_cameras(
        torch.tensor([0.0, 35.0]), torch.tensor([0.0, 120.0]), torch.tensor([2.0, 2.4]),
        torch.tensor([50.0, 60.0]), 17, 17,
    )  # fmt: skip
    field = ConstantSphere(sigma, radius)
    generator = torch.Generator().manual_seed(0) if jitter else None
    out = render(field, cams, SolidBackground(), RenderConfig(num_samples=256), generator=generator)
    expected = _analytic_opacity(generate_rays(cams), sigma, radius)
    got = out.opacity[:, 0]
    # Through the centre (pixel 8, 8): chord = 2r exactly.
    centre = 1 - math.exp(-sigma * 2 * radius)
    torch.testing.assert_close(got[:, 8, 8], torch.full((2,), centre), atol=0.01, rtol=0)
    # Every pixel, including off-centre ones with shorter chords and misses (opacity 0).
    # One bin of 2 sqrt(3) / 256 at each end of the chord bounds the error.
    assert (got - expected).abs().max() < sigma * 2 * math.sqrt(3) / 256 + 1e-4
    assert (expected > 0.1).sum() > 30 and (expected == 0).sum() > 30  # both cases present
    # rgb = opacity * colour + (1 - opacity) * white background
    rgb = out.rgb.permute(0, 2, 3, 1)
    want = got[..., None] * field.colour + (1 - got[..., None])
    torch.testing.assert_close(rgb, want, atol=1e-5, rtol=0)


def test_rays_that_miss_the_cube_have_zero_opacity():
    # A wide view from close to a face: the outer pixels' rays miss the cube entirely.
    cams = spherical_cameras(*(torch.tensor([v]) for v in (0.0, 0.0, 2.0, 120.0)), 9, 9)
    rays = generate_rays(cams)
    assert (~rays.hit).any()
    out = render(ConstantSphere(1e4, 2.0), cams, SolidBackground((0.0, 0.0, 0.0)))
    assert (out.opacity[0, 0][~rays.hit[0]] == 0).all()
    assert (out.opacity[0, 0][rays.hit[0]] > 0.99).all()


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (12, 3)])
def test_vectorised_compositing_matches_the_per_ray_loop(shape):
    g = torch.Generator().manual_seed(sum(shape))
    r, s = shape
    sigma = (torch.rand(r, s, generator=g, dtype=torch.float64) * 5).requires_grad_()
    colour = torch.rand(r, s, 3, generator=g, dtype=torch.float64).requires_grad_()
    delta = (torch.rand(r, s, generator=g, dtype=torch.float64) * 0.3).requires_grad_()
    probes = [torch.randn(r, s, generator=g, dtype=torch.float64),
              torch.randn(r, 3, generator=g, dtype=torch.float64),
              torch.randn(r, generator=g, dtype=torch.float64)]  # fmt: skip
    grads = []
    for fn in (composite, composite_reference):
        outs = fn(sigma, colour, delta)
        loss = sum((o * p).sum() for o, p in zip(outs, probes, strict=True))
        grads.append((outs, torch.autograd.grad(loss, (sigma, colour, delta))))
    (out_v, grad_v), (out_r, grad_r) = grads
    for a, b in zip(out_v + grad_v, out_r + grad_r, strict=True):
        torch.testing.assert_close(a, b)


def test_render_equals_a_per_ray_reference_forward_and_backward():
    torch.manual_seed(0)
    field = VoxelGridField(VoxelGridConfig(resolution=6))
    with torch.no_grad():
        field.density_raw.normal_(0, 2)
        field.albedo_raw.normal_()
    bg = SolidBackground((0.3, 0.5, 0.7))
    cams = orbit_cameras(2, elevation_deg=20, width=3, height=2)
    config = RenderConfig(num_samples=6)
    out = render(field, cams, bg, config, generator=torch.Generator().manual_seed(5))
    (grad_fast,) = torch.autograd.grad(out.rgb.square().sum(), field.density_raw)

    # Reference: one ray at a time through the same public pieces and the slow compositor.
    rays = generate_rays(cams)
    t, delta = sample_distances(rays.near, rays.far, 6, torch.Generator().manual_seed(5))
    rgb = torch.zeros(2, 2, 3, 3)
    for b in range(2):
        for i in range(2):
            for j in range(3):
                pts = rays.origins[b, i, j] + t[b, i, j, :, None] * rays.directions[b, i, j]
                sigma, albedo = field(pts)
                _, c, o = composite_reference(sigma[None], albedo[None], delta[b, i, j][None])
                rgb[b, i, j] = c[0] + (1 - o[0]) * bg.colour
    (grad_ref,) = torch.autograd.grad(rgb.square().sum(), field.density_raw)
    torch.testing.assert_close(out.rgb, rgb.permute(0, 3, 1, 2))
    torch.testing.assert_close(grad_fast, grad_ref)
    assert grad_ref.abs().sum() > 0


def test_blob_init_renders_empty_corners_and_an_opaque_centre():
    cams = orbit_cameras(4, elevation_deg=15, width=32, height=32)  # distance 2.25, fov 55
    out = render(
        VoxelGridField(), cams, SolidBackground(), generator=torch.Generator().manual_seed(0)
    )
    corners = out.rgb[:, :, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners > 0.999).all()  # white background shows through
    assert out.opacity[:, 0, [0, 0, -1, -1], [0, -1, 0, -1]].max() < 1e-3
    assert (out.opacity[:, 0, 15:17, 15:17] > 0.99).all()
    torch.testing.assert_close(out.rgb[:, :, 16, 16], torch.full((4, 3), 0.5), atol=0.01, rtol=0)


def test_eval_render_is_deterministic_and_training_jitter_follows_the_seed():
    field, bg, cams = VoxelGridField(), SolidBackground(), orbit_cameras(2, width=8, height=8)
    a = render(field, cams, bg).rgb
    b = render(field, cams, bg).rgb
    assert torch.equal(a, b)
    j1 = render(field, cams, bg, generator=torch.Generator().manual_seed(3)).rgb
    j2 = render(field, cams, bg, generator=torch.Generator().manual_seed(3)).rgb
    j3 = render(field, cams, bg, generator=torch.Generator().manual_seed(4)).rgb
    assert torch.equal(j1, j2) and not torch.equal(j1, j3)


def test_headlight_textureless_sphere_is_brightest_at_the_centre():
    # Smooth sphere of radius 0.5; a headlight at the camera: at the centre pixel the normal
    # faces the light, so colour = ambient + diffuse = 1; at the limb n . l -> 0.
    field = VoxelGridField(VoxelGridConfig(resolution=32, blob_density=0.0))
    r = field._node_points().norm(dim=-1)
    with torch.no_grad():
        field.density_raw.copy_(60 * (0.5 - r))
    cams = orbit_cameras(1, elevation_deg=0, distance=2.0, fov_deg=40, width=33, height=33)
    out = render(field, cams, SolidBackground((0.0, 0.0, 0.0)), RenderConfig(num_samples=96),
                 shading=fixed_shading("textureless", cams))  # fmt: skip
    centre = out.rgb[0, :, 16, 16] / out.opacity[0, 0, 16, 16]
    torch.testing.assert_close(centre, torch.ones(3), atol=0.03, rtol=0)
    row = out.rgb[0, 0, 16] / out.opacity[0, 0, 16].clamp(min=1e-6)
    opaque = out.opacity[0, 0, 16] > 0.9
    shaded = row[opaque]
    assert shaded[0] < 0.8 and shaded[-1] < 0.8  # darker towards the limb
    # The normal map of that sphere: the centre normal points back at the camera (+x).
    n = out.normal[0, :, 16, 16] / out.opacity[0, 0, 16, 16]
    assert n[0] > 0.97
    img = normal_image(out)
    assert img.min() >= 0 and img.max() <= 1


def test_render_rejects_mismatched_shading():
    cams = orbit_cameras(2, width=4, height=4)
    with pytest.raises(SSD3DError, match="shading has 1 views"):
        render(VoxelGridField(), cams, SolidBackground(), shading=fixed_shading("albedo", cams[0]))


def test_shaded_render_gradients_match_finite_differences():
    # Lit views send gradients through the normals (the density's gradient grid) as well as
    # through the weights; gradcheck compares autograd with finite differences in float64.
    torch.manual_seed(0)
    cams = orbit_cameras(2, width=2, height=2, fov_deg=30)
    shading = Shading(("lambertian", "textureless"), cams.positions + torch.tensor([0, 0.5, 1]))
    density = torch.randn(4, 4, 4, dtype=torch.float64, requires_grad=True)
    albedo = torch.randn(3, 4, 4, 4, dtype=torch.float64, requires_grad=True)

    def rgb(density, albedo):
        field = VoxelGridField(VoxelGridConfig(resolution=4))
        del field.density_raw, field.albedo_raw  # plain tensors in place of the parameters
        field.density_raw, field.albedo_raw = density, albedo
        config = RenderConfig(num_samples=5)
        return render(field, cams, SolidBackground(), config, shading).rgb

    assert torch.autograd.gradcheck(rgb, (density, albedo), eps=1e-6, atol=1e-5)
