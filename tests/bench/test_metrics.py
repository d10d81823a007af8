import math

import pytest
import torch

from ssd3d.bench.metrics import (
    chamfer_distance,
    colour_error,
    iou_over_yaw,
    psnr,
    sample_surface,
    score_object,
)
from ssd3d.errors import SSD3DError
from ssd3d.toyworld.shapes import surface_mesh, surface_points
from ssd3d.toyworld.truth import GroundTruthField
from ssd3d.toyworld.vocabulary import COLOURS

RES = 48  # a coarser grid than the default keeps these tests fast


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _empty(points):
    return torch.zeros(points.shape[0])


def test_iou_of_the_true_shape_is_one_and_of_an_empty_field_zero():
    field = GroundTruthField("wedge", "red")
    iou, yaw = iou_over_yaw(field.density, "wedge", threshold=field.surface_density, resolution=RES)
    assert iou == pytest.approx(1.0) and yaw == 0.0
    iou, _ = iou_over_yaw(_empty, "wedge", resolution=RES)
    assert iou == 0.0


def test_iou_of_nested_spheres_is_the_volume_ratio():
    def small_sphere(points):
        return 10.0 * (points.norm(dim=-1) < 0.3).float()

    iou, _ = iou_over_yaw(small_sphere, "sphere", threshold=1.0, resolution=64)
    assert iou == pytest.approx((0.3 / 0.45) ** 3, abs=0.02)


@pytest.mark.parametrize(
    ("shape", "yaw", "gain"), [("wedge", 90.0, 0.3), ("arrow", 210.0, 0.3), ("mug", 300.0, 0.05)]
)
def test_yaw_alignment_recovers_a_turned_copy(shape, yaw, gain):
    # gain: how much better the aligned IoU is than yaw 0 (the mug differs only by its handle)
    turned = GroundTruthField(shape, "blue", yaw_deg=yaw)
    kwargs = {"threshold": turned.surface_density, "resolution": RES}
    iou, best = iou_over_yaw(turned.density, shape, n_yaw=12, **kwargs)
    assert best == yaw and iou == pytest.approx(1.0)
    unaligned, _ = iou_over_yaw(turned.density, shape, n_yaw=1, **kwargs)
    assert unaligned < iou - gain
    # Between candidates (yaw 15 on a 30-degree grid) the nearest candidate is picked.
    between = GroundTruthField(shape, "blue", yaw_deg=yaw + 12)
    iou, best = iou_over_yaw(between.density, shape, n_yaw=12, **kwargs)
    assert best == yaw and 0.6 < iou < 1.0


def test_chamfer_known_values():
    a = torch.rand(500, 3, generator=_gen())
    assert chamfer_distance(a, a) == 0.0
    # Two parallel unit squares 0.1 apart on a shared grid: every nearest distance is 0.1.
    lin = torch.linspace(0, 1, 11)
    grid = torch.stack(torch.meshgrid(lin, lin, indexing="ij"), -1).reshape(-1, 2)
    plane = torch.cat([grid, torch.zeros(len(grid), 1)], dim=1)
    shifted = plane + torch.tensor([0.0, 0.0, 0.1])
    assert chamfer_distance(plane, shifted, chunk=7) == pytest.approx(0.1, abs=1e-6)
    assert chamfer_distance(plane, torch.zeros(0, 3)) == math.inf


def test_chamfer_of_the_true_surface_is_near_zero():
    mesh = surface_mesh("torus")
    generated = sample_surface(mesh, 4000, _gen(1))
    true = surface_points("torus", 4000, _gen(2))
    d = chamfer_distance(generated, true)
    # The sampling floor 0.5 sqrt(area / n) is 0.0103 for the torus (area 1.69) at n = 4000.
    assert d < 0.013
    # A torus shifted by 0.1 sideways is clearly further (its surfaces still cross the truth).
    assert chamfer_distance(generated + torch.tensor([0.1, 0.0, 0.0]), true) > 3 * d


def test_colour_error():
    field = GroundTruthField("cube", "green")
    points = surface_points("cube", 200, _gen())
    err, mean = colour_error(field.albedo, points, "green")
    assert err == 0.0 and mean == pytest.approx(COLOURS["green"])
    err, mean = colour_error(field.albedo, points, "blue")
    expected = float(torch.tensor(COLOURS["green"]).sub(torch.tensor(COLOURS["blue"])).norm())
    assert err == pytest.approx(expected, rel=1e-6)


def test_psnr_known_values():
    a = torch.rand(2, 3, 8, 8, generator=_gen())
    assert psnr(a, a) == math.inf
    assert psnr(a, a + 0.1) == pytest.approx(20.0, abs=1e-4)
    assert psnr(torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        psnr(a, a[:1])


def test_score_object_on_the_truth_and_on_a_turned_copy():
    field = GroundTruthField("mug", "yellow", yaw_deg=90.0)
    images = torch.rand(2, 3, 8, 8, generator=_gen())
    scores = score_object(
        field.density,
        field.albedo,
        "a yellow mug, side view",
        surface=surface_points("mug", 3000, _gen(3), yaw_deg=90.0),
        renders=images,
        true_renders=images,
        threshold=field.surface_density,
        resolution=RES,
        n_yaw=12,
        n_surface=3000,
        generator=_gen(4),
    )
    assert scores["yaw_deg"] == 90.0 and scores["iou"] > 0.999
    assert scores["chamfer"] < 0.02  # the sampling floor at n = 3000
    assert scores["colour_error"] == pytest.approx(0.0, abs=1e-6)
    assert (scores["mean_r"], scores["mean_g"], scores["mean_b"]) == pytest.approx(
        COLOURS["yellow"]
    )
    assert scores["psnr"] == math.inf and scores["threshold"] == field.surface_density
    bare = score_object(
        field.density, field.albedo, "a yellow mug", resolution=32, n_yaw=4, n_surface=64
    )
    assert math.isnan(bare["chamfer"]) and math.isnan(bare["psnr"])


def test_score_object_rejects_unknown_prompts():
    with pytest.raises(SSD3DError, match="sphere"):
        score_object(_empty, _empty, "a red teapot")
