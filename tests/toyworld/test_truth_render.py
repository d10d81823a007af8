"""The true renders: the exact surface by sphere tracing against known answers."""

import math

import pytest
import torch

from ssd3d.errors import SSD3DError
from ssd3d.scene import RenderConfig, SolidBackground, fixed_shading, render, spherical_cameras
from ssd3d.toyworld.truth import VOLUME_SAMPLES, GroundTruthField, render_truth

SPHERE_RADIUS = 0.45  # ToyWorld's sphere


def head_on(size=48, distance=2.5, fov=40.0):
    e = torch.tensor([0.0, 30.0])
    a = torch.tensor([0.0, 120.0])
    return spherical_cameras(
        e, a, torch.full_like(e, distance), torch.full_like(e, fov), size, size
    )


def test_a_sphere_renders_its_exact_disc_and_distance():
    cams = head_on()
    out = render_truth(GroundTruthField("sphere", "red"), cams, SolidBackground())
    # A camera at distance D sees a sphere of radius r as a disc of angular radius asin(r / D):
    # on the image, radius f tan(asin(r / D)) pixels.
    focal = float(cams.focal_px[0])
    radius_px = focal * math.tan(math.asin(SPHERE_RADIUS / 2.5))
    for view in range(2):
        assert float(out.opacity[view].sum()) == pytest.approx(math.pi * radius_px**2, rel=0.01)
    # The pixels about the centre see the sphere's nearest point, D - r away.
    centre = out.depth[:, 0, 23:25, 23:25] / out.opacity[:, 0, 23:25, 23:25]
    torch.testing.assert_close(
        centre, torch.full_like(centre, 2.5 - SPHERE_RADIUS), atol=2e-3, rtol=0
    )
    # Colour where covered, the background elsewhere.
    assert torch.allclose(
        out.rgb[:, :, 24, 24], torch.tensor([[0.85, 0.15, 0.15]]).expand(2, 3), atol=0.15
    )
    assert torch.equal(out.rgb[:, :, 0, 0], torch.ones(2, 3))


def test_the_exact_outline_is_inside_the_soft_steps():
    """The soft step's tail turns grazing rays opaque outside the shape: its renders cover
    more than the exact surface's, which covers its projected area (here the cube's faces)."""
    cams = head_on(size=32)
    truth = GroundTruthField("cube", "green")
    exact = render_truth(truth, cams, SolidBackground(), fixed_shading("lambertian", cams))
    soft = render_truth(truth, cams, SolidBackground(), fixed_shading("lambertian", cams), "volume")
    assert float(soft.opacity.sum()) > 1.08 * float(exact.opacity.sum())
    # "volume" is the volume renderer of the soft step, unchanged.
    direct = render(
        truth,
        cams,
        SolidBackground(),
        RenderConfig(VOLUME_SAMPLES),
        fixed_shading("lambertian", cams),
    )
    assert torch.equal(soft.rgb, direct.rgb)


def test_an_unknown_truth_renderer_is_refused():
    with pytest.raises(SSD3DError, match="unknown truth renderer"):
        render_truth(
            GroundTruthField("cube", "red"), head_on(8), SolidBackground(), None, "raytraced"
        )
