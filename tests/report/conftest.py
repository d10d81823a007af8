"""A tiny ToyWorld (2 prompts, 24 views at 16 px), one finished run and one small benchmark
in it: what the report, view, browser and app tests look at. Built once per session."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch

from ssd3d.bench import EvalConfig, bench_config
from ssd3d.pipeline.config import resolve_config
from ssd3d.priors.exact import ExactPrior
from ssd3d.toyworld.render_dataset import DatasetConfig, render_dataset

RES = 16
PROMPTS = ["a red cube", "a yellow wedge"]
# The pipeline at toy size (grid, rays, exports), as config overrides for every run here.
TINY = (
    "grid.resolution=10",
    f"camera.width={RES}",
    f"camera.height={RES}",
    "render.num_samples=16",
    "view_prompts.enabled=false",
    "export.mesh_resolution=32",
    "export.turntable_frames=8",
    "export.video_resolution=32",
    "export.contact_views=4",
    "export.contact_resolution=32",
)


@contextmanager
def one_thread():
    """As the one_torch_thread fixture, for the session fixtures below."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def toy_dataset_file(tmp_path_factory):
    """The tiny ToyWorld as a dataset file: the exact prior's ``model``."""
    with one_thread():
        data = render_dataset(DatasetConfig(views_per_prompt=24, resolution=RES), PROMPTS, False)
    return data.save(tmp_path_factory.mktemp("toyworld") / "tiny.safetensors")


@pytest.fixture(scope="session")
def toy_prior(toy_dataset_file):
    from ssd3d.toyworld.dataset_format import ToyDataset

    data = ToyDataset.load(toy_dataset_file)
    views = [data.view_names[int(v)] for v in data.view_labels]
    return ExactPrior(data.images.float() / 255, data.labels, data.prompts, views=views)


@pytest.fixture(scope="session")
def run_folder(tmp_path_factory, toy_prior):
    """A finished 30-step run of "a red cube": every export and its report.html."""
    from ssd3d.generation import generate

    fields = {"prompt": PROMPTS[0], "estimator": "ssd tau=600", "steps": 30}
    cfg = resolve_config("exact", fields, [*TINY, "checkpoint_every=10"])
    with one_thread():
        return generate(cfg, tmp_path_factory.mktemp("runs"), prior=toy_prior, progress=False)


@pytest.fixture(scope="session")
def bench_folder(tmp_path_factory, toy_prior):
    """The quick benchmark's estimators on both prompts, 4 steps each, scored coarsely."""
    from ssd3d.bench import run_bench

    cfg = bench_config(
        quick=True,
        prompts=";".join(PROMPTS),
        steps=4,
        # The quick scene (Gaussians, then their mesh) at toy size.
        overrides=(*TINY, "gaussians.initial_count=64", "mesh.resolution=12", "mesh.steps=2"),
        eval_config=EvalConfig(
            iou_resolution=24, n_yaw=8, mesh_resolution=24, n_surface=256, views=4
        ),
    )
    out = tmp_path_factory.mktemp("bench") / "quick"
    with one_thread():
        run_bench(cfg, out, prior=toy_prior, judge=None, progress=False, echo=lambda s: None)
    return out
