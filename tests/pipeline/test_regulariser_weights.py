"""Regulariser weights as threestudio writes them: a number, or a ramp over the steps."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ssd3d.config import apply_overrides
from ssd3d.errors import SSD3DError
from ssd3d.pipeline.config import RegulariserConfig, weight_at
from ssd3d.pipeline.run import prepare


def test_a_ramp_holds_its_ends_and_is_linear_between():
    ramp = (100, 300.0, 0.0, 300)
    assert [weight_at(ramp, s) for s in (0, 100, 150, 200, 300, 10_000)] == [
        300.0, 300.0, 225.0, 150.0, 0.0, 0.0
    ]  # fmt: skip
    assert weight_at(7.0, 123) == 7.0


def test_ramps_parse_from_overrides_and_bad_ones_are_refused():
    cfg = apply_overrides(RegulariserConfig(), ["opacity_sparsity=[0, 100, 0, 300]"])
    assert cfg.opacity_sparsity == (0, 100.0, 0.0, 300)
    assert cfg.weights() == {"opacity_sparsity": (0, 100.0, 0.0, 300)}
    # A ramp that is 0 at both ends is off, as a 0 weight is.
    assert RegulariserConfig(orientation=(0, 0.0, 0.0, 10)).weights() == {}
    for bad, needle in (
        ("[0, -1, 0, 300]", "must be >= 0"),
        ("[300, 100, 0, 300]", "start_step < end_step"),
        ("[0, 100, 300]", "wrong type"),
    ):
        with pytest.raises(SSD3DError, match=needle):
            apply_overrides(RegulariserConfig(), [f"opacity_sparsity={bad}"])


def parameters_after(cfg, prior, steps: int) -> dict[str, torch.Tensor]:
    run = prepare(cfg, prior)
    for _ in range(steps):
        run.run_step()
    return {k: v.detach().clone() for k, v in run.scene.state_dict().items()}


def test_the_loop_applies_the_ramp_at_each_step(tiny_config, tiny_prior):
    def with_sparsity(weight):
        return dataclasses.replace(
            tiny_config, regularisers=RegulariserConfig(opacity_sparsity=weight)
        )

    off, on = with_sparsity(0.0), with_sparsity(300.0)
    rising = with_sparsity((0, 0.0, 300.0, 1))  # 0 at step 0, 300 from step 1
    same = lambda a, b: all(torch.equal(a[k], b[k]) for k in a)  # noqa: E731
    # Step 0 runs at the ramp's start (as if off), step 1 at its end (as if on).
    assert same(parameters_after(rising, tiny_prior, 1), parameters_after(off, tiny_prior, 1))
    assert not same(parameters_after(on, tiny_prior, 1), parameters_after(off, tiny_prior, 1))
    assert not same(parameters_after(rising, tiny_prior, 2), parameters_after(off, tiny_prior, 2))
