"""VSD's LoRA copy of Stable Diffusion, on a tiny random pipeline (CPU, hub offline)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load, save

pytest.importorskip("diffusers")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from ssd3d.priors.base import add_noise  # noqa: E402
from ssd3d.priors.stable_diffusion import StableDiffusionConfig, StableDiffusionPrior  # noqa: E402
from ssd3d.priors.variational import (  # noqa: E402
    ParticleScoreConfig,
    StableDiffusionLoraScore,
)

pytestmark = pytest.mark.usefixtures("hf_offline")


@pytest.fixture(scope="module")
def prior(tiny_sd_path: Path) -> StableDiffusionPrior:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        config = StableDiffusionConfig(
            model=str(tiny_sd_path), device="cpu", encode_resolution=64, local_files_only=True
        )
        return StableDiffusionPrior(config)


def batch(prior, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = prior.encode(torch.rand(2, 3, 64, 64, generator=g)).detach()
    noise = torch.randn(x0.shape, generator=g)
    t = torch.tensor([100, 800])
    cond = prior.embed(["a red cat"]).expand(2, -1, -1)
    camera = torch.randn(2, 16, generator=g)
    return x0, noise, t, cond, camera


def test_sd_adapter_starts_as_the_prior_trains_alone_and_checkpoints(prior):
    config = ParticleScoreConfig(lr=1e-2)
    score = StableDiffusionLoraScore(prior, config)
    x0, noise, t, cond, camera = batch(prior)
    x_t = add_noise(x0, noise, prior.alphas_cumprod[t].float())
    fresh = score.predict(x0, noise, t, cond, camera)
    torch.testing.assert_close(fresh, prior.predict_noise(x_t, t, cond), rtol=0, atol=1e-6)
    # The prior's own UNet has no adapter and no class embedding: the copy is separate.
    assert prior.unet.class_embedding is None and not getattr(prior.unet, "peft_config", None)
    before = {k: v.clone() for k, v in prior.unet.state_dict().items()}
    trainable = {k: v.detach().clone() for k, v in score._trainable().items()}
    assert any("lora_A" in k for k in trainable) and any(k.startswith("camera.") for k in trainable)
    gen = torch.Generator().manual_seed(3)
    assert score.update(x0, cond, camera, gen) > 0
    assert all(torch.equal(v, prior.unet.state_dict()[k]) for k, v in before.items())
    moved = [k for k, v in score._trainable().items() if not torch.equal(v, trainable[k])]
    assert any("lora_B" in k for k in moved)
    trained = score.predict(x0, noise, t, cond, camera)
    assert not torch.allclose(trained, fresh)

    # Its state through safetensors into a fresh copy: the same predictions and next step.
    other = StableDiffusionLoraScore(prior, config)
    other.load_state_dict(load(save(score.state_dict())))
    assert torch.equal(other.predict(x0, noise, t, cond, camera), trained)
    gen_other = torch.Generator()
    gen_other.set_state(gen.get_state())
    score.update(x0, cond, camera, gen)
    other.update(x0, cond, camera, gen_other)
    assert torch.equal(
        other.predict(x0, noise, t, cond, camera), score.predict(x0, noise, t, cond, camera)
    )
