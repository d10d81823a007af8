"""The oracle row: supervised by the true renders, and the normalised score it anchors."""

from __future__ import annotations

import json
import math

import pytest
import torch

import ssd3d.bench.runner as runner
import ssd3d.pipeline.run as run_module
from ssd3d.bench import bench_config, run_bench
from ssd3d.bench.oracle import TrueRenders
from ssd3d.bench.tables import gap_closed
from ssd3d.errors import SSD3DError
from ssd3d.pipeline.config import resolve_config
from ssd3d.pipeline.loop import Distillation
from ssd3d.pipeline.run import prepare
from ssd3d.scene import (
    ShadingConfig,
    orbit_cameras,
    sample_shading,
)
from ssd3d.toyworld.truth import GroundTruthField

from .test_bench import TINY, TINY_EVAL, TrueObject


def test_the_supervision_is_the_true_render_so_a_perfect_scene_gets_no_push():
    cams = orbit_cameras(3, width=16, height=16)
    shading = sample_shading(ShadingConfig(), cams, torch.Generator().manual_seed(0), 0)
    truth = TrueRenders("a yellow wedge")(cams, shading)
    perfect = TrueObject(GroundTruthField("wedge", "yellow"))
    rendered = perfect.render(cams, shading).rgb.clamp(0, 1)
    assert torch.equal(rendered - truth, torch.zeros_like(truth))
    # and the truth of another prompt is not it
    assert (TrueRenders("a blue torus")(cams, shading) - truth).abs().max() > 0.5


def test_an_oracle_run_fits_the_truth_better_than_the_blob():
    cfg = resolve_config(
        "exact",
        {"prompt": "a yellow wedge", "steps": 30},
        [*TINY, "camera.width=16", "camera.height=16"],
    )
    run = prepare(cfg, supervision=TrueRenders(cfg.prompt))  # no prior: none is asked
    cams = orbit_cameras(4, width=16, height=16)
    target = TrueRenders(cfg.prompt)(cams, None)

    def error() -> float:
        with torch.no_grad():
            return float(((run.scene.render(cams).rgb - target) ** 2).mean())

    before = error()
    records = [run.run_step() for _ in range(cfg.steps)]
    assert error() < 0.5 * before
    assert all(r.t == [] for r in records)  # no diffusion timestep: no prior was asked


@pytest.mark.parametrize(
    "estimator, blob, oracle, share",
    [
        (0.5, 0.5, 0.9, 0.0),
        (0.9, 0.5, 0.9, 1.0),
        (0.7, 0.5, 0.9, 0.5),
        (0.3, 0.5, 0.9, -0.5),
        # lower is better (Chamfer): closing half the gap is still 0.5
        (0.04, 0.06, 0.02, 0.5),
    ],
)
def test_the_gap_closed_is_zero_at_the_blob_and_one_at_the_oracle(estimator, blob, oracle, share):
    assert gap_closed(estimator, blob, oracle) == pytest.approx(share)


def test_no_gap_no_share():
    assert math.isnan(gap_closed(0.5, 0.5, 0.5)) and math.isnan(gap_closed(math.inf, 0, 1))


def test_an_oracle_only_bench_never_loads_the_prior(tmp_path, monkeypatch):
    """Fitted to the true renders, the oracle asks nothing of a prior: a lever study at a new
    render size must not wait for the exact prior to render its dataset at that size."""

    def refuse(cfg):
        raise AssertionError("the oracle-only bench loaded a prior")

    monkeypatch.setattr(runner, "load_prior_for", refuse)
    monkeypatch.setattr(run_module, "load_prior_for", refuse)
    cfg = bench_config(
        estimators="oracle",
        prompts=("a yellow wedge",),
        steps=20,
        checkpoints=1,
        overrides=TINY,
        eval_config=TINY_EVAL,
    )
    run_bench(cfg, tmp_path, judge=None, progress=False, echo=lambda s: None)
    (run,) = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert run["status"] == "ok" and run["prior_calls_per_step"] == 0
    start, end = run["checkpoints"]
    assert end["psnr"] > start["psnr"] + 0.5  # it fitted the truth


def test_a_run_with_neither_prior_nor_targets_is_refused():
    cfg = resolve_config("exact", {"prompt": "a yellow wedge"}, list(TINY))
    with pytest.raises(SSD3DError, match="needs a prior"):
        Distillation(cfg, None)
