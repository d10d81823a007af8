"""``ssd3d simulate``: the estimators on analytic Gaussian-mixture priors (the paper's 2D
analysis, and a 64-dimensional one), with figures, metrics.json and a table."""

from __future__ import annotations

from pathlib import Path

import typer

# Where results go unless --out says otherwise (outputs/ is git-ignored).
DEFAULT_OUT = Path("outputs/simulate")


def register(app: typer.Typer) -> None:
    @app.command("simulate")
    def simulate(
        scenario: str = typer.Option(
            None,
            "--scenario",
            help="Built-in scenario (separated, overlapping, highdim) or a scenario YAML file; "
            "several separated by ';'. Default: all built-ins.",
        ),
        estimators: str = typer.Option(
            None,
            "--estimators",
            help="';'-separated estimators: default labels ('SSD c=1') or specs for "
            "build_estimator ('ssd tau=0'). Default: the 15 of the comparison.",
        ),
        steps: int = typer.Option(None, "--steps", help="Optimisation steps (default 400)."),
        particles: int = typer.Option(
            None, "--particles", help="Particles per estimator (default 256)."
        ),
        seed: int = typer.Option(0, "--seed", help="Seed of starts, timesteps and noise."),
        copies: int = typer.Option(
            0,
            "--copies",
            help="Also run N randomly rotated, scaled and shifted copies of each scenario "
            "(seeds 1..N; isotropic components only).",
        ),
        out: Path = typer.Option(DEFAULT_OUT, "--out", help="Directory for figures and metrics."),
        threads: int = typer.Option(
            None,
            "--threads",
            help="torch intra-op threads for this run (default: torch's setting). On a busy "
            "machine 1 can be several times faster: the tensors are small.",
        ),
    ) -> None:
        """Distil particles from analytic Gaussian mixtures with each estimator and compare."""
        import os

        # Before torch loads OpenMP: idle worker threads sleep instead of spinning. The
        # simulation runs thousands of small ops; on a busy 2-core machine spinning workers
        # made the default run 10x slower (557 s against 55 s, measured). The thread count
        # is left as it is; an explicit OMP_WAIT_POLICY in the environment wins.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

        from ssd3d.errors import SSD3DError

        try:
            if threads is not None and threads < 1:
                raise SSD3DError(f"--threads must be >= 1; got {threads}")
            if copies < 0:
                raise SSD3DError(f"--copies must be >= 0; got {copies}")
            _simulate(scenario, estimators, steps, particles, seed, out, threads, copies)
        except SSD3DError as e:
            # Also when called through typer's test runner, not only through cli.main.
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None


def _simulate(
    scenario: str | None,
    estimators: str | None,
    steps: int | None,
    particles: int | None,
    seed: int,
    out: Path,
    threads: int | None,
    copies: int = 0,
) -> None:
    import dataclasses
    import json
    import time

    import torch
    from rich.console import Console

    from ssd3d.sim.plots import scenario_figure, variance_figure
    from ssd3d.sim.report import markdown_report, print_tables, results_to_dict
    from ssd3d.sim.run import SimulationConfig, parse_estimators
    from ssd3d.sim.scenario import BUILTIN_SCENARIOS, load_scenario, transformed_scenario

    start = time.perf_counter()
    from ssd3d.config import split_list

    names = BUILTIN_SCENARIOS if scenario is None else split_list(scenario)
    scenarios = [load_scenario(n) for n in names if n]
    scenarios += [transformed_scenario(s, k) for s in list(scenarios) for k in range(1, copies + 1)]
    chosen = parse_estimators(estimators)
    overrides = {"seed": seed}
    if steps is not None:
        overrides["steps"] = steps
    if particles is not None:
        overrides["particles"] = particles
    config = dataclasses.replace(SimulationConfig(), **overrides)

    console = Console()
    saved_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)  # only when asked; restored below
    try:
        results = _run_all(scenarios, chosen, config, console)
    finally:
        if threads is not None:
            torch.set_num_threads(saved_threads)
    simulated = time.perf_counter() - start

    out.mkdir(parents=True, exist_ok=True)
    figures = [scenario_figure(r, out / f"{r.scenario.name}.png") for r in results]
    figures.append(variance_figure(results, out / "variance.png"))
    elapsed = time.perf_counter() - start
    metrics = results_to_dict(results, config, elapsed)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "results.md").write_text(markdown_report(metrics))

    print_tables(metrics, console)
    for path in figures:
        console.print(f"figure  {path}")
    console.print(f"metrics {out / 'metrics.json'}  (markdown: {out / 'results.md'})")
    console.print(
        f"done in {elapsed:.1f} s (simulation {simulated:.1f} s, figures "
        f"{elapsed - simulated:.1f} s)"
    )


def _run_all(scenarios: list, estimators: dict, config, console) -> list:
    """Every scenario, with a progress bar over all their steps."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from ssd3d.sim.run import run_scenario

    results = []
    with Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("", total=len(scenarios) * config.steps)
        for s in scenarios:
            progress.update(task, description=f"{s.name} ({len(estimators)} estimators)")
            results.append(run_scenario(s, estimators, config, lambda: progress.advance(task)))
    return results
