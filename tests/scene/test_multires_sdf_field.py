"""Multi-resolution SDF field: the levels' sum is the rendered field, coarse gradients are
the upsampling's adjoint, the bounded residual, the coarse eikonal term, state."""

import pytest
import torch
import torch.nn.functional as F

from ssd3d.errors import SSD3DError
from ssd3d.scene import RadianceScene, SolidBackground, fixed_shading, orbit_cameras
from ssd3d.scene.sdf_field import MultiResSDFConfig, MultiResSDFField, SDFGridConfig, SDFGridField


def _points(n, seed=0, bound=0.9):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, generator=g) * 2 - 1) * bound


def _randomise(field, seed=1, scale=0.05):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for level in field.sdf_levels:
            level.add_(scale * torch.randn(level.shape, generator=g))


def test_a_sphere_start_is_the_sphere_on_the_finest_nodes():
    field = MultiResSDFField(MultiResSDFConfig(levels=(9, 17, 33), init_radius=0.5))
    assert [tuple(p.shape) for p in field.level_parameters()] == [(9,) * 3, (17,) * 3, (33,) * 3]
    nodes = SDFGridField._node_points(33)
    with torch.no_grad():
        assert torch.allclose(field.sdf_grid, nodes.norm(dim=-1) - 0.5, atol=1e-6)
        assert float(field.sdf_levels[1].abs().max()) == 0  # the middle level starts empty
        # The coarse level alone is the sphere up to its facets: trilinear error of |p| at
        # spacing 0.25 near the surface, about 3 h^2 / (8 r) = 0.05.
        facets = field.sdf_levels[2].abs()
        shell = (nodes.norm(dim=-1) - 0.5).abs() < 0.1
        assert 0.005 < float(facets[shell].max()) < 0.06
    same = SDFGridField(SDFGridConfig(resolution=33, init_radius=0.5))
    p = _points(2000)
    with torch.no_grad():
        assert torch.allclose(field.sdf(p), same.sdf(p), atol=1e-5)
    # Bounded at 0.02 the residual cannot hold all of the facets: close to, not at, the sphere.
    bounded = MultiResSDFField(MultiResSDFConfig(levels=(9, 17, 33), residual_max=0.02))
    with torch.no_grad():
        gap = (bounded.sdf_grid - field.sdf_grid).abs()
        assert 0 < float(gap[shell].max()) < float(facets[shell].max())


def test_the_rendered_field_is_the_sum_of_each_levels_trilinear_field():
    field = MultiResSDFField(MultiResSDFConfig(levels=(5, 9, 17)))
    _randomise(field)
    p = _points(2000, seed=3)
    with torch.no_grad():
        summed = sum(field._sample(level[None], p)[:, 0] for level in field.sdf_levels)
        rendered = field.sdf(p)
        density, _, normals = field.forward_with_normals(p)
    assert torch.allclose(rendered, summed, atol=1e-5)  # nested levels: exact
    assert torch.allclose(density, field.density_from_sdf(summed), rtol=1e-4, atol=1e-4)
    assert torch.allclose(normals, field.normals(p), atol=1e-5)
    # A non-nested level is upsampled onto the finest grid, which the renderer then reads.
    loose = MultiResSDFField(MultiResSDFConfig(levels=(8, 16, 32)))
    _randomise(loose)
    with torch.no_grad():
        grid = sum(
            F.interpolate(lvl[None, None], size=(32,) * 3, mode="trilinear", align_corners=True)[
                0, 0
            ]
            for lvl in loose.sdf_levels
        )
        assert torch.allclose(loose.sdf_grid, grid, atol=1e-6)


def test_a_coarse_levels_gradient_is_the_upsamplings_adjoint_of_the_fine_gradient():
    field = MultiResSDFField(MultiResSDFConfig(levels=(3, 5, 9)))
    _randomise(field)
    weights = torch.randn(9, 9, 9, generator=torch.Generator().manual_seed(4))
    (field.sdf_grid * weights).sum().backward()  # d loss / d(rendered grid) = weights
    assert torch.allclose(field.sdf_levels[2].grad, weights)
    for k, r in ((0, 3), (1, 5)):
        # Column j of the upsampling matrix: the fine grid that coarse node j alone makes.
        basis = torch.eye(r**3).reshape(r**3, 1, r, r, r)
        up = F.interpolate(basis, size=(9,) * 3, mode="trilinear", align_corners=True)
        expected = (up.reshape(r**3, -1) * weights.reshape(1, -1)).sum(-1).reshape(r, r, r)
        assert torch.allclose(field.sdf_levels[k].grad, expected, atol=1e-5)
    # A coarse corner node spreads (1 + 3/4 + 1/2 + 1/4)^3 over the fine nodes
    # of the 3 -> 9 upsampling (4 fine cells per coarse cell).
    corner = F.interpolate(
        torch.eye(27).reshape(27, 1, 3, 3, 3)[:1],
        size=(9,) * 3,
        mode="trilinear",
        align_corners=True,
    )
    assert float(corner.sum()) == pytest.approx(2.5**3)


def test_the_bounded_residual_never_moves_the_field_more_than_its_bound():
    field = MultiResSDFField(MultiResSDFConfig(levels=(5, 9, 17), residual_max=0.02))
    coarse = field.composed(0)
    with torch.no_grad():
        for level in field.sdf_levels[1:]:
            level.fill_(50.0)  # tanh saturates: each level adds +0.02
        up = F.interpolate(coarse[None, None], size=(17,) * 3, mode="trilinear", align_corners=True)
        assert torch.allclose(field.sdf_grid - up[0, 0], torch.full((17,) * 3, 0.04), atol=1e-6)
    free = MultiResSDFField(MultiResSDFConfig(levels=(5, 9, 17)))
    with torch.no_grad():
        free.sdf_levels[2].fill_(1.0)
        assert float((free.sdf_grid - free.composed(1).mean()).max()) > 0.5


def test_the_coarse_eikonal_term_sees_only_the_coarse_shape():
    field = MultiResSDFField(MultiResSDFConfig(levels=(9, 17, 33)))
    assert field.eikonal_loss(0).item() < 5e-3  # the sphere, a distance field (faces one-sided)
    with torch.no_grad():
        field.sdf_levels[2].normal_(generator=torch.Generator().manual_seed(5))
    assert field.eikonal_loss().item() > 1.0  # the fine noise breaks |grad| = 1 ...
    assert field.eikonal_loss(0).item() < 5e-3  # ... which the coarse term does not see
    with torch.no_grad():
        field.sdf_levels[0].copy_(2 * SDFGridField._node_points(9)[..., 0])  # |grad| = 2
    assert field.eikonal_loss(0).item() == pytest.approx(1.0, abs=1e-5)  # (2 - 1)^2


def test_gradients_reach_every_level_and_state_round_trips():
    field = MultiResSDFField(MultiResSDFConfig(levels=(3, 5, 9)))
    cameras = orbit_cameras(1, width=8, height=8)
    scene = RadianceScene(field, SolidBackground())
    out = scene.render(cameras, fixed_shading("lambertian", cameras))
    (out.rgb.mean() + field.eikonal_loss()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in field.parameters())
    groups = {g["name"]: g["params"] for g in scene.param_groups()}
    assert groups["density"] == [*field.sdf_levels, field.log_beta]
    _randomise(field)
    fresh = MultiResSDFField(MultiResSDFConfig(levels=(3, 5, 9)))
    fresh.load_state_dict(field.state_dict())
    assert torch.equal(fresh.sdf_grid, field.sdf_grid)
    with pytest.raises(SSD3DError):
        field.grow(17)


def test_config_rejects_bad_levels():
    for bad in ((), (1, 5), (9, 5), (5, 5)):
        with pytest.raises(SSD3DError):
            MultiResSDFConfig(levels=bad)
    with pytest.raises(SSD3DError):
        MultiResSDFConfig(residual_max=0.0)
