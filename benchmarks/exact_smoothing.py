"""What the exact prior's smoothing changes: how far its denoised estimate sits from a view
it has not stored, and how close it snaps to one it has, per noise level.

    python benchmarks/exact_smoothing.py [--smoothing 0 0.05 0.1 0.3] [--views 200]

Queries are fresh renders (another seed) of a few prompts, so they are views between the
stored ones, as a 3D scene's renders are. For each timestep and smoothing s it prints,
over the queries noised with x_t = sqrt(a) x0 + sqrt(1 - a) eps:

- ``err``: RMS error of x0_hat = E[x0 | x_t, prompt] against the query (pixel units [-1, 1]);
- ``snap``: RMS distance of x0_hat from its nearest stored image: 0 means the posterior has
  collapsed onto one stored view, the behaviour smoothing is meant to soften at low t.

Uses the cached dataset the exact prior reads (rendered on first use).
"""

from __future__ import annotations

import argparse

import torch

from ssd3d.priors.exact import ExactPrior, ExactPriorConfig
from ssd3d.toyworld.render_dataset import DatasetConfig, cached_dataset, render_dataset

PROMPTS = ["a green cube", "a red sphere", "a blue torus", "a yellow wedge"]
TIMESTEPS = [20, 50, 100, 200, 400, 700]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoothing", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.3])
    p.add_argument("--views", type=int, default=200, help="stored views per prompt")
    p.add_argument("--queries", type=int, default=16, help="fresh views per prompt")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    data = cached_dataset(DatasetConfig(views_per_prompt=args.views))
    stored_views = [data.view_names[int(v)] for v in data.view_labels]
    queries = render_dataset(
        DatasetConfig(views_per_prompt=args.queries, seed=args.seed + 1), PROMPTS, progress=False
    )
    generator = torch.Generator().manual_seed(args.seed)
    print(
        f"{len(data)} stored renders ({args.views} per prompt), {len(queries)} fresh queries; "
        "err / snap in RMS pixel units ([-1, 1])"
    )
    print(f"{'t':>5} " + " ".join(f"{f's={s:g} err   snap':>20}" for s in args.smoothing))
    priors = [
        ExactPrior(
            data.images.float() / 255,
            data.labels,
            data.prompts,
            views=stored_views,
            config=ExactPriorConfig(smoothing=s),
        )
        for s in args.smoothing
    ]
    x0 = priors[0].encode(queries.images.float() / 255)
    cond = priors[0].embed([queries.prompts[int(i)] for i in queries.labels])
    flat_store = priors[0].data.float()
    for t in TIMESTEPS:
        a = priors[0].alphas_cumprod[t].float()
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * torch.randn(x0.shape, generator=generator)
        cells = []
        for prior in priors:
            x0_hat = prior.predict_x0(x_t, torch.full((len(x0),), t), cond).float()
            err = (x0_hat - x0).flatten(1).pow(2).mean(1).sqrt().mean()
            nearest = torch.cdist(x0_hat.flatten(1), flat_store).min(dim=1).values
            snap = (nearest.pow(2) / flat_store.shape[1]).sqrt().mean()
            cells.append(f"{err:>13.3f} {snap:>6.3f}")
        print(f"{t:>5} " + " ".join(cells))


if __name__ == "__main__":
    main()
