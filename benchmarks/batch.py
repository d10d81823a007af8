"""Jobs per minute of ``ssd3d batch`` without Ray and on a local Ray instance, the wall time
of one job, and what Ray adds per job.

    python benchmarks/batch.py [--jobs 8] [--steps 40] [--cpus 2] [key=value ...]

Both runs do the same small jobs (ToyWorld's exact prior over a 16-pixel dataset rendered
into a temporary folder, an 8^3 grid, small exports) with one torch thread each, so they
give the same bits. Without Ray the jobs run one after another in this process; with Ray
``--cpus`` of them run at once. A job's wall time is measured inside the job (prior load,
training, export, the rename). Ray's overhead per job is the slot time not spent inside a
job, (batch wall x slots - sum of job walls) / jobs, less the same figure without Ray: it
holds scheduling, starting and warming worker processes (imports, the prior loaded once
per worker) and moving results back. Starting the Ray instance is timed apart.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

from ssd3d.batch.jobs import read_results, run_batch
from ssd3d.toyworld.render_dataset import DatasetConfig, render_dataset

PROMPTS = ["a red cube", "a blue sphere", "a green torus", "a yellow wedge"]
SMALL = [
    "camera.width=16",
    "camera.height=16",
    "render.num_samples=16",
    "grid.resolution=8",
    "view_prompts.enabled=false",
    "export.mesh_resolution=32",
    "export.turntable_frames=8",
    "export.video_resolution=32",
    "export.contact_views=4",
    "export.contact_resolution=32",
]


def measure(label: str, job_file: Path, out: Path, n: int, slots: int, **kw) -> dict:
    start = time.perf_counter()
    outcome = run_batch(job_file, out, progress=False, echo=lambda s: None, **kw)
    wall = time.perf_counter() - start
    if outcome.failed or len(outcome.done) != n:
        raise SystemExit(f"{label}: {len(outcome.done)}/{n} jobs done; {outcome.failed[:1]}")
    walls = [r["wall_seconds"] for r in read_results(out / "results.jsonl").values()]
    return {
        "label": label,
        "wall": wall,
        "per_min": 60 * n / wall,
        "job_mean": statistics.mean(walls),
        "job_median": statistics.median(walls),
        "job_max": max(walls),
        "idle_per_job": (wall * slots - sum(walls)) / n,
        "digests": {
            r["id"]: r["scene_sha256"] for r in read_results(out / "results.jsonl").values()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray instance")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    import ray

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = render_dataset(DatasetConfig(views_per_prompt=24, resolution=16), PROMPTS, False)
        data.save(tmp / "data.safetensors")
        lines = [
            f'{{"prompt": "{PROMPTS[i % len(PROMPTS)]}", "seed": {i // len(PROMPTS)}}}'
            for i in range(args.jobs)
        ]
        (tmp / "jobs.jsonl").write_text("\n".join(lines) + "\n")
        kw = {
            "prior": "exact",
            "model": str(tmp / "data.safetensors"),
            "overrides": [*SMALL, f"steps={args.steps}", f"checkpoint_every={args.steps}"]
            + args.overrides,
            "threads": 1,
        }
        load_start = os.getloadavg()[0]
        seq = measure("without Ray", tmp / "jobs.jsonl", tmp / "seq", args.jobs, 1, **kw)

        start = time.perf_counter()
        ray.init(
            num_cpus=args.cpus,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
        ray_start = time.perf_counter() - start
        try:
            slots = min(args.cpus, args.jobs)
            # Cold: the instance's workers start (and import torch) during the batch. Warm:
            # the same batch again into another folder, on the workers the first one left.
            on_ray = [
                measure(
                    f"local Ray, {args.cpus} CPUs, {when}",
                    tmp / "jobs.jsonl",
                    tmp / f"ray-{when}",
                    args.jobs,
                    slots,
                    ray="local",
                    **kw,
                )
                for when in ("cold", "warm")
            ]
        finally:
            ray.shutdown()

    same = all(seq["digests"] == r["digests"] for r in on_ray)
    # Markdown, so that docs/results/batch.md's section is this output (update_results.sh batch).
    print(
        f"\n{args.jobs} jobs of {args.steps} steps, one torch thread each, on "
        f"{os.cpu_count()} CPUs (load average {load_start:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end):\n"
    )
    print("| | jobs/min | batch s | job wall s (mean / median / max) | Ray adds per job s |")
    print("|---|:-:|:-:|:-:|:-:|")
    for r in (seq, *on_ray):
        job = f"{r['job_mean']:.2f} / {r['job_median']:.2f} / {r['job_max']:.2f}"
        extra = "–" if r is seq else f"{r['idle_per_job'] - seq['idle_per_job']:.2f}"
        print(f"| {r['label']} | {r['per_min']:.1f} | {r['wall']:.1f} | {job} | {extra} |")
    print(
        f"\nStarting the Ray instance took {ray_start:.1f} s (once per batch, not in the "
        f"figures above). Same results bit for bit: {'yes' if same else 'NO'}."
    )


if __name__ == "__main__":
    main()
