"""VSD in the 3D loop: its particle score trains beside the scene and resumes bit for bit."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ssd3d.generation import generate, resume
from ssd3d.pipeline.run_dir import RunDir
from ssd3d.priors.variational import FittedGaussianScore, ToyLoraScore


def tensors(run_dir: Path) -> dict:
    return load_file(str(run_dir / "checkpoint" / "scene.safetensors"))


def particle(run_dir: Path) -> dict:
    return RunDir(run_dir).load_checkpoint().particle


def assert_resumes_bit_for_bit(cfg, prior, tmp_path) -> dict:
    straight = generate(cfg, tmp_path / "a", prior=prior, progress=False)
    stopped = generate(cfg, tmp_path / "b", prior=prior, stop_after=3, progress=False)
    halfway = particle(stopped)
    assert halfway  # the particle score is in the checkpoint
    resume(stopped, prior=prior, progress=False)
    a, b = tensors(straight), tensors(stopped)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    pa, pb = particle(straight), particle(stopped)
    assert pa.keys() == pb.keys() and all(torch.equal(pa[k], pb[k]) for k in pa)
    # ... and it moved after the stop: the resumed run kept training it.
    assert any(not torch.equal(halfway[k], pb[k]) for k in pb)
    return pb


def test_vsd_on_the_exact_prior_fits_a_gaussian_and_resumes(tmp_path, tiny_prior, tiny_config):
    from ssd3d.pipeline.run import prepare

    cfg = dataclasses.replace(tiny_config, estimator="vsd")
    assert isinstance(prepare(cfg, tiny_prior).particle.score, FittedGaussianScore)
    state = assert_resumes_bit_for_bit(cfg, tiny_prior, tmp_path)
    assert set(state) == {"mean", "second"} and state["mean"].shape == (3, 16, 16)
    report = (tmp_path / "b" / "a-red-disk" / "report.html").read_text()
    assert "Gaussian fitted to the renders, momentum 0.1" in report


@pytest.fixture(scope="module")
def toy_prior():
    pytest.importorskip("peft")
    from ssd3d.models.unet import load_toy_prior

    return load_toy_prior()


def test_vsd_on_the_toy_prior_trains_its_lora_and_resumes(tmp_path, toy_prior, tiny_config):
    from ssd3d.pipeline.run import prepare
    from ssd3d.priors.variational import ParticleScoreConfig

    cfg = dataclasses.replace(
        tiny_config,
        prompt="a red cube",
        prior="toy",
        estimator="vsd",
        particle_score=ParticleScoreConfig(lr=1e-3),
    )
    run = prepare(cfg, toy_prior)
    assert isinstance(run.particle.score, ToyLoraScore)
    frozen = {k: v.clone() for k, v in toy_prior.unet.state_dict().items()}
    state = assert_resumes_bit_for_bit(cfg, toy_prior, tmp_path)
    assert any(k.startswith("adamw.") for k in state) and any("lora_B" in k for k in state)
    # The prior itself never trains.
    assert all(torch.equal(v, toy_prior.unet.state_dict()[k]) for k, v in frozen.items())
