"""``ssd3d view``: look at a run or a benchmark in the browser."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

FolderKind = Literal["run", "bench"]


def folder_kind(folder: Path) -> FolderKind:
    """The kind of folder: "bench" (has results.json) or "run" (has config.yaml); else an error."""
    from ssd3d.bench.results import RESULTS_FILE
    from ssd3d.errors import SSD3DError
    from ssd3d.pipeline.run_dir import CONFIG_FILE, RunDir

    folder = Path(folder)
    if not folder.is_dir():
        raise SSD3DError(f"{folder} is not a folder")
    if (folder / RESULTS_FILE).is_file():
        return "bench"
    if RunDir(folder).is_run():
        return "run"
    raise SSD3DError(
        f"{folder} is neither a run folder (no {CONFIG_FILE}) nor a benchmark folder "
        f"(no {RESULTS_FILE})"
    )


def ensure_report(folder: Path) -> Path:
    """The folder's report.html, written first if missing (a run still going, an old folder)."""
    from ssd3d.pipeline.run_dir import REPORT_FILE

    folder = Path(folder)
    kind = folder_kind(folder)
    page = folder / REPORT_FILE
    if page.is_file():
        return page
    if kind == "run":
        from ssd3d.report.run_page import write_run_report

        return write_run_report(folder)
    from ssd3d.bench.tables import write_report

    write_report(folder)
    return page


def register(app: typer.Typer) -> None:
    @app.command("view")
    def view(
        folder: Annotated[Path, typer.Argument(help="a run folder or a benchmark folder")],
        port: Annotated[int, typer.Option(help="port on localhost (0: any free port)")] = 8000,
        host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    ) -> None:
        """Serve a run's or a benchmark's report.html on localhost and print its address."""
        from ssd3d.report.serve import address, make_server

        ensure_report(folder)
        server = make_server(folder, host, port)
        typer.echo(f"serving {folder} at {address(server)} (Ctrl-C to stop)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
