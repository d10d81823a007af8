"""``ssd3d bench``: the ToyWorld estimator benchmark against ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ssd3d.commands.batch import RAY_HELP


def register(app: typer.Typer) -> None:
    @app.command("bench")
    def bench(
        overrides: Annotated[
            list[str] | None,
            typer.Argument(help="key=value overrides for every run, e.g. grid.resolution=16"),
        ] = None,
        estimators: Annotated[
            str | None,
            typer.Option(
                help="';'-separated estimator specs, each optionally 'label:spec', e.g. "
                "'sds guidance_scale=7.5;SSD-600:ssd tau=600'; 'preset' is the estimator "
                "ssd3d generate runs with this prior (default: SDS, CSD, NFSD, SSD and its "
                "ablations)"
            ),
        ] = None,
        prompts: Annotated[
            str | None,
            typer.Option(help="';'-separated ToyWorld prompts, or 'all' (default: 4 prompts)"),
        ] = None,
        seeds: Annotated[int | None, typer.Option(help="seeds per prompt (0..N-1)")] = None,
        steps: Annotated[int | None, typer.Option(help="steps per run")] = None,
        checkpoints: Annotated[
            int | None, typer.Option(help="scored checkpoints per run after step 0")
        ] = None,
        quick: Annotated[
            bool,
            typer.Option(
                help="a small benchmark (3 estimators, 1 prompt, 200 steps on Gaussians then mesh)"
            ),
        ] = False,
        prior: Annotated[str, typer.Option(help="exact (ToyWorld's exact score) or toy")] = "exact",
        model: Annotated[
            str | None, typer.Option(help="prior weights (toy) or dataset file (exact)")
        ] = None,
        judge: Annotated[
            Path | None, typer.Option(help="judge weights (default: the shipped judge)")
        ] = None,
        out: Annotated[
            Path | None,
            typer.Option(
                help="results folder; an existing one is continued (default: outputs/bench/<time>)"
            ),
        ] = None,
        ray: Annotated[str | None, typer.Option(help=RAY_HELP, metavar="[ADDRESS]")] = None,
        threads: Annotated[
            int | None,
            typer.Option(help="torch threads per run (default: torch's here, 1 on Ray)"),
        ] = None,
        quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
        truth: Annotated[
            str,
            typer.Option(
                help="how the true object is drawn: surface (exact) or volume (the soft step "
                "docs/results' tables were scored against)"
            ),
        ] = "surface",
    ) -> None:
        """Score estimators x prompts x seeds against ToyWorld's ground truth."""
        from ssd3d.bench import EvalConfig, bench_config, load_judge, run_bench
        from ssd3d.bench.tables import PLOT_FILE, TABLE_FILE
        from ssd3d.errors import SSD3DError
        from ssd3d.report.page import REPORT_FILE

        if prior == "stable-diffusion":
            raise SSD3DError("--prior must be exact or toy: ToyWorld's ground truth needs them")
        cfg = bench_config(
            estimators=estimators,
            prompts=prompts,
            seeds=seeds,
            steps=steps,
            checkpoints=checkpoints,
            quick=quick,
            prior=prior,
            model=model,
            overrides=list(overrides or []),
            eval_config=EvalConfig(truth_renderer=truth),
        )
        loaded = "auto"
        if judge is not None:
            loaded, why = load_judge(str(judge))
            if loaded is None:
                raise SSD3DError(why)
            if ray is not None:  # each Ray worker loads the file itself
                loaded = str(judge)
        outcome = run_bench(
            cfg,
            out,
            judge=loaded,
            progress=not quiet,
            echo=typer.echo,
            ray=ray,
            threads=threads,
        )
        typer.echo("")
        typer.echo((outcome.out_dir / TABLE_FILE).read_text())
        typer.echo(
            f"{len(outcome.ran)} runs done, {len(outcome.skipped)} skipped, "
            f"{outcome.wall_s / 60:.1f} min; wrote {outcome.out_dir / 'results.json'}, "
            f"{outcome.out_dir / TABLE_FILE}, {outcome.out_dir / PLOT_FILE}, "
            f"{outcome.out_dir / REPORT_FILE} (ssd3d view {outcome.out_dir})"
        )
        if outcome.failed:
            for label, prompt, seed, error in outcome.failed:
                typer.echo(f"not run: {label} | {prompt} | seed {seed}: {error}", err=True)
            raise typer.Exit(1)
