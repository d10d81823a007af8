"""Mesh extraction against analytic densities, and mesh files read back with trimesh."""

import math

import numpy as np
import pytest
import torch
import trimesh

from ssd3d.atomic import atomic_path
from ssd3d.errors import SSD3DError
from ssd3d.export import density_grid, extract_mesh, save_mesh

PEAK = 20.0  # density inside the analytic shapes; the surface is at half of it
LEVEL = PEAK / 2


def sphere_density(centre=(0.0, 0.0, 0.0), radius=0.5, width=0.02):
    """density = PEAK * sigmoid((radius - r) / width): PEAK / 2 exactly at r = radius."""
    c = torch.tensor(centre)

    def fn(points):
        r = (points - c).norm(dim=-1)
        return PEAK * torch.sigmoid((radius - r) / width)

    return fn


def position_albedo(points):
    """A colour that differs at every vertex, so misaligned colours would show."""
    return ((points + 1) / 2).clamp(0, 1)


def expected_colours(vertices):
    rgb = np.round(np.clip((np.asarray(vertices) + 1) / 2, 0, 1) * 255).astype(np.uint8)
    return np.concatenate([rgb, np.full((len(rgb), 1), 255, np.uint8)], axis=1)


@pytest.fixture(scope="module")
def sphere_mesh():
    return extract_mesh(sphere_density(), position_albedo, resolution=48, threshold=LEVEL)


def test_sphere_is_closed_round_outward_and_coloured(sphere_mesh):
    mesh = sphere_mesh
    spacing = 2.0 / 47
    r = np.linalg.norm(mesh.vertices, axis=1)
    assert np.abs(r - 0.5).mean() < spacing / 4
    assert mesh.is_watertight
    true_volume = 4 / 3 * math.pi * 0.5**3
    assert mesh.volume > 0
    assert mesh.volume == pytest.approx(true_volume, rel=0.02)
    # Outward winding: every face normal points away from the centre.
    outward = (mesh.face_normals * mesh.triangles_center).sum(axis=1)
    assert (outward > 0).all()
    np.testing.assert_array_equal(mesh.visual.vertex_colors, expected_colours(mesh.vertices))


def test_axis_order_with_an_off_centre_ellipsoid():
    # Different centre and radius on each axis: a swapped axis moves the centre or extents.
    centre = torch.tensor([0.4, -0.2, 0.1])
    radii = torch.tensor([0.3, 0.2, 0.1])

    def density(points):
        r = ((points - centre) / radii).norm(dim=-1)
        return PEAK * torch.sigmoid((1 - r) / 0.05)

    mesh = extract_mesh(density, None, resolution=64, threshold=LEVEL)
    lo, hi = mesh.bounds
    np.testing.assert_allclose((lo + hi) / 2, centre.numpy(), atol=0.02)
    np.testing.assert_allclose(hi - lo, 2 * radii.numpy(), atol=0.04)
    assert mesh.volume > 0


def test_density_grid_axis_order_and_chunking():
    def density(points):  # a different slope per axis
        return 1 * points[:, 0] + 10 * points[:, 1] + 100 * points[:, 2]

    lin = np.linspace(-1, 1, 5)
    expected = lin[:, None, None] + 10 * lin[None, :, None] + 100 * lin[None, None, :]
    for chunk in (7, 1000):
        grid = density_grid(density, resolution=5, chunk=chunk)
        np.testing.assert_allclose(grid, expected, atol=1e-4)


def test_field_full_to_the_boundary_is_capped_one_half_step_outside():
    # Constant density 10 everywhere; the zero padding puts the level-5 surface halfway
    # between the last grid point and the pad: a closed cube of side 2 * bound + s (its
    # edges bevelled by marching cubes, so the volume is a little less than the cube's).
    resolution, bound = 9, 1.0
    s = 2 * bound / (resolution - 1)
    mesh = extract_mesh(
        lambda p: torch.full((len(p),), 10.0), None, resolution=resolution, threshold=5.0
    )
    assert mesh.is_watertight
    assert (2 * bound) ** 3 < mesh.volume < (2 * bound + s) ** 3
    np.testing.assert_allclose(mesh.bounds, [[-bound - s / 2] * 3, [bound + s / 2] * 3])


def test_largest_component_only():
    big, small = sphere_density((-0.4, 0, 0), 0.35), sphere_density((0.5, 0, 0), 0.2)

    def two_spheres(points):
        return big(points) + small(points)

    both = extract_mesh(two_spheres, None, resolution=48, threshold=LEVEL)
    one = extract_mesh(
        two_spheres, None, resolution=48, threshold=LEVEL, largest_component_only=True
    )
    assert both.body_count == 2 and one.body_count == 1
    assert one.volume == pytest.approx(4 / 3 * math.pi * 0.35**3, rel=0.03)
    assert one.bounds[1, 0] < 0  # the big sphere, left of the origin


def test_empty_field_raises_and_writes_nothing(tmp_path):
    with pytest.raises(SSD3DError, match="empty at density threshold 2.0"):
        mesh = extract_mesh(lambda p: torch.full((len(p),), 1.0), None, resolution=8)
        save_mesh(mesh, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_non_finite_density_and_bad_threshold_raise():
    def nan_density(points):
        return torch.full((len(points),), float("nan"))

    with pytest.raises(SSD3DError, match="non-finite"):
        extract_mesh(nan_density, None, resolution=8)
    with pytest.raises(SSD3DError, match="threshold"):
        extract_mesh(sphere_density(), None, resolution=8, threshold=0.0)


def test_save_mesh_round_trips_all_formats_with_colours(sphere_mesh, tmp_path):
    paths = save_mesh(sphere_mesh, tmp_path / "out", stem="ball")
    assert [p.name for p in paths] == ["ball.glb", "ball.obj", "ball.ply"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths)
    for path in paths:
        back = trimesh.load(path, force="mesh", process=False)
        assert len(back.vertices) == len(sphere_mesh.vertices), path.name
        np.testing.assert_allclose(back.vertices, sphere_mesh.vertices, atol=1e-5)
        np.testing.assert_array_equal(back.faces, sphere_mesh.faces)
        assert back.visual.kind == "vertex", path.name
        np.testing.assert_array_equal(back.visual.vertex_colors, sphere_mesh.visual.vertex_colors)


def test_save_mesh_rejects_unknown_format(sphere_mesh, tmp_path):
    with pytest.raises(SSD3DError, match="formats"):
        save_mesh(sphere_mesh, tmp_path, formats=("glb", "stl"))
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_keeps_old_file_and_leaves_no_temp_on_failure(tmp_path):
    target = tmp_path / "mesh.obj"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]
