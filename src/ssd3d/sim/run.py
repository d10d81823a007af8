"""The simulation loop: particles distilled from an analytic mixture by each estimator.

The optimised "scene" is the particles themselves (x0 = theta, ``encode`` is the
identity). Each step draws t with the scenario's schedule (the 3D pipeline's schedules),
draws noise, asks the prior for the branches this step's t need (one batched call,
``ssd3d.guidance.noise_predictions``), computes the gradient, updates the estimators'
companions (SSD's running coefficient) and hands the gradient to Adam or plain gradient
descent. Every particle is its own
scene: Adam's statistics are per coordinate, so particles do not interact.

All estimators of a scenario run side by side in one batch (``Stacked``): each gets its
own copy of the same starting particles and sees the same t and noise at every step
(common random numbers), so differences come from the estimators alone, and a step costs
one prior call for all of them. Estimators that make x_t by DDIM inversion (ISM, SDI) run
as their own batch with their noising step (``noising_groups``); their extra noise (SDI's
eta) comes from a generator of its own, so the shared t and noise stay the same.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ssd3d.config import split_list
from ssd3d.errors import SSD3DError
from ssd3d.estimators import (
    SCHEDULES,
    Branch,
    Estimator,
    build_estimator,
    describe,
)
from ssd3d.guidance import distinct_branches, predictions
from ssd3d.priors.gmm import GaussianMixturePrior
from ssd3d.sim.metrics import (
    COEFFICIENT_FORMS,
    CoefficientCurvePoint,
    GradientVariance,
    ParticleMetrics,
    coefficient_curves,
    gradient_variance,
    particle_metrics,
)
from ssd3d.sim.scenario import Scenario
from ssd3d.sim.stacked import Stacked, StackedState, noising_groups, with_particle_scores

# The estimators compared by default: label -> spec for build_estimator.
DEFAULT_ESTIMATORS: dict[str, str] = {
    "mode-seeking": "mode-seeking",  # eps_cond - eps (SDS at guidance 1)
    "mode-disengaging": "mode-disengaging",  # (s - 1)(eps_cond - eps_uncond), s = 7.5
    "SDS s=7.5": "sds guidance_scale=7.5",
    "SDS s=100": "sds guidance_scale=100",
    "CSD": "csd",
    "NFSD": "nfsd",
    "SSD": "ssd",  # its defaults (ssd.py)
    "SSD per-sample c": "ssd coefficient=per_sample",
    "SSD c=1": "ssd coefficient=one",
    "SSD c=0": "ssd coefficient=zero",
    "SSD norm-match": "ssd match_norm=true",
    "SSD tau=200 norm-match": "ssd tau=200 match_norm=true",  # method.md's formula
    "SSD tau=0": "ssd tau=0",  # mode-disengaging at every t > 0
    "SSD tau=T": "ssd tau=999",  # tau < T is required: 999 sends every t to mode-seeking
}

# The coefficient forms of the bias/variance-vs-t figure: key -> label.
COEFFICIENTS: dict[str, str] = {
    "per_sample": "per-sample c",
    "running": "running c",
    "one": "c = 1 (SDS)",
    "zero": "c = 0",
}
assert tuple(COEFFICIENTS) == COEFFICIENT_FORMS


@dataclass(frozen=True)
class SimulationConfig:
    """Run-wide settings; the scenario file holds the set-up (mixture, start, optimiser)."""

    steps: int = 400  # optimisation steps per estimator; Adam at lr 0.02 moves up to ~8 units
    particles: int = 256  # N; 5% coverage threshold = 13 particles
    seed: int = 0  # seeds the start, the t and noise sequences and the variance draws
    tracked: int = 6  # particles whose whole trajectory is kept for the figures
    variance_points: int = 16  # fixed x0 ~ p(x | y) at which gradient variance is measured
    variance_draws: int = 32  # noise draws per point and t
    variance_bins: int = 10  # timestep bins of width T / bins (per-estimator variance)
    curve_points: int = 25  # timesteps on the variance-vs-t figure's grid
    curve_draws: int = 256  # noise draws per point and t on that grid (the bias needs many)

    def __post_init__(self) -> None:
        for name in ("steps", "particles", "variance_points", "variance_bins", "curve_points"):
            if getattr(self, name) < 1:
                raise SSD3DError(f"{name} must be >= 1; got {getattr(self, name)}")
        for name in ("variance_draws", "curve_draws"):
            if getattr(self, name) < 2:
                raise SSD3DError(f"{name} must be >= 2; got {getattr(self, name)}")
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
    # Mean network evaluations per step for this estimator's particles alone (its noising
    # step plus the branches it asks for; ssd3d.guidance counts them).
    prior_calls: float = float("nan")


@dataclass(frozen=True)
class ScenarioResult:
    """All runs on one scenario, and the variance-vs-t curves of the coefficient c."""

    scenario: Scenario
    prior: GaussianMixturePrior
    initial: Tensor  # [N, D] the common starting particles
    runs: tuple[EstimatorRun, ...]
    bin_timesteps: tuple[int, ...]  # the centre t of each variance bin
    curve_timesteps: tuple[int, ...]  # the t grid of the curves
    curves: dict[str, tuple[CoefficientCurvePoint, ...]]  # COEFFICIENTS key -> one per t
    seconds: float  # wall time of the scenario


class Adam:
    """torch.optim.Adam's update (defaults betas (0.9, 0.999), eps 1e-8), elementwise.

    Written out because it is five lines, and importing torch.optim costs seconds (it
    pulls in torch._dynamo) in a command that should take seconds.
    """

    def __init__(self, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.lr, self.betas, self.eps = lr, betas, eps
        self.m: Tensor | None = None  # first moment, like the parameters
        self.v: Tensor | None = None  # second moment
        self.k = 0  # steps taken

    def step(self, x: Tensor, grad: Tensor) -> None:
        """x <- x - lr m_hat / (sqrt(v_hat) + eps), in place."""
        b1, b2 = self.betas
        if self.m is None or self.v is None:
            self.m, self.v = torch.zeros_like(x), torch.zeros_like(x)
        self.k += 1
        self.m.lerp_(grad, 1 - b1)
        self.v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        denom = (self.v / (1 - b2**self.k)).sqrt_().add_(self.eps)
        x.addcdiv_(self.m, denom, value=-self.lr / (1 - b1**self.k))


class GradientDescent:
    """Plain gradient descent: x <- x - lr g."""

    def __init__(self, lr: float):
        self.lr = lr

    def step(self, x: Tensor, grad: Tensor) -> None:
        x.add_(grad, alpha=-self.lr)


# Scenario ``optim.optimizer`` -> update rule.
OPTIMIZERS = {"adam": Adam, "sgd": GradientDescent}


def parse_estimators(text: str | None) -> dict[str, Estimator]:
    """``"a; b"`` -> {label: estimator}; an item is a default's label or a spec, separated by
    ';' as everywhere on the command line (``ssd3d bench --estimators``). None: defaults."""
    if text is None:
        items = list(DEFAULT_ESTIMATORS)
    else:
        items = split_list(text)
        if not items:
            raise SSD3DError("--estimators is empty")
        if len(items) == 1 and "," in items[0] and items[0] not in DEFAULT_ESTIMATORS:
            raise SSD3DError(
                f"separate estimators with ';', not ',' (as ssd3d bench does): {text!r}"
            )
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


class _Group:
    """Estimators that share a noising step, stacked: their particle blocks, one prior call."""

    def __init__(self, idx, ests, members, n, one_rows):
        self.idx, self.n = idx, n
        self.ests = tuple(ests[i] for i in idx)
        self.stacked = Stacked(self.ests, n)
        states = [members[i] for i in idx]
        self.state = None if all(s is None for s in states) else StackedState(states, n)
        self.rows = {b: r.expand(len(idx) * n) for b, r in one_rows.items()}

    def where(self, x: Tensor) -> Tensor:
        blocks = torch.zeros(x.shape[0] // self.n, dtype=torch.bool)
        blocks[self.idx] = True
        return blocks.repeat_interleave(self.n)

    def select(self, x: Tensor) -> Tensor:
        return x[self.where(x)]

    def step(self, prior, x, t, noise, inversion_gen, calls: list[float]) -> Tensor:
        """The group's gradient on its particles ``x``; adds each member's prior calls."""
        k = len(self.idx)
        ts = t.repeat(k)
        branches = self.stacked.branches(ts)
        out = predictions(
            prior,
            self.stacked.noising,
            x,
            ts,
            noise.repeat(k, 1),
            self.rows,
            branches,
            inversion_gen,
        )
        preds = out.predictions
        if "particle" in branches:  # VSD: each member's particles' own (fitted) score
            preds = with_particle_scores(preds, x.reshape(k, self.n, -1), prior.alphas_cumprod)
        grad = self.stacked(preds, state=self.state)
        if self.state is not None:
            # After the gradient: this step's noise never sets its own c.
            self.state.update(preds)
        inverting = out.prior_calls - len(distinct_branches(self.rows, branches)[0])
        for i, est in zip(self.idx, self.ests, strict=True):
            calls[i] += inverting + len(distinct_branches(self.rows, est.branches(t))[0])
        return grad


def bin_centres(bins: int, num_train_timesteps: int) -> list[int]:
    """Centre t of each of ``bins`` equal bins of [0, T)."""
    width = num_train_timesteps / bins
    return [int(width * (i + 0.5)) for i in range(bins)]


def run_scenario(
    scenario: Scenario,
    estimators: dict[str, Estimator],
    config: SimulationConfig,
    on_step: Callable[[], None] | None = None,
) -> ScenarioResult:
    """Every estimator on one scenario, with metrics and gradient-variance measurements."""
    start = time.perf_counter()
    prior = scenario.prior()
    labels, ests = list(estimators), tuple(estimators.values())
    e, n = len(ests), config.particles
    generator = torch.Generator().manual_seed(config.seed)
    initial = scenario.init_particles(n, generator)
    d = initial.shape[1]
    x = initial.repeat(e, 1)  # [E * N, D], block i = estimator i
    members = [est.make_state() for est in ests]  # the companions (running sums), or None
    one_rows = branch_rows(prior, scenario)
    groups = [_Group(idx, ests, members, n, one_rows) for idx in noising_groups(ests)]
    inversion_gen = torch.Generator().manual_seed(config.seed + 4)
    calls = [0.0] * e
    schedule = SCHEDULES[scenario.optim.schedule]()
    optimizer = OPTIMIZERS[scenario.optim.optimizer](scenario.optim.lr)
    tracked = min(config.tracked, n)
    path = [initial[:tracked].repeat(e, 1, 1)]
    for step in range(config.steps):
        t = schedule.sample(step, config.steps, n, generator)
        noise = torch.randn(n, d, generator=generator, dtype=x.dtype)
        # grad is d loss / d x0 for each particle (surrogate_loss without the 1 / B batch
        # mean, since each particle is its own scene).
        if len(groups) == 1:
            grad = groups[0].step(prior, x, t, noise, inversion_gen, calls)
        else:
            grad = torch.empty_like(x)
            for group in groups:
                part = group.select(x)
                grad[group.where(x)] = group.step(prior, part, t, noise, inversion_gen, calls)
        optimizer.step(x, grad)
        path.append(x.reshape(e, n, d)[:, :tracked].clone())
        if on_step is not None:
            on_step()
    final = x.reshape(e, n, d)
    diverged = [lab for lab, f in zip(labels, final, strict=True) if not torch.isfinite(f).all()]
    if diverged:
        raise SSD3DError(
            f"scenario '{scenario.name}': {', '.join(diverged)} diverged (lower optim.lr)"
        )
    trajectories = torch.stack(path, dim=1)  # [E, steps + 1, tracked, D]

    # Fixed x0 for every variance measurement: draws from the target p(x | y), so that all
    # estimators (and all c) are compared at the same points, on the data.
    x_fixed = prior.sample(
        scenario.prompt, config.variance_points, torch.Generator().manual_seed(config.seed + 1)
    )
    num_t = prior.alphas_cumprod.shape[0]
    bins = bin_centres(config.variance_bins, num_t)
    # Each estimator with its companion as the run left it (read only).
    by_bin = [
        gradient_variance(
            prior,
            ests,
            x_fixed,
            t,
            one_rows,
            config.variance_draws,
            config.seed + 2,
            members,
            particles=final,
        )
        for t in bins
    ]
    runs = tuple(
        EstimatorRun(
            label=label,
            spec=describe(est),
            final=final[i].clone(),
            trajectories=trajectories[i].clone(),
            metrics=particle_metrics(prior, final[i], scenario.prompt),
            variance=tuple(v[i] for v in by_bin),
            prior_calls=calls[i] / config.steps,
        )
        for i, (label, est) in enumerate(estimators.items())
    )
    # The bias/variance-vs-t figure: the mode-seeking term eps_cond - c eps alone, unweighted
    # (w(t) = 1), so that only the coefficient c differs between the curves.
    grid = torch.linspace(1, num_t - 1, config.curve_points).round().long().tolist()
    per_form = coefficient_curves(
        prior, x_fixed, grid, one_rows["cond"], config.curve_draws, config.seed + 3
    )
    curves = {k: tuple(v) for k, v in per_form.items()}
    return ScenarioResult(
        scenario=scenario,
        prior=prior,
        initial=initial,
        runs=runs,
        bin_timesteps=tuple(bins),
        curve_timesteps=tuple(grid),
        curves=curves,
        seconds=time.perf_counter() - start,
    )


def simulate(
    scenarios: Sequence[Scenario],
    estimators: dict[str, Estimator],
    config: SimulationConfig,
    on_step: Callable[[], None] | None = None,
) -> list[ScenarioResult]:
    """``run_scenario`` for each scenario, in order."""
    return [run_scenario(s, estimators, config, on_step) for s in scenarios]
