"""``ssd3d generate --prior stable-diffusion`` end to end on a tiny random pipeline (CPU)."""

import json

from typer.testing import CliRunner

from ssd3d.cli import app

SMALL = [
    "device=cpu",
    "encode_resolution=64",  # the tiny UNet is built for 8x8 latents
    "steps=3",
    "checkpoint_every=3",
    "camera.width=32",
    "camera.height=32",
    "render.num_samples=12",
    "grid.resolution=8",
    "export.mesh_resolution=16",
    "export.turntable_frames=2",
    "export.video_resolution=16",
    "export.contact_views=2",
    "export.contact_resolution=16",
]


def test_generate_with_the_stable_diffusion_prior(tiny_sd_path, hf_offline, tmp_path, monkeypatch):
    from diffusers import UNet2DConditionModel

    calls = []
    original = UNet2DConditionModel.forward

    def counted(self, sample, *args, **kwargs):
        calls.append(sample.shape[0])
        return original(self, sample, *args, **kwargs)

    monkeypatch.setattr(UNet2DConditionModel, "forward", counted)
    args = ["generate", "a hamburger", "--prior", "stable-diffusion", "--model", tiny_sd_path]
    result = CliRunner().invoke(
        app,
        [str(a) for a in args] + ["--out", str(tmp_path), "--quiet", "--estimator", "nfsd"] + SMALL,
    )
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "a-hamburger"
    assert (run_dir / "mesh.glb").is_file()
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert len(log) == 3 and all(r["grad_norm"] > 0 for r in log)
    # one batched UNet call per step, holding cond + uncond + neg for the 1 view of each step
    assert calls == [3, 3, 3]


def test_generate_with_vsd_on_stable_diffusion(tiny_sd_path, hf_offline, tmp_path, monkeypatch):
    import pytest

    pytest.importorskip("peft")
    from diffusers import UNet2DConditionModel

    from ssd3d.pipeline.run_dir import RunDir

    calls = []
    original = UNet2DConditionModel.forward

    def counted(self, sample, *args, **kwargs):
        calls.append((sample.shape[0], kwargs.get("class_labels") is not None))
        return original(self, sample, *args, **kwargs)

    monkeypatch.setattr(UNet2DConditionModel, "forward", counted)
    args = ["generate", "a hamburger", "--prior", "stable-diffusion", "--model", tiny_sd_path]
    result = CliRunner().invoke(
        app,
        [str(a) for a in args] + ["--out", str(tmp_path), "--quiet", "--estimator", "vsd"] + SMALL,
    )
    assert result.exit_code == 0, result.output
    # Per step: the prior's cond + uncond in one call, then the camera-conditioned LoRA copy
    # twice (its eps on the same x_t, then its training step), for the one view of a step.
    assert calls == [(2, False), (1, True), (1, True)] * 3
    state = RunDir(tmp_path / "a-hamburger").load_checkpoint().particle
    assert any("lora_B" in k for k in state) and any(k.startswith("adamw.") for k in state)
    assert any(k.startswith("camera.") for k in state)
