"""The generate sequence on its failure paths: nothing marked complete that is not, nothing
rewritten before it is checked, bad settings refused before step 1, one-line errors."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from ssd3d import generation
from ssd3d.errors import SSD3DError
from ssd3d.generation import Generation, generate, resume
from ssd3d.pipeline.config import resolve_config
from ssd3d.pipeline.run import check_device
from ssd3d.pipeline.run_dir import RunDir


class Killed(BaseException):
    """The process dying at this instant."""


def test_a_run_killed_while_reporting_is_not_complete_and_resume_finishes_it(
    tmp_path, tiny_prior, tiny_config, monkeypatch
):
    def killed(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(generation, "write_run_report", killed)
    with pytest.raises(Killed):
        generate(tiny_config, tmp_path, prior=tiny_prior, progress=False)
    monkeypatch.undo()
    run = RunDir(tmp_path / "a-red-disk")
    assert (run.path / "mesh.glb").is_file()  # exported ...
    assert not run.is_complete() and not run.report_path.exists()  # ... but not complete
    resume(run.path, prior=tiny_prior, progress=False)
    assert run.is_complete() and run.report_path.is_file()


def test_resume_to_fewer_steps_than_the_checkpoint_is_refused_and_changes_nothing(
    tmp_path, tiny_prior, tiny_config
):
    run_dir = generate(tiny_config, tmp_path, prior=tiny_prior, stop_after=4, progress=False)
    before = (run_dir / "config.yaml").read_text()
    with pytest.raises(SSD3DError, match="checkpointed at step 4: --steps must be at least"):
        resume(run_dir, prior=tiny_prior, steps=2, progress=False)
    with pytest.raises(SSD3DError, match="steps must be > 0"):
        resume(run_dir, prior=tiny_prior, steps=0, progress=False)
    assert (run_dir / "config.yaml").read_text() == before


@pytest.mark.parametrize(
    "override, needle",
    [
        ("export.mesh_formats=[stl]", "unknown format 'stl'"),
        ("optim.lr_density=-0.1", "optim.lr_density must be >= 0"),
        ("regularisers.orientation=-1", "regularisers.orientation must be >= 0"),
        ("grid.resolution=100000", "above the limit 256"),
        ("growth.steps=[3]", "same length"),
        ("representation=pointcloud", "unknown representation 'pointcloud'"),
        ("timesteps.t_max=2000", "timestep range"),
    ],
)
def test_bad_settings_fail_before_anything_is_written(tmp_path, override, needle):
    with pytest.raises(SSD3DError, match=needle):
        cfg = resolve_config("exact", {"prompt": "a red cube"}, [override])
        cfg.validate()
    assert not any(tmp_path.iterdir())


def test_devices_other_than_cpu_and_cuda_are_one_line_errors():
    with pytest.raises(SSD3DError, match="device 'mps' is not supported"):
        check_device("mps")
    with pytest.raises(SSD3DError, match="unknown device 'gpu0'"):
        check_device("gpu0")


def test_an_empty_or_foreign_config_is_one_line(tmp_path, tiny_prior, tiny_config):
    run_dir = generate(tiny_config, tmp_path, prior=tiny_prior, stop_after=2, progress=False)
    (run_dir / "config.yaml").write_text("")
    with pytest.raises(SSD3DError, match="does not hold a run's config"):
        resume(run_dir, prior=tiny_prior, progress=False)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(["a", "list"]))
    with pytest.raises(SSD3DError, match="does not hold a run's config"):
        RunDir(run_dir).read_config()


def test_the_run_folder_deleted_mid_run_is_one_line(tmp_path, tiny_prior, tiny_config):
    import shutil

    gen = Generation.new(tiny_config, tmp_path, prior=tiny_prior)
    with pytest.raises(SSD3DError, match="disappeared while the run was writing"):
        gen.train(progress=False, on_step=lambda record: shutil.rmtree(gen.run_dir.path))


def test_a_full_disk_while_logging_is_one_line(tmp_path, tiny_prior, tiny_config, monkeypatch):
    import builtins
    import errno

    gen = Generation.new(tiny_config, tmp_path, prior=tiny_prior)
    real_open = builtins.open

    def full(path, *args, **kwargs):
        if str(path).endswith("log.jsonl"):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", full)
    with pytest.raises(SSD3DError, match=r"^no space left on device while writing .*log\.jsonl$"):
        gen.train(progress=False)


def test_a_more_steps_resume_of_a_finished_run_extends_it(tmp_path, tiny_prior, tiny_config):
    cfg = dataclasses.replace(tiny_config, steps=4)
    run_dir = generate(cfg, tmp_path, prior=tiny_prior, progress=False)
    resume(run_dir, prior=tiny_prior, steps=6, progress=False)
    run = RunDir(run_dir)
    assert run.checkpoint_step() == 6 and run.read_config().steps == 6
    assert [r["step"] for r in run.read_log()] == list(range(1, 7))


def test_a_scene_with_no_surface_finishes_with_a_note_not_an_error(
    tmp_path, tiny_prior, tiny_config, monkeypatch, capsys
):
    from ssd3d.scene import RadianceScene

    def empty(self, resolution):
        raise SSD3DError("the field is empty at density threshold 2.0: nothing to export")

    monkeypatch.setattr(RadianceScene, "export_mesh", empty)
    run = RunDir(generate(tiny_config, tmp_path, prior=tiny_prior, progress=False))
    summary = run.read_summary()
    assert summary["notes"] == [
        "no mesh: the field is empty at density threshold 2.0: nothing to export"
    ]
    assert "glb" not in summary["files"] and (run.path / "turntable.mp4").is_file()
    assert "no mesh: the field is empty" in run.report_path.read_text()
    assert "note: no mesh" in capsys.readouterr().err
