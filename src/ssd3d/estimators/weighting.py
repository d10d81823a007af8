"""Per-timestep weights w(t) as functions of alpha_bar (threestudio's names)."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

WEIGHTINGS: dict[str, Callable[[Tensor], Tensor]] = {
    # DreamFusion / threestudio "sds": w = 1 - alpha_bar (= sigma_t^2).
    "sds": lambda a: 1 - a,
    # threestudio "uniform": w = 1.
    "uniform": lambda a: a.new_ones(a.shape),
    # threestudio "fantasia3d": w = sqrt(alpha_bar) (1 - alpha_bar).
    "fantasia3d": lambda a: a.sqrt() * (1 - a),
    # LucidDreamer's ISM: w = sqrt((1 - alpha_bar) / alpha_bar) (= sigma_t / alpha_t).
    "ism": lambda a: ((1 - a) / a).sqrt(),
}


def check_weighting(name: str) -> None:
    if name not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}; got {name!r}")


def weight(name: str, alpha_bar: Tensor) -> Tensor:
    """w(t) for each sample: alpha_bar [B] -> [B]."""
    check_weighting(name)
    return WEIGHTINGS[name](alpha_bar)
