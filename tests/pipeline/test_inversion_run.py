"""ISM and SDI in the 3D loop: their DDIM inversion runs, is counted, and resumes bit for bit."""

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from ssd3d.generation import generate, resume


@pytest.mark.parametrize(
    ("estimator", "fewest_calls"),
    [
        # ISM: at least one unconditional inversion step before s, one at s, 2 at x_t.
        ("ism", 4),
        # SDI: eta 0.3 draws from the run's generator at every inversion step, so a resume
        # that lost the generator's state would leave the bits; at least one guided step.
        ("sdi", 4),
    ],
)
def test_inversion_runs_resume_bit_for_bit(
    tmp_path, tiny_prior, tiny_config, estimator, fewest_calls
):
    cfg = dataclasses.replace(tiny_config, estimator=estimator, steps=4)
    straight = generate(cfg, tmp_path / "a", prior=tiny_prior, progress=False)
    stopped = generate(cfg, tmp_path / "b", prior=tiny_prior, stop_after=2, progress=False)
    resume(stopped, prior=tiny_prior, progress=False)
    a = load_file(str(straight / "checkpoint" / "scene.safetensors"))
    b = load_file(str(stopped / "checkpoint" / "scene.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log = [json.loads(line) for line in (straight / "log.jsonl").read_text().splitlines()]
    assert all(r["prior_calls"] >= fewest_calls for r in log)
    resumed = [json.loads(line) for line in (stopped / "log.jsonl").read_text().splitlines()]
    assert [r["prior_calls"] for r in resumed] == [r["prior_calls"] for r in log]
    summary = json.loads((straight / "summary.json").read_text())
    assert summary["prior_calls_per_step"] == pytest.approx(
        sum(r["prior_calls"] for r in log) / len(log), abs=1e-3
    )


def test_the_default_estimators_log_two_prior_calls(tmp_path, tiny_prior, tiny_config):
    from ssd3d.pipeline.run import prepare

    run = prepare(dataclasses.replace(tiny_config, estimator="sds guidance_scale=7.5"), tiny_prior)
    assert run.run_step().prior_calls == 2
