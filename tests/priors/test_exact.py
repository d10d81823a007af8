import pytest
import torch

from ssd3d.errors import SSD3DError
from ssd3d.priors.base import DiffusionPrior, add_noise
from ssd3d.priors.exact import UNCONDITIONAL, ExactPrior, ExactPriorConfig

PROMPTS = ["a red cube", "a blue cube", "a green sphere"]
LABELS = torch.tensor([0, 0, 1, 1, 1, 2, 2])
VIEWS = ["front", "back", "front", "front", "side", "back", "front"]


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _images(n=7, seed=0):
    return torch.rand(n, 3, 4, 4, generator=_gen(seed), dtype=torch.float64)


def _prior(smoothing=0.0, chunk=2048, dtype="float64", views=None, images=None):
    cfg = ExactPriorConfig(smoothing=smoothing, chunk=chunk, dtype=dtype)
    images = _images() if images is None else images
    return ExactPrior(images, LABELS, PROMPTS, views=views, config=cfg)


def _reference_eps(prior, images, mask, x_t, t, smoothing):
    """-sqrt(1 - a) grad log p_t(x_t), p_t = mean_i N(sqrt(a) x_i, (a s^2 + 1 - a) I), by autograd."""
    a = prior.alphas_cumprod[t].double()
    v = a * smoothing**2 + 1 - a
    x0 = (2 * images[mask] - 1).reshape(int(mask.sum()), -1)
    x = x_t.reshape(-1).double().requires_grad_(True)
    log_p = torch.logsumexp(-((x - a.sqrt() * x0) ** 2).sum(-1) / (2 * v), dim=0)
    (grad,) = torch.autograd.grad(log_p, x)
    return (-(1 - a).sqrt() * grad).reshape(x_t.shape)


def test_is_a_diffusion_prior_and_encodes_to_minus_one_one():
    prior = _prior()
    assert isinstance(prior, DiffusionPrior)
    img = torch.tensor([0.0, 0.5, 1.0]).reshape(1, 3, 1, 1).requires_grad_(True)
    x0 = prior.encode(img)
    torch.testing.assert_close(x0.reshape(-1), torch.tensor([-1.0, 0.0, 1.0]))
    x0.sum().backward()
    torch.testing.assert_close(img.grad, torch.full_like(img, 2.0))


@pytest.mark.parametrize("smoothing", [0.0, 0.3])
@pytest.mark.parametrize("prompt", ["", "a red cube", "a blue cube", "a green sphere"])
def test_eps_matches_autograd_of_the_noised_mixture(smoothing, prompt):
    images = _images()
    prior = _prior(smoothing=smoothing, images=images)
    row = prior.embed([prompt])
    mask = torch.ones(7, dtype=torch.bool) if prompt == "" else LABELS == PROMPTS.index(prompt)
    for t in [5, 200, 600, 950]:
        tt = torch.tensor([t])
        a = prior.alphas_cumprod[tt]
        x_t = add_noise(
            prior.encode(images[:1]), torch.randn(1, 3, 4, 4, generator=_gen(t)).double(), a
        )
        eps = prior.predict_noise(x_t, tt, row)
        torch.testing.assert_close(eps, _reference_eps(prior, images, mask, x_t, tt, smoothing))
        # x0_hat is the Gaussian-mixture posterior mean, written out independently: each
        # component's posterior mean x_i + sqrt(a) s^2 / v (x_t - sqrt(a) x_i), weighted.
        x0_hat = prior.predict_x0(x_t, tt, row)
        v = a * smoothing**2 + 1 - a
        xi = prior.encode(images[mask]).flatten(1)
        w = torch.softmax(-((x_t.flatten(1) - a.sqrt() * xi) ** 2).sum(1) / (2 * v), dim=0)
        per_component = xi + a.sqrt() * smoothing**2 / v * (x_t.flatten(1) - a.sqrt() * xi)
        torch.testing.assert_close(x0_hat.flatten(1), (w @ per_component).unsqueeze(0))


def test_near_t0_the_posterior_snaps_to_the_nearest_image():
    images = _images()
    for dtype in ["float64", "float32"]:
        prior = _prior(dtype=dtype)
        x0 = prior.encode(images).to(getattr(torch, dtype))
        t = torch.zeros(7, dtype=torch.long)
        noise = torch.randn(x0.shape, generator=_gen(1), dtype=x0.dtype)
        x_t = add_noise(x0, noise, prior.alphas_cumprod[t])
        # unconditional: every noised image is closest to its own clean image
        x0_hat = prior.predict_x0(x_t, t, prior.embed([""] * 7))
        torch.testing.assert_close(x0_hat, x0, atol=1e-5, rtol=0)
        # and eps recovers the noise that was added
        eps = prior.predict_noise(x_t, t, prior.embed([""] * 7))
        torch.testing.assert_close(eps, noise, atol=2e-4, rtol=0)


def test_conditioning_restricts_the_posterior_to_the_class():
    images = _images()
    prior = _prior()
    x0 = prior.encode(images)
    t = torch.zeros(1, dtype=torch.long)
    # Image 0 is a red cube; asked for "a green sphere" the snap goes to a green sphere.
    x_t = add_noise(x0[:1], torch.zeros(1, 3, 4, 4, dtype=torch.float64), prior.alphas_cumprod[t])
    x0_hat = prior.predict_x0(x_t, t, prior.embed(["a green sphere"]))
    dist = (x0[5:] - x0_hat).flatten(1).norm(dim=1)
    assert dist.min() < 1e-6


def test_mixed_classes_and_timesteps_in_one_batch():
    prior = _prior(smoothing=0.1)
    x_t = torch.randn(5, 3, 4, 4, generator=_gen(2), dtype=torch.float64)
    t = torch.tensor([10, 900, 400, 10, 700])
    cond = prior.embed(["a red cube", "", "a green sphere", "a blue cube", "a red cube"])
    batch = prior.predict_noise(x_t, t, cond)
    single = torch.cat(
        [prior.predict_noise(x_t[i : i + 1], t[i : i + 1], cond[i : i + 1]) for i in range(5)]
    )
    torch.testing.assert_close(batch, single)


def test_chunking_gives_the_same_answer():
    x_t = 3 * torch.randn(4, 3, 4, 4, generator=_gen(3), dtype=torch.float64)
    t = torch.tensor([0, 50, 500, 999])
    cond = torch.tensor([UNCONDITIONAL, 1, UNCONDITIONAL, 2])
    whole = _prior(smoothing=0.2).predict_noise(x_t, t, cond)
    for chunk in [1, 2, 3]:
        torch.testing.assert_close(
            _prior(smoothing=0.2, chunk=chunk).predict_noise(x_t, t, cond), whole
        )


def test_float32_agrees_with_float64():
    x_t = torch.randn(3, 3, 4, 4, generator=_gen(4))
    t = torch.tensor([100, 500, 900])
    cond = torch.tensor([UNCONDITIONAL, 0, 2])
    lo = _prior(dtype="float32").predict_noise(x_t, t, cond)
    hi = _prior(dtype="float64").predict_noise(x_t.double(), t, cond)
    assert lo.dtype == torch.float32
    torch.testing.assert_close(lo.double(), hi, atol=1e-4, rtol=1e-4)


def test_no_overflow_far_from_the_data():
    prior = _prior(dtype="float32")
    x_t = 1e3 * torch.randn(2, 3, 4, 4, generator=_gen(5))
    eps = prior.predict_noise(x_t, torch.tensor([0, 999]), torch.tensor([UNCONDITIONAL, 1]))
    assert torch.isfinite(eps).all()


def test_embed_rows_and_view_suffixes():
    prior = _prior()
    rows = prior.embed(["", "a red cube", "A  Green Sphere", "a blue cube, front view"])
    assert rows.tolist() == [UNCONDITIONAL, 0, 2, 1]  # no view labels: suffix -> base prompt
    with pytest.raises(SSD3DError, match="unknown prompt 'a red sphere'.*did you mean"):
        prior.embed(["a red sphere"])
    with pytest.raises(SSD3DError, match="a green sphere"):
        prior.embed(["a teapot, front view"])


def test_view_labels_select_that_views_images():
    images = _images()
    prior = _prior(views=VIEWS, images=images)
    row = prior.embed(["a blue cube, front view"])
    # The same as a prior holding only the blue cube's front views (images 2 and 3).
    keep = torch.tensor([2, 3])
    only = ExactPrior(images[keep], torch.tensor([0, 0]), ["a blue cube"], config=prior.config)
    x_t = torch.randn(1, 3, 4, 4, generator=_gen(6), dtype=torch.float64)
    t = torch.tensor([300])
    torch.testing.assert_close(
        prior.predict_noise(x_t, t, row), only.predict_noise(x_t, t, only.embed(["a blue cube"]))
    )
    # Without a suffix a prompt still covers all its views.
    full = prior.predict_noise(x_t, t, prior.embed(["a blue cube"]))
    mask = LABELS == 1
    torch.testing.assert_close(full, _reference_eps(prior, images, mask, x_t, t, 0.0))
    with pytest.raises(SSD3DError, match="overhead"):
        prior.embed(["a blue cube, overhead view"])  # no such view in the dataset
    with pytest.raises(SSD3DError, match="no images"):
        prior.embed(["a blue cube, back view"])  # view exists, not for this prompt


def test_call_cost_counts_the_scanned_images():
    prior = _prior(chunk=2)
    cost = prior.call_cost(prior.embed(["", "", "a red cube"]))
    d = 3 * 4 * 4
    assert cost.images_scanned == 2 * 7 + 2
    assert cost.flops == 4 * d * 16
    assert cost.peak_bytes == 8 * (2 * d + 2 * 2 + 2 * 2 * d)


def test_bad_inputs():
    with pytest.raises(SSD3DError, match="labels"):
        ExactPrior(_images(), torch.tensor([0, 1]), PROMPTS)
    with pytest.raises(SSD3DError, match="labels"):
        ExactPrior(_images(), LABELS + 5, PROMPTS)
    with pytest.raises(SSD3DError, match="views"):
        ExactPrior(_images(), LABELS, PROMPTS, views=["front"])
    with pytest.raises(SSD3DError, match=r"\[0, 1\]"):
        ExactPrior(2 * _images(), LABELS, PROMPTS)
    with pytest.raises(SSD3DError, match="smoothing"):
        _prior(smoothing=-1.0)
    with pytest.raises(ValueError, match="x_t"):
        _prior().predict_noise(torch.zeros(1, 3, 8, 8), torch.tensor([0]), torch.tensor([0]))


def test_through_the_guidance_step_a_stored_image_gets_no_push():
    # x0 = stored red-cube images at small t, through guidance's one batched call (rows
    # [B] concatenated over branches): both branches snap to x0 and recover the added
    # noise, so SDS with guidance 1, g = w (eps_cond - noise), is ~0.
    from ssd3d.estimators import SDS
    from ssd3d.guidance import distillation_gradient, noise_predictions

    images = _images()
    prior = _prior(dtype="float32", images=images)
    x0 = prior.encode(images[:2]).float()
    t = torch.tensor([3, 3])
    noise = torch.randn(x0.shape, generator=_gen(7))
    e = prior.embed(["a red cube", ""])
    rows = {"cond": e[:1].expand(2), "uncond": e[1:].expand(2)}
    grad, preds = distillation_gradient(prior, SDS(guidance_scale=1.0), x0, t, noise, rows)
    torch.testing.assert_close(preds.eps_cond, noise, atol=1e-3, rtol=0)
    assert preds.eps_uncond is None  # at s = 1 SDS has no guidance term: one branch asked
    assert grad.abs().max() < 1e-5
    both = noise_predictions(prior, x0, t, noise, rows, frozenset({"cond", "uncond"}))
    torch.testing.assert_close(both.eps_uncond, noise, atol=1e-3, rtol=0)


def test_generate_config_reaches_the_exact_prior(tmp_path):
    # `exact.smoothing` and the dataset file set on a run's config are what the prior uses.
    from ssd3d.pipeline.config import resolve_config
    from ssd3d.pipeline.run import load_prior_for
    from ssd3d.toyworld.render_dataset import DatasetConfig, render_dataset

    data = render_dataset(
        DatasetConfig(views_per_prompt=3, resolution=8), ["a red cube"], progress=False
    )
    path = tmp_path / "data.safetensors"
    data.save(path)
    cfg = resolve_config(
        "exact", {"prompt": "a red cube", "model": str(path)}, ["exact.smoothing=0.25"]
    )
    prior = load_prior_for(cfg)
    assert prior.config.smoothing == 0.25
    assert prior.data.shape == (3, 3 * 8 * 8) and prior.prompts == ["a red cube"]
