"""Seconds per training step of the toy prior at its default config, and what a default
`ssd3d toyworld train-prior` run then costs on this machine:

    python benchmarks/prior_step.py [--steps 20] [--device cpu] [--threads 0]

Times `train_prior` itself (batch, noise, forward, backward, AdamW, EMA) on a synthetic
dataset at 32x32; the step time does not depend on the images, only on their size.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import torch

from ssd3d.models.train_prior import TrainPriorConfig, train_prior
from ssd3d.toyworld.dataset_format import synthetic_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="steps timed (after 3 warm-up)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: as set")
    args = parser.parse_args()
    default = TrainPriorConfig()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.safetensors"
        synthetic_dataset(n_per_prompt=64, resolution=32).save(data)

        def seconds(steps: int, out: str) -> float:
            cfg = dataclasses.replace(
                default, steps=steps, checkpoint_every=10**9, threads=args.threads
            )
            result = train_prior(data, Path(tmp) / out, cfg, progress=False, device=args.device)
            return result.wall_time_s

        warm = seconds(3, "warm")
        per_step = (seconds(3 + args.steps, "timed") - warm) / args.steps
    hours = per_step * default.steps / 3600
    print(
        f"toy prior training on {args.device} ({torch.get_num_threads()} torch threads): "
        f"{per_step:.2f} s/step at batch {default.batch_size}; the default {default.steps} "
        f"steps take {hours:.1f} h"
    )


if __name__ == "__main__":
    main()
