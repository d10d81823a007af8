"""The toy prior behind ``DiffusionPrior``, and its DDIM + CFG sampler."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from torch import Tensor

from ssd3d.errors import SSD3DError
from ssd3d.models import unet as unet_module
from ssd3d.models.unet import (
    NoiseSchedule,
    PromptTokenizer,
    ToyUNet,
    UNetConfig,
    load_toy_prior,
    save_prior_file,
)
from ssd3d.priors import DiffusionPrior, make_alphas_cumprod
from ssd3d.priors.toy import ToyPrior, ddim_step, ddim_timesteps, sample, sample_grid

PROMPTS = ["a red square", "a blue disc"]
VIEWS = ["front", "side", "back", "overhead"]
RES = 16


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ToyUNet]:
    """A prior file holding a random (non-zero) tiny UNet, and that UNet."""
    tok = PromptTokenizer(PROMPTS, VIEWS)
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
    path = tmp_path_factory.mktemp("prior") / "toy_prior.safetensors"
    save_prior_file(path, unet, tok, NoiseSchedule(), RES, extra={"steps": "0"})
    return path, unet.eval()


@pytest.fixture(scope="module")
def prior(saved: tuple[Path, ToyUNet]) -> ToyPrior:
    return load_toy_prior(saved[0])


def test_is_a_diffusion_prior(prior: ToyPrior) -> None:
    assert isinstance(prior, DiffusionPrior)
    assert prior.alphas_cumprod.dtype == torch.float64
    assert torch.equal(prior.alphas_cumprod, make_alphas_cumprod())
    assert prior.resolution == RES and prior.prompts == PROMPTS
    assert prior.metadata["steps"] == "0"


def test_embed_rows(prior: ToyPrior) -> None:
    rows = prior.embed(["a red square", "", "a blue disc, overhead view", "A  RED square"])
    assert rows.shape == (4, prior.tokenizer.max_length) and rows.dtype == torch.int64
    assert rows[1].eq(0).all()  # "" is all padding: the unconditional row
    assert torch.equal(rows[0], rows[3])
    assert not torch.equal(rows[0], rows[2])


def test_unknown_prompt_lists_the_known_ones(prior: ToyPrior) -> None:
    with pytest.raises(SSD3DError, match="it knows 'a red square', 'a blue disc'"):
        prior.embed(["a red cube"])
    with pytest.raises(TypeError):
        prior.embed("a red square")


def test_encode_is_affine_and_differentiable(prior: ToyPrior) -> None:
    images = torch.rand(2, 3, RES, RES, requires_grad=True)
    x0 = prior.encode(images)
    assert torch.allclose(x0, 2 * images - 1)
    x0.sum().backward()
    assert torch.allclose(images.grad, torch.full_like(images, 2.0))


def test_encode_resizes_other_render_sizes(prior: ToyPrior) -> None:
    images = torch.rand(2, 3, 2 * RES, 2 * RES, requires_grad=True)
    x0 = prior.encode(images)
    assert x0.shape == (2, 3, RES, RES)
    # A constant image stays constant; each output pixel's weights sum to one, so the input
    # gradient of sum(x0) sums to 2 per output element.
    assert torch.allclose(prior.encode(torch.full((1, 3, 40, 40), 0.25)), torch.tensor(-0.5))
    x0.sum().backward()
    assert images.grad.sum().item() == pytest.approx(2 * x0.numel(), rel=1e-5)


def test_predict_noise_is_the_saved_unet_without_grad(
    prior: ToyPrior, saved: tuple[Path, ToyUNet]
) -> None:
    x_t = torch.randn(3, 3, RES, RES, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([1, 400, 999])
    cond = prior.embed(["a red square", "", "a blue disc, back view"])
    eps = prior.predict_noise(x_t, t, cond)
    assert eps.shape == x_t.shape and eps.dtype == torch.float64 and not eps.requires_grad
    with torch.no_grad():
        expected = saved[1](x_t.float(), t, cond)
    torch.testing.assert_close(eps, expected.double())
    assert eps.abs().max() > 0  # the check compares a real output, not zeros
    with pytest.raises(ValueError, match="predict_noise expects"):
        prior.predict_noise(torch.randn(1, 3, 2 * RES, 2 * RES), t[:1], cond[:1])


def test_missing_shipped_weights_say_how_to_train(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(
        unet_module, "shipped_prior_path", lambda: tmp_path / "toy_prior.safetensors"
    )
    with pytest.raises(SSD3DError, match="ssd3d toyworld train-prior"):
        load_toy_prior()


def test_other_files_are_refused(tmp_path: Path) -> None:
    from ssd3d.toyworld.dataset_format import synthetic_dataset

    path = synthetic_dataset(2, RES).save(tmp_path / "dataset.safetensors")
    with pytest.raises(SSD3DError, match="not an ssd3d toy prior"):
        load_toy_prior(path)


# --- sampling ------------------------------------------------------------------------------


def test_ddim_matches_diffusers() -> None:
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.DDIMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"
    )
    sched.set_timesteps(20)
    ours = ddim_timesteps(1000, 20)
    assert torch.equal(ours, sched.timesteps)
    alphas = make_alphas_cumprod()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64) * 1.5
    for t in ours.tolist():
        eps = torch.randn(x.shape, generator=g, dtype=torch.float64)
        prev = alphas[t - 50] if t >= 50 else 1.0
        expected = sched.step(eps, t, x).prev_sample
        # diffusers keeps alpha_bar in float32: agreement to its precision, not ours.
        torch.testing.assert_close(
            ddim_step(x, eps, alphas[t], prev), expected, atol=1e-6, rtol=1e-5
        )
        x = expected


@pytest.mark.parametrize("steps", [20, 50, 30])
def test_trailing_spacing_matches_diffusers(steps: int) -> None:
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        timestep_spacing="trailing",
    )
    sched.set_timesteps(steps)
    ours = ddim_timesteps(1000, steps, "trailing")
    assert torch.equal(ours, sched.timesteps) and ours[0] == 999
    with pytest.raises(SSD3DError, match="'leading' or 'trailing'"):
        ddim_timesteps(1000, steps, "linspace")  # type: ignore[arg-type]


class PointMassPrior:
    """Exact eps of point-mass data: "" at u, any prompt at c (x_t = sqrt(a) x0 + ...)."""

    def __init__(self, c: float, u: float) -> None:
        self.alphas_cumprod = make_alphas_cumprod()
        self.resolution, self.device, self.c, self.u = 4, torch.device("cpu"), c, u

    def embed(self, prompts: Sequence[str]) -> Tensor:
        return torch.tensor([[0 if p == "" else 1] for p in prompts])

    def predict_noise(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        a = self.alphas_cumprod[t].to(x_t).reshape(-1, 1, 1, 1)
        x0 = torch.where(cond.reshape(-1, 1, 1, 1) == 1, self.c, self.u).to(x_t)
        return (x_t - a.sqrt() * x0) / (1 - a).sqrt()

    def decode(self, x0: Tensor) -> Tensor:
        return ((x0 + 1) / 2).clamp(0, 1)


@pytest.mark.parametrize(("scale", "expected_x0"), [(1.0, 0.4), (0.0, -0.2), (2.0, 1.0)])
def test_sample_lands_on_the_guided_point_mass(scale: float, expected_x0: float) -> None:
    # eps_cfg of two point masses is the eps of a point mass at u + s (c - u):
    # 0.4 for s = 1, -0.2 for s = 0, and 1.0 = 2 * 0.4 + 0.2 clipped to [-1, 1] for s = 2.
    out = sample(PointMassPrior(0.4, -0.2), ["x"], n=3, guidance_scale=scale, steps=10)
    assert out.shape == (3, 3, 4, 4)
    torch.testing.assert_close(out, torch.full_like(out, (expected_x0 + 1) / 2))


def test_sample_grid_layout_and_determinism(prior: ToyPrior) -> None:
    grid = sample_grid(prior, PROMPTS, n=3, steps=2, generator=torch.Generator().manual_seed(1))
    pad = 2
    assert grid.dtype.name == "uint8"
    assert grid.shape == (2 * (RES + pad) + pad, 3 * (RES + pad) + pad, 3)
    assert (grid[:pad] == 255).all()  # white gutter
    again = sample_grid(prior, PROMPTS, n=3, steps=2, generator=torch.Generator().manual_seed(1))
    assert (grid == again).all()
