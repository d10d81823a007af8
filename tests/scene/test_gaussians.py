"""GaussianScene: init, param groups, densification schedule, checkpoints and resume, exports."""

import math

import numpy as np
import pytest
import torch

from ssd3d.errors import SSD3DError
from ssd3d.export.splat_ply import read_splat_ply
from ssd3d.pipeline.checkpoint import TrainingState, load_checkpoint, save_checkpoint
from ssd3d.scene import CameraConfig, orbit_cameras, sample_cameras
from ssd3d.scene.gaussians import GaussianConfig, GaussianScene
from ssd3d.scene.splat import SH_C0, quaternion_to_rotation


def small(**overrides):
    base = dict(
        initial_count=20,
        max_count=1000,
        densify_start=2,
        densify_every=2,
        densify_stop=10,
        opacity_reset_every=0,
        backend="torch",
    )
    return GaussianConfig(**{**base, **overrides})


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("initial_count", 0, "initial_count"),
        ("init_shape", "cube", "init_shape"),
        ("sh_degree", 4, "sh_degree"),
        ("densify_every", 0, "densify_every"),
        ("lr_position", -1.0, "learning rates"),
        ("lr_position_final", 0.0, "lr_position_final"),
        ("init_scale", 0.0, "init_scale"),
        ("backend", "cuda", "backend"),
    ],
)
def test_bad_config_is_a_one_line_error(field, value, message):
    with pytest.raises(SSD3DError, match=message):
        GaussianConfig(**{field: value})


@pytest.mark.parametrize("shape", ["blob", "sphere"])
def test_init_fills_a_ball_or_its_surface(shape):
    scene = GaussianScene(GaussianConfig(initial_count=500, init_shape=shape, init_radius=0.5))
    r = scene.means.detach().norm(dim=-1)
    assert scene.count == 500
    assert float(r.max()) <= 0.5 + 1e-6
    if shape == "sphere":
        torch.testing.assert_close(r, torch.full_like(r, 0.5))
    else:  # uniform in volume: half of the points within 0.5 * 2^(-1/3)
        assert abs(float((r < 0.5 * 2 ** (-1 / 3)).float().mean()) - 0.5) < 0.07
    torch.testing.assert_close(scene.opacities(), torch.full((500,), 0.1))
    # Nearest-neighbour scale: about the spacing of the points, not a constant.
    scale = torch.exp(scene.log_scales.detach()[:, 0])
    assert 0.02 < float(scale.median()) < 0.15 and float(scale.std()) > 0


def test_param_groups_take_every_parameter_once_with_the_config_rates():
    cfg = GaussianConfig(initial_count=10, sh_degree=2, lr_position=1e-4, lr_colour=0.02)
    scene = GaussianScene(cfg)
    groups = {g["name"]: g for g in scene.param_groups()}
    assert list(groups) == ["position", "scale", "rotation", "opacity", "colour", "colour_rest"]
    assert groups["position"]["lr"] == 1e-4 and groups["colour_rest"]["lr"] == pytest.approx(1e-3)
    assert groups["colour_rest"]["params"][0].shape == (10, 8, 3)
    ids = [id(p) for g in groups.values() for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in scene.parameters())


def _prepare(scene, grads, scales, opacities):
    with torch.no_grad():
        scene.log_scales.copy_(torch.log(torch.tensor(scales))[:, None].expand(-1, 3))
        scene.opacity_logits.copy_(torch.logit(torch.tensor(opacities)))
    scene.grad_accum.copy_(torch.tensor(grads) * 2)
    scene.grad_count.fill_(2)


def _twenty():
    """5 small and 5 large Gaussians over the threshold, 3 transparent ones, 7 quiet ones."""
    grads = [0.1] * 5 + [0.2] * 5 + [0.0] * 10
    scales = [0.02] * 5 + [0.1] * 5 + [0.02] * 10
    opacities = [0.5] * 10 + [0.001] * 3 + [0.5] * 7
    return grads, scales, opacities


def test_densification_clones_splits_and_prunes_on_schedule():
    scene = GaussianScene(small())
    _prepare(scene, *_twenty())
    before = scene.means.detach().clone()
    assert not scene.restructure(1) and not scene.restructure(3) and scene.count == 20
    assert scene.restructure(4)
    # 20 + 5 clones + 5 splits (two children each, the parent removed) - 3 pruned.
    assert scene.count == 27
    means, scales = scene.means.detach(), torch.exp(scene.log_scales.detach())
    # Survivors keep their order: the small ones, then the quiet ones minus the 3 pruned.
    survivors = torch.cat([before[:5], before[13:]])
    torch.testing.assert_close(means[:12], survivors)
    torch.testing.assert_close(means[12:17], before[:5])  # clones sit on their originals
    torch.testing.assert_close(scales[17:], torch.full((10, 3), 0.1 / 1.6))
    # Children are drawn around their parents, within a few parent scales.
    parents = before[5:10].repeat(2, 1)
    assert float((means[17:] - parents).norm(dim=-1).max()) < 0.5
    assert float((means[17:] - parents).norm(dim=-1).min()) > 0
    assert scene.grad_accum.shape == (27,) and float(scene.grad_accum.abs().sum()) == 0
    # No densification after densify_stop.
    _prepare(scene, [0.5] * 27, [0.02] * 27, [0.5] * 27)
    assert not scene.restructure(12) and scene.count == 27


def test_max_count_keeps_the_largest_gradients():
    scene = GaussianScene(small(max_count=23))
    grads, scales, opacities = _twenty()
    grads[3], grads[7], grads[9] = 0.5, 0.4, 0.3  # the three strongest: one clone, two splits
    _prepare(scene, grads, scales, [0.5] * 20)
    before = scene.means.detach().clone()
    scene.restructure(2)
    assert scene.count == 23  # 20 - 2 parents + 1 clone + 4 children
    torch.testing.assert_close(scene.means.detach()[18], before[3])


def test_opacity_reset_caps_opacities_and_size_pruning_follows_it():
    scene = GaussianScene(small(opacity_reset_every=4, densify_every=3, max_world_size=0.3))
    grads, scales, opacities = _twenty()
    scales[15] = 0.35  # too large in the world, but only pruned after the first reset
    _prepare(scene, grads, scales, opacities)
    assert scene.restructure(3)
    n = scene.count
    assert n == 27
    assert scene.restructure(4)
    assert scene.count == n and float(scene.opacities().detach().max()) <= 0.01 + 1e-6
    with torch.no_grad():
        scene.opacity_logits.fill_(0.0)
    assert scene.restructure(6)  # step 6 > 4: the oversized Gaussian goes
    assert scene.count == n - 1
    assert float(torch.exp(scene.log_scales.detach()).max()) < 0.3


def test_observed_gradients_count_the_views_that_saw_each_gaussian():
    scene = GaussianScene(small(initial_count=30, grad_threshold=1e-6, densify_start=1))
    with torch.no_grad():
        scene.means[0] = torch.tensor([0.0, 0.0, 30.0])  # above every orbit camera's view
    cams = orbit_cameras(3, width=12, height=12)
    out = scene.render(cams)
    (out.rgb * torch.linspace(0, 1, 12)).sum().backward()
    scene.observe_gradients(0)
    assert float(scene.grad_count[0]) == 0 and float(scene.grad_accum[0]) == 0
    assert float(scene.grad_count[1:].max()) == 3
    assert float(scene.grad_accum[1:].min()) > 0
    assert float(scene.max_radii.max()) > 0
    # With a tiny threshold every seen Gaussian is densified at the next scheduled step.
    seen = int((scene.grad_count > 0).sum())
    assert scene.restructure(2) and scene.count == 30 + seen


def _densified_scene():
    scene = GaussianScene(small(initial_count=40, grad_threshold=1e-6, densify_start=1))
    out = scene.render(orbit_cameras(2, width=12, height=12))
    out.rgb.sum().backward()
    scene.observe_gradients(0)
    scene.restructure(2)
    return scene


def test_state_dict_round_trip_after_densification_renders_the_same():
    scene = _densified_scene()
    assert scene.count > 40
    scene.grad_accum.fill_(0.25)  # statistics travel too
    fresh = GaussianScene(scene.config)
    fresh.load_state_dict(scene.state_dict())
    assert fresh.count == scene.count
    assert torch.equal(fresh.grad_accum, scene.grad_accum)
    cams = orbit_cameras(3, width=16, height=16)
    with torch.no_grad():
        assert torch.equal(fresh.render(cams).rgb, scene.render(cams).rgb)
    with pytest.raises(RuntimeError):  # another SH degree does not load silently
        GaussianScene(GaussianConfig(initial_count=40, sh_degree=1)).load_state_dict(
            scene.state_dict()
        )


def _fit_config():
    return small(
        initial_count=48,
        max_count=150,
        densify_start=2,
        densify_every=2,
        densify_stop=8,
        grad_threshold=2e-4,
        opacity_reset_every=6,
        sh_degree=1,
    )


def _adam(scene):
    return torch.optim.Adam(scene.param_groups())


def _fit(scene, optimizer, generator, start, stop, teacher, counts):
    cam_cfg = CameraConfig(width=12, height=12)
    for step in range(start, stop):
        if scene.restructure(step):
            optimizer = _adam(scene)
        counts.append(scene.count)
        cams = sample_cameras(cam_cfg, 2, generator)
        with torch.no_grad():
            target = teacher.render(cams).rgb
        out = scene.render(cams, None, generator)
        loss = (out.rgb - target).square().mean() + 0.01 * out.opacity.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        scene.observe_gradients(step)
        optimizer.step()
    return optimizer


def test_resumed_optimisation_equals_an_uninterrupted_one_bit_for_bit(tmp_path):
    teacher = GaussianScene(GaussianConfig(initial_count=30, seed=5, init_radius=0.4))
    with torch.no_grad():
        teacher.sh_dc.normal_(generator=torch.Generator().manual_seed(2))
        teacher.opacity_logits.fill_(2.0)
    cfg, total, k = _fit_config(), 10, 5

    scene = GaussianScene(cfg)
    gen = torch.Generator().manual_seed(0)
    counts = []
    _fit(scene, _adam(scene), gen, 0, total, teacher, counts)
    assert len(set(counts)) >= 3  # densified more than once, before and after step k

    first = GaussianScene(cfg)
    gen = torch.Generator().manual_seed(0)
    opt = _fit(first, _adam(first), gen, 0, k, teacher, [])
    save_checkpoint(
        tmp_path / "ckpt", TrainingState(k, first.state_dict(), opt.state_dict(), gen.get_state())
    )
    state = load_checkpoint(tmp_path / "ckpt")
    resumed = GaussianScene(cfg)
    assert resumed.count != first.count
    resumed.load_state_dict(state.scene)
    opt = _adam(resumed)
    opt.load_state_dict(state.optimizer)
    gen = torch.Generator()
    gen.set_state(state.rng_state)
    _fit(resumed, opt, gen, k, total, teacher, [])

    expected, got = scene.state_dict(), resumed.state_dict()
    assert list(expected) == list(got)
    for name in expected:
        assert torch.equal(expected[name], got[name]), name


def _blob(colour=(0.9, 0.1, 0.1)):
    """A centre Gaussian and six around it, opaque: a lumpy ball of radius ~0.35."""
    offsets = [[0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]]
    scene = GaussianScene(GaussianConfig(initial_count=7, backend="torch"))
    with torch.no_grad():
        scene.means.copy_(0.15 * torch.tensor(offsets, dtype=torch.float32))
        scene.log_scales.fill_(math.log(0.12))
        scene.opacity_logits.fill_(4.0)
        scene.sh_dc.copy_(((torch.tensor(colour) - 0.5) / SH_C0).expand(7, 1, 3))
    return scene


def test_density_grid_equals_the_density_at_the_grid_nodes():
    scene = _blob()
    with torch.no_grad():
        scene.log_scales.copy_(torch.log(torch.tensor([0.05, 0.1, 0.2])).expand(7, 3))
        scene.quaternions.normal_(generator=torch.Generator().manual_seed(0))
    lin = torch.linspace(-1, 1, 21)
    x, y, z = torch.meshgrid(lin, lin, lin, indexing="ij")
    nodes = torch.stack([x, y, z], dim=-1).reshape(-1, 3)
    expected = scene.density(nodes).reshape(21, 21, 21)
    torch.testing.assert_close(scene.density_grid(21), expected, atol=1e-5, rtol=1e-5)
    assert float(expected.max()) > 1


def test_density_and_albedo_equal_every_gaussian_summed_at_every_point():
    scene = GaussianScene(GaussianConfig(initial_count=200, seed=4))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        scene.log_scales.copy_(torch.log(0.02 + 0.2 * torch.rand(200, 3, generator=g)))
        scene.quaternions.normal_(generator=g)
        scene.opacity_logits.normal_(generator=g)
        scene.sh_dc.normal_(generator=g)
    points = 1.6 * (torch.rand(3000, 3, generator=g) - 0.5)
    # Brute force: every Gaussian at every point, within 3 sigma.
    rotation = quaternion_to_rotation(scene.quaternions.detach())
    r_scaled = rotation * torch.exp(-scene.log_scales.detach())[:, None, :]
    d = points[:, None, :] - scene.means.detach()[None]
    m2 = torch.einsum("pni,nij,pnj->pn", d, r_scaled @ r_scaled.transpose(-1, -2), d)
    w = torch.where(m2 <= 9.0, torch.sigmoid(scene.opacity_logits.detach()) * torch.exp(-m2 / 2), 0)
    colours = (0.5 + SH_C0 * scene.sh_dc.detach()[:, 0]).clamp(0, 1)
    density = w.sum(1)
    assert float((density == 0).float().mean()) > 0.1 and float(density.max()) > 1
    torch.testing.assert_close(scene.density(points), density, atol=1e-5, rtol=1e-5)
    albedo = torch.where(
        density[:, None] > 0, (w @ colours) / density.clamp(min=1e-12)[:, None], 0.5
    )
    torch.testing.assert_close(scene.albedo(points), albedo, atol=1e-5, rtol=1e-5)


def test_export_mesh_of_a_blob_is_closed_coloured_and_positive():
    mesh = _blob().export_mesh(48)
    assert mesh.is_watertight
    assert mesh.volume > 0
    r = np.linalg.norm(mesh.vertices, axis=1)
    assert 0.2 < r.mean() < 0.45
    rgb = mesh.visual.vertex_colors[:, :3].astype(float) / 255
    np.testing.assert_allclose(rgb.mean(axis=0), [0.9, 0.1, 0.1], atol=0.01)
    transparent = _blob()
    with torch.no_grad():
        transparent.opacity_logits.fill_(-6.0)
    with pytest.raises(SSD3DError, match="empty"):
        transparent.export_mesh(32)


def test_export_files_write_the_gaussians_as_a_3dgs_ply(tmp_path):
    scene = _densified_scene()
    files = scene.export_files(tmp_path)
    back = read_splat_ply(files["splat_ply"])
    assert files["splat_ply"] == tmp_path / "gaussians.ply"
    assert back.count == scene.count
    np.testing.assert_array_equal(back.means, scene.means.detach().numpy())
    np.testing.assert_array_equal(back.sh_dc, scene.sh_dc.detach().numpy()[:, 0])
    np.testing.assert_array_equal(back.opacity_logits, scene.opacity_logits.detach().numpy())
    assert back.sh_rest.shape == (scene.count, 0, 3)


def test_opacity_entropy_pushes_each_opacity_away_from_one_half():
    scene = GaussianScene(small(initial_count=5, opacity_entropy=2.0))
    opacities = torch.tensor([0.05, 0.3, 0.5, 0.7, 0.95])
    with torch.no_grad():
        scene.opacity_logits.copy_(torch.logit(opacities))
    (name, (weight, value)), *rest = scene.scene_losses().items()
    assert name == "gaussian_opacity_entropy" and weight == 2.0 and not rest
    p = opacities.double()
    expected = -(p * p.log() + (1 - p) * (1 - p).log()).mean()
    torch.testing.assert_close(value.double(), expected, rtol=1e-5, atol=1e-6)
    (grad,) = torch.autograd.grad(weight * value, scene.opacity_logits)
    # d/dlogit of the mean entropy: -logit * o (1 - o) / N; descent moves logits outward.
    logit = torch.logit(opacities)
    torch.testing.assert_close(grad, -2.0 * logit * opacities * (1 - opacities) / 5)
    step = -grad
    assert (step[:2] < 0).all() and (step[3:] > 0).all() and abs(float(step[2])) < 1e-7
    assert GaussianScene(small(initial_count=5)).scene_losses() == {}


def test_default_gaussians_are_never_densified_pruned_or_reset():
    # Splits halve the summed density and distillation leaves the rest as fog
    # (docs/gaussians.md): by default the initial Gaussians are all there is.
    scene = GaussianScene(GaussianConfig(initial_count=20, backend="torch"))
    grads, scales, opacities = _twenty()
    _prepare(scene, grads, scales, opacities)
    before = {k: v.clone() for k, v in scene.state_dict().items()}
    assert not any(scene.restructure(step) for step in range(0, 3001, 50))
    assert all(torch.equal(before[k], v) for k, v in scene.state_dict().items())
    # DreamGaussian's schedule is one override away: densify and prune at step 100.
    on = GaussianScene(GaussianConfig(initial_count=20, densify_stop=3000, backend="torch"))
    _prepare(on, grads, scales, opacities)
    assert not on.restructure(99) and on.restructure(100) and on.count == 27


def test_position_decay_is_log_linear_from_the_rate_to_its_final_fraction():
    # 3DGS's schedule: lr_position at the first step, lr_position * final at the last, the
    # geometric mean halfway; the other groups keep their rates.
    scene = GaussianScene(GaussianConfig(initial_count=4, lr_position=1e-3, lr_position_final=0.01))
    at = [scene.learning_rates(step, 101) for step in (0, 50, 100, 200)]
    assert [r["position"] for r in at] == pytest.approx([1e-3, 1e-4, 1e-5, 1e-5])
    assert all(r["scale"] == 5e-3 and r["opacity"] == 5e-2 for r in at)


def test_late_decay_holds_every_rate_then_decays_it_to_its_final_fraction():
    cfg = GaussianConfig(initial_count=4, lr_late_final=0.1, lr_late_start=0.5)
    scene = GaussianScene(cfg)
    base = {g["name"]: g["lr"] for g in scene.param_groups()}
    for step, factor in [(0, 1.0), (50, 1.0), (75, 0.1**0.5), (100, 0.1)]:
        rates = scene.learning_rates(step, 101)
        assert {k: rates[k] for k in base} == pytest.approx(
            {k: v * factor for k, v in base.items()}
        )
    # Off by default: every step at the config's rates.
    plain = GaussianScene(GaussianConfig(initial_count=4))
    rates = plain.learning_rates(150, 200)
    assert {k: rates[k] for k in base} == base


def test_init_scale_multiplies_the_nearest_neighbour_scale():
    one = GaussianScene(GaussianConfig(initial_count=50)).log_scales.detach()
    two = GaussianScene(GaussianConfig(initial_count=50, init_scale=2.0)).log_scales.detach()
    torch.testing.assert_close(two - one, torch.full_like(one, math.log(2.0)))
