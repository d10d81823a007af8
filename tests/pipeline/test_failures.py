"""Failure paths of a run: a kill mid-write of the log, a kill between the two renames of a
checkpoint swap, a full disk during a checkpoint save. Each leaves a run that resumes to the
same bits as an uninterrupted one."""

import errno
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ssd3d import atomic
from ssd3d.errors import SSD3DError
from ssd3d.generation import generate, resume
from ssd3d.pipeline.checkpoint import load_checkpoint
from ssd3d.pipeline.run_dir import RunDir

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def scene_tensors(run_dir: Path) -> dict:
    return load_file(str(run_dir / "checkpoint" / "scene.safetensors"))


def assert_same_scene(a: Path, b: Path) -> None:
    x, y = scene_tensors(a), scene_tensors(b)
    assert sorted(x) == sorted(y) and all(torch.equal(x[k], y[k]) for k in x)


def logged_steps(run_dir: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run_dir / "log.jsonl").read_text().splitlines()]


@pytest.fixture
def straight(tmp_path, tiny_prior, tiny_config):
    return generate(tiny_config, tmp_path / "straight", prior=tiny_prior, progress=False)


def test_a_torn_last_log_line_is_dropped_on_resume(tmp_path, tiny_prior, tiny_config, straight):
    run_dir = generate(tiny_config, tmp_path / "b", prior=tiny_prior, stop_after=4, progress=False)
    with open(run_dir / "log.jsonl", "a") as f:
        f.write('{"step": 5, "t": [3')  # killed in the middle of writing step 5's line
    resume(run_dir, prior=tiny_prior, progress=False)  # was: JSONDecodeError
    assert logged_steps(run_dir) == list(range(1, 7))
    assert_same_scene(straight, run_dir)


class Killed(BaseException):
    """The process dying at this instant (nothing after it runs)."""


@pytest.mark.parametrize("tmp_complete", [True, False])
def test_a_kill_between_the_two_renames_resumes(
    tmp_path, tiny_prior, tiny_config, straight, monkeypatch, tmp_complete
):
    run_dir = generate(tiny_config, tmp_path / "b", prior=tiny_prior, stop_after=2, progress=False)
    real_rename = Path.rename

    def first_rename_only(self, target):
        if Path(target).name == "checkpoint":  # checkpoint.tmp -> checkpoint: the second
            raise Killed
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", first_rename_only)
    with pytest.raises(Killed):
        resume(run_dir, prior=tiny_prior, progress=False)  # saves at step 4
    monkeypatch.undo()
    ckpt = run_dir / "checkpoint"
    assert not ckpt.exists()
    assert json.loads((run_dir / "checkpoint.old" / "state.json").read_text())["step"] == 2
    assert json.loads((run_dir / "checkpoint.tmp" / "state.json").read_text())["step"] == 4
    if not tmp_complete:  # killed before state.json, the completeness marker, was written
        (run_dir / "checkpoint.tmp" / "state.json").unlink()
    assert load_checkpoint(ckpt).step == (4 if tmp_complete else 2)  # was: "no checkpoint"
    assert ckpt.is_dir()  # the swap was finished
    resume(run_dir, prior=tiny_prior, progress=False)
    assert logged_steps(run_dir) == list(range(1, 7))
    assert_same_scene(straight, run_dir)
    assert not (run_dir / "checkpoint.old").exists() and not (run_dir / "checkpoint.tmp").exists()


def test_a_full_disk_during_a_checkpoint_save_keeps_the_previous_one(
    tmp_path, tiny_prior, tiny_config, straight, monkeypatch
):
    run_dir = generate(tiny_config, tmp_path / "b", prior=tiny_prior, stop_after=2, progress=False)
    before = (run_dir / "checkpoint" / "scene.safetensors").read_bytes()
    real_write = atomic.write_synced

    def disk_fills_up(path, data):
        if Path(path).name == "optimizer.safetensors":
            Path(path).write_bytes(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(path, data)

    monkeypatch.setattr(atomic, "write_synced", disk_fills_up)
    with pytest.raises(SSD3DError) as info:
        resume(run_dir, prior=tiny_prior, progress=False)  # was: a raw OSError traceback
    message = str(info.value)
    assert message.startswith("no space left on device while writing the checkpoint ")
    assert "\n" not in message
    monkeypatch.undo()
    assert (run_dir / "checkpoint" / "scene.safetensors").read_bytes() == before
    assert load_checkpoint(run_dir / "checkpoint").step == 2
    assert not (run_dir / "checkpoint.tmp").exists()  # its space is given back
    resume(run_dir, prior=tiny_prior, progress=False)  # space freed: the run goes on
    assert_same_scene(straight, run_dir)


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_atomic_writes_honour_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic.atomic_write_bytes(tmp_path / "mesh.glb", b"data")  # was 0600 whatever the umask
        with atomic.atomic_path(tmp_path / "turntable.mp4") as tmp:
            tmp.write_bytes(b"video")
        plain = tmp_path / "plain.txt"
        plain.write_bytes(b"x")
    finally:
        os.umask(old)
    mode = plain.stat().st_mode & 0o777
    assert mode == 0o666 & ~umask
    assert (tmp_path / "mesh.glb").stat().st_mode & 0o777 == mode
    assert (tmp_path / "turntable.mp4").stat().st_mode & 0o777 == mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mesh.glb", "plain.txt", "turntable.mp4"]


def test_a_full_disk_during_an_atomic_write_is_one_line_and_keeps_the_old_file(
    tmp_path, monkeypatch
):
    target = atomic.atomic_write_bytes(tmp_path / "mesh.glb", b"old")

    def full(path, data):
        Path(path).write_bytes(data[:1])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic, "write_synced", full)
    with pytest.raises(SSD3DError, match=r"^no space left on device while writing .*mesh\.glb$"):
        atomic.atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["mesh.glb"]


def test_a_batch_finishes_an_interrupted_swap_before_choosing_to_resume(
    tmp_path, tiny_prior, tiny_config
):
    run_dir = generate(tiny_config, tmp_path / "b", prior=tiny_prior, stop_after=2, progress=False)
    (run_dir / "checkpoint").rename(run_dir / "checkpoint.old")  # killed after the first rename
    # Was False: the batch wiped the folder and trained the job from step 0.
    assert RunDir(run_dir).checkpoint_step() == 2
    assert load_checkpoint(run_dir / "checkpoint").step == 2


def test_a_state_file_that_is_not_an_object_is_one_line(tmp_path, tiny_prior, tiny_config):
    run_dir = generate(tiny_config, tmp_path / "b", prior=tiny_prior, stop_after=2, progress=False)
    (run_dir / "checkpoint" / "state.json").write_text("[]")
    with pytest.raises(SSD3DError, match="is corrupt: state.json is not an object"):
        load_checkpoint(run_dir / "checkpoint")  # was: AttributeError traceback
