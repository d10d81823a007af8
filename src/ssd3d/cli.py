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
from typer.core import TyperGroup  # noqa: E402

from ssd3d.batch.runner import LOCAL, is_ray_address  # noqa: E402
from ssd3d.errors import SSD3DError  # noqa: E402

COMMAND_MODULES = (
    "estimators",
    "generate",
    "toyworld",
    "simulate",
    "bench",
    "batch",
    "view",
    "app",
)

# Options whose value may be left out: (the value then, what a given value looks like).
# ``--ray`` alone starts a local Ray instance; ``--ray auto`` / ``--ray host:port`` join a
# cluster. A following word that is no address (the job file, a key=value) is not taken.
OPTIONAL_VALUES = {"--ray": (LOCAL, is_ray_address)}


def fill_optional_values(args: list[str]) -> list[str]:
    """``[..., "--ray", "jobs.txt"]`` -> ``[..., "--ray", "local", "jobs.txt"]``."""
    out: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--":  # the rest is positional
            return out + args[i:]
        out.append(arg)
        if arg in OPTIONAL_VALUES:
            implicit, is_value = OPTIONAL_VALUES[arg]
            if i + 1 == len(args) or not is_value(args[i + 1]):
                out.append(implicit)
    return out


class _Group(TyperGroup):
    """Typer parses options with a required value only: fill the implicit ones in first."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        return super().parse_args(ctx, fill_optional_values(list(args)))


app = typer.Typer(
    cls=_Group,
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
    """Entry point: user errors become one line on stderr and exit code 2; errors of the
    machine (disk, permissions) one line and exit code 1."""
    try:
        app()
    except SSD3DError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except OSError as e:  # the machine, not the input: a full disk, a folder gone, no permission
        where = f" ({e.filename})" if e.filename else ""
        print(f"error: {e.strerror or e}{where}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
