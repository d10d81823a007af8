"""Cameras: frames, sampling ranges, orbit layout and view-dependent prompt labels."""

import math

import pytest
import torch

from ssd3d.errors import SSD3DError
from ssd3d.scene import (
    CameraConfig,
    ViewPromptConfig,
    look_at,
    orbit_cameras,
    sample_cameras,
    spherical_cameras,
    view_label,
    view_labels,
    view_prompt,
    view_prompts,
)


@pytest.mark.parametrize(
    ("elevation", "azimuth", "label"),
    [
        (0.0, 0.0, "front"),
        (0.0, 44.999, "front"),
        (0.0, 45.0, "side"),  # strict: |azimuth| < 45 is front
        (0.0, -45.0, "side"),
        (0.0, -44.999, "front"),
        (0.0, 90.0, "side"),
        (0.0, 135.0, "side"),  # strict: |azimuth| > 135 is back
        (0.0, 135.001, "back"),
        (0.0, -135.001, "back"),
        (0.0, 180.0, "back"),
        (0.0, -180.0, "back"),
        (0.0, 360.0, "front"),  # wraps
        (0.0, 224.0, "back"),  # = -136
        (0.0, 226.0, "side"),  # = -134
        (60.0, 180.0, "back"),  # strict: elevation > 60 is overhead
        (60.001, 0.0, "overhead"),
        (90.0, 90.0, "overhead"),
        (-10.0, 0.0, "front"),
    ],
)
def test_view_label_threestudio_boundaries(elevation, azimuth, label):
    assert view_label(elevation, azimuth) == label


def test_view_label_custom_thresholds():
    cfg = ViewPromptConfig(front_threshold_deg=30, back_threshold_deg=60, overhead_threshold_deg=45)
    assert view_label(0, 29.9, cfg) == "front"
    assert view_label(0, 30, cfg) == "side"
    assert view_label(0, 120.1, cfg) == "back"
    assert view_label(0, 120, cfg) == "side"
    assert view_label(45.1, 0, cfg) == "overhead"
    with pytest.raises(SSD3DError, match="front_threshold_deg"):
        ViewPromptConfig(front_threshold_deg=100, back_threshold_deg=100)


def test_view_prompts_and_switch():
    cams = orbit_cameras(4, elevation_deg=10)
    assert view_labels(cams) == ["front", "side", "back", "side"]
    # The object turned by 180 degrees shows its back to the front camera; by 90 its
    # front faces the camera at azimuth 90.
    assert view_labels(cams, object_yaw_deg=180) == ["back", "side", "front", "side"]
    assert view_labels(cams, object_yaw_deg=90) == ["side", "front", "side", "back"]
    assert view_labels(orbit_cameras(4, elevation_deg=70), object_yaw_deg=90) == ["overhead"] * 4
    assert view_prompt("a red cube", "front") == "a red cube, front view"
    assert view_prompts("a red cube", cams)[2] == "a red cube, back view"
    assert view_prompts("a red cube", cams, ViewPromptConfig(enabled=False)) == ["a red cube"] * 4
    with pytest.raises(SSD3DError, match="view label"):
        view_prompt("x", "top")


def _random_spherical(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    elev = torch.rand(n, generator=g) * 180 - 90
    elev[0], elev[1] = 90.0, -90.0  # the poles, where look-at frames degenerate
    azim = torch.rand(n, generator=g) * 360 - 180
    dist = 1.5 + torch.rand(n, generator=g)
    return spherical_cameras(elev, azim, dist, torch.full((n,), 50.0), 8, 8)


def test_c2w_is_a_rotation_looking_at_the_origin():
    cams = _random_spherical(64)
    rot = cams.c2w[:, :3, :3]
    eye = torch.eye(3).expand_as(rot)
    torch.testing.assert_close(rot.transpose(1, 2) @ rot, eye, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(rot), torch.ones(64), atol=1e-5, rtol=0)
    torch.testing.assert_close(cams.c2w[:, 3], torch.tensor([0.0, 0, 0, 1]).expand(64, 4))
    # OpenGL: the camera looks down -z, so -z (world) points from the eye to the origin.
    looking = -rot[:, :, 2]
    towards_origin = -cams.positions / cams.positions.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(looking, towards_origin, atol=1e-5, rtol=0)
    torch.testing.assert_close(cams.positions.norm(dim=-1), cams.distance)


def test_world_axes_appear_where_expected():
    # Front camera (azimuth 0) on +x: world +y is image-right, world +z is image-up.
    cam = spherical_cameras(*(torch.tensor([v]) for v in (0.0, 0.0, 2.0, 50.0)), 8, 8)
    torch.testing.assert_close(cam.positions[0], torch.tensor([2.0, 0, 0]))
    world_to_cam = torch.linalg.inv(cam.c2w[0])
    y_in_cam = (world_to_cam @ torch.tensor([0.0, 1, 0, 1]))[:3]
    z_in_cam = (world_to_cam @ torch.tensor([0.0, 0, 1, 1]))[:3]
    assert y_in_cam[0] > 0.99 and z_in_cam[1] > 0.99
    # Azimuth 90 sits on +y (counter-clockwise from above).
    cam90 = spherical_cameras(*(torch.tensor([v]) for v in (0.0, 90.0, 2.0, 50.0)), 8, 8)
    torch.testing.assert_close(cam90.positions[0], torch.tensor([0.0, 2, 0]), atol=1e-6, rtol=0)


def test_look_at_matches_spherical_frames_and_survives_the_pole():
    cams = _random_spherical(32)
    frames = look_at(cams.positions)
    ok = cams.elevation_deg.abs() < 89  # away from the poles the two constructions agree
    torch.testing.assert_close(frames[ok], cams.c2w[ok], atol=1e-5, rtol=0)
    top = look_at(torch.tensor([[0.0, 0.0, 2.0]]))[0, :3, :3]
    torch.testing.assert_close(top.T @ top, torch.eye(3), atol=1e-6, rtol=0)
    torch.testing.assert_close(top[:, 2], torch.tensor([0.0, 0, 1]))


def test_sample_cameras_ranges_stratification_and_seed():
    cfg = CameraConfig(
        distance_range=(2.0, 2.5),
        fov_range_deg=(40, 70),
        elevation_range_deg=(-10, 90),
        azimuth_range_deg=(-180, 180),
    )
    cams = sample_cameras(cfg, 400, torch.Generator().manual_seed(1))
    assert cams.distance.min() >= 2.0 and cams.distance.max() <= 2.5
    assert cams.fov_deg.min() >= 40 and cams.fov_deg.max() <= 70
    assert cams.elevation_deg.min() >= -10 and cams.elevation_deg.max() <= 90
    # Stratified azimuth: view k lies in the k-th of 400 equal slices.
    slot = ((cams.azimuth_deg + 180) / 360 * 400).floor()
    assert torch.equal(slot, torch.arange(400.0))
    # Half the views are area-uniform: fewer high elevations than with degree-uniform draws.
    frac_high = (cams.elevation_deg > 60).float().mean().item()
    uniform_deg = 30 / 100
    sphere = (1 - math.sin(math.radians(60))) / (1 - math.sin(math.radians(-10)))
    assert abs(frac_high - (uniform_deg + sphere) / 2) < 0.07
    again = sample_cameras(cfg, 400, torch.Generator().manual_seed(1))
    assert torch.equal(again.c2w, cams.c2w)
    other = sample_cameras(cfg, 400, torch.Generator().manual_seed(2))
    assert not torch.equal(other.c2w, cams.c2w)
    assert (cams.width, cams.height) == (32, 32)


def test_orbit_starts_at_front_and_is_even():
    cams = orbit_cameras(8, elevation_deg=20, distance=2.2, fov_deg=50, width=16, height=12)
    expected = torch.tensor([0.0, 45, 90, 135, -180, -135, -90, -45])
    torch.testing.assert_close(cams.azimuth_deg, expected)
    assert (cams.width, cams.height) == (16, 12)
    torch.testing.assert_close(
        cams.positions[:, 2], torch.full((8,), 2.2 * math.sin(math.radians(20)))
    )
    sub = cams[2]
    assert sub.batch_size == 1 and sub.azimuth_deg.item() == 90


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"distance_range": (2.5, 2.0)}, "distance_range"),
        ({"fov_range_deg": (0.0, 50.0)}, "fov_range_deg"),
        ({"elevation_range_deg": (-100.0, 10.0)}, "elevation_range_deg"),
        ({"width": 0}, "width"),
        ({"sphere_uniform_prob": 1.5}, "sphere_uniform_prob"),
    ],
)
def test_camera_config_rejects_bad_values(kwargs, name):
    with pytest.raises(SSD3DError, match=name):
        CameraConfig(**kwargs)


def test_scene_configs_take_checked_overrides():
    from ssd3d.config import apply_overrides
    from ssd3d.scene import RenderConfig, ShadingConfig, VoxelGridConfig

    cfg = apply_overrides(CameraConfig(), ["distance_range=[1.8, 2.2]", "width=48"])
    assert cfg.distance_range == (1.8, 2.2) and cfg.width == 48
    with pytest.raises(SSD3DError, match="distance_range"):
        apply_overrides(CameraConfig(), ["distance_rang=[1, 2]"])
    with pytest.raises(SSD3DError, match="distance_range"):
        apply_overrides(CameraConfig(), ["distance_range=[3, 2]"])
    assert apply_overrides(ViewPromptConfig(), ["enabled=false"]).enabled is False
    assert apply_overrides(ShadingConfig(), ["ambient=0.2"]).ambient == 0.2
    assert apply_overrides(RenderConfig(), ["num_samples=64"]).num_samples == 64
    assert apply_overrides(VoxelGridConfig(), ["resolution=48"]).resolution == 48
