"""GaussianMixturePrior: exact eps against autograd of an independent log-density."""

from __future__ import annotations

import math

import pytest
import torch
from torch import distributions as dist

from ssd3d.errors import SSD3DError
from ssd3d.priors.base import make_alphas_cumprod
from ssd3d.priors.gmm import GaussianMixturePrior, MixtureClass


def _classes(d: int, diagonal: bool, seed: int = 0) -> list[MixtureClass]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for name, k in (("cat", 3), ("dog", 2)):
        means = 2.0 * torch.randn(k, d, generator=g, dtype=torch.float64)
        if diagonal:
            stds = 0.2 + torch.rand(k, d, generator=g, dtype=torch.float64)
        else:
            stds = 0.2 + torch.rand(k, generator=g, dtype=torch.float64)
        weights = 0.5 + torch.rand(k, generator=g, dtype=torch.float64)
        out.append(MixtureClass(name, means, stds, weights))
    return out


def _reference_noised_mixture(
    classes: list[MixtureClass], class_weights: list[float], y: int | None, a: float
) -> dist.MixtureSameFamily:
    """The noised mixture written independently with torch.distributions."""
    chosen = range(len(classes)) if y is None else [y]
    total = sum(class_weights[i] for i in chosen)
    mix, locs, scales = [], [], []
    for i in chosen:
        c = classes[i]
        means = torch.as_tensor(c.means, dtype=torch.float64)
        stds = torch.as_tensor(c.stds, dtype=torch.float64)
        if stds.dim() == 1:
            stds = stds[:, None].expand_as(means)
        w = torch.as_tensor(c.weights, dtype=torch.float64)
        cw = class_weights[i] / total if y is None else 1.0
        mix.append(cw * w / w.sum())
        locs.append(math.sqrt(a) * means)
        scales.append((a * stds**2 + 1 - a).sqrt())
    components = dist.Independent(dist.Normal(torch.cat(locs), torch.cat(scales)), 1)
    return dist.MixtureSameFamily(dist.Categorical(probs=torch.cat(mix)), components)


@pytest.mark.parametrize("d", [2, 64])
@pytest.mark.parametrize("diagonal", [False, True])
def test_eps_is_minus_sigma_times_autograd_score(d: int, diagonal: bool) -> None:
    classes = _classes(d, diagonal)
    class_weights = [0.3, 0.7]
    prior = GaussianMixturePrior(classes, class_weights=class_weights)
    g = torch.Generator().manual_seed(1)
    # One batch that mixes classes (cat, dog, unconditional) and timesteps.
    rows = prior.embed(["cat", "dog", "", "cat", "", "dog"])
    t = torch.tensor([5, 100, 250, 500, 800, 999])
    x_t = 2.0 * torch.randn(len(t), d, generator=g, dtype=torch.float64)
    eps = prior.predict_noise(x_t, t, rows)
    for i in range(len(t)):
        a = float(prior.alphas_cumprod[t[i]])
        y = None if rows[i] < 0 else int(rows[i])
        ref = _reference_noised_mixture(classes, class_weights, y, a)
        x = x_t[i : i + 1].clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(ref.log_prob(x).sum(), x)
        torch.testing.assert_close(eps[i], -math.sqrt(1 - a) * grad[0], rtol=1e-9, atol=1e-11)
        # The log-density itself agrees too.
        torch.testing.assert_close(
            prior.noised_log_prob(x_t[i : i + 1], int(t[i]), rows[i : i + 1]),
            ref.log_prob(x_t[i : i + 1]).detach(),
        )


def test_eps_is_stable_far_from_every_component() -> None:
    """Log-sum-exp keeps the responsibilities finite where every density underflows."""
    prior = GaussianMixturePrior(_classes(2, diagonal=False))
    x_t = torch.tensor([[1e3, -1e3]], dtype=torch.float64)
    eps = prior.predict_noise(x_t, torch.tensor([10]), prior.embed(["cat"]))
    assert torch.isfinite(eps).all() and eps.abs().max() > 1.0


def test_float32_input_gives_float32_output() -> None:
    prior = GaussianMixturePrior(_classes(2, diagonal=True))
    x = torch.zeros(3, 2)
    out = prior.predict_noise(x, torch.tensor([1, 2, 3]), prior.embed(["cat", "", "dog"]))
    assert out.dtype == torch.float32 and out.shape == (3, 2)


@pytest.mark.parametrize("schedule", ["scaled_linear", "linear"])
def test_alphas_match_diffusers_ddpm_scheduler(schedule: str) -> None:
    diffusers = pytest.importorskip("diffusers")
    prior = GaussianMixturePrior(_classes(2, diagonal=False), beta_schedule=schedule)
    sched = diffusers.DDPMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule=schedule
    )
    torch.testing.assert_close(
        prior.alphas_cumprod.float(), sched.alphas_cumprod.float(), rtol=1e-6, atol=1e-7
    )
    assert prior.alphas_cumprod.shape == (1000,)
    torch.testing.assert_close(prior.alphas_cumprod, make_alphas_cumprod(beta_schedule=schedule))


def test_samples_have_the_mixture_mean_and_covariance() -> None:
    means = torch.tensor([[-2.0, 0.0], [3.0, 1.0]], dtype=torch.float64)
    stds = torch.tensor([[0.5, 1.0], [1.0, 0.3]], dtype=torch.float64)
    weights = torch.tensor([1.0, 3.0], dtype=torch.float64)
    prior = GaussianMixturePrior(
        [MixtureClass("a", means, stds, weights), MixtureClass("b", [[9.0, 9.0]], 1.0)]
    )
    x = prior.sample("a", 40_000, torch.Generator().manual_seed(0))
    w = weights / weights.sum()
    mean = (w[:, None] * means).sum(0)
    second = (
        w[:, None, None] * (torch.diag_embed(stds**2) + means[:, :, None] * means[:, None, :])
    ).sum(0)
    cov = second - mean[:, None] * mean[None, :]
    torch.testing.assert_close(x.mean(0), mean, atol=0.05, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), cov, atol=0.1, rtol=0.03)
    # The unconditional mixture puts half its mass (uniform class weights) on class b.
    u = prior.sample(None, 4000, torch.Generator().manual_seed(1))
    assert abs((u[:, 0] > 6).double().mean().item() - 0.5) < 0.03


def test_log_prob_of_clean_data() -> None:
    prior = GaussianMixturePrior(
        [MixtureClass("a", [[0.0, 0.0]], 2.0), MixtureClass("b", [[4.0, 0.0]], 1.0)]
    )
    x = torch.tensor([[0.0, 0.0]], dtype=torch.float64)
    # One isotropic 2D Gaussian at its mean: -log(2 pi sigma^2).
    torch.testing.assert_close(
        prior.log_prob(x, "a"), torch.tensor([-math.log(2 * math.pi * 4.0)], dtype=torch.float64)
    )
    both = 0.5 / (2 * math.pi * 4.0) + 0.5 / (2 * math.pi) * math.exp(-8.0)
    torch.testing.assert_close(
        prior.log_prob(x, None), torch.tensor([math.log(both)], dtype=torch.float64)
    )


def test_embed_rows_and_unknown_prompt() -> None:
    prior = GaussianMixturePrior(_classes(2, diagonal=False))
    assert prior.embed(["dog", "", "cat"]).tolist() == [1, -1, 0]
    with pytest.raises(SSD3DError, match="cow.*cat, dog"):
        prior.embed(["cow"])


@pytest.mark.parametrize(
    ("cls", "field"),
    [
        (MixtureClass("a", [[0.0, 0.0]], [-1.0]), "stds"),
        (MixtureClass("a", [[0.0, 0.0]], [1.0], [0.0]), "weights"),
        (MixtureClass("a", [[0.0, 0.0]], [1.0], [1.0, 2.0]), "weights"),
        (MixtureClass("a", [[0.0, 0.0], [1.0, 1.0]], [1.0, 1.0, 1.0]), "stds"),
        (MixtureClass("a", [[0.0, 0.0]], [[1.0, 1.0, 1.0]]), "stds"),
        (MixtureClass("a", [0.0, 0.0], 1.0), "means"),
    ],
)
def test_bad_specs_name_the_field(cls: MixtureClass, field: str) -> None:
    with pytest.raises(SSD3DError, match=f"class 'a': {field}"):
        GaussianMixturePrior([cls])


def test_bad_class_weights_and_mismatched_dims() -> None:
    ok = MixtureClass("a", [[0.0, 0.0]], 1.0)
    with pytest.raises(SSD3DError, match="class_weights"):
        GaussianMixturePrior([ok, MixtureClass("b", [[1.0, 1.0]], 1.0)], class_weights=[1.0, -1.0])
    with pytest.raises(SSD3DError, match="same D"):
        GaussianMixturePrior([ok, MixtureClass("b", [[1.0, 1.0, 1.0]], 1.0)])


@pytest.mark.parametrize("layout", ["isotropic elementwise", "diagonal"])
def test_matmul_layout_matches_the_elementwise_layouts(layout: str) -> None:
    fast = GaussianMixturePrior(_classes(64, diagonal=False))
    other = GaussianMixturePrior(_classes(64, diagonal=False))
    assert fast.use_matmul and fast.isotropic
    other.use_matmul = False  # force the [B, M, D] layouts
    other.isotropic = layout != "diagonal"
    g = torch.Generator().manual_seed(3)
    x = 3.0 * torch.randn(5, 64, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 10, 300, 700, 999])
    rows = fast.embed(["cat", "", "dog", "cat", ""])
    torch.testing.assert_close(fast.predict_noise(x, t, rows), other.predict_noise(x, t, rows))
    torch.testing.assert_close(fast.log_prob(x, "dog"), other.log_prob(x, "dog"))
    torch.testing.assert_close(fast.noised_log_prob(x, t, rows), other.noised_log_prob(x, t, rows))
