"""SDF grid field: Laplace-CDF density, normals, eikonal term, growth, renders, state."""

import math

import pytest
import torch

from ssd3d.bench.metrics import depth_error, iou_over_yaw, silhouette_iou
from ssd3d.errors import SSD3DError
from ssd3d.scene import RadianceScene, RenderConfig, SolidBackground, fixed_shading, orbit_cameras
from ssd3d.scene.sdf_field import SDFGridConfig, SDFGridField, laplace_cdf
from ssd3d.toyworld.truth import GroundTruthField


def _points(n, seed=0, bound=0.9):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, generator=g) * 2 - 1) * bound


def test_laplace_cdf_known_values():
    s = torch.tensor([-1.0, -0.03, 0.0, 0.03, 1.0])
    psi = laplace_cdf(s, 0.03)
    assert psi[2] == 0.5
    assert psi[1] == pytest.approx(0.5 * math.exp(-1))
    assert psi[3] == pytest.approx(1 - 0.5 * math.exp(-1))
    assert (psi + laplace_cdf(-s, 0.03) - 1).abs().max() < 1e-6  # symmetric about 0
    assert psi[0] < 1e-10 and psi[4] == 1.0


def test_density_is_monotone_in_minus_sdf_and_the_surface_sits_at_half_its_peak():
    field = SDFGridField(SDFGridConfig(resolution=33, init_radius=0.5, beta=0.03))
    r = torch.linspace(0.0, 0.95, 200)
    points = torch.stack([r, torch.zeros_like(r), torch.zeros_like(r)], dim=-1)
    with torch.no_grad():
        sigma = field.density(points)
        d = field.sdf(points)
    assert (sigma[1:] <= sigma[:-1] + 1e-6).all()  # falls as the distance grows
    assert (d[1:] >= d[:-1] - 1e-6).all()
    beta = field.beta.item()
    assert beta == pytest.approx(0.03)
    assert sigma[0] == pytest.approx(1 / beta, rel=1e-3)  # deep inside: 1 / beta
    assert sigma[-1] < 1e-3  # far outside: empty
    with torch.no_grad():
        on_surface = field.density(torch.tensor([[0.5, 0.0, 0.0]]))
    assert float(on_surface) == pytest.approx(field.surface_density, rel=1e-3)
    # A sharper beta: the same surface, a higher peak and a steeper fall.
    field.set_beta(0.01)
    assert field.surface_density == pytest.approx(50.0, rel=1e-4)
    with pytest.raises(SSD3DError):
        field.set_beta(field.config.beta_min)


def test_normals_point_out_of_the_sphere_and_its_eikonal_term_is_small():
    field = SDFGridField(SDFGridConfig(resolution=32))
    p = _points(500, bound=0.6)
    p = p[p.norm(dim=-1) > 0.2]
    with torch.no_grad():
        n = field.normals(p)
        _, _, fused = field.forward_with_normals(p)
    radial = p / p.norm(dim=-1, keepdim=True)
    assert (n * radial).sum(-1).min() > 0.99
    assert torch.allclose(n, fused, atol=1e-6)
    assert field.eikonal_loss().item() < 1e-3
    with torch.no_grad():
        field.sdf_grid.mul_(2.0)  # |grad| = 2 everywhere: (2 - 1)^2
    assert field.eikonal_loss().item() == pytest.approx(1.0, abs=0.03)


def test_a_sphere_renders_the_true_silhouette_and_depth():
    # 64x64: at 32x32 one ring of edge pixels is 5% of a sphere's silhouette.
    cameras = orbit_cameras(4, width=64, height=64)
    shading = fixed_shading("lambertian", cameras)
    truth = GroundTruthField("sphere", "red")  # radius 0.45
    config = RenderConfig(num_samples=96)
    true_out = RadianceScene(truth, SolidBackground(), config).render(cameras, shading)
    field = SDFGridField(SDFGridConfig(resolution=32, init_radius=0.45, beta=0.01))
    with torch.no_grad():
        out = RadianceScene(field, SolidBackground(), config).render(cameras, shading)
    assert silhouette_iou(out.opacity, true_out.opacity) > 0.97
    assert depth_error(out.depth, out.opacity, true_out.depth, true_out.opacity) < 0.02
    # A smaller sphere covers the area ratio of the truth, about (0.36 / 0.45)^2.
    small = SDFGridField(SDFGridConfig(resolution=32, init_radius=0.36, beta=0.01))
    with torch.no_grad():
        out = RadianceScene(small, SolidBackground(), config).render(cameras, shading)
    assert silhouette_iou(out.opacity, true_out.opacity) == pytest.approx(0.64, abs=0.06)
    # Its 3D IoU at the export level (density 1 / (2 beta), i.e. sdf < 0) is the volume ratio.
    iou, _ = iou_over_yaw(small.density, "sphere", threshold=small.surface_density)
    assert iou == pytest.approx(0.8**3, abs=0.02)


def test_grow_preserves_the_field():
    field = SDFGridField(SDFGridConfig(resolution=17))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        field.sdf_grid.add_(0.05 * torch.randn(field.sdf_grid.shape, generator=g))
        field.albedo_raw.normal_(generator=g)
    p = _points(2000, seed=2)
    with torch.no_grad():
        before = field(p)
        before_sdf = field.sdf(p)
        field.grow(33)  # 32 fine cells per 16 coarse ones: exactly the same trilinear field
        after = field(p)
    assert field.resolution == 33 and field.sdf_grid.requires_grad
    assert torch.allclose(field.sdf(p), before_sdf, atol=1e-5)
    assert torch.allclose(after[1], before[1], atol=1e-5)
    assert torch.allclose(after[0], before[0], rtol=1e-3, atol=1e-3)
    # A non-nested growth keeps the sphere's surface within a fraction of a voxel.
    sphere = SDFGridField(SDFGridConfig(resolution=24))
    with torch.no_grad():
        d24 = sphere.sdf(p)
        sphere.grow(48)
        assert (sphere.sdf(p) - d24).abs().max() < 0.01


def test_gradients_reach_the_geometry_beta_and_albedo_and_state_round_trips():
    field = SDFGridField(SDFGridConfig(resolution=8))
    cameras = orbit_cameras(1, width=8, height=8)
    scene = RadianceScene(field, SolidBackground())
    out = scene.render(cameras, fixed_shading("lambertian", cameras))
    (out.rgb.mean() + field.eikonal_loss()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in field.parameters())
    groups = {g["name"]: g["params"] for g in scene.param_groups()}
    assert groups["density"] == [field.sdf_grid, field.log_beta]
    assert groups["albedo"] == [field.albedo_raw]
    fixed = SDFGridField(SDFGridConfig(resolution=8, learn_beta=False))
    assert fixed.density_parameters() == [fixed.sdf_grid]
    field.grow(12)
    fresh = SDFGridField(SDFGridConfig(resolution=8))
    fresh.load_state_dict(field.state_dict())
    assert fresh.resolution == 12 and torch.equal(fresh.sdf_grid, field.sdf_grid)


def test_config_rejects_bad_values():
    with pytest.raises(SSD3DError):
        SDFGridConfig(resolution=1)
    with pytest.raises(SSD3DError):
        SDFGridConfig(beta=0.001, beta_min=0.005)
    with pytest.raises(SSD3DError):
        SDFGridConfig(init_radius=1.2)
