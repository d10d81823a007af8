"""``ssd3d batch``: a file of prompts, run here one after another or on a Ray cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

# ``--ray`` alone means "local"; ssd3d.cli fills that value in before parsing.
RAY_HELP = (
    "run on Ray: alone, a local Ray instance; 'auto' or host:port, an existing cluster "
    "(needs ssd3d[ray])"
)


def register(app: typer.Typer) -> None:
    @app.command("batch")
    def batch(
        job_file: Annotated[
            Path,
            typer.Argument(
                help="one prompt a line, or JSON lines with prompt, estimator, seed, steps, "
                "prior, model, overrides"
            ),
        ],
        overrides: Annotated[
            list[str] | None,
            typer.Argument(help="key=value config overrides for every job"),
        ] = None,
        ray: Annotated[str | None, typer.Option(help=RAY_HELP, metavar="[ADDRESS]")] = None,
        out: Annotated[
            Path | None,
            typer.Option(help="batch folder; run again to continue (default: outputs/<file>)"),
        ] = None,
        prior: Annotated[
            str | None,
            typer.Option(
                help="prior of the jobs that name none: toy (default), exact, stable-diffusion"
            ),
        ] = None,
        model: Annotated[str | None, typer.Option(help="weights of the jobs' prior")] = None,
        threads: Annotated[
            int, typer.Option(help="torch threads per job (and CPUs Ray reserves for it)")
        ] = 1,
        retries: Annotated[
            int, typer.Option(help="Ray: times a job whose worker died is run again")
        ] = 3,
        quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
    ) -> None:
        """Run a file of jobs; a rerun skips complete jobs and resumes interrupted ones."""
        from ssd3d.batch.jobs import FAILURES_FILE, plural, run_batch
        from ssd3d.pipeline.config import DEFAULT_PRIOR

        outcome = run_batch(
            job_file,
            out,
            ray=ray,
            prior=prior or DEFAULT_PRIOR,
            model=model,
            overrides=list(overrides or []),
            threads=threads,
            retries=retries,
            progress=not quiet,
            echo=typer.echo,
        )
        for line, first in outcome.duplicates:
            typer.echo(f"line {line} is the same job as line {first}: run once")
        for job, error in outcome.failed:
            typer.echo(f"failed: {job.label}: {error}", err=True)
        typer.echo(
            f"{plural(len(outcome.done), 'job')} completed, {len(outcome.skipped)} already complete, "
            f"{len(outcome.failed)} failed, {outcome.wall_s / 60:.1f} min; "
            f"runs in {outcome.out_dir}"
        )
        if outcome.failed:
            typer.echo(f"errors in {outcome.out_dir / FAILURES_FILE}", err=True)
            raise typer.Exit(1)
