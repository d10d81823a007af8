"""representation=mesh: 3D Gaussians, then their mesh for the run's last steps."""

from __future__ import annotations

import dataclasses

import torch

from ssd3d.generation import generate, resume
from ssd3d.pipeline.run import prepare
from ssd3d.pipeline.run_dir import RunDir
from ssd3d.scene import GaussianConfig, GaussianScene, MeshConfig, MeshScene


def mesh_config(tiny_config, steps=6, mesh_steps=3):
    return dataclasses.replace(
        tiny_config,
        representation="mesh",
        steps=steps,
        # A dense start, so the Gaussians have a surface to export after three steps.
        gaussians=GaussianConfig(initial_count=256, init_opacity=0.6, mesh_threshold=0.5),
        mesh=MeshConfig(steps=mesh_steps, resolution=16),
    )


def test_the_gaussians_become_a_mesh_for_the_last_steps(tiny_config, tiny_prior):
    cfg = mesh_config(tiny_config)
    run = prepare(cfg, tiny_prior)
    stages = []
    for _ in range(cfg.steps):
        run.run_step()
        stages.append(type(run.scene.stage))
    assert stages == [GaussianScene] * 3 + [MeshScene] * 3
    # The optimiser was rebuilt on the mesh's parameters.
    optimised = {id(p) for g in run.optimizer.param_groups for p in g["params"]}
    assert (
        id(run.scene.mesh.coordinates) in optimised and id(run.scene.volume.means) not in optimised
    )
    # The mesh moved from the volume's surface, and what the run exports is the mesh itself.
    exported = run.scene.export_mesh(64)
    assert len(exported.faces) == len(run.scene.mesh.faces) and exported.is_watertight
    assert run.scene.surface_level == 0.5


def test_a_run_resumed_across_the_switch_equals_an_uninterrupted_one(
    tmp_path, tiny_config, tiny_prior
):
    cfg = mesh_config(tiny_config)
    straight = generate(cfg, tmp_path / "a", prior=tiny_prior, progress=False)
    stopped = generate(cfg, tmp_path / "b", prior=tiny_prior, stop_after=2, progress=False)
    resume(stopped, prior=tiny_prior, progress=False)  # switches after the resume, at step 3
    a = RunDir(straight).load_checkpoint().scene
    b = RunDir(stopped).load_checkpoint().scene
    assert "mesh.coordinates" in a and list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # and from a checkpoint of the mesh stage
    late = generate(cfg, tmp_path / "c", prior=tiny_prior, stop_after=4, progress=False)
    resume(late, prior=tiny_prior, progress=False)
    c = RunDir(late).load_checkpoint().scene
    assert all(torch.equal(a[k], c[k]) for k in a)


def test_a_volume_with_no_surface_stays_the_scene(tiny_config, tiny_prior):
    cfg = mesh_config(tiny_config)
    cfg = dataclasses.replace(cfg, gaussians=dataclasses.replace(cfg.gaussians, mesh_threshold=1e6))
    run = prepare(cfg, tiny_prior)
    for _ in range(cfg.steps):
        run.run_step()
    assert run.scene.mesh is None and bool(run.scene.no_surface)
