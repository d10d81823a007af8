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
            noising = defaults.noising
            if noising.kind != "random":
                typer.echo(f"{'':18s} x_t by DDIM inversion: {_noising_text(noising)}")
            if cls.recommended_timesteps:
                typer.echo(f"{'':18s} its authors' timesteps: {cls.recommended_timesteps}")


def _noising_text(noising) -> str:
    which = {0.0: "the empty prompt", 1.0: "the prompt"}.get(
        noising.guidance_scale, f"guidance {noising.guidance_scale:g}"
    )
    text = f"steps of {noising.spacing} timesteps with {which}"
    if noising.interval:
        text += f", then one step from t - {noising.interval} to t"
    if noising.eta:
        text += f", eta {noising.eta:g}"
    return text
