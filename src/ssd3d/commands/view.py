"""``ssd3d view``: look at a run or a benchmark in the browser."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("view")
    def view(
        folder: Annotated[Path, typer.Argument(help="a run folder or a benchmark folder")],
        port: Annotated[int, typer.Option(help="port on localhost (0: any free port)")] = 8000,
        host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    ) -> None:
        """Serve a run's or a benchmark's report.html on localhost and print its address."""
        from ssd3d.report.serve import address, ensure_report, make_server

        ensure_report(folder)
        server = make_server(folder, host, port)
        typer.echo(f"serving {folder} at {address(server)} (Ctrl-C to stop)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
