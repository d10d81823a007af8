import math

import pytest
import torch

from ssd3d.errors import SSD3DError
from ssd3d.toyworld import shapes
from ssd3d.toyworld.shapes import (
    SHAPES,
    rotate_yaw,
    sdf,
    sdf_normals,
    sdf_polygon,
)
from ssd3d.toyworld.truth import DENSITY_SCALE, GroundTruthField
from ssd3d.toyworld.vocabulary import COLOURS

# Hand-picked points per shape (world frame, +z up): inside, then outside. The pairs marked
# "mirror" differ only in the sign of y, so they pin the shapes' front/back asymmetry.
INSIDE = {
    "sphere": [(0, 0, 0), (0.44, 0, 0), (0, 0, -0.44)],
    "cube": [(0, 0, 0), (0.29, 0.29, 0.29), (-0.29, 0, 0.1)],
    "cylinder": [(0, 0, 0), (0.29, 0, 0.34), (0, -0.29, -0.34)],
    "torus": [(0.33, 0, 0), (0, -0.33, 0.12), (-0.2, 0.2, 0)],
    "wedge": [(0.0, 0.117, -0.1), (0.24, 0.2, 0.1), (0, 0.34, 0.29)],  # centroid; mirror
    "arrow": [(0, 0.44, 0), (0, -0.44, 0), (0.2, 0.1, 0.11)],  # tip; shaft end; mirror
    "mug": [(0, 0, -0.26), (0.235, 0, 0), (0, 0.40, 0)],  # bottom; wall; handle
}
OUTSIDE = {
    "sphere": [(0.46, 0, 0), (0.3, 0.3, 0.3), (0.9, 0.9, 0.9)],
    "cube": [(0.31, 0, 0), (0, 0, -0.31), (0.25, 0.25, 0.31)],
    "cylinder": [(0.31, 0, 0), (0, 0, 0.36), (0.22, 0.22, 0)],
    "torus": [(0, 0, 0), (0.33, 0, 0.14), (0.47, 0, 0)],  # the hole; above the tube
    "wedge": [(0, -0.2, 0.1), (0, 0.36, 0), (0.26, 0.3, -0.2)],  # mirror; past the wall
    "arrow": [(0.2, -0.1, 0), (0, 0.46, 0), (0, 0, 0.13)],  # mirror; past the tip
    "mug": [(0, 0, 0), (0, -0.40, 0), (0, 0.33, 0)],  # cavity; mirror; handle's hole
}

# (shape, point, exact signed distance) computed by hand.
EXACT = [
    ("sphere", (0.3, 0.4, 0.0), 0.05),
    ("sphere", (0.0, 0.0, 0.0), -0.45),
    ("cube", (0.5, 0.0, 0.0), 0.2),
    ("cube", (0.5, 0.5, 0.5), 0.2 * math.sqrt(3)),
    ("cube", (0.1, 0.0, 0.0), -0.2),
    ("cylinder", (0.4, 0.0, 0.45), math.sqrt(0.1**2 + 0.1**2)),
    ("cylinder", (0.0, 0.0, 0.5), 0.15),
    ("torus", (0.33, 0.0, 0.5), 0.37),
    ("torus", (0.0, 0.0, 0.0), 0.2),
    ("wedge", (0.0, 0.5, -0.1), 0.15),
    ("wedge", (0.5, 0.0, -0.25), 0.25),
    ("arrow", (0.0, -0.6, 0.0), 0.15),
    ("arrow", (0.0, -0.2, 0.3), 0.18),
    ("mug", (0.0, -0.5, 0.0), 0.24),  # outside the union: exact
]


def _pts(points):
    return torch.tensor(points, dtype=torch.float64)


def test_vocabulary_has_asymmetric_shapes():
    assert len(SHAPES) >= 6
    asymmetric = [s for s in SHAPES if not shapes.get_shape(s).yaw_symmetric and s != "cube"]
    assert len(asymmetric) >= 3


@pytest.mark.parametrize("shape", SHAPES)
def test_sign_inside_and_outside(shape):
    assert (sdf(shape, _pts(INSIDE[shape])) < 0).all()
    assert (sdf(shape, _pts(OUTSIDE[shape])) > 0).all()
    far = _pts([(0.9, 0, 0), (0, -0.9, 0), (0, 0, 0.9), (-0.7, 0.7, -0.7)])
    assert (sdf(shape, far) > 0.25).all()


@pytest.mark.parametrize(("shape", "point", "distance"), EXACT)
def test_exact_distances(shape, point, distance):
    got = sdf(shape, _pts([point]))
    torch.testing.assert_close(got, torch.tensor([distance], dtype=torch.float64))


@pytest.mark.parametrize("shape", [s for s in SHAPES if shapes.get_shape(s).exact])
def test_exact_sdfs_have_unit_gradient(shape):
    # An exact Euclidean SDF has |grad| = 1 almost everywhere.
    p = torch.rand(4000, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    p = (2 * p - 1).requires_grad_(True)
    (g,) = torch.autograd.grad(sdf(shape, p).sum(), p)
    assert torch.allclose(g.norm(dim=-1), torch.ones(4000, dtype=torch.float64), atol=1e-6)


def test_polygon_sdf_is_independent_of_winding():
    square = ((-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0))
    u, v = torch.tensor([0.0, 2.0, 0.5]), torch.tensor([0.0, 0.0, 3.0])
    expected = torch.tensor([-1.0, 1.0, 2.0])
    torch.testing.assert_close(sdf_polygon(u, v, square), expected)
    torch.testing.assert_close(sdf_polygon(u, v, square[::-1]), expected)


def test_yaw_turns_the_shape_counter_clockwise_about_up():
    # The wedge's wall faces +y; turned by 90 degrees it faces -x.
    inside = _pts([(0.0, 0.3, 0.2)])
    assert sdf("wedge", inside) < 0
    turned = rotate_yaw(inside, math.pi / 2)
    torch.testing.assert_close(turned, _pts([(-0.3, 0.0, 0.2)]))
    assert sdf("wedge", turned, yaw_rad=math.pi / 2) < 0
    assert sdf("wedge", inside, yaw_rad=math.pi / 2) > 0


def test_up_axis_is_z_like_the_scene():
    assert shapes.UP_AXIS == 2
    # The cylinder's axis is up: taller than wide along z only.
    assert sdf("cylinder", _pts([(0, 0, 0.34)])) < 0
    assert sdf("cylinder", _pts([(0.34, 0, 0)])) > 0


def test_normals_are_analytic():
    p = _pts([(0.2, -0.3, 0.1), (0.0, 0.0, 0.7)])
    torch.testing.assert_close(sdf_normals("sphere", p), p / p.norm(dim=-1, keepdim=True))
    cube = sdf_normals("cube", _pts([(0.5, 0.1, 0.0), (0.0, 0.0, -0.29)]))
    torch.testing.assert_close(cube, _pts([(1, 0, 0), (0, 0, -1)]))


def test_ground_truth_field():
    field = GroundTruthField("cube", "blue")
    p = torch.tensor([(0.0, 0.0, 0.0), (0.3, 0.0, 0.0), (0.9, 0.0, 0.0)])
    density, albedo = field(p)
    assert density.shape == (3,) and albedo.shape == (3, 3)
    torch.testing.assert_close(density[1], torch.tensor(field.surface_density))
    assert density[0] > 0.99 * DENSITY_SCALE and density[2] < 1e-6
    torch.testing.assert_close(albedo, torch.tensor(COLOURS["blue"]).expand(3, 3))
    torch.testing.assert_close(field.sdf(p), torch.tensor([-0.3, 0.0, 0.6]))
    turned = GroundTruthField("wedge", "red", yaw_deg=180)
    assert turned.sdf(torch.tensor([(0.0, -0.3, 0.2)])) < 0  # the wall now faces -y
    assert list(field.parameters()) == []
    from_prompt = GroundTruthField.from_prompt("a blue cube, back view")
    assert (from_prompt.shape, from_prompt.colour) == ("cube", "blue")


def test_unknown_shape_or_colour():
    with pytest.raises(SSD3DError, match="sphere"):
        GroundTruthField("dodecahedron", "red")
    with pytest.raises(SSD3DError, match="purple"):
        GroundTruthField("cube", "orange")


def test_renders_as_an_opaque_object_with_the_scene_renderer():
    # DENSITY_SCALE must make the true surface opaque at 48 samples per ray: the centre
    # pixel of an albedo render is the colour, a corner pixel is the white background.
    from ssd3d.scene import SolidBackground, orbit_cameras
    from ssd3d.scene.render import render

    cams = orbit_cameras(1, width=16, height=16)
    out = render(GroundTruthField("cube", "purple"), cams, SolidBackground((1.0, 1.0, 1.0)))
    assert out.opacity[0, 0, 8, 8] > 0.999 and out.opacity[0, 0, 0, 0] < 1e-3
    torch.testing.assert_close(
        out.rgb[0, :, 8, 8], torch.tensor(COLOURS["purple"]), atol=1e-3, rtol=0
    )
    torch.testing.assert_close(out.rgb[0, :, 0, 0], torch.ones(3), atol=1e-3, rtol=0)
