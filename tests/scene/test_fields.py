"""Voxel-grid field: layout, blob bias, normals, coarse-to-fine growth, state round-trip."""

import math

import pytest
import torch
import torch.nn.functional as F

from ssd3d.errors import SSD3DError
from ssd3d.scene import (
    RadianceField,
    RadianceScene,
    RenderConfig,
    SolidBackground,
    SphericalHarmonicsBackground,
    VoxelGridConfig,
    VoxelGridField,
    orbit_cameras,
    render,
)


def _unit_vectors(n, seed=0):
    v = torch.randn(n, 3, generator=torch.Generator().manual_seed(seed))
    return v / v.norm(dim=-1, keepdim=True)


def test_grid_nodes_are_read_back_exactly_with_zyx_layout():
    field = VoxelGridField(VoxelGridConfig(resolution=5, blob_density=0.0))
    with torch.no_grad():
        field.density_raw.copy_(torch.randn(5, 5, 5))
        field.albedo_raw.copy_(torch.randn(3, 5, 5, 5))
    # Node (i, j, k) along (x, y, z) sits at -1 + 2 * index / 4 and is stored at [k, j, i].
    idx = torch.tensor([[0, 0, 0], [4, 1, 2], [1, 3, 4], [2, 2, 2]])
    points = -1 + 2 * idx.float() / 4
    density, albedo = field(points)
    raw = field.density_raw[idx[:, 2], idx[:, 1], idx[:, 0]]
    torch.testing.assert_close(density, F.softplus(raw))
    want = torch.sigmoid(field.albedo_raw[:, idx[:, 2], idx[:, 1], idx[:, 0]].T)
    torch.testing.assert_close(albedo, want)


def test_blob_bias_is_threestudio_magic3d():
    field = VoxelGridField(VoxelGridConfig(blob_density=10.0, blob_radius=0.5))
    points = torch.tensor([[0.0, 0, 0], [0.5, 0, 0], [0, 0, -1.0]])
    density, albedo = field(points)
    torch.testing.assert_close(density, F.softplus(torch.tensor([10.0, 0.0, -10.0])))
    torch.testing.assert_close(albedo, torch.full((3, 3), 0.5))


@pytest.mark.parametrize("radius", [0.3, 0.5, 0.7])
def test_grid_normals_of_a_sphere_point_outward(radius):
    field = VoxelGridField(VoxelGridConfig(resolution=24, blob_density=0.0))
    with torch.no_grad():
        field.density_raw.copy_(20 * (radius - field._node_points().norm(dim=-1)))
    dirs = _unit_vectors(500)
    for scale in (0.9, 1.0, 1.1):  # on the surface and a little inside / outside
        points = scale * radius * dirs
        normals = field.normals(points)
        torch.testing.assert_close(normals.norm(dim=-1), torch.ones(500))
        assert (normals * dirs).sum(-1).min() > 0.9
        _, _, fused = field.forward_with_normals(points)
        torch.testing.assert_close(fused, normals)


def test_default_finite_difference_normals_agree_with_the_analytic_gradient():
    class Gaussian(RadianceField):
        def forward(self, points):
            sigma = 50 * torch.exp(-(points * torch.tensor([1.0, 2.0, 3.0])).square().sum(-1))
            return sigma, torch.zeros(points.shape[0], 3)

    points = 0.4 * _unit_vectors(200, seed=1)
    p = points.clone().requires_grad_()
    (grad,) = torch.autograd.grad(Gaussian().density(p).sum(), p)
    want = -grad / grad.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(Gaussian().normals(points), want, atol=2e-3, rtol=0)


def _smooth_field(resolution=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    field = VoxelGridField(VoxelGridConfig(resolution=resolution))
    coarse = torch.randn(4, 5, 5, 5, generator=g)
    smooth = F.interpolate(
        coarse[None], size=(resolution,) * 3, mode="trilinear", align_corners=True
    )[0]
    with torch.no_grad():
        field.density_raw.copy_(3 * smooth[0])
        field.albedo_raw.copy_(2 * smooth[1:])
    return field


def test_grow_preserves_the_render():
    field = _smooth_field(16)
    cams = orbit_cameras(3, elevation_deg=25, width=24, height=24)
    config = RenderConfig(num_samples=64)
    before = render(field, cams, SolidBackground(), config).rgb
    old = field.density_raw
    assert field.grow(40) is field
    assert field.resolution == 40 and field.albedo_raw.shape == (3, 40, 40, 40)
    assert field.density_raw is not old and field.density_raw.requires_grad
    after = render(field, cams, SolidBackground(), config).rgb
    assert before.std() > 0.1  # the image has structure to preserve
    assert (after - before).abs().mean() < 0.002 and (after - before).abs().max() < 0.02


def test_state_dict_round_trip_of_a_grown_grid():
    field = _smooth_field(8).grow(20)
    state = field.state_dict()
    fresh = VoxelGridField(VoxelGridConfig(resolution=8))
    fresh.load_state_dict(state)
    assert fresh.resolution == 20
    points = torch.rand(100, 3) * 2 - 1
    for a, b in zip(field(points), fresh(points), strict=True):
        torch.testing.assert_close(a, b)
    # Through the scene wrapper too (what a checkpoint holds).
    scene = RadianceScene(field, SphericalHarmonicsBackground())
    restored = RadianceScene(VoxelGridField(), SphericalHarmonicsBackground())
    restored.load_state_dict(scene.state_dict())
    assert restored.field.resolution == 20
    torch.testing.assert_close(restored.field.albedo_raw, field.albedo_raw)


def test_grow_keeps_gradients_flowing_to_the_new_parameters():
    field = _smooth_field(6).grow(9)
    density, albedo = field(torch.rand(50, 3) * 2 - 1)
    (density.sum() + albedo.sum()).backward()
    assert field.density_raw.grad is not None and field.density_raw.grad.abs().sum() > 0
    assert field.albedo_raw.grad is not None and field.albedo_raw.grad.abs().sum() > 0


def test_bad_resolution_is_refused():
    with pytest.raises(SSD3DError, match="resolution"):
        VoxelGridConfig(resolution=1)
    with pytest.raises(SSD3DError, match="resolution"):
        VoxelGridField().grow(1)
    assert math.isclose(VoxelGridConfig().blob_density, 10.0)
