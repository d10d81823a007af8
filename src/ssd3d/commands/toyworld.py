"""``ssd3d toyworld …``: ToyWorld's vocabulary, dataset, prior and judge."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

toyworld_app = typer.Typer(
    name="toyworld", help="ToyWorld: the closed world with ground truth.", no_args_is_help=True
)


@toyworld_app.command("vocabulary")
def vocabulary() -> None:
    """List the prompts ToyWorld knows."""
    from ssd3d.toyworld import all_prompts

    for prompt in all_prompts():
        typer.echo(prompt)


@toyworld_app.command("render-dataset")
def render_dataset(
    out: Annotated[
        Path | None,
        typer.Option(help="write here (default: the cache the exact prior reads)"),
    ] = None,
    views: Annotated[int, typer.Option(help="views per prompt")] = 200,
    resolution: Annotated[int, typer.Option(help="render size in pixels")] = 32,
    seed: Annotated[int, typer.Option()] = 0,
    shading: Annotated[
        str,
        typer.Option(
            help="'pipeline': the pipeline's shading mix (for priors); 'coloured': albedo and "
            "lambertian only, no textureless views (for the judge, which must see colour)"
        ),
    ] = "pipeline",
) -> None:
    """Render every prompt with the pipeline's cameras, shading and background."""
    from ssd3d.errors import SSD3DError
    from ssd3d.toyworld.render_dataset import (
        SHADING_MIXES,
        DatasetConfig,
        cached_dataset,
        cached_path,
    )
    from ssd3d.toyworld.render_dataset import render_dataset as render

    if views < 1 or resolution < 4:
        raise SSD3DError("--views must be >= 1 and --resolution >= 4")
    if shading not in SHADING_MIXES:
        raise SSD3DError(f"--shading must be one of {', '.join(SHADING_MIXES)}; got {shading!r}")
    cfg = DatasetConfig(
        views_per_prompt=views, resolution=resolution, seed=seed, shading=SHADING_MIXES[shading]
    )
    if out is None:
        cached_dataset(cfg)
        out = cached_path(cfg)
    else:
        if out.suffix != ".safetensors":
            raise SSD3DError(f"--out must name a .safetensors file; got {out}")
        render(cfg).save(out)
    typer.echo(f"wrote {out}")


def register(app: typer.Typer) -> None:
    try:
        from ssd3d.commands.toyworld_train import add_commands
    except ImportError:  # pragma: no cover - the training commands are optional here
        add_commands = None
    if add_commands is not None:
        add_commands(toyworld_app)
    app.add_typer(toyworld_app)
