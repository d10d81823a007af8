"""The shipped default preset's settings run through the loop, each doing what it is there for.

The toy preset (what ``ssd3d generate "a red cube"`` runs) credits two settings for its
results: opacity sparsity and grid growth. These run them, at the preset's own values, on
the tiny exact prior of this folder's conftest (the toy UNet would need ToyWorld prompts and
minutes), at a budget a test can afford.
"""

from __future__ import annotations

import dataclasses

import torch

from ssd3d.pipeline.config import preset, resolve_config
from ssd3d.pipeline.run import prepare
from ssd3d.priors.exact import ExactPrior

from .conftest import RES

# The preset at the tiny prior's render size; everything else (grid, growth resolutions,
# learning rates, regularisers, estimator, schedule) as shipped.
SIZE = [f"camera.width={RES}", f"camera.height={RES}", "view_prompts.enabled=false"]


def default_config(**fields):
    return resolve_config("toy", {"prompt": "a red disk", "prior": "exact", **fields}, SIZE)


def opacity_outside(run, inside: torch.Tensor) -> float:
    """Mean opacity of orbit views where the object is not (fog, padding)."""
    from ssd3d.scene import fixed_shading, orbit_cameras

    cams = orbit_cameras(4, width=RES, height=RES)
    with torch.no_grad():
        opacity = run.scene.render(cams, fixed_shading("albedo", cams)).opacity[:, 0]
    return float(opacity[:, ~inside].mean())


def small_disk_prior() -> tuple[ExactPrior, torch.Tensor]:
    """An exact prior whose object (a disk) is smaller than the initial blob's silhouette, as
    ToyWorld's shapes are; and the disk's pixels [H, W] (bool)."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, RES), torch.linspace(-1, 1, RES), indexing="ij")
    inside = (xx**2 + yy**2 < 0.06).float()
    images = torch.stack(
        [inside * torch.tensor(c).reshape(3, 1, 1) + 1 - inside for c in [(1.0, 0.1, 0.1)] * 4]
        + [inside * torch.tensor((0.1, 0.1, 1.0)).reshape(3, 1, 1) + 1 - inside] * 4
    )
    prior = ExactPrior(images, torch.tensor([0] * 4 + [1] * 4), ["a red disk", "a blue disk"])
    return prior, inside.bool()


def test_the_default_preset_is_what_is_tested_here():
    shipped = preset("toy")
    assert shipped["regularisers"]["opacity_sparsity"] > 0
    assert shipped["growth"]["steps"] and shipped["growth"]["resolutions"]


def test_opacity_sparsity_empties_the_space_the_blob_filled():
    prior, inside = small_disk_prior()
    cfg = default_config(steps=60)
    without = dataclasses.replace(
        cfg, regularisers=dataclasses.replace(cfg.regularisers, opacity_sparsity=0.0)
    )
    fog = {}
    for name, c in (("with", cfg), ("without", without)):
        run = prepare(c, prior)
        for _ in range(c.steps):
            run.run_step()
        fog[name] = opacity_outside(run, inside)
    initial = opacity_outside(prepare(cfg, prior), inside)
    assert cfg.regularisers.opacity_sparsity == 300
    # The blob covers more than the object. Distillation alone thins what lies outside the
    # object (0.080 -> 0.053 here after 60 steps); the preset's sparsity thins it further
    # (0.046).
    assert fog["with"] < 0.95 * fog["without"] < 0.95 * initial, (fog, initial)


def test_growth_changes_the_grid_at_its_step_and_keeps_resume_exact(tmp_path, tiny_prior):
    from ssd3d.generation import generate, resume
    from ssd3d.pipeline.run_dir import RunDir

    shipped = default_config()
    (grow_at,), (grown,) = shipped.growth.steps, shipped.growth.resolutions
    start = shipped.grid.resolution
    # The shipped resolutions, reached at step 3 instead of 300.
    cfg = dataclasses.replace(
        shipped,
        steps=5,
        checkpoint_every=2,
        growth=dataclasses.replace(shipped.growth, steps=(3,)),
        export=dataclasses.replace(shipped.export, mesh_resolution=24, turntable_frames=2),
    )
    run = prepare(cfg, tiny_prior)
    sizes = []
    for _ in range(cfg.steps):
        run.run_step()
        sizes.append(run.scene.field.resolution)
    assert (start, grown, grow_at) == (24, 32, 300)
    assert sizes == [start, start, start, grown, grown]

    straight = generate(cfg, tmp_path / "a", prior=tiny_prior, progress=False)
    stopped = generate(cfg, tmp_path / "b", prior=tiny_prior, stop_after=2, progress=False)
    resume(stopped, prior=tiny_prior, progress=False)  # grows after the resume, at step 3
    a = RunDir(straight).load_checkpoint().scene
    b = RunDir(stopped).load_checkpoint().scene
    assert a["field.density_raw"].shape == (grown,) * 3
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_presets_per_representation_section_applies_to_that_representation_only():
    from ssd3d.pipeline.config import resolve_config

    raw = preset("toy", "nerf")
    assert "per_representation" not in raw
    voxels = resolve_config("toy", {}, [])
    gaussians = resolve_config("toy", {}, ["representation=gaussians"])
    # The voxel-tuned sparsity stays on the voxel grid; the Gaussians get their own weight.
    assert voxels.regularisers.opacity_sparsity == raw["regularisers"]["opacity_sparsity"]
    assert 0 < gaussians.regularisers.opacity_sparsity < voxels.regularisers.opacity_sparsity
    # Their own estimator too (SDS: SSD's earlier formula fades Gaussians); the budget is shared.
    section = preset("toy", "gaussians")
    assert gaussians.estimator == section["estimator"] != voxels.estimator == raw["estimator"]
    assert gaussians.steps == voxels.steps
    # An estimator the user names wins over the section's, as every other field does.
    assert resolve_config("toy", {"estimator": "csd"}, ["representation=gaussians"]).estimator == (
        "csd"
    )
    # What the user says still wins over the section, as an override or a command's option.
    mine = resolve_config(
        "toy", {"representation": "gaussians"}, ["regularisers.opacity_sparsity=7"]
    )
    assert mine.representation == "gaussians" and mine.regularisers.opacity_sparsity == 7
    # A preset without a section for the representation is the preset as it is.
    assert resolve_config("exact", {}, ["representation=gaussians"]).regularisers == (
        resolve_config("exact", {}, []).regularisers
    )
