import math

import pytest
import torch

from ssd3d.toyworld.shapes import SHAPE_RADIUS, SHAPES, get_shape, sdf, surface_mesh, surface_points


def _gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("shape", SHAPES)
def test_sdf_is_the_distance_to_the_surface(shape):
    """Brute force: |sdf(q)| against the nearest of many true surface samples.

    Nearest-sample distance overestimates the true distance by at most about the sample
    spacing, so exact SDFs must match within that; the mug's SDF is only a lower bound
    (|sdf| <= distance), with the right sign.
    """
    surface = surface_points(shape, 20000, _gen(0)).double()
    q = 2 * torch.rand(500, 3, generator=_gen(1), dtype=torch.float64) - 1
    q = q[q.norm(dim=-1) < 0.9]
    nearest = torch.cdist(q, surface).min(dim=1).values
    d = sdf(shape, q)
    spacing = 0.03  # ~3 x sqrt(area / n) for the largest surface
    assert (d.abs() <= nearest + 1e-9).all()
    if get_shape(shape).exact:
        assert (nearest - d.abs() < spacing).all()


def test_surface_points_lie_on_the_surface_and_are_reproducible():
    a = surface_points("mug", 3000, _gen(5))
    b = surface_points("mug", 3000, _gen(5))
    assert a.shape == (3000, 3) and torch.equal(a, b)
    assert sdf("mug", a.double()).abs().max() < 1e-5
    assert not torch.equal(a, surface_points("mug", 3000, _gen(6)))


def test_surface_points_are_area_uniform():
    # A cube's six faces have equal area; a sphere's samples have zero mean and
    # E[z^2] = r^2 / 3.
    p = surface_points("cube", 12000, _gen(2))
    face = p.abs().argmax(dim=1) * 2 + (
        p.gather(1, p.abs().argmax(1, keepdim=True)) > 0
    ).long().squeeze(1)
    counts = torch.bincount(face, minlength=6).double() / len(p)
    assert (counts - 1 / 6).abs().max() < 0.015
    s = surface_points("sphere", 12000, _gen(3)).double()
    assert s.mean(dim=0).abs().max() < 0.01
    assert abs(float((s[:, 2] ** 2).mean()) - 0.45**2 / 3) < 0.003


def test_surface_points_turned_by_yaw():
    p = surface_points("arrow", 500, _gen(4), yaw_deg=90.0).double()
    assert sdf("arrow", p, yaw_rad=math.pi / 2).abs().max() < 1e-5
    assert sdf("arrow", p).abs().max() > 0.05


def test_surface_mesh_is_closed_with_the_right_volume():
    mesh = surface_mesh("cube")
    assert mesh.is_watertight
    assert abs(abs(mesh.volume) - 0.6**3) < 0.01
    torus = surface_mesh("torus")
    assert abs(abs(torus.volume) - 2 * math.pi**2 * 0.33 * 0.13**2) < 0.01


def test_shapes_fit_inside_the_radius():
    for s in SHAPES:
        p = surface_points(s, 2000, torch.Generator().manual_seed(1))
        assert p.norm(dim=-1).max() <= SHAPE_RADIUS
        assert p.mean(dim=0).abs().max() < 0.15  # sits around the origin
