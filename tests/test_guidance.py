import torch

from ssd3d.estimators import NFSD, SDS, ModeSeeking
from ssd3d.guidance import distillation_gradient
from ssd3d.priors import make_alphas_cumprod


class LinearPrior:
    """eps = x_t * k[cond] + t/1000: every branch distinguishable, calls counted."""

    def __init__(self):
        self.alphas_cumprod = make_alphas_cumprod()
        self.calls = []

    def embed(self, prompts):
        return torch.tensor([{"": 0, "y": 1, "neg": 2}[p] for p in prompts])

    def encode(self, images):
        return images

    def predict_noise(self, x_t, t, cond):
        self.calls.append(x_t.shape[0])
        k = torch.tensor([0.1, 0.5, 0.9], dtype=x_t.dtype)[cond]
        return x_t * k.reshape(-1, 1) + t.reshape(-1, 1).to(x_t.dtype) / 1000


def rows(prior, b):
    e = prior.embed(["y", "", "neg"])
    return {"cond": e[0].repeat(b), "uncond": e[1].repeat(b), "neg": e[2].repeat(b)}


def test_one_batched_call_with_the_needed_branches_only():
    prior = LinearPrior()
    x0 = torch.randn(3, 2, dtype=torch.float64)
    noise = torch.randn(3, 2, dtype=torch.float64)
    t = torch.tensor([10, 500, 900])
    _, p = distillation_gradient(prior, NFSD(), x0, t, noise, rows(prior, 3))
    assert prior.calls == [9]
    _, p1 = distillation_gradient(prior, ModeSeeking(), x0, t, noise, rows(prior, 3))
    assert prior.calls == [9, 3] and p1.eps_uncond is None and p1.eps_neg is None
    a = prior.alphas_cumprod[t].to(x0.dtype).reshape(-1, 1)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
    tt = t.reshape(-1, 1).double() / 1000
    torch.testing.assert_close(p.eps_cond, 0.5 * x_t + tt)
    torch.testing.assert_close(p.eps_uncond, 0.1 * x_t + tt)
    torch.testing.assert_close(p.eps_neg, 0.9 * x_t + tt)


def test_gradient_is_the_estimator_on_those_predictions():
    prior = LinearPrior()
    x0 = torch.randn(4, 5, requires_grad=True)
    noise = torch.randn(4, 5)
    t = torch.tensor([1, 2, 3, 4]) * 200
    g, p = distillation_gradient(prior, SDS(guidance_scale=7.5), x0, t, noise, rows(prior, 4))
    torch.testing.assert_close(g, SDS(guidance_scale=7.5)(p))
    assert not g.requires_grad  # a gradient, not a graph


def test_nfsd_asks_for_the_negative_prompt_only_where_some_t_uses_it():
    prior = LinearPrior()
    x0 = torch.randn(2, 2, dtype=torch.float64)
    noise = torch.randn(2, 2, dtype=torch.float64)
    _, p = distillation_gradient(prior, NFSD(), x0, torch.tensor([10, 150]), noise, rows(prior, 2))
    assert prior.calls == [4] and p.eps_neg is None  # cond and uncond only
    distillation_gradient(prior, NFSD(), x0, torch.tensor([10, 700]), noise, rows(prior, 2))
    assert prior.calls == [4, 6]


def test_identical_rows_are_predicted_once_and_shared():
    prior = LinearPrior()
    x0 = torch.randn(3, 2, dtype=torch.float64)
    noise = torch.randn(3, 2, dtype=torch.float64)
    r = rows(prior, 3)
    r["neg"] = r["uncond"].clone()  # an empty negative prompt is the empty prompt
    t = torch.tensor([300, 500, 900])
    g, p = distillation_gradient(prior, NFSD(), x0, t, noise, r)
    assert prior.calls == [6]
    assert torch.equal(p.eps_neg, p.eps_uncond)
    torch.testing.assert_close(g, NFSD()(p))
