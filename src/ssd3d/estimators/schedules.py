"""Timestep schedules: how the pipeline (never an estimator) picks t at each step.

Each schedule maps (step, total_steps, batch size, generator) to integer timesteps [B].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ssd3d.estimators.base import NUM_TRAIN_TIMESTEPS

# threestudio's default range: min_step_percent 0.02, max_step_percent 0.98.
DEFAULT_T_MIN = 20
DEFAULT_T_MAX = 980


def _check_range(t_min: int, t_max: int) -> None:
    if not 0 <= t_min <= t_max < NUM_TRAIN_TIMESTEPS:
        raise ValueError(
            f"timestep range must satisfy 0 <= t_min <= t_max < {NUM_TRAIN_TIMESTEPS}; "
            f"got t_min={t_min}, t_max={t_max}"
        )


def _uniform_int(low: Tensor | int, high: Tensor | int, batch: int, generator) -> Tensor:
    u = torch.rand(batch, generator=generator, dtype=torch.float64)
    return (low + (u * (high - low + 1)).floor()).long().clamp(max=high)


@dataclass(frozen=True)
class Uniform:
    """t ~ U{t_min, ..., t_max} independently per sample (DreamFusion)."""

    t_min: int = DEFAULT_T_MIN
    t_max: int = DEFAULT_T_MAX

    def __post_init__(self) -> None:
        _check_range(self.t_min, self.t_max)

    def sample(self, step: int, total_steps: int, batch: int, generator=None) -> Tensor:
        return _uniform_int(self.t_min, self.t_max, batch, generator)


@dataclass(frozen=True)
class Annealed:
    """t ~ U{t_min, ..., t_hi(step)}, the upper bound falling from t_max to t_max_end.

    ``kind="linear"`` follows threestudio's max_step_percent annealing; ``"sqrt"`` falls as
    sqrt(progress), fast early and slow late (HiFA).
    """

    t_min: int = DEFAULT_T_MIN
    t_max: int = DEFAULT_T_MAX
    t_max_end: int = 500
    kind: str = "linear"

    def __post_init__(self) -> None:
        _check_range(self.t_min, self.t_max)
        _check_range(self.t_min, self.t_max_end)
        if self.kind not in ("linear", "sqrt"):
            raise ValueError(f"kind must be 'linear' or 'sqrt'; got {self.kind!r}")

    def upper(self, step: int, total_steps: int) -> int:
        progress = min(max(step / max(total_steps - 1, 1), 0.0), 1.0)
        if self.kind == "sqrt":
            progress = math.sqrt(progress)
        return round(self.t_max + (self.t_max_end - self.t_max) * progress)

    def sample(self, step: int, total_steps: int, batch: int, generator=None) -> Tensor:
        return _uniform_int(self.t_min, self.upper(step, total_steps), batch, generator)


@dataclass(frozen=True)
class DreamTime:
    """DreamTime's time-prioritised schedule (Huang et al. 2023): t falls monotonically.

    The prior ``W(t)`` is 1 on [m2, m1] with Gaussian tails (s1 above m1, s2 below m2);
    step i of N takes the t where the mass of W above t reaches i / N. Deterministic:
    every sample of a batch gets the same t.
    """

    t_min: int = DEFAULT_T_MIN
    t_max: int = DEFAULT_T_MAX
    m1: float = 800.0  # DreamTime's public settings: m1 800, m2 500, s1 300, s2 100
    m2: float = 500.0
    s1: float = 300.0
    s2: float = 100.0

    def __post_init__(self) -> None:
        _check_range(self.t_min, self.t_max)

    def weights(self) -> Tensor:
        """W(t) for t in [t_min, t_max], normalised to sum to 1. [t_max - t_min + 1]"""
        t = torch.arange(self.t_min, self.t_max + 1, dtype=torch.float64)
        w = torch.ones_like(t)
        above, below = t > self.m1, t < self.m2
        w[above] = torch.exp(-((t[above] - self.m1) ** 2) / (2 * self.s1**2))
        w[below] = torch.exp(-((t[below] - self.m2) ** 2) / (2 * self.s2**2))
        return w / w.sum()

    def timestep(self, step: int, total_steps: int) -> int:
        mass_above = self.weights().flip(0).cumsum(0).flip(0)  # mass of W on [t, t_max]
        target = (step + 0.5) / max(total_steps, 1)
        index = int(torch.argmin((mass_above - target).abs()))
        return self.t_min + index

    def sample(self, step: int, total_steps: int, batch: int, generator=None) -> Tensor:
        return torch.full((batch,), self.timestep(step, total_steps), dtype=torch.long)


SCHEDULES = {"uniform": Uniform, "annealed": Annealed, "dreamtime": DreamTime}
