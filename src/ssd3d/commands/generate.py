"""``ssd3d generate`` and ``ssd3d export``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("generate")
    def generate(
        prompt: Annotated[str | None, typer.Argument(help="e.g. 'a red cube'")] = None,
        overrides: Annotated[
            list[str] | None,
            typer.Argument(help="key=value config overrides, e.g. grid.resolution=32"),
        ] = None,
        prior: Annotated[
            str | None,
            typer.Option(
                help="toy (shipped, the default), exact (ToyWorld's exact score), stable-diffusion"
            ),
        ] = None,
        model: Annotated[str | None, typer.Option(help="weights: folder, file or hub id")] = None,
        estimator: Annotated[
            str | None,
            typer.Option(help="estimator spec, e.g. 'ssd tau=300' (see ssd3d estimators)"),
        ] = None,
        steps: Annotated[int | None, typer.Option(help="optimisation steps")] = None,
        seed: Annotated[int | None, typer.Option()] = None,
        out: Annotated[Path, typer.Option(help="parent folder of the run folder")] = Path(
            "outputs"
        ),
        resume: Annotated[
            Path | None,
            typer.Option(help="continue this run folder from its last checkpoint"),
        ] = None,
        device: Annotated[str | None, typer.Option(help="cpu or cuda")] = None,
        quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
    ) -> None:
        """Generate a 3D asset from a prompt: mesh, turntable video and contact sheet."""
        from ssd3d.errors import SSD3DError
        from ssd3d.generation import generate as run_generate
        from ssd3d.generation import resume as run_resume
        from ssd3d.pipeline.config import DEFAULT_PRIOR, resolve_config

        if resume is not None:
            if prompt is not None or overrides:
                raise SSD3DError("--resume continues a run with its saved config: give no prompt")
            run_dir = run_resume(resume, steps=steps, progress=not quiet)
        else:
            if prompt is None:
                raise SSD3DError('give a prompt, e.g. ssd3d generate "a red cube"')
            given = {"prompt": prompt, "model": model, "estimator": estimator, "steps": steps}
            given |= {"seed": seed, "device": device}
            fields = {k: v for k, v in given.items() if v is not None}
            cfg = resolve_config(prior or DEFAULT_PRIOR, fields, list(overrides or []))
            run_dir = run_generate(cfg, out, progress=not quiet)
        typer.echo(f"wrote {run_dir}")

    @app.command("export")
    def export(run_dir: Annotated[Path, typer.Argument(help="a run folder")]) -> None:
        """Re-export a run's turntable video, contact sheet and mesh from its checkpoint."""
        from ssd3d.generation import export as export_run

        for name, path in export_run(run_dir).items():
            typer.echo(f"{name:14s} {path}")
