"""Shading: mode frequencies, seeding, the light near the camera, and the shading formulas."""

import pytest
import torch

from ssd3d.errors import SSD3DError
from ssd3d.scene import (
    CameraConfig,
    Shading,
    ShadingConfig,
    fixed_shading,
    orbit_cameras,
    sample_cameras,
    sample_shading,
    shade,
)


def test_mode_frequencies_follow_the_configured_probabilities():
    cfg = ShadingConfig(albedo_prob=0.2, lambertian_prob=0.5, textureless_prob=0.3)
    cams = orbit_cameras(20000, width=2, height=2)
    modes = sample_shading(cfg, cams, torch.Generator().manual_seed(0)).modes
    n = len(modes)
    for mode, p in (("albedo", 0.2), ("lambertian", 0.5), ("textureless", 0.3)):
        freq = modes.count(mode) / n
        assert abs(freq - p) < 4 * (p * (1 - p) / n) ** 0.5  # within 4 standard errors


def test_default_probabilities_are_threestudios():
    cfg = ShadingConfig()
    # threestudio: albedo with prob 1 - diffuse_prob (0.25); otherwise textureless half the time.
    assert (cfg.albedo_prob, cfg.lambertian_prob, cfg.textureless_prob) == (0.25, 0.375, 0.375)
    assert (cfg.ambient, cfg.diffuse) == (0.1, 0.9)


def test_sampling_is_deterministic_for_a_seed_and_lights_sit_near_the_camera():
    cams = sample_cameras(CameraConfig(), 500, torch.Generator().manual_seed(0))
    cfg = ShadingConfig()
    a = sample_shading(cfg, cams, torch.Generator().manual_seed(7))
    b = sample_shading(cfg, cams, torch.Generator().manual_seed(7))
    c = sample_shading(cfg, cams, torch.Generator().manual_seed(8))
    assert a.modes == b.modes and torch.equal(a.light_positions, b.light_positions)
    assert a.modes != c.modes
    dist = a.light_positions.norm(dim=-1)
    assert dist.min() >= 2.0 and dist.max() <= 3.0
    cos = torch.nn.functional.cosine_similarity(a.light_positions, cams.positions, dim=-1)
    # Jittered around the camera direction (std 0.8 of a unit vector, as threestudio): mostly
    # in front of the object, sometimes behind it.
    assert 0.45 < cos.mean() < 0.7 and (cos > 0).float().mean() > 0.75
    # No jitter: the light sits exactly on the camera's ray.
    d = sample_shading(ShadingConfig(light_direction_std=0.0), cams, torch.Generator())
    assert (
        torch.nn.functional.cosine_similarity(d.light_positions, cams.positions, dim=-1).min()
        > 0.9999
    )


def test_albedo_only_warmup_keeps_the_random_stream():
    cams = orbit_cameras(64, width=2, height=2)
    cfg = ShadingConfig(albedo_only_steps=100)
    warm = sample_shading(cfg, cams, torch.Generator().manual_seed(1), step=10)
    late = sample_shading(cfg, cams, torch.Generator().manual_seed(1), step=100)
    assert set(warm.modes) == {"albedo"} and len(set(late.modes)) == 3
    assert torch.equal(warm.light_positions, late.light_positions)


def test_shade_formulas_on_a_hand_built_case():
    # Two views, one point each at the origin with normal +x; light on +x (cos 1) for view 0
    # and on +y (cos 0) for view 1.
    albedo = torch.tensor([[[0.2, 0.4, 0.6]], [[0.2, 0.4, 0.6]]])
    normals = torch.tensor([[[1.0, 0, 0]], [[1.0, 0, 0]]])
    points = torch.zeros(2, 1, 3)
    lights = torch.tensor([[5.0, 0, 0], [0, 5.0, 0]])
    for modes, want in [
        (("albedo", "albedo"), [albedo[0, 0], albedo[1, 0]]),
        (("lambertian", "lambertian"), [albedo[0, 0] * 1.0, albedo[1, 0] * 0.1]),
        (("textureless", "textureless"), [torch.ones(3), torch.full((3,), 0.1)]),
        (("textureless", "albedo"), [torch.ones(3), albedo[1, 0]]),
        (("lambertian", "textureless"), [albedo[0, 0], torch.full((3,), 0.1)]),
    ]:
        out = shade(albedo, normals, points, Shading(modes, lights, ambient=0.1, diffuse=0.9))
        torch.testing.assert_close(out[:, 0], torch.stack(want))


def test_headlight_default_and_validation():
    cams = orbit_cameras(3, width=2, height=2)
    s = fixed_shading("lambertian", cams)
    assert torch.equal(s.light_positions, cams.positions) and s.needs_normals
    assert not fixed_shading("albedo", cams).needs_normals
    with pytest.raises(SSD3DError, match="shading mode"):
        fixed_shading("phong", cams)
    with pytest.raises(SSD3DError, match="sum to 1"):
        ShadingConfig(albedo_prob=0.5, lambertian_prob=0.5, textureless_prob=0.5)
    with pytest.raises(SSD3DError, match="need normals"):
        shade(torch.zeros(3, 1, 3), None, torch.zeros(3, 1, 3), s)
