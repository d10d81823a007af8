"""The oracle row: the same scene, cameras, shading, optimiser and step budget as every
estimator's run, supervised by the true renders instead of a prior.

Each step the true object is rendered with the step's own cameras and shading, and the
scene is pushed along the photometric error (the gradient of ``0.5 ||render - truth||^2``).
It measures what the scene can reach in the budget: a benchmark row between the initial
blob (the floor) and this one shows how much of the reachable gap an estimator closes.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ssd3d.scene import Cameras, Shading, SolidBackground
from ssd3d.toyworld.truth import DEFAULT_TRUTH_RENDERER, GroundTruthField, render_truth

# The spec and label of the oracle in a benchmark's plan (it is no estimator).
ORACLE_SPEC = "oracle"
ORACLE_LABEL = "oracle (true renders)"


class TrueRenders:
    """A run's supervision: the true object of ``prompt`` rendered like the run's views."""

    def __init__(
        self,
        prompt: str,
        background: tuple[float, float, float] = (1.0, 1.0, 1.0),
        renderer: str = DEFAULT_TRUTH_RENDERER,
    ):
        self.truth = GroundTruthField.from_prompt(prompt)
        self.background = SolidBackground(background)
        self.renderer = renderer

    @torch.no_grad()
    def __call__(self, cameras: Cameras, shading: Shading | None) -> Tensor:
        """The target renders [B, 3, H, W] in [0, 1] for these cameras and shading."""
        truth = self.truth.to(cameras.device)
        background = self.background.to(cameras.device)
        return render_truth(truth, cameras, background, shading, self.renderer).rgb.clamp(0, 1)


__all__ = ["ORACLE_LABEL", "ORACLE_SPEC", "TrueRenders"]
