"""Run one `ssd3d bench` grid as several processes side by side, then merge: the
ToyWorld tables of docs/results/ on a many-core machine or one GPU, without a cluster.

    python benchmarks/toyworld_bench.py --prior exact --seeds 3 --parts 4 --out results/bench/exact
    python benchmarks/toyworld_bench.py --prior toy --seeds 3 --parts 4 --out results/bench/toy device=cuda
    python benchmarks/toyworld_bench.py --prior toy --estimators preset --prompts all --steps 600 \\
        --parts 4 --out results/bench/vocabulary       # the default `ssd3d generate` over the vocabulary

The grid (estimators x prompts) is split along its prompts into ``--parts`` slices (along the
estimators when there are fewer prompts than parts and estimators), each run by `ssd3d
bench` in its own process into ``OUT/parts/<i>``; the parts are merged into
``OUT/results.json`` and `ssd3d bench` is run once more on OUT with the whole grid, which
finds every run done and writes the table and plot. Runs are independent and seeded, so
the result is the same as one `ssd3d bench` with the same options; a stopped run is
continued by running the same command again (each part continues its own folder).
For many machines, use `ssd3d bench --ray` instead.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from ssd3d.bench import (
    DEFAULT_ESTIMATORS,
    DEFAULT_PROMPTS,
    RESULTS_FILE,
    merge_results,
    parse_prompts,
    read_results,
)
from ssd3d.bench.results import write_results
from ssd3d.config import split_list


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prior", default="exact")
    p.add_argument("--model", default=None)
    p.add_argument("--estimators", default=";".join(DEFAULT_ESTIMATORS))
    p.add_argument("--prompts", default=";".join(DEFAULT_PROMPTS), help="';'-separated or 'all'")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--checkpoints", type=int, default=None, help="as ssd3d bench --checkpoints")
    p.add_argument("--parts", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("overrides", nargs="*", help="key=value for every run, e.g. device=cuda")
    return p.parse_args(argv)


def bench_command(args: argparse.Namespace, estimators: list[str], prompts: list[str], out: Path):
    cmd = [sys.executable, "-m", "ssd3d.cli", "bench", "--quiet", "--prior", args.prior]
    cmd += ["--estimators", ";".join(estimators), "--prompts", ";".join(prompts)]
    cmd += ["--seeds", str(args.seeds), "--out", str(out)]
    if args.steps is not None:
        cmd += ["--steps", str(args.steps)]
    if args.checkpoints is not None:
        cmd += ["--checkpoints", str(args.checkpoints)]
    if args.model is not None:
        cmd += ["--model", args.model]
    return cmd + list(args.overrides)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    estimators = split_list(args.estimators)
    prompts = list(parse_prompts(args.prompts))
    # Split the prompts when there are enough for the parts: every part adds the oracle's row
    # for its prompts, so estimator slices over the same prompts would each fit it again.
    split_prompts = len(prompts) >= args.parts or len(prompts) > len(estimators)
    items = prompts if split_prompts else estimators
    parts = min(args.parts, len(items))
    slices = [items[i::parts] for i in range(parts)]
    # Share the cores: each process gets its slice of them (torch would take them all),
    # unless the caller has set OMP_NUM_THREADS (several of these scripts side by side).
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // parts))
    env = {**os.environ, "OMP_NUM_THREADS": threads}
    (args.out / "parts").mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    procs = []
    for i, part in enumerate(slices):
        out = args.out / "parts" / str(i)
        cmd = bench_command(
            args, estimators if split_prompts else part, part if split_prompts else prompts, out
        )
        log = (args.out / "parts" / f"{i}.log").open("a")
        procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
    failed = [i for i, p in enumerate(procs) if p.wait() != 0]
    wall = time.perf_counter() - start
    print(f"{parts} parts in {wall / 60:.1f} min" + (f"; failed: {failed}" if failed else ""))
    if failed:
        print(f"see {args.out}/parts/<i>.log; rerun the same command to continue", file=sys.stderr)
        return 1
    merged = merge_results(
        [read_results(args.out / "parts" / str(i) / RESULTS_FILE) for i in range(parts)]
    )
    write_results(args.out / RESULTS_FILE, merged)
    # The whole grid over the merged folder: every run is done, so this writes the outputs.
    return subprocess.call(bench_command(args, estimators, prompts, args.out), env=env)


if __name__ == "__main__":
    raise SystemExit(main())
