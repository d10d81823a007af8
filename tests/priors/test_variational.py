"""VSD's particle scores: LoRA copies of the toy UNet and of SD, and the fitted Gaussian."""

from __future__ import annotations

import sys

import pytest
import torch
from safetensors.torch import load, save

from ssd3d.errors import SSD3DError
from ssd3d.models.unet import PromptTokenizer, ToyUNet, UNetConfig
from ssd3d.priors.base import add_noise, make_alphas_cumprod
from ssd3d.priors.toy import ToyPrior
from ssd3d.priors.variational import FittedGaussianScore, ParticleScoreConfig, ToyLoraScore

pytest.importorskip("peft")

RES = 16


@pytest.fixture(scope="module")
def toy() -> ToyPrior:
    """A tiny random (non-zero) toy UNet behind the toy prior's adapter."""
    tok = PromptTokenizer(["a red square", "a blue disc"], ["front", "side"])
    cfg = UNetConfig(
        base_channels=8,
        channel_mult=(1, 2),
        attention_levels=(1,),
        token_dim=16,
        norm_groups=4,
        vocab_size=tok.vocab_size,
        max_length=tok.max_length,
    )
    torch.manual_seed(0)
    unet = ToyUNet(cfg)
    for p in unet.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return ToyPrior(unet, tok, make_alphas_cumprod(), RES)


def batch(prior, seed=0, b=3):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(b, 3, RES, RES, generator=g) * 2 - 1
    noise = torch.randn(x0.shape, generator=g)
    t = torch.tensor([50, 400, 900][:b])
    cond = prior.embed(["a red square"] * b)
    camera = torch.randn(b, 16, generator=g)
    return x0, noise, t, cond, camera


def prior_eps(prior, x0, noise, t, cond):
    return prior.predict_noise(add_noise(x0, noise, prior.alphas_cumprod[t].float()), t, cond)


def test_fresh_toy_adapter_predicts_what_the_prior_predicts(toy):
    score = ToyLoraScore(toy.unet, toy.alphas_cumprod)
    x0, noise, t, cond, camera = batch(toy)
    # Zero-initialised LoRA up-projections and camera embedding: exactly the prior, any camera.
    assert torch.equal(
        score.predict(x0, noise, t, cond, camera), prior_eps(toy, x0, noise, t, cond)
    )
    assert torch.equal(score.predict(x0, noise, t, cond, None), prior_eps(toy, x0, noise, t, cond))
    # Rank-4 adapters on ResBlock convs and attention projections, plus the camera MLP.
    assert 0 < score.num_parameters() < sum(p.numel() for p in toy.unet.parameters())


def test_one_training_step_moves_only_the_adapter(toy):
    score = ToyLoraScore(toy.unet, toy.alphas_cumprod, ParticleScoreConfig(lr=1e-2))
    x0, noise, t, cond, camera = batch(toy)
    prior_before = {k: v.clone() for k, v in toy.unet.state_dict().items()}
    trainable = {n: p.detach().clone() for n, p in score._trainable().items()}
    base_before = {
        n: p.detach().clone() for n, p in score.network.named_parameters() if not p.requires_grad
    }
    loss = score.update(x0, cond, camera, torch.Generator().manual_seed(1))
    assert loss > 0
    assert all(torch.equal(v, toy.unet.state_dict()[k]) for k, v in prior_before.items())
    frozen = dict(score.network.named_parameters())
    assert all(torch.equal(v, frozen[n]) for n, v in base_before.items())
    moved = [n for n, p in score._trainable().items() if not torch.equal(p, trainable[n])]
    assert any("lora_B" in n for n in moved) and any(n.startswith("camera.") for n in moved)
    assert not torch.equal(
        score.predict(x0, noise, t, cond, camera), prior_eps(toy, x0, noise, t, cond)
    )


def test_toy_adapter_state_round_trips_bit_exactly(toy):
    config = ParticleScoreConfig(lr=1e-2)
    x0, noise, t, cond, camera = batch(toy)
    a, b = (
        ToyLoraScore(toy.unet, toy.alphas_cumprod, config),
        ToyLoraScore(toy.unet, toy.alphas_cumprod, config),
    )
    gen = torch.Generator().manual_seed(2)
    for _ in range(2):
        a.update(x0, cond, camera, gen)
    b.load_state_dict(load(save(a.state_dict())))  # through safetensors, as checkpoints go
    gen_b = torch.Generator()
    gen_b.set_state(gen.get_state())
    a.update(x0, cond, camera, gen)
    b.update(x0, cond, camera, gen_b)
    assert torch.equal(a.predict(x0, noise, t, cond, camera), b.predict(x0, noise, t, cond, camera))
    with pytest.raises(SSD3DError, match="lacks"):
        b.load_state_dict({})


def test_adapter_init_is_a_function_of_the_seed_alone(toy):
    def init(seed):
        torch.manual_seed(seed + 100)  # torch's global generator must not matter
        return ToyLoraScore(toy.unet, toy.alphas_cumprod, seed=seed).state_dict()

    a, b, c = init(0), init(0), init(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if "lora_A" in k)


def test_missing_peft_is_one_line(toy, monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(SSD3DError, match="needs peft"):
        ToyLoraScore(toy.unet, toy.alphas_cumprod)


def test_fitted_gaussian_of_a_cloud_is_the_closed_form_eps():
    alphas = make_alphas_cumprod()
    g = torch.Generator().manual_seed(0)
    mu, std = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.5, 1.5, 0.1])
    cloud = mu + std * torch.randn(20000, 3, generator=g, dtype=torch.float64)
    noise = torch.randn(cloud.shape, generator=g, dtype=torch.float64)
    t = torch.randint(0, 1000, (len(cloud),), generator=g)
    eps = FittedGaussianScore(alphas).predict(cloud, noise, t, cloud[:, :0], None)
    # x_t ~ N(sqrt(a) mu, a std^2 + 1 - a): eps = -sqrt(1 - a) grad log p_t(x_t).
    a = alphas[t].unsqueeze(1)
    x_t = a.sqrt() * cloud + (1 - a).sqrt() * noise

    def closed_form(m, v):
        return (1 - a).sqrt() * (x_t - a.sqrt() * m) / (a * v + 1 - a)

    exact = closed_form(cloud.mean(0), cloud.var(0, unbiased=False))
    torch.testing.assert_close(eps, exact, rtol=1e-12, atol=1e-12)
    # ... and close to the cloud's true Gaussian (sampling error of 20,000 draws).
    torch.testing.assert_close(eps, closed_form(mu, std**2), rtol=0, atol=0.05)


def test_fitted_gaussian_moving_average_and_state():
    score = FittedGaussianScore(make_alphas_cumprod(), momentum=0.25)
    first, second = torch.zeros(4, 2), torch.ones(4, 2)
    score.update(first, first, None, torch.Generator())  # the first batch sets the moments
    score.update(second, second, None, torch.Generator())
    assert torch.allclose(score.mean, torch.full((2,), 0.25, dtype=torch.float64))
    copy = FittedGaussianScore(make_alphas_cumprod(), momentum=0.25)
    copy.load_state_dict(score.state_dict())
    t, noise = torch.tensor([10, 500, 900, 999]), torch.randn(4, 2)
    assert torch.equal(
        copy.predict(second, noise, t, second, None), score.predict(second, noise, t, second, None)
    )


def test_vsd_with_a_fresh_adapter_at_guidance_one_gives_zero(toy):
    import dataclasses

    from ssd3d.estimators import VSD
    from ssd3d.guidance import noise_predictions

    score = ToyLoraScore(toy.unet, toy.alphas_cumprod)
    x0, noise, t, cond, camera = batch(toy)
    vsd = VSD(guidance_scale=1.0)
    preds = noise_predictions(toy, x0, t, noise, {"cond": cond}, vsd.branches(t))
    preds = dataclasses.replace(preds, eps_particle=score.predict(x0, noise, t, cond, camera))
    assert preds.eps_cond.abs().sum() > 0
    assert torch.equal(vsd(preds), torch.zeros_like(x0))
