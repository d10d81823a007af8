"""The ``ssd3d`` command. Each subcommand lives in ``ssd3d.commands.<name>`` and registers
itself with ``register(app)``; heavy imports stay inside the command functions so that
``ssd3d --help`` is instant.
"""

from __future__ import annotations

import importlib
import os
import sys

# Idle OpenMP workers spin on busy cores by default; on a shared 2-core machine that made
# runs 10x slower. Passive waiting costs nothing when the cores are free. Set before torch
# is imported (every command imports it lazily).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer  # noqa: E402

from ssd3d.errors import SSD3DError  # noqa: E402

COMMAND_MODULES = ("estimators", "generate", "toyworld", "simulate", "bench", "view", "app")

app = typer.Typer(
    name="ssd3d",
    help="Text-to-3D with Stable Score Distillation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Text-to-3D with Stable Score Distillation."""


for _module in COMMAND_MODULES:
    importlib.import_module(f"ssd3d.commands.{_module}").register(app)


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    try:
        app()
    except SSD3DError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
