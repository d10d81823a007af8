"""Where a prior meets an estimator: one batched prior call per step, then the gradient.

Knows nothing of 3D: the simulations (x0 = particles) and the 3D loop (x0 = encoded
renders) both call ``distillation_gradient``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from ssd3d.estimators import Branch, Estimator, NoisePredictions
from ssd3d.priors.base import DiffusionPrior, add_noise

BRANCH_ORDER: tuple[Branch, ...] = ("cond", "uncond", "neg")


def noise_predictions(
    prior: DiffusionPrior,
    x0: Tensor,
    t: Tensor,
    noise: Tensor,
    rows: Mapping[Branch, Tensor],
    branches: frozenset[Branch],
) -> NoisePredictions:
    """Noise x0 [B, ...] at t [B] and predict eps for each needed branch in one call.

    ``rows[branch]`` holds that branch's conditioning row for every sample, [B, ...].
    Branches whose rows are identical (an empty negative prompt is the empty prompt) are
    predicted once and share the result. Nothing here is differentiated: the prior is
    frozen and the estimator's output is a gradient, not a graph.
    """
    order = [b for b in BRANCH_ORDER if b in branches]
    missing = [b for b in order if b not in rows]
    if missing:
        raise ValueError(f"no conditioning given for branch(es) {', '.join(missing)}")
    computed: list[Branch] = []  # the branches the model is asked for
    same_as: dict[Branch, Branch] = {}  # a duplicate branch -> the computed one it equals
    for b in order:
        twin = next((c for c in computed if _same_rows(rows[c], rows[b])), None)
        if twin is None:
            computed.append(b)
        else:
            same_as[b] = twin
    x0 = x0.detach()
    alpha_bar = prior.alphas_cumprod.to(x0.device)[t].to(x0.dtype)
    x_t = add_noise(x0, noise, alpha_bar)
    n = len(computed)
    with torch.no_grad():
        eps = prior.predict_noise(
            x_t.repeat(n, *([1] * (x_t.dim() - 1))),
            t.repeat(n),
            torch.cat([rows[b] for b in computed]),
        )
    by_branch = dict(zip(computed, eps.to(x0.dtype).chunk(n), strict=True))
    by_branch.update({b: by_branch[c] for b, c in same_as.items()})
    return NoisePredictions(
        x0=x0,
        noise=noise,
        t=t,
        alpha_bar=alpha_bar,
        **{f"eps_{b}": by_branch[b] for b in order},
    )


def _same_rows(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b))


def distillation_gradient(
    prior: DiffusionPrior,
    estimator: Estimator,
    x0: Tensor,
    t: Tensor,
    noise: Tensor,
    rows: Mapping[Branch, Tensor],
) -> tuple[Tensor, NoisePredictions]:
    """The estimator's gradient on x0 [B, ...], and the predictions it was computed from.

    Only the branches this batch's timesteps use are predicted (``branches(t)``).
    """
    preds = noise_predictions(prior, x0, t, noise, rows, estimator.branches(t))
    return estimator(preds), preds
