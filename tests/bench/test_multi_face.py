"""The multi-face score of the true objects under the shipped judge: what the benchmark's
scorer gives the truth itself is the ceiling every generated object is read against."""

from __future__ import annotations

import pytest

from ssd3d.bench.config import EvalConfig
from ssd3d.bench.scoring import MULTI_FACE_SHAPES, Scorer
from ssd3d.models.judge import Judge
from ssd3d.toyworld.vocabulary import all_prompts, parse_prompt

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ASYMMETRIC = [p for p in all_prompts() if parse_prompt(p).shape in MULTI_FACE_SHAPES]


def test_multi_face_shapes_are_the_wedge_arrow_and_mug() -> None:
    assert MULTI_FACE_SHAPES == ("wedge", "arrow", "mug")
    assert len(ASYMMETRIC) == 15


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    return Scorer(EvalConfig(), Judge.load())


@pytest.mark.parametrize("yaw", [0.0, 180.0])
def test_the_truth_reads_right_on_every_asymmetric_prompt(scorer: Scorer, yaw) -> None:
    """The benchmark's orbit and shading, the truth turned by ``yaw`` and scored at that
    yaw, as the scorer scores an object whose best-IoU yaw it is. The first judge with
    today's score gave the green mug 0.72 (mean 0.93), and with the earlier score every
    truth turned by 180 degrees 0.58 or less; today's judge misses at most one view of a
    prompt (0.89: docs/results/judge-views.md)."""
    cameras = scorer.cameras(32, 32, "cpu")
    scores = {}
    for prompt in ASYMMETRIC:
        images = scorer.truth(prompt, yaw, cameras)
        scores[prompt] = scorer.judge.multi_face_score(images, scorer.view_targets(cameras, yaw))
    low = {p: round(s, 2) for p, s in scores.items() if s < 0.85}
    assert not low, low
    assert sum(scores.values()) / len(scores) >= 0.94, scores
