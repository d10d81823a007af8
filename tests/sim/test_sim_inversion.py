"""ISM and SDI in the simulations: their own noising step beside the stacked estimators."""

from __future__ import annotations

import torch

from ssd3d.sim.run import SimulationConfig, parse_estimators, run_scenario
from ssd3d.sim.scenario import load_scenario

SMALL = SimulationConfig(steps=40, particles=32, seed=0, variance_points=4, variance_draws=8)


def test_inversion_estimators_leave_the_others_bits_and_report_their_cost() -> None:
    scenario = load_scenario("overlapping")
    mixed = run_scenario(scenario, parse_estimators("SDS s=7.5;ism;sdi;CSD"), SMALL)
    alone = run_scenario(scenario, parse_estimators("SDS s=7.5;CSD"), SMALL)
    runs = {r.label: r for r in mixed.runs}
    for r in alone.runs:  # same t and noise at every step: the same particles, bit for bit
        assert torch.equal(runs[r.label].final, r.final), r.label
        assert [v.variance for v in runs[r.label].variance] == [v.variance for v in r.variance]
    assert runs["SDS s=7.5"].prior_calls == 2 and runs["CSD"].prior_calls == 2
    # Uniform t on [20, 980]: ISM about 3.7 unconditional steps + 2, SDI about 5.5 guided + 2.
    assert 4.5 < runs["ism"].prior_calls < 7
    assert 9 < runs["sdi"].prior_calls < 17
    for label in ("ism", "sdi"):
        assert torch.isfinite(runs[label].final).all()
        assert not torch.equal(runs[label].final, mixed.initial)
    # ISM's x_t is a deterministic function of x0 and t: no variance over noise draws.
    assert all(v.variance == 0 for v in runs["ism"].variance)
    assert any(v.variance > 0 for v in runs["sdi"].variance)  # SDI's eta noise
