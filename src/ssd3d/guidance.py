"""Where a prior meets an estimator: the noising step, the batched prior call, the gradient.

Knows nothing of 3D: the simulations (x0 = particles) and the 3D loop (x0 = encoded
renders) both call ``predictions`` (or ``distillation_gradient``). The estimator says how
x_t is made (``Estimator.noising``): random noise, which costs no prior call, or DDIM
inversion of x0, which costs one per step of its path (two with guidance). Every prior call
is counted in network evaluations of the batch: rows evaluated / B, so SDS with guidance
costs 2 a step at any B.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from ssd3d.estimators import (
    Branch,
    DDIMInversion,
    Estimator,
    NoisePredictions,
    Noising,
    RandomNoising,
    classifier_free_guidance,
)
from ssd3d.priors.base import DiffusionPrior, add_noise

BRANCH_ORDER: tuple[Branch, ...] = ("cond", "uncond", "neg")


@dataclass(frozen=True)
class Predicted:
    """What one noising step and its prior calls gave."""

    predictions: NoisePredictions
    prior_calls: float  # network evaluations of the batch: rows evaluated / B


def distinct_branches(
    rows: Mapping[Branch, Tensor], branches: frozenset[Branch]
) -> tuple[list[Branch], dict[Branch, Branch]]:
    """(the branches the model is asked for, duplicate branch -> the computed one it equals).

    Branches whose rows are identical (an empty negative prompt is the empty prompt) are
    predicted once and share the result.
    """
    order = [b for b in BRANCH_ORDER if b in branches]
    missing = [b for b in order if b not in rows]
    if missing:
        raise ValueError(f"no conditioning given for branch(es) {', '.join(missing)}")
    computed: list[Branch] = []
    same_as: dict[Branch, Branch] = {}
    for b in order:
        twin = next((c for c in computed if _same_rows(rows[c], rows[b])), None)
        if twin is None:
            computed.append(b)
        else:
            same_as[b] = twin
    return computed, same_as


def _predict(
    prior: DiffusionPrior,
    x_t: Tensor,
    t: Tensor,
    rows: Mapping[Branch, Tensor],
    branches: frozenset[Branch],
    dtype: torch.dtype,
) -> tuple[dict[Branch, Tensor], int]:
    """eps (as ``dtype``) for each branch at (x_t, t) in one batched call, and how many
    row sets were evaluated."""
    computed, same_as = distinct_branches(rows, branches)
    n = len(computed)
    with torch.no_grad():
        eps = prior.predict_noise(
            x_t.repeat(n, *([1] * (x_t.dim() - 1))),
            t.repeat(n),
            torch.cat([rows[b] for b in computed]),
        )
    by_branch = dict(zip(computed, eps.to(dtype).chunk(n), strict=True))
    by_branch.update({b: by_branch[c] for b, c in same_as.items()})
    return by_branch, n


def noise_predictions(
    prior: DiffusionPrior,
    x0: Tensor,
    t: Tensor,
    noise: Tensor,
    rows: Mapping[Branch, Tensor],
    branches: frozenset[Branch],
) -> NoisePredictions:
    """Noise x0 [B, ...] at t [B] with ``noise`` and predict eps for each needed branch in
    one call (the random noising step).

    ``rows[branch]`` holds that branch's conditioning row for every sample, [B, ...].
    Nothing here is differentiated: the prior is frozen and the estimator's output is a
    gradient, not a graph.
    """
    return _random(prior, x0, t, noise, rows, branches).predictions


def _random(prior, x0, t, noise, rows, branches) -> Predicted:
    x0 = x0.detach()
    alpha_bar = prior.alphas_cumprod.to(x0.device)[t].to(x0.dtype)
    x_t = add_noise(x0, noise, alpha_bar)
    by_branch, n = _predict(prior, x_t, t, rows, branches, x0.dtype)
    order = [b for b in BRANCH_ORDER if b in branches]
    preds = NoisePredictions(
        x0=x0, noise=noise, t=t, alpha_bar=alpha_bar, **{f"eps_{b}": by_branch[b] for b in order}
    )
    return Predicted(preds, float(n))


def predictions(
    prior: DiffusionPrior,
    noising: Noising,
    x0: Tensor,
    t: Tensor,
    noise: Tensor,
    rows: Mapping[Branch, Tensor],
    branches: frozenset[Branch],
    generator: torch.Generator | None = None,
) -> Predicted:
    """x_t made from x0 [B, ...] at t [B] as ``noising`` says, then the branches at (x_t, t).

    ``noise`` is the step's eps ~ N(0, I): random noising adds it; DDIM inversion leaves it
    unused (the caller draws it either way, so every estimator's run sees the same random
    stream of cameras and t). Inversion with eta > 0 draws its extra noise from
    ``generator`` (on the CPU, like the caller's), so a seeded run stays reproducible.
    """
    if isinstance(noising, RandomNoising):
        return _random(prior, x0, t, noise, rows, branches)
    if isinstance(noising, DDIMInversion):
        return _inverted(prior, noising, x0, t, rows, branches, generator)
    raise TypeError(f"unknown noising step {noising!r}")


def ddim_invert(
    prior: DiffusionPrior,
    noising: DDIMInversion,
    x0: Tensor,
    t: Tensor,
    rows: Mapping[Branch, Tensor],
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor, float]:
    """(x_t, s, eps_phi(x_s; s), prior calls): x0 [B, ...] run along ``noising.path(t)``.

    s [B] is the start of each sample's last step and eps_phi(x_s; s) the guided prediction
    that made it. Samples step in lockstep; a sample whose path is done is left out of the
    later calls, so the count is what the paths cost (rows evaluated / B).
    """
    x_t, start, eps_start, rows_evaluated = _invert(prior, noising, x0, t, rows, generator)
    return x_t, start, eps_start, rows_evaluated / x0.shape[0]


def _invert(prior, noising, x0, t, rows, generator) -> tuple[Tensor, Tensor, Tensor, int]:
    """``ddim_invert`` with the rows evaluated as an integer count."""
    x0 = x0.detach()
    b = x0.shape[0]
    alphas = prior.alphas_cumprod.to(x0.device).to(x0.dtype)
    paths = [noising.path(int(v)) for v in t.tolist()]
    steps = max(len(p) for p in paths)
    inv_branches = noising.branches()
    x = x0.clone()
    current = torch.zeros(b, dtype=torch.long)  # timestep each sample is predicted at
    a_cur = torch.ones(b, dtype=x0.dtype, device=x0.device)  # x0 itself: alpha_bar = 1
    start = torch.zeros(b, dtype=torch.long)
    eps_start = torch.zeros_like(x0)
    calls = 0
    for j in range(steps):
        active = [i for i, p in enumerate(paths) if j < len(p)]
        idx = torch.tensor(active, dtype=torch.long)
        dev_idx = idx.to(x0.device)
        sub_rows = {k: rows[k][dev_idx] for k in inv_branches}
        by_branch, n = _predict(
            prior, x[dev_idx], current[idx].to(t.device), sub_rows, inv_branches, x0.dtype
        )
        calls += n * len(active)
        if len(by_branch) == 1:
            eps = next(iter(by_branch.values()))
        else:
            eps = classifier_free_guidance(
                by_branch["cond"], by_branch["uncond"], noising.guidance_scale
            )
        nxt = torch.tensor([paths[i][j] for i in active], dtype=torch.long)
        a_u = _column(a_cur[dev_idx], x0)
        a_v = _column(alphas[nxt.to(x0.device)], x0)
        x_u = x[dev_idx]
        x0_hat = (x_u - (1 - a_u).sqrt() * eps) / a_u.sqrt()
        x_v = a_v.sqrt() * x0_hat + (1 - a_v).sqrt() * eps
        if noising.eta > 0:
            z = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
            var = (1 - a_u) / (1 - a_v) * (1 - a_v / a_u)
            x_v = x_v + noising.eta * var.clamp_min(0).sqrt() * z[dev_idx]
        start[idx] = current[idx]
        eps_start[dev_idx] = eps
        x[dev_idx] = x_v
        current[idx] = nxt
        a_cur[dev_idx] = alphas[nxt.to(x0.device)]
    return x, start.to(t.device), eps_start, calls


def _column(values: Tensor, like: Tensor) -> Tensor:
    return values.reshape(-1, *([1] * (like.dim() - 1)))


def _inverted(prior, noising, x0, t, rows, branches, generator) -> Predicted:
    x0 = x0.detach()
    x_t, start, eps_start, inverting = _invert(prior, noising, x0, t, rows, generator)
    alpha_bar = prior.alphas_cumprod.to(x0.device)[t].to(x0.dtype)
    a = _column(alpha_bar, x0)
    implied = (x_t - a.sqrt() * x0) / (1 - a).sqrt()
    by_branch, n = _predict(prior, x_t, t, rows, branches, x0.dtype)
    order = [b for b in BRANCH_ORDER if b in branches]
    kept = {"t_start": start, "eps_start": eps_start} if noising.keep_start else {}
    preds = NoisePredictions(
        x0=x0,
        noise=implied,
        t=t,
        alpha_bar=alpha_bar,
        **{f"eps_{b}": by_branch[b] for b in order},
        **kept,
    )
    return Predicted(preds, (inverting + n * x0.shape[0]) / x0.shape[0])


def _same_rows(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b))


def distillation_gradient(
    prior: DiffusionPrior,
    estimator: Estimator,
    x0: Tensor,
    t: Tensor,
    noise: Tensor,
    rows: Mapping[Branch, Tensor],
    generator: torch.Generator | None = None,
) -> tuple[Tensor, NoisePredictions]:
    """The estimator's gradient on x0 [B, ...], and the predictions it was computed from.

    x_t is made by the estimator's noising step; only the branches this batch's timesteps
    use are predicted (``branches(t)``).
    """
    out = predictions(
        prior, estimator.noising, x0, t, noise, rows, estimator.branches(t), generator
    )
    return estimator(out.predictions), out.predictions
