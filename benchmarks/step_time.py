"""Milliseconds per distillation step, split by stage, and the wall time of a default run.

    python benchmarks/step_time.py [--prior toy|exact] [--steps 30] [--full] [key=value ...]

Stages: render (volume rendering + prior.encode), prior (the noising step and one batched
call for every branch the estimator needs), estimator, backward, optimizer; and the prior
calls per step (network evaluations of the batch: 2 for SDS with guidance, more for ISM's and
SDI's DDIM inversion). ``--full`` also times a complete default ``ssd3d generate`` (training
and every export) in a temporary folder. The stage times are wall-clock medians; the CPU
time per step (``time.process_time`` over the timed steps, every stage) is printed beside
them, since on a shared machine it is what the code costs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ssd3d.generation import generate
from ssd3d.pipeline.config import DEFAULT_PRIOR, resolve_config
from ssd3d.pipeline.run import prepare
from ssd3d.scene import describe_scene

PROMPT = "a red cube"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", default=DEFAULT_PRIOR)
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--steps", type=int, default=30, help="steps timed (after 3 warm-up)")
    parser.add_argument("--full", action="store_true", help="also time a whole default run")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg = resolve_config(args.prior, {"prompt": args.prompt}, args.overrides)
    print(
        f"prior {cfg.prior}, estimator '{cfg.estimator}', {cfg.views_per_step} views of "
        f"{cfg.camera.width}x{cfg.camera.height}, {describe_scene(cfg)}, device {cfg.device}, "
        f"torch threads {torch.get_num_threads()}"
    )
    start = time.perf_counter()
    run = prepare(cfg)
    print(f"prior load + prompt embedding: {time.perf_counter() - start:.1f} s")
    for _ in range(3):
        run.run_step()
    cpu_start = time.process_time()
    records = [run.run_step() for _ in range(args.steps)]
    cpu_ms = (time.process_time() - cpu_start) * 1e3 / args.steps
    stages = list(records[0].timings_ms)
    print(f"\nmedian over {args.steps} steps")
    total = 0.0
    for stage in stages:
        ms = statistics.median(r.timings_ms[stage] for r in records)
        total += ms
        print(f"  {stage:10s} {ms:8.1f} ms")
    print(
        f"  {'total':10s} {total:8.1f} ms  -> {total * cfg.steps / 1e3:.0f} s for {cfg.steps} steps"
    )
    calls = statistics.mean(r.prior_calls for r in records)
    print(f"  prior calls/step {calls:.2f} (mean; network evaluations of the batch)")
    print(f"  {'CPU':10s} {cpu_ms:8.1f} ms per step (mean, all stages)")
    if args.full:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            run_dir = generate(cfg, Path(tmp), progress=False)
            wall = time.perf_counter() - start
            print(
                f"\nfull default run ({cfg.steps} steps + exports): {wall:.0f} s wall "
                f"({(run_dir / 'summary.json').read_text().strip()[:80]}...)"
            )


if __name__ == "__main__":
    main()
