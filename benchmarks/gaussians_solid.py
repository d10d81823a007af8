"""What makes distilled 3D Gaussians solid: the benchmark's scores for variants of their config.

    python benchmarks/gaussians_solid.py [--variants NAME,...] [--estimators "sds guidance_scale=7.5;ssd"]
        [--prompts "a green cube;..."] [--steps 200] [--seed 0] [--prior exact] [--oracle]
        [--jobs 1] [--checkpoints 1]

Each variant is a list of ``key=value`` overrides on top of ``representation=gaussians`` and
the preset of the prior (``--prior``: the exact one, or the shipped toy prior with its preset's
Gaussian section) (``VARIANTS`` below; "old" is the settings before the ones in
``GaussianConfig`` now, "default" the current defaults). Every (variant, estimator, prompt) is
one run of the benchmark's loop scored by the benchmark's ``Scorer`` at its last step, without
the judge (R-precision and the multi-face score are left out). Printed: per variant and
estimator, the mean over prompts of 3D IoU, silhouette IoU, Chamfer, PSNR, colour error and
milliseconds per step (wall, on whatever machine this runs), then the per-prompt 3D IoU and
silhouette IoU, and the final Gaussians' count, mean opacity and share above 0.5.
``--jobs 2`` runs two runs at a time (one torch thread each). ``--checkpoints N`` also scores
3D IoU at the bench's N evenly spaced steps (scoring not timed) and prints it per run.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import torch

from ssd3d.bench.config import DEFAULT_PROMPTS, EvalConfig, bench_config
from ssd3d.bench.oracle import TrueRenders
from ssd3d.bench.scoring import Scorer
from ssd3d.pipeline.run import prepare
from ssd3d.toyworld.truth import DEFAULT_TRUTH_RENDERER

# What each variant changes, as overrides (the levers of docs/gaussians.md's table). "old" is
# the defaults before densification was turned off: DreamGaussian's schedule, densifying every
# 100 steps from step 100 (3DGS's clone and split) and pruning at opacity 0.01.
OLD = ("gaussians.densify_stop=3000",)
VARIANTS: dict[str, tuple[str, ...]] = {
    "old": OLD,
    "default": (),
    # one lever at a time, from the old settings
    "entropy 10": (*OLD, "gaussians.opacity_entropy=10"),
    "init opacity 0.25": (*OLD, "gaussians.init_opacity=0.25"),
    "init opacity 0.5": (*OLD, "gaussians.init_opacity=0.5"),
    "clone (split scale 0.1)": (*OLD, "gaussians.split_scale=0.1"),
    "pixel entropy 0.1": (*OLD, "regularisers.opacity_entropy=0.1"),
    "lr opacity 0.2": (*OLD, "gaussians.lr_opacity=0.2"),
    "grad threshold 0.05": (*OLD, "gaussians.grad_threshold=0.05"),
    "lr scale 0.001": (*OLD, "gaussians.lr_scale=0.001"),
    "lr position 1e-4": (*OLD, "gaussians.lr_position=1e-4"),
    # together
    "init 0.5 + entropy 10": (*OLD, "gaussians.init_opacity=0.5", "gaussians.opacity_entropy=10"),
    "init 0.5 + lr opacity 0.2": (*OLD, "gaussians.init_opacity=0.5", "gaussians.lr_opacity=0.2"),
    "init 0.25 + clone": (*OLD, "gaussians.init_opacity=0.25", "gaussians.split_scale=0.1"),
    # from the defaults (no densification)
    "default + entropy 10": ("gaussians.opacity_entropy=10",),
    "default + init opacity 0.15": ("gaussians.init_opacity=0.15",),
    "default + init opacity 0.25": ("gaussians.init_opacity=0.25",),
    "default + 2048 Gaussians": ("gaussians.initial_count=2048",),
    # toward the ceiling bar (docs/gaussians.md): the oracle's weak shapes, then distillation
    "default + 4096 Gaussians": ("gaussians.initial_count=4096",),
    "default + init scale 0.5": ("gaussians.init_scale=0.5",),
    "default + init scale 2": ("gaussians.init_scale=2",),
    "default + lr scale 0.01": ("gaussians.lr_scale=0.01",),
    "default + lr scale 0.0025": ("gaussians.lr_scale=0.0025",),
    "default + lr rotation 0.01": ("gaussians.lr_rotation=0.01",),
    "default + lr position 2e-3": ("gaussians.lr_position=2e-3",),
    "default + lr position 5e-4": ("gaussians.lr_position=5e-4",),
    "default + position decay 0.01": ("gaussians.lr_position_final=0.01",),
    "default + late decay 0.1": ("gaussians.lr_late_final=0.1",),
    "default + init opacity 0.05": ("gaussians.init_opacity=0.05",),
    "default + 64x64 renders": ("camera.width=64", "camera.height=64"),
    # Mip-Splatting's compensated low-pass filter: a faint splat gains no coverage from it
    "default + antialiased": ("gaussians.rasterize_mode=antialiased",),
    # The toy preset's opacity sparsity (100 for the Gaussians), held or ramped down to 0 by
    # a step (threestudio's [start_step, start_value, end_value, end_step]); with --prior toy
    # "default" is the held 100.
    "sparsity 100 to 0 by 300": ("regularisers.opacity_sparsity=[0, 100, 0, 300]",),
    "sparsity 100 to 0 by 600": ("regularisers.opacity_sparsity=[0, 100, 0, 600]",),
    "default + lr scale 0.01 + 4096 Gaussians": (
        "gaussians.lr_scale=0.01",
        "gaussians.initial_count=4096",
    ),
    # where the distillation gap comes from: the timesteps the prior is asked at
    "default + t annealed to 200": ("timesteps.schedule=annealed", "timesteps.t_max_end=200"),
    "default + DreamTime t": ("timesteps.schedule=dreamtime",),
    "default + t <= 400": ("timesteps.t_max=400",),
}
METRICS = ("iou", "silhouette_iou", "chamfer", "psnr", "colour_error")


def prepare_gaussians(
    variant: str,
    estimator: str,
    prompt: str,
    steps: int,
    seed: int,
    *,
    prior: str = "exact",
    checkpoints: int = 1,
    representation: str = "gaussians",
    truth: str = DEFAULT_TRUTH_RENDERER,
):
    """One benchmark cell on 3D Gaussians with ``variant``'s overrides, ready to step: the
    benchmark's config and the run (the oracle's supervised by the true renders drawn by
    ``truth``, with no prior loaded). Another ``representation`` (the voxel grid's "nerf")
    takes the same cell for comparison."""
    overrides = (f"representation={representation}", *VARIANTS[variant])
    bench = bench_config(
        estimators=estimator,
        prompts=[prompt],
        steps=steps,
        prior=prior,
        overrides=overrides,
        oracle=False,
        checkpoints=checkpoints,
    )
    cfg = bench.generate_config(bench.estimators[0], prompt, seed)
    if bench.estimators[0].is_oracle:
        return bench, prepare(
            cfg, supervision=TrueRenders(cfg.prompt, cfg.background.colour, truth)
        )
    return bench, prepare(cfg)


def train_gaussians(variant: str, estimator: str, prompt: str, steps: int, seed: int, **kw):
    """``prepare_gaussians``' run stepped to its end: the trained scene."""
    _, run = prepare_gaussians(variant, estimator, prompt, steps, seed, **kw)
    while run.step < run.cfg.steps:
        run.run_step()
    return run.scene


def run_one(
    variant: str,
    estimator: str,
    prompt: str,
    steps: int,
    seed: int,
    checkpoints: int = 1,
    prior: str = "exact",
) -> dict:
    torch.set_num_threads(1)
    bench, run = prepare_gaussians(
        variant, estimator, prompt, steps, seed, prior=prior, checkpoints=checkpoints
    )
    cfg = run.cfg
    scorer = Scorer(EvalConfig())
    scored = set(bench.checkpoint_steps()) - {0, cfg.steps}
    along = {}
    elapsed = 0.0
    while run.step < cfg.steps:
        start = time.perf_counter()
        run.run_step()
        elapsed += time.perf_counter() - start
        if run.step in scored:  # scoring is not timed
            along[run.step] = scorer.score(run.scene, prompt, cfg.camera.width, cfg.camera.height)
    ms = elapsed / cfg.steps * 1e3
    scores = scorer.score(run.scene, prompt, cfg.camera.width, cfg.camera.height)
    opacity = run.scene.opacities().detach()
    return {
        "variant": variant,
        "estimator": estimator,
        "prompt": prompt,
        **{m: scores[m] for m in METRICS},
        "ms_step": ms,
        "count": run.scene.count,
        "mean_opacity": float(opacity.mean()),
        "opaque": float((opacity > 0.5).float().mean()),
        "along": {step: along[step]["iou"] for step in sorted(along)},
    }


def _mean(rows: list[dict], key: str) -> float:
    values = [r[key] for r in rows]
    return math.inf if any(math.isinf(v) for v in values) else statistics.mean(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", default="old,default")
    parser.add_argument("--estimators", default="sds guidance_scale=7.5")
    parser.add_argument("--prompts", default=";".join(DEFAULT_PROMPTS))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--prior",
        default="exact",
        choices=("exact", "toy"),
        help="and its preset under the variants",
    )
    parser.add_argument("--oracle", action="store_true", help="also fit each variant to the truth")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument(
        "--checkpoints",
        type=int,
        default=1,
        help="score at this many evenly spaced steps (as the bench's --checkpoints), not only the last",
    )
    args = parser.parse_args()
    variants = [v.strip() for v in args.variants.split(",")]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant {unknown[0]!r}; known: {', '.join(VARIANTS)}")
    estimators = [e.strip() for e in args.estimators.split(";") if e.strip()]
    if args.oracle:
        estimators = ["oracle", *estimators]
    prompts = [p.strip() for p in args.prompts.split(";")]
    plan = [
        (v, e, p, args.steps, args.seed, args.checkpoints, args.prior)
        for v in variants
        for e in estimators
        for p in prompts
    ]
    rows = []
    with ProcessPoolExecutor(args.jobs) as pool:
        for row in pool.map(run_one, *zip(*plan, strict=True)):
            rows.append(row)
            print(
                f"{len(rows)}/{len(plan)} {row['variant']} | {row['estimator']} | "
                f"{row['prompt']}: IoU {row['iou']:.3f}, sil. IoU {row['silhouette_iou']:.3f}",
                file=sys.stderr,
                flush=True,
            )

    print(
        f"{args.prior} prior, {args.steps} steps, seed {args.seed}, mean over {len(prompts)} prompts"
    )
    print()
    print(
        "| variant | estimator | 3D IoU | sil. IoU | Chamfer | PSNR dB | colour err | ms/step "
        "| count | mean opacity | opacity > 0.5 |"
    )
    print("|---|---|" + ":-:|" * 9)
    for v in variants:
        for e in estimators:
            sel = [r for r in rows if r["variant"] == v and r["estimator"] == e]
            print(
                f"| {v} | {e} | {_mean(sel, 'iou'):.3f} | {_mean(sel, 'silhouette_iou'):.3f} "
                f"| {_mean(sel, 'chamfer'):.3f} | {_mean(sel, 'psnr'):.2f} "
                f"| {_mean(sel, 'colour_error'):.3f} | {_mean(sel, 'ms_step'):.0f} "
                f"| {_mean(sel, 'count'):.0f} | {_mean(sel, 'mean_opacity'):.2f} "
                f"| {_mean(sel, 'opaque'):.2f} |"
            )
    print()
    print("| variant | estimator | " + " | ".join(prompts) + " |")
    print("|---|---|" + ":-:|" * len(prompts))
    for v in variants:
        for e in estimators:
            by_prompt = {r["prompt"]: r for r in rows if r["variant"] == v and r["estimator"] == e}
            cells = [
                f"{by_prompt[p]['iou']:.3f} / {by_prompt[p]['silhouette_iou']:.3f}" for p in prompts
            ]
            print(f"| {v} | {e} | " + " | ".join(cells) + " |")
    print("(3D IoU / silhouette IoU per prompt)")
    if args.checkpoints > 1:
        print()
        steps_scored = sorted(rows[0]["along"]) + [args.steps]
        print("| variant | estimator | prompt | " + " | ".join(f"{k}" for k in steps_scored) + " |")
        print("|---|---|---|" + ":-:|" * len(steps_scored))
        for r in rows:
            cells = [f"{r['along'][k]:.3f}" for k in steps_scored[:-1]] + [f"{r['iou']:.3f}"]
            print(
                f"| {r['variant']} | {r['estimator']} | {r['prompt']} | " + " | ".join(cells) + " |"
            )
        print("(3D IoU at each scored step)")


if __name__ == "__main__":
    main()
