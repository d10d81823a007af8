"""The distillation loop end to end on a tiny exact prior: outputs, resume, bad input."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import trimesh
from safetensors.torch import load_file

from ssd3d.errors import SSD3DError
from ssd3d.generation import generate, resume
from ssd3d.pipeline.loop import NonFiniteGradient
from ssd3d.pipeline.run_dir import slugify


def scene_tensors(run_dir: Path) -> dict:
    return load_file(str(run_dir / "checkpoint" / "scene.safetensors"))


def test_run_writes_every_output(tmp_path, tiny_prior, tiny_config):
    run_dir = generate(tiny_config, tmp_path, prior=tiny_prior, progress=False)
    assert run_dir == tmp_path / "a-red-disk"
    for name in ["config.yaml", "log.jsonl", "summary.json", "contact_sheet.png"]:
        assert (run_dir / name).is_file(), name
    lines = (run_dir / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == list(range(1, 7))
    record = json.loads(lines[0])
    assert len(record["t"]) == 2 and record["grad_norm"] > 0
    mesh = trimesh.load(run_dir / "mesh.glb", force="mesh")
    assert len(mesh.faces) > 0 and mesh.visual.vertex_colors.shape[1] == 4
    assert (run_dir / "mesh.obj").stat().st_size > 0
    import imageio.v3 as iio

    assert iio.imread(run_dir / "turntable.mp4").shape[0] == 4
    assert iio.imread(run_dir / "turntable.gif").ndim == 4
    # a second run of the same prompt never overwrites the first
    assert generate(tiny_config, tmp_path, prior=tiny_prior, progress=False).name == "a-red-disk-2"


def test_distillation_changes_the_scene_toward_the_prompt_colour(tmp_path, tiny_prior, tiny_config):
    cfg = dataclasses.replace(tiny_config, steps=30, checkpoint_every=30)
    from ssd3d.pipeline.run import prepare

    run = prepare(cfg, tiny_prior)
    for _ in range(cfg.steps):
        run.run_step()
    albedo = torch.sigmoid(run.scene.field.albedo_raw).mean(dim=(1, 2, 3))
    assert albedo[0] > albedo[2] + 0.05  # red beats blue: the prompt, not the other class


def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path, tiny_prior, tiny_config):
    straight = generate(tiny_config, tmp_path / "a", prior=tiny_prior, progress=False)
    stopped = generate(tiny_config, tmp_path / "b", prior=tiny_prior, stop_after=3, progress=False)
    assert json.loads((stopped / "checkpoint" / "state.json").read_text())["step"] == 3
    assert not (stopped / "summary.json").exists()
    resume(stopped, prior=tiny_prior, progress=False)
    a, b = scene_tensors(straight), scene_tensors(stopped)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert len((stopped / "log.jsonl").read_text().splitlines()) == tiny_config.steps


def test_resume_with_grid_growth(tmp_path, tiny_prior, tiny_config):
    from ssd3d.scene import GrowthConfig

    cfg = dataclasses.replace(tiny_config, growth=GrowthConfig(steps=(2, 4), resolutions=(10, 12)))
    straight = generate(cfg, tmp_path / "a", prior=tiny_prior, progress=False)
    stopped = generate(cfg, tmp_path / "b", prior=tiny_prior, stop_after=3, progress=False)
    resume(stopped, prior=tiny_prior, progress=False)
    a, b = scene_tensors(straight), scene_tensors(stopped)
    assert a["field.density_raw"].shape == (12, 12, 12)
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize(
    "change,needle",
    [
        ({"estimator": "ssdd"}, "unknown estimator"),
        ({"estimator": "ssd tau=5000"}, "tau"),
        ({"prompt": "a green teapot"}, "a red disk"),
        ({"device": "cuda"}, "cuda"),
    ],
)
def test_bad_input_fails_before_writing_anything(tmp_path, tiny_prior, tiny_config, change, needle):
    if change.get("device") == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA present")
    cfg = dataclasses.replace(tiny_config, **change)
    with pytest.raises(SSD3DError, match=needle):
        generate(cfg, tmp_path / "out", prior=tiny_prior, progress=False)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_unwritable_output_folder(tmp_path, tiny_prior, tiny_config):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(SSD3DError, match="output folder"):
        generate(tiny_config, blocker / "sub", prior=tiny_prior, progress=False)


def test_resume_missing_or_corrupt_checkpoint(tmp_path, tiny_prior, tiny_config):
    with pytest.raises(SSD3DError, match="not an ssd3d run folder"):
        resume(tmp_path, prior=tiny_prior)
    run_dir = generate(tiny_config, tmp_path, prior=tiny_prior, stop_after=2, progress=False)
    (run_dir / "checkpoint" / "scene.safetensors").write_bytes(b"garbage")
    with pytest.raises(SSD3DError, match="corrupt"):
        resume(run_dir, prior=tiny_prior, progress=False)


class NaNPrior:
    def __init__(self, inner, bad_step_calls):
        self.inner, self.calls, self.bad = inner, 0, bad_step_calls
        self.alphas_cumprod = inner.alphas_cumprod

    def embed(self, prompts):
        return self.inner.embed(prompts)

    def encode(self, images):
        return self.inner.encode(images)

    def predict_noise(self, x_t, t, cond):
        self.calls += 1
        eps = self.inner.predict_noise(x_t, t, cond)
        return eps * float("nan") if self.calls > self.bad else eps


def test_non_finite_gradient_is_reported_with_its_step(tmp_path, tiny_prior, tiny_config):
    with pytest.raises(NonFiniteGradient, match="step 2"):
        generate(tiny_config, tmp_path, prior=NaNPrior(tiny_prior, 2), progress=False)


def test_slugify():
    assert slugify("A Red  Cube!") == "a-red-cube"
    assert slugify("!!!") == "run"


class CtrlCPrior(NaNPrior):
    """The tiny prior; Ctrl-C arrives during its ``at``-th call (mid-step)."""

    def __init__(self, inner, at):
        super().__init__(inner, bad_step_calls=10**9)
        self.at = at

    def predict_noise(self, x_t, t, cond):
        eps = super().predict_noise(x_t, t, cond)
        if self.calls == self.at:
            import signal

            signal.raise_signal(signal.SIGINT)
        return eps


def test_ctrl_c_finishes_the_step_then_resumes_bit_for_bit(tmp_path, tiny_prior, tiny_config):
    import signal

    from ssd3d.generation import RunInterrupted

    handler_before = signal.getsignal(signal.SIGINT)
    straight = generate(tiny_config, tmp_path / "a", prior=tiny_prior, progress=False)
    with pytest.raises(RunInterrupted, match="interrupted at step 3; checkpoint saved"):
        generate(tiny_config, tmp_path / "b", prior=CtrlCPrior(tiny_prior, at=3), progress=False)
    assert signal.getsignal(signal.SIGINT) is handler_before
    stopped = tmp_path / "b" / "a-red-disk"
    # checkpoint_every=2: the checkpoint is the interrupted step's, not the periodic one
    assert json.loads((stopped / "checkpoint" / "state.json").read_text())["step"] == 3
    resume(stopped, prior=tiny_prior, progress=False)
    a, b = scene_tensors(straight), scene_tensors(stopped)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_the_running_coefficient_is_checkpointed_and_resumed(tmp_path, tiny_prior, tiny_config):
    # SSD's default coefficient is a running estimate over earlier steps: a resume that
    # forgot its sums would take c = 1 again and leave the uninterrupted run's bits.
    from ssd3d.pipeline.run_dir import RunDir

    assert "coefficient=running" in tiny_config.estimator or "coefficient" not in (
        tiny_config.estimator
    )
    straight = generate(tiny_config, tmp_path / "a", prior=tiny_prior, progress=False)
    stopped = generate(tiny_config, tmp_path / "b", prior=tiny_prior, stop_after=3, progress=False)
    saved = RunDir(stopped).load_checkpoint().estimator
    assert int(saved["count"].sum()) == 3 * tiny_config.views_per_step
    resume(stopped, prior=tiny_prior, progress=False)
    a, b = scene_tensors(straight), scene_tensors(stopped)
    assert all(torch.equal(a[k], b[k]) for k in a)
    final = RunDir(stopped).load_checkpoint().estimator
    assert int(final["count"].sum()) == tiny_config.steps * tiny_config.views_per_step


def test_the_gaussians_opacity_entropy_is_in_the_loss_and_the_log(tiny_prior, tiny_config):
    from ssd3d.pipeline.run import prepare
    from ssd3d.scene import GaussianConfig

    def first_step(weight):
        gaussians = GaussianConfig(
            initial_count=32, init_opacity=0.2, opacity_entropy=weight, backend="torch"
        )
        cfg = dataclasses.replace(tiny_config, representation="gaussians", gaussians=gaussians)
        run = prepare(cfg, tiny_prior)
        before = run.scene.scene_losses()
        record = run.run_step()
        return before, record, run.scene.opacity_logits.grad

    before, record, grad = first_step(3.0)
    weight, value = before["gaussian_opacity_entropy"]
    assert weight == 3.0
    assert record.regularisers["gaussian_opacity_entropy"] == pytest.approx(float(value.detach()))
    _, plain, plain_grad = first_step(0.0)
    assert "gaussian_opacity_entropy" not in plain.regularisers
    # The same step (same seed) differs by exactly the entropy's gradient.
    o = torch.sigmoid(torch.logit(torch.tensor(0.2)))  # every opacity at the start
    entropy_grad = -3.0 * torch.logit(o) * o * (1 - o) / 32
    torch.testing.assert_close(grad - plain_grad, entropy_grad.expand(32), rtol=1e-4, atol=1e-7)


def test_the_loop_steps_the_gaussians_at_their_scheduled_rates(tiny_prior, tiny_config):
    from ssd3d.pipeline.run import prepare
    from ssd3d.scene import GaussianConfig

    gaussians = GaussianConfig(initial_count=16, lr_position_final=0.01, backend="torch")
    cfg = dataclasses.replace(tiny_config, representation="gaussians", gaussians=gaussians, steps=5)
    run = prepare(cfg, tiny_prior)
    for step in range(3):
        run.run_step()
        rates = {g["name"]: g["lr"] for g in run.optimizer.param_groups}
        assert rates["position"] == pytest.approx(run.scene.learning_rates(step, 5)["position"])
    # step 2 of 5 is halfway: the geometric mean of the first and last rates
    assert rates["position"] == pytest.approx(1e-3 * 0.1)
