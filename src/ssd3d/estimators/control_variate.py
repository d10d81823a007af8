"""The control-variate coefficient of ``eps_cond - c eps``, estimated without bias.

The coefficient that minimises the variance of ``eps_cond - c eps`` is a population
quantity at each t: ``c*(t) = E[<eps_cond, eps>] / E[<eps, eps>]``. Estimating it from the
sample's own noise (``optimal_coefficient``) makes ``c`` depend on ``eps``, so ``-c eps`` is
no longer zero-mean and the gradient's expectation moves (docs: method.md, "What the
formulas above imply"). ``RunningCoefficient`` estimates ``c*(t)`` from the sums of
*earlier* steps only: given the past, ``c`` is a constant, ``E[-c eps] = 0``, and the
control variate stays unbiased.

The training loop owns one companion per run::

    state = estimator.make_state()            # None for a stateless estimator
    g = estimator(preds, state=state)          # reads only sums of earlier steps
    if state is not None:
        state.update(preds)                    # then adds this batch

and checkpoints ``state.state_dict()`` (tensors only) next to the optimiser's.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ssd3d.errors import SSD3DError
from ssd3d.estimators.base import NoisePredictions
from ssd3d.estimators.terms import dot

# 50 bins of 20 timesteps: c*(t) changes slowly with t (it is ~1 at high t, where eps_cond
# is almost the noise itself), and a 10k-step 3D run still puts ~200 samples in each bin.
DEFAULT_BINS = 50
STATE_KEYS = ("sum_cross", "sum_noise", "count", "num_train_timesteps")


class RunningCoefficient:
    """Per-timestep-bin running sums of ``<eps_cond, eps>`` and ``<eps, eps>``.

    ``coefficient(t)`` is ``sum_cross / sum_noise`` of t's bin, or 1 (SDS's c) while the
    bin is empty. The sums are float64 on the CPU: a few hundred numbers, moved once a step.
    """

    def __init__(self, bins: int = DEFAULT_BINS, num_train_timesteps: int = 1000):
        if bins < 1 or num_train_timesteps < bins:
            raise SSD3DError(
                f"RunningCoefficient needs 1 <= bins <= num_train_timesteps; got bins={bins}, "
                f"num_train_timesteps={num_train_timesteps}"
            )
        self.num_train_timesteps = num_train_timesteps
        self.sum_cross = torch.zeros(bins, dtype=torch.float64)
        self.sum_noise = torch.zeros(bins, dtype=torch.float64)
        self.count = torch.zeros(bins, dtype=torch.long)

    @property
    def bins(self) -> int:
        return self.sum_cross.shape[0]

    def bin_of(self, t: Tensor) -> Tensor:
        """Bin index of each timestep, [B] long on the CPU."""
        t = t.detach().to("cpu", torch.long)
        return (t * self.bins // self.num_train_timesteps).clamp(0, self.bins - 1)

    def coefficient(self, t: Tensor) -> Tensor:
        """c for each sample from earlier steps' sums: [B] float64 on t's device."""
        b = self.bin_of(t)
        seen = self.count[b] > 0
        ratio = self.sum_cross[b] / self.sum_noise[b].clamp_min(1e-300)
        return torch.where(seen, ratio, torch.ones_like(ratio)).to(t.device)

    def update(self, p: NoisePredictions) -> None:
        """Add this batch's sums (call after its gradient has been computed)."""
        b = self.bin_of(p.t)
        cross = dot(p.eps_cond.detach(), p.noise.detach()).to("cpu", torch.float64)
        noise = dot(p.noise.detach(), p.noise.detach()).to("cpu", torch.float64)
        self.sum_cross.index_add_(0, b, cross)
        self.sum_noise.index_add_(0, b, noise)
        self.count.index_add_(0, b, torch.ones_like(b))

    def state_dict(self) -> dict[str, Tensor]:
        """Tensors only (safetensors can store it); ``load_state_dict`` restores it exactly."""
        return {
            "sum_cross": self.sum_cross.clone(),
            "sum_noise": self.sum_noise.clone(),
            "count": self.count.clone(),
            "num_train_timesteps": torch.tensor(self.num_train_timesteps, dtype=torch.long),
        }

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        missing = [k for k in STATE_KEYS if k not in state]
        if missing:
            raise SSD3DError(f"running coefficient state lacks {', '.join(missing)}")
        shapes = {k: tuple(state[k].shape) for k in ("sum_cross", "sum_noise", "count")}
        if len(set(shapes.values())) != 1 or len(shapes["count"]) != 1:
            raise SSD3DError(f"running coefficient state has mismatched shapes {shapes}")
        if shapes["count"][0] != self.bins or int(state["num_train_timesteps"]) != (
            self.num_train_timesteps
        ):
            raise SSD3DError(
                f"running coefficient state has {shapes['count'][0]} bins over "
                f"{int(state['num_train_timesteps'])} timesteps; this estimator uses "
                f"{self.bins} over {self.num_train_timesteps}"
            )
        self.sum_cross = state["sum_cross"].to("cpu", torch.float64).clone()
        self.sum_noise = state["sum_noise"].to("cpu", torch.float64).clone()
        self.count = state["count"].to("cpu", torch.long).clone()
