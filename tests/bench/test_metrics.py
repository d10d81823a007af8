import math

import pytest
import torch

from ssd3d.bench.metrics import (
    carved_occupancy,
    carving_cameras,
    chamfer_distance,
    colour_error,
    depth_error,
    grid_points,
    iou_over_yaw,
    occupancy_iou,
    psnr,
    sample_surface,
    sample_surface_with_normals,
    score_object,
    silhouette_iou,
    surface_metrics,
)
from ssd3d.errors import SSD3DError
from ssd3d.toyworld.shapes import rotate_yaw, surface_mesh, surface_points
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


# --- threshold-free metrics -----------------------------------------------------------------


def test_silhouette_iou_known_values():
    truth = torch.zeros(2, 1, 4, 4)
    truth[:, :, :2] = 1.0  # top half of both views covered: 16 pixels
    assert silhouette_iou(truth, truth) == 1.0
    assert silhouette_iou(torch.zeros_like(truth), truth) == 0.0
    assert silhouette_iou(torch.zeros_like(truth), torch.zeros_like(truth)) == 1.0
    # Covering the top three rows: 16 shared of 24 covered; 0.5 itself is not covered.
    guess = torch.zeros_like(truth)
    guess[:, :, :3] = 0.9
    assert silhouette_iou(guess, truth) == pytest.approx(16 / 24)
    assert silhouette_iou(torch.full_like(truth, 0.5), truth) == 0.0
    with pytest.raises(ValueError):
        silhouette_iou(truth, truth[:1])


def test_depth_error_known_values():
    opacity = torch.ones(1, 1, 3, 3)
    opacity[..., 0, 0] = 0.0  # one empty pixel
    depth = 2.0 * opacity
    assert depth_error(depth, opacity, depth, opacity) == 0.0
    # Expected depth is depth / opacity: half-opaque pixels at the same distance agree.
    half = torch.where(opacity > 0, 0.8, 0.0)
    assert depth_error(2.0 * half, half, depth, opacity) == pytest.approx(0.0, abs=1e-6)
    # Everything 0.1 further: error 0.1, measured only where both are covered.
    assert depth_error(2.1 * opacity, opacity, depth, opacity) == pytest.approx(0.1, abs=1e-6)
    assert math.isnan(depth_error(depth, torch.zeros_like(opacity), depth, opacity))


def test_surface_metrics_of_the_truth_and_of_altered_copies():
    mesh = surface_mesh("sphere")  # radius 0.45
    exact = surface_metrics(mesh, "sphere", n_surface=4096, generator=_gen(3))
    # The sampling floor 0.5 sqrt(area / n) is 0.0125 for this sphere at n = 4096.
    assert exact["chamfer"] < 0.014 and exact["normal_consistency"] > 0.995
    # Shrunk to radius 0.4: every point is 0.05 from the truth; the normals still agree.
    small = mesh.copy()
    small.vertices = small.vertices * (0.4 / 0.45)
    shrunk = surface_metrics(small, "sphere", n_surface=4096, generator=_gen(3))
    assert shrunk["chamfer"] == pytest.approx(0.05, abs=0.006)
    assert shrunk["normal_consistency"] > 0.995
    # Shifted by d: a point moves d cos(angle) off the sphere, d / 2 on average.
    moved = mesh.copy()
    moved.vertices = moved.vertices + [0.08, 0.0, 0.0]
    shifted = surface_metrics(moved, "sphere", n_surface=4096, generator=_gen(3))
    assert shifted["chamfer"] == pytest.approx(0.04, abs=0.006)
    # Inside-out winding: every normal points the wrong way.
    flipped = mesh.copy()
    flipped.faces = flipped.faces[:, ::-1]
    inverted = surface_metrics(flipped, "sphere", n_surface=4096, generator=_gen(3))
    assert inverted["normal_consistency"] < -0.995


def test_surface_metrics_follow_the_yaw_and_an_empty_mesh():
    # The true wedge turned by 90 degrees matches the truth at yaw 90, not at yaw 0.
    wedge = surface_mesh("wedge")
    turned = wedge.copy()
    turned.vertices = rotate_yaw(torch.as_tensor(wedge.vertices), math.pi / 2).numpy()
    aligned = surface_metrics(turned, "wedge", yaw_deg=90.0, n_surface=2000, generator=_gen())
    # Edges cap the truth's own score below 1: a sample near one may match the other face.
    assert aligned["chamfer"] < 0.015 and aligned["normal_consistency"] > 0.95
    unaligned = surface_metrics(turned, "wedge", n_surface=2000, generator=_gen())
    assert unaligned["chamfer"] > 3 * aligned["chamfer"]
    assert unaligned["normal_consistency"] < aligned["normal_consistency"] - 0.3
    empty = wedge.copy()
    empty.faces = empty.faces[:0]
    assert surface_metrics(empty, "wedge", n_surface=100)["chamfer"] == math.inf


def test_surface_samples_carry_outward_unit_normals():
    points, normals = sample_surface_with_normals(surface_mesh("sphere"), 500, _gen())
    assert normals.norm(dim=-1).sub(1).abs().max() < 1e-5
    # On a sphere at the origin the outward normal is the point's direction.
    assert (normals * torch.nn.functional.normalize(points, dim=-1)).sum(-1).min() > 0.99


# --- space carving --------------------------------------------------------------------------


def _ball_maps(cameras, radius: float, depth_bias: float = 0.0):
    """Exact opacity and depth renders [B, 1, H, W] of a solid ball at the origin."""
    from ssd3d.scene.rays import generate_rays

    rays = generate_rays(cameras)
    b = (rays.origins * rays.directions).sum(-1)
    c = rays.origins.square().sum(-1) - radius**2
    disc = b.square() - c
    hit = disc > 0
    t = -b - disc.clamp(min=0).sqrt() + depth_bias
    opacity = hit.float()[:, None]
    return opacity, (t * hit)[:, None]


def _ball(points, radius):
    return points.norm(dim=-1) < radius


def test_carving_recovers_a_ball_and_sees_a_smaller_one_as_smaller():
    cameras = carving_cameras(resolution=48)
    points = grid_points(32)
    # Silhouettes only (the visual hull): a convex object's hull contains it.
    big = carved_occupancy(*_ball_maps(cameras, 0.5), cameras, points, depth_tolerance=math.inf)
    small = carved_occupancy(*_ball_maps(cameras, 0.35), cameras, points, depth_tolerance=math.inf)
    # One ray per pixel puts each silhouette's edge within half a pixel (0.025 scene units at
    # 48 px): carving keeps every point a pixel inside the ball and nothing a pixel outside.
    pixel = 0.05
    for carved, radius in ((big, 0.5), (small, 0.35)):
        assert bool(carved[_ball(points, radius - pixel)].all())
        assert not bool(carved[~_ball(points, radius + pixel)].any())
        assert occupancy_iou(carved, _ball(points, radius)) > 0.8
    # Volumes scale with the cube of the radius: (0.35 / 0.5)^3 = 0.343.
    assert occupancy_iou(big, small) == pytest.approx(0.343, abs=0.05)
    assert occupancy_iou(big, big) == 1.0


def test_carving_trusts_the_depth_only_up_to_its_tolerance():
    cameras = carving_cameras(resolution=48)
    points = grid_points(32)
    true = carved_occupancy(*_ball_maps(cameras, 0.5), cameras, points)
    # A surface drawn 0.15 too deep in every view carves a shell off the front of it.
    deep = _ball_maps(cameras, 0.5, depth_bias=0.15)
    carved = carved_occupancy(*deep, cameras, points)
    assert occupancy_iou(carved, _ball(points, 0.35)) > 0.75
    assert occupancy_iou(carved, true) < 0.5
    # Forgiving that much of depth, or ignoring it (the visual hull), gives the ball back.
    assert (
        occupancy_iou(carved_occupancy(*deep, cameras, points, depth_tolerance=0.15), true) > 0.95
    )
    hull = carved_occupancy(*deep, cameras, points, depth_tolerance=math.inf)
    assert occupancy_iou(hull, true) > 0.9


def test_carving_rejects_maps_that_do_not_match_the_cameras():
    cameras = carving_cameras(resolution=16)
    opacity, depth = _ball_maps(cameras, 0.5)
    with pytest.raises(ValueError, match="carving needs"):
        carved_occupancy(opacity[:3], depth[:3], cameras, grid_points(8))
