"""``ssd3d estimators``: list the estimators and their parameters."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("estimators")
    def estimators() -> None:
        """List the score-distillation estimators and their default parameters."""
        from ssd3d.estimators import ESTIMATORS, describe

        for name, cls in ESTIMATORS.items():
            doc = (cls.__doc__ or "").strip().splitlines()[0]
            defaults = cls(**{})
            branches = ", ".join(sorted(defaults.branches()))
            typer.echo(f"{name:18s} {doc}")
            typer.echo(
                f"{'':18s} defaults: {describe(defaults)[len(name) + 1 :]}  (needs {branches})"
            )
