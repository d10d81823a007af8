"""``ssd3d app``: the pipeline in the browser (needs the ``app`` extra: Gradio)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("app")
    def run_app(
        out: Annotated[Path, typer.Option(help="parent folder of the app's run folders")] = Path(
            "outputs/app"
        ),
        port: Annotated[int, typer.Option(help="port on localhost")] = 7860,
        host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    ) -> None:
        """Start the text-to-3D app (Gradio) on localhost and print its address."""
        from ssd3d.webapp import build_app, launch, require_gradio

        require_gradio()  # before anything else: one line if it is missing
        launch(build_app(out), out, host=host, port=port)
