"""Simulation scenarios: a class-conditional Gaussian mixture, a prompt, and a start.

A scenario is a small YAML file (the built-ins live in ``ssd3d/sim/scenarios/``; copy one
and edit it). It is parsed into the frozen dataclasses below with ``ssd3d.config.from_dict``,
so an unknown or mistyped field is an ``SSD3DError`` that names it.

A component mean is either a list of D numbers or, for high-dimensional scenarios, a
mapping ``{coordinate: value}`` whose other coordinates are 0 (then ``dim`` gives D).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from ssd3d.config import from_dict, load_yaml
from ssd3d.errors import SSD3DError
from ssd3d.estimators.schedules import SCHEDULES
from ssd3d.priors.gmm import GaussianMixturePrior, MixtureClass

# The built-in scenarios, in the order ``ssd3d simulate`` runs them.
BUILTIN_SCENARIOS = ("separated", "overlapping", "highdim")
OPTIMIZERS = ("adam", "sgd")


@dataclass(frozen=True)
class ClassSpec:
    """One class (prompt) of the mixture."""

    name: str  # the prompt that selects this class
    means: tuple[Any, ...]  # per component: [D numbers] or {coordinate: value} (rest 0)
    stds: Any = 0.5  # one float for all, [K] isotropic per component, or [K][D] diagonal
    weights: tuple[float, ...] | None = None  # [K] positive; None: uniform


@dataclass(frozen=True)
class InitSpec:
    """Where the particles start: x0 ~ N(mean, std^2 I)."""

    mean: tuple[float, ...] | None = None  # [D]; None: the origin
    std: float = 1.0  # spread of the start


@dataclass(frozen=True)
class OptimSpec:
    """How the particles (the "scene") are updated with an estimator's gradient."""

    optimizer: str = "adam"  # "adam" (as in the 3D loop) or "sgd" (plain gradient descent)
    lr: float = 0.02  # Adam moves ~lr per step: 400 steps cross the 2D scenes (~8 units)
    schedule: str = "uniform"  # a name in ssd3d.estimators.SCHEDULES, default parameters


@dataclass(frozen=True)
class Scenario:
    """A simulation set-up, as written in a scenario YAML file."""

    name: str  # short name, used for file names and table titles
    classes: tuple[ClassSpec, ...]  # the mixture's classes
    prompt: str  # the class the particles are distilled toward
    negative: str | None = None  # class of the negative prompt (NFSD); None: the empty prompt
    description: str = ""  # one line for the report
    dim: int | None = None  # D; needed only when every mean is written as a mapping
    class_weights: tuple[float, ...] | None = (
        None  # [C] of the unconditional mixture; None: uniform
    )
    beta_schedule: Literal["scaled_linear", "linear"] = "scaled_linear"  # diffusers' DDPM betas
    init: InitSpec = InitSpec()  # where the particles start
    optim: OptimSpec = OptimSpec()  # how they move

    def __post_init__(self) -> None:
        if not self.classes:
            raise SSD3DError("classes: a scenario needs at least one class")
        names = [c.name for c in self.classes]
        for field in ("prompt", "negative"):
            value = getattr(self, field)
            if value is not None and value not in names:
                raise SSD3DError(f"{field} '{value}' is not a class (classes: {', '.join(names)})")
        if self.dim is not None and self.dim < 1:
            raise SSD3DError(f"dim must be >= 1; got {self.dim}")
        if self.optim.optimizer not in OPTIMIZERS:
            choices = ", ".join(OPTIMIZERS)
            raise SSD3DError(
                f"optim.optimizer must be one of {choices}; got {self.optim.optimizer!r}"
            )
        if not self.optim.lr > 0:
            raise SSD3DError(f"optim.lr must be > 0; got {self.optim.lr}")
        if self.optim.schedule not in SCHEDULES:
            raise SSD3DError(
                f"optim.schedule must be one of {', '.join(SCHEDULES)}; got {self.optim.schedule!r}"
            )
        if not self.init.std >= 0:
            raise SSD3DError(f"init.std must be >= 0; got {self.init.std}")
        d = self.data_dim
        if self.init.mean is not None and len(self.init.mean) != d:
            raise SSD3DError(f"init.mean needs {d} numbers (D); got {len(self.init.mean)}")

    @property
    def data_dim(self) -> int:
        """D: ``dim`` if given, else the length of the first mean written as a list."""
        if self.dim is not None:
            return self.dim
        for c in self.classes:
            for m in c.means:
                if isinstance(m, (list, tuple)):
                    return len(m)
        raise SSD3DError("dim: every mean is a mapping, so the scenario must give dim")

    def class_means(self, index: int) -> Tensor:
        """Class ``index``'s means as a dense [K, D] float64 tensor."""
        spec, d = self.classes[index], self.data_dim
        rows = []
        for k, m in enumerate(spec.means):
            where = f"classes[{index}] ('{spec.name}').means[{k}]"
            if isinstance(m, dict):
                row = torch.zeros(d, dtype=torch.float64)
                for coord, value in m.items():
                    if not isinstance(coord, int) or not 0 <= coord < d:
                        raise SSD3DError(
                            f"{where}: coordinate {coord!r} is not an integer in [0, {d})"
                        )
                    if isinstance(value, bool) or not isinstance(value, (int, float)):
                        raise SSD3DError(f"{where}: value for coordinate {coord} must be a number")
                    row[coord] = float(value)
            elif isinstance(m, (list, tuple)):
                if len(m) != d:
                    raise SSD3DError(f"{where}: needs {d} numbers (D); got {len(m)}")
                if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in m):
                    raise SSD3DError(f"{where}: must hold numbers; got {list(m)!r}")
                row = torch.tensor([float(v) for v in m], dtype=torch.float64)
            else:
                raise SSD3DError(f"{where}: must be a list of {d} numbers or a mapping; got {m!r}")
            rows.append(row)
        if not rows:
            raise SSD3DError(
                f"classes[{index}] ('{spec.name}').means: needs at least one component"
            )
        return torch.stack(rows)

    def prior(self) -> GaussianMixturePrior:
        """The scenario's mixture as a diffusion prior (exact eps)."""
        classes = [
            MixtureClass(c.name, self.class_means(i), c.stds, c.weights)
            for i, c in enumerate(self.classes)
        ]
        return GaussianMixturePrior(classes, self.class_weights, beta_schedule=self.beta_schedule)

    def init_particles(self, n: int, generator: torch.Generator) -> Tensor:
        """n starting particles, x0 ~ N(init.mean, init.std^2 I). [n, D] float64"""
        d = self.data_dim
        mean = torch.zeros(d, dtype=torch.float64)
        if self.init.mean is not None:
            mean = torch.tensor(self.init.mean, dtype=torch.float64)
        return mean + self.init.std * torch.randn(n, d, generator=generator, dtype=torch.float64)


def builtin_path(name: str) -> Path:
    """The YAML file of a built-in scenario."""
    return Path(str(resources.files("ssd3d.sim") / "scenarios" / f"{name}.yaml"))


def parse_scenario(data: dict[str, Any], source: str = "scenario") -> Scenario:
    """Build and fully check a Scenario (its prior included) from a YAML mapping."""
    try:
        scenario = from_dict(Scenario, data)
        scenario.prior()  # checks means, stds and weights now, not mid-run
    except SSD3DError as e:
        raise SSD3DError(f"{source}: {e}") from None
    return scenario


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A built-in scenario by name, or any scenario YAML file by path."""
    text = str(name_or_path)
    if text in BUILTIN_SCENARIOS:
        path = builtin_path(text)
    else:
        path = Path(text)
        if not path.is_file():
            if path.suffix in (".yaml", ".yml") or "/" in text:
                raise SSD3DError(f"scenario file not found: {text}")
            raise SSD3DError(
                f"unknown scenario '{text}' (built-in: {', '.join(BUILTIN_SCENARIOS)}; "
                "or give the path of a YAML file)"
            )
    return parse_scenario(load_yaml(path), source=f"scenario {path.name}")


def scenario_to_dict(scenario: Scenario) -> dict[str, Any]:
    """The scenario as plain data (for metrics.json)."""
    return dataclasses.asdict(scenario)


def _isotropic_stds(spec: ClassSpec, k: int, where: str) -> list[float]:
    """One std per component, or an error: a rotation keeps only isotropic Gaussians diagonal."""
    stds = spec.stds
    if isinstance(stds, (int, float)) and not isinstance(stds, bool):
        return [float(stds)] * k
    if isinstance(stds, (list, tuple)) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in stds
    ):
        return [float(v) for v in stds]
    raise SSD3DError(f"{where}: only isotropic stds can be rotated; got {stds!r}")


def transformed_scenario(
    scenario: Scenario, seed: int, scale_range: tuple[float, float] = (0.5, 2.0)
) -> Scenario:
    """A randomly rotated, scaled and shifted copy of a scenario with isotropic components.

    x -> s Q x + b with Q a Haar-random rotation, s log-uniform in ``scale_range`` and
    b ~ N(0, s^2 I): means and the start move with the map, stds and the start's spread
    scale by s, and the optimiser's lr scales by s so that it covers the same share of
    the scene per step. The mixture's shape is the same; what changes is where it sits
    relative to the diffusion's fixed noise scale, which every estimator must cope with.
    """
    gen = torch.Generator().manual_seed(seed)
    d = scenario.data_dim
    q, r = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))  # Haar measure over orthogonal matrices
    lo, hi = scale_range
    u = float(torch.rand(1, generator=gen, dtype=torch.float64))
    s = float(
        torch.exp(torch.tensor(lo).log() + u * (torch.tensor(hi).log() - torch.tensor(lo).log()))
    )
    b = s * torch.randn(d, generator=gen, dtype=torch.float64)

    def move(x: Tensor) -> list[float]:
        return (s * (q @ x) + b).tolist()

    classes = []
    for i, c in enumerate(scenario.classes):
        means = scenario.class_means(i)
        stds = _isotropic_stds(c, means.shape[0], f"classes[{i}] ('{c.name}').stds")
        classes.append(
            dataclasses.replace(c, means=tuple(move(m) for m in means), stds=[s * v for v in stds])
        )
    start = torch.tensor(scenario.init.mean or [0.0] * d, dtype=torch.float64)
    return dataclasses.replace(
        scenario,
        name=f"{scenario.name}-t{seed}",
        description=f"{scenario.name} rotated, scaled x{s:.2f} and shifted (seed {seed})",
        dim=d,
        classes=tuple(classes),
        init=InitSpec(mean=tuple(move(start)), std=s * scenario.init.std),
        optim=dataclasses.replace(scenario.optim, lr=s * scenario.optim.lr),
    )
