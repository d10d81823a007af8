"""VSD in the simulations: the particles' own fitted score keeps their spread."""

from __future__ import annotations

import torch

from ssd3d.sim.run import SimulationConfig, parse_estimators, run_scenario
from ssd3d.sim.scenario import load_scenario

CONFIG = SimulationConfig(steps=200, particles=64, seed=0, variance_points=4, variance_draws=8)


def test_vsd_keeps_the_spread_that_sds_and_mode_seeking_lose() -> None:
    # VSD's eps_particle is the exact score of a Gaussian fitted to each estimator's own
    # particles: the gradient pulls toward the data but pushes away from where the particles
    # already crowd, so they end spread like the data, where SDS at 7.5 (mode-seeking plus
    # guidance) and the mode-seeking term alone contract toward the class mean.
    result = run_scenario(
        load_scenario("separated"), parse_estimators("vsd;SDS s=7.5;mode-seeking"), CONFIG
    )
    runs = {r.label: r for r in result.runs}
    for r in runs.values():
        assert torch.isfinite(r.final).all()
    spread = {label: r.metrics.spread_ratio for label, r in runs.items()}
    assert spread["vsd"] > 0.85, spread
    assert spread["vsd"] > spread["SDS s=7.5"] + 0.15 and spread["vsd"] > spread["mode-seeking"]
    # one batched prior call (cond + uncond) a step; the fitted score is closed form
    assert runs["vsd"].prior_calls == 2
