"""A tiny exact prior saved as a dataset file (Ray workers load priors themselves) and the
settings that make a job take well under a second."""

import json
import sys
from pathlib import Path

import pytest
import torch

from ssd3d.toyworld.dataset_format import ToyDataset

RES = 16
PROMPTS = ["a red disk", "a blue disk"]
# Every job: a few steps on an 8^3 grid at 16 px, small exports.
SMALL = [
    "steps=6",
    "checkpoint_every=2",
    f"camera.width={RES}",
    f"camera.height={RES}",
    "render.num_samples=16",
    "grid.resolution=8",
    "export.mesh_resolution=24",
    "export.turntable_frames=4",
    "export.video_resolution=16",
    "export.contact_views=2",
    "export.contact_resolution=16",
    "view_prompts.enabled=false",  # the disks have no view labels
]


def disks(colour, n=6):
    """n disks of ``colour`` on white, each a little larger than the last."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, RES), torch.linspace(-1, 1, RES), indexing="ij")
    radius = torch.linspace(0.4, 0.7, n).reshape(n, 1, 1, 1)
    inside = ((xx**2 + yy**2).sqrt() < radius).float()  # [n, 1, H, W]
    c = torch.tensor(colour).reshape(1, 3, 1, 1)
    return inside * c + (1 - inside)


@pytest.fixture(scope="session")
def dataset_file(tmp_path_factory) -> Path:
    images = torch.cat([disks((0.9, 0.1, 0.1)), disks((0.1, 0.1, 0.9))])
    ds = ToyDataset(
        images=(images * 255).round().to(torch.uint8),
        labels=torch.tensor([0] * 6 + [1] * 6),
        view_labels=torch.zeros(12, dtype=torch.long),
        azimuth_deg=torch.zeros(12),
        elevation_deg=torch.zeros(12),
        prompts=PROMPTS,
    )
    path = tmp_path_factory.mktemp("data") / "disks.safetensors"
    ds.save(path)
    return path


def write_jobs(path: Path, jobs: list) -> Path:
    """One line per job: a prompt as is, a dict as JSON."""
    path.write_text("".join((j if isinstance(j, str) else json.dumps(j)) + "\n" for j in jobs))
    return path


def results(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def failures(out: Path) -> list[dict]:
    path = out / "failures.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def cli(*args) -> tuple[int, str, str]:
    """``ssd3d ARGS`` through the real entry point: (exit code, stdout, stderr)."""
    import contextlib
    import io

    from ssd3d.cli import main

    out, err = io.StringIO(), io.StringIO()
    old = sys.argv
    sys.argv = ["ssd3d", *map(str, args)]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
        code = 0
    except SystemExit as e:
        code = e.code or 0
    finally:
        sys.argv = old
    return code, out.getvalue(), err.getvalue()
