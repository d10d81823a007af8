"""The simulation loop: particles distilled from an analytic mixture by each estimator.

The optimised "scene" is the particles themselves (x0 = theta, ``encode`` is the
identity). Each step draws t with the scenario's schedule (the 3D pipeline's schedules),
draws noise, asks ``ssd3d.guidance.distillation_gradient`` for the estimator's gradient
(one batched prior call) and hands it to Adam or plain gradient descent. Every particle is
its own scene: Adam keeps per-coordinate statistics, so particles do not interact.

Every estimator of a scenario starts from the same particles and sees the same t and noise
sequence (the generator is reseeded per run): differences come from the estimators alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ssd3d.errors import SSD3DError
from ssd3d.estimators import SCHEDULES, Branch, Estimator, ModeSeeking, build_estimator, describe
from ssd3d.guidance import distillation_gradient
from ssd3d.priors.gmm import GaussianMixturePrior
from ssd3d.sim.metrics import GradientVariance, ParticleMetrics, particle_metrics, variance_by_t
from ssd3d.sim.scenario import Scenario

# The estimators compared by default: label -> spec for build_estimator.
DEFAULT_ESTIMATORS: dict[str, str] = {
    "mode-seeking": "mode-seeking",  # eps_cond - eps (SDS at guidance 1)
    "mode-disengaging": "mode-disengaging",  # (s - 1)(eps_cond - eps_uncond), s = 7.5
    "SDS s=7.5": "sds guidance_scale=7.5",
    "SDS s=100": "sds guidance_scale=100",
    "CSD": "csd",
    "NFSD": "nfsd",
    "SSD": "ssd",  # s = 7.5, tau = 200, adaptive c, match_norm
    "SSD c=1": "ssd variance_reduction=sds",
    "SSD c=0": "ssd variance_reduction=none",
    "SSD no norm-match": "ssd match_norm=false",
    "SSD tau=0": "ssd tau=0",  # mode-disengaging at every t > 0
    "SSD tau=T": "ssd tau=999",  # tau < T is required: 999 sends every t to mode-seeking
}

# The control-variate coefficients of the variance-vs-t figure (ModeSeeking's switch).
COEFFICIENTS: dict[str, str] = {"c = 1 (SDS)": "sds", "c = 0": "none", "adaptive c (SSD)": "adaptive"}


@dataclass(frozen=True)
class SimulationConfig:
    """Run-wide settings; the scenario file holds the set-up (mixture, start, optimiser)."""

    steps: int = 400  # optimisation steps per estimator; Adam at lr 0.02 moves up to ~8 units
    particles: int = 256  # N; 5% coverage threshold = 13 particles
    seed: int = 0  # seeds the start, the t and noise sequences and the variance draws
    tracked: int = 6  # particles whose whole trajectory is kept for the figures
    variance_points: int = 32  # fixed x0 ~ p(x | y) at which gradient variance is measured
    variance_draws: int = 64  # noise draws per point and t
    variance_bins: int = 10  # timestep bins of width T / bins (per-estimator variance)
    curve_points: int = 25  # timesteps on the variance-vs-t figure's grid

    def __post_init__(self) -> None:
        for name in ("steps", "particles", "variance_points", "variance_bins", "curve_points"):
            if getattr(self, name) < 1:
                raise SSD3DError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.variance_draws < 2:
            raise SSD3DError(f"variance_draws must be >= 2; got {self.variance_draws}")
        if self.tracked < 0:
            raise SSD3DError(f"tracked must be >= 0; got {self.tracked}")


@dataclass(frozen=True)
class EstimatorRun:
    """One estimator's run on one scenario."""

    label: str  # short name in tables and figures
    spec: str  # the full spec that rebuilds the estimator (ssd3d.estimators.describe)
    final: Tensor  # [N, D] particles after the last step
    trajectories: Tensor  # [steps + 1, tracked, D] positions of the first particles
    metrics: ParticleMetrics  # where the particles ended
    variance: tuple[GradientVariance, ...]  # at fixed x0 ~ p(x | y), one per timestep bin
    seconds: float  # wall time of the optimisation


@dataclass(frozen=True)
class ScenarioResult:
    """All runs on one scenario, and the variance-vs-t curves of the coefficient c."""

    scenario: Scenario
    prior: GaussianMixturePrior
    runs: tuple[EstimatorRun, ...]
    bin_timesteps: tuple[int, ...]  # the centre t of each variance bin
    curve_timesteps: tuple[int, ...]  # the t grid of the curves
    curves: dict[str, tuple[GradientVariance, ...]]  # COEFFICIENTS label -> one per t


def parse_estimators(text: str | None) -> dict[str, Estimator]:
    """``"a,b"`` -> {label: estimator}; an item is a default's label or a spec. None: defaults."""
    if text is None:
        items = list(DEFAULT_ESTIMATORS)
    else:
        items = [s.strip() for s in text.split(",") if s.strip()]
        if not items:
            raise SSD3DError("--estimators is empty")
    out: dict[str, Estimator] = {}
    for item in items:
        spec = DEFAULT_ESTIMATORS.get(item, item)
        if item in out:
            raise SSD3DError(f"estimator '{item}' is listed twice")
        out[item] = build_estimator(spec)
    return out


def branch_rows(prior: GaussianMixturePrior, scenario: Scenario) -> dict[Branch, Tensor]:
    """One conditioning row per branch, each [1]: the prompt, "", and the negative class."""
    return {
        "cond": prior.embed([scenario.prompt]),
        "uncond": prior.embed([""]),
        "neg": prior.embed([scenario.negative or ""]),
    }


def bin_centres(bins: int, num_train_timesteps: int) -> list[int]:
    """Centre t of each of ``bins`` equal bins of [0, T)."""
    width = num_train_timesteps / bins
    return [int(width * (i + 0.5)) for i in range(bins)]


def run_estimator(
    scenario: Scenario,
    prior: GaussianMixturePrior,
    label: str,
    estimator: Estimator,
    config: SimulationConfig,
    on_step: Callable[[], None] | None = None,
) -> tuple[Tensor, Tensor, float]:
    """Optimise the particles with one estimator: (final [N, D], trajectories, seconds)."""
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(config.seed)
    x = scenario.init_particles(config.particles, generator).requires_grad_(True)
    n, d = x.shape
    rows = {b: r.expand(n) for b, r in branch_rows(prior, scenario).items()}
    schedule = SCHEDULES[scenario.optim.schedule]()
    if scenario.optim.optimizer == "adam":
        optimizer = torch.optim.Adam([x], lr=scenario.optim.lr)
    else:
        optimizer = torch.optim.SGD([x], lr=scenario.optim.lr)
    tracked = min(config.tracked, n)
    path = [x.detach()[:tracked].clone()]
    for step in range(config.steps):
        t = schedule.sample(step, config.steps, n, generator)
        noise = torch.randn(n, d, generator=generator, dtype=x.dtype)
        grad, _ = distillation_gradient(prior, estimator, x.detach(), t, noise, rows)
        # The gradient is already d loss / d x0 per particle (surrogate_loss without the
        # 1 / B batch mean, since each particle is its own scene).
        x.grad = grad
        optimizer.step()
        path.append(x.detach()[:tracked].clone())
        if on_step is not None:
            on_step()
    if not torch.isfinite(x).all():
        raise SSD3DError(f"estimator '{label}' diverged to non-finite particles (lower optim.lr)")
    return x.detach().clone(), torch.stack(path), time.perf_counter() - start


def run_scenario(
    scenario: Scenario,
    estimators: dict[str, Estimator],
    config: SimulationConfig,
    on_step: Callable[[], None] | None = None,
) -> ScenarioResult:
    """Every estimator on one scenario, with metrics and gradient-variance measurements."""
    prior = scenario.prior()
    num_t = prior.alphas_cumprod.shape[0]
    # Fixed x0 for every variance measurement: draws from the target p(x | y), so that all
    # estimators (and all c) are compared at the same points, on the data.
    x_fixed = prior.sample(
        scenario.prompt, config.variance_points, torch.Generator().manual_seed(config.seed + 1)
    )
    rows = branch_rows(prior, scenario)
    bins = bin_centres(config.variance_bins, num_t)
    runs = []
    for label, estimator in estimators.items():
        final, path, seconds = run_estimator(scenario, prior, label, estimator, config, on_step)
        variance = variance_by_t(
            prior, estimator, x_fixed, bins, rows, config.variance_draws, config.seed + 2
        )
        runs.append(
            EstimatorRun(
                label=label,
                spec=describe(estimator),
                final=final,
                trajectories=path,
                metrics=particle_metrics(prior, final, scenario.prompt),
                variance=tuple(variance),
                seconds=seconds,
            )
        )
    # The variance-vs-t figure: the mode-seeking term eps_cond - c eps alone, unweighted
    # (w(t) = 1), so that only the coefficient c differs between the curves.
    grid = torch.linspace(1, num_t - 1, config.curve_points).round().long().tolist()
    curves = {
        name: tuple(
            variance_by_t(
                prior,
                ModeSeeking(variance_reduction=kind, weighting="uniform"),
                x_fixed,
                grid,
                rows,
                config.variance_draws,
                config.seed + 2,
            )
        )
        for name, kind in COEFFICIENTS.items()
    }
    return ScenarioResult(scenario, prior, tuple(runs), tuple(bins), tuple(grid), curves)


def simulate(
    scenarios: Sequence[Scenario],
    estimators: dict[str, Estimator],
    config: SimulationConfig,
    on_step: Callable[[], None] | None = None,
) -> list[ScenarioResult]:
    """``run_scenario`` for each scenario, in order."""
    return [run_scenario(s, estimators, config, on_step) for s in scenarios]
