"""What a benchmark runs and how it scores: estimators x prompts x seeds at one step budget,
the evaluation settings, and the command line's lists parsed into them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from ssd3d.bench.metrics import (
    DEFAULT_IOU_RESOLUTION,
    DEFAULT_N_SURFACE,
    DEFAULT_N_YAW,
)
from ssd3d.bench.oracle import ORACLE_LABEL, ORACLE_SPEC
from ssd3d.config import split_list
from ssd3d.errors import SSD3DError
from ssd3d.estimators import build_estimator, describe
from ssd3d.pipeline.config import PRIORS, GenerateConfig, resolve_config
from ssd3d.toyworld.truth import DEFAULT_TRUTH_RENDERER, TRUTH_RENDERERS
from ssd3d.toyworld.vocabulary import all_prompts, parse_prompt

# Abbreviations of estimator parameters in derived labels ("sds guidance_scale=100" ->
# "sds s=100"); parameters not listed keep their name.
LABEL_ABBREVIATIONS = {
    "guidance_scale": "s",
    "coefficient": "c",
    "match_norm": "norm",
    "use_negative": "neg",
    "t_threshold": "t_thr",
    "weighting": "w",
}

# SDS at the two guidance scales practitioners use, the peers, SSD with its defaults (tau =
# 800, no norm matching, running c), and one ablation per SSD switch. tau = 0 puts every
# sampled t on the mode-disengaging branch, tau = 999 every t on the mode-seeking branch;
# 100/200/400 fill in the tau sweep (docs/method.md; 200 was SSD's earlier default).
DEFAULT_ESTIMATORS = (
    "sds guidance_scale=7.5",
    "sds guidance_scale=100",
    "csd",
    "nfsd",
    "ssd",
    "ssd coefficient=one",
    "ssd coefficient=zero",
    "ssd match_norm=true",
    "ssd tau=0",
    "ssd tau=100",
    "ssd tau=200",
    "ssd tau=400",
    "ssd tau=999",
)
# Two symmetric and two less symmetric shapes (the wedge's front and back differ, for the
# multi-face score), four colours; a torus because its hole is the hardest topology to
# carve out of the initial blob.
DEFAULT_PROMPTS = ("a green cube", "a red sphere", "a blue torus", "a yellow wedge")
DEFAULT_SEEDS = 1
# Steps per run: 13 estimators x 4 prompts x 1 seed x 200 steps = 10,400 steps, about 22
# minutes on a 2-core CPU (0.12 s a step, 0.5 s per scoring): a benchmark that fits a
# half-hour budget. The shapes are on their way, not converged (docs/measurements.md: 600).
DEFAULT_STEPS = 200
# Scored checkpoints after the initial scene, evenly spaced, the last one at the end.
DEFAULT_CHECKPOINTS = 4
# Seconds per step for the up-front estimate when the timing run cannot step (0.15-0.18 s
# on a 2-core CPU, plus the exact prior's scan: docs/measurements.md).
NOMINAL_STEP_SECONDS = 0.2

# The estimator item that stands for the preset's own estimator (``--estimators preset``).
PRESET_SPEC = "preset"

# --quick: SDS, SSD and one tau on one prompt, on the scene whose oracle reaches the truth at
# this budget: 3D Gaussians for 100 steps, then their mesh for 100 (the wedge's oracle 3D IoU
# 0.94 over three seeds where the voxel grid's is 0.63: docs/mesh.md). 1.5 minutes on 2 cores
# once the exact prior's dataset is rendered (two minutes the first time, cached after). The wedge,
# because the blob starts far from it (3D IoU 0.21; a cube 0.46) and its edges are what a
# soft scene rounds.
QUICK_ESTIMATORS = ("sds guidance_scale=7.5", "ssd", "ssd tau=600")
QUICK_PROMPTS = ("a yellow wedge",)
QUICK_STEPS = 200
QUICK_CHECKPOINTS = 2
QUICK_OVERRIDES = ("representation=mesh",)


@dataclass(frozen=True)
class EvalConfig:
    """How each checkpoint is scored."""

    # Occupancy level for IoU and the marching-cubes level for Chamfer: the same surface.
    # None: the scene's own surface level (the level its mesh is exported at; the voxel
    # grid's is density 2, which matched the true shapes best: docs/measurements.md).
    threshold: float | None = None
    # IoU grid points per axis over [-1, 1]^3 (bench.metrics' default).
    iou_resolution: int = DEFAULT_IOU_RESOLUTION
    # Yaw candidates over 360 degrees (every 10 degrees).
    n_yaw: int = DEFAULT_N_YAW
    # Marching-cubes grid per side for the generated surface: spacing 0.032, a third of a
    # 24^3 voxel, close to the IoU grid's.
    mesh_resolution: int = 64
    # Surface samples on each surface for Chamfer and colour. Half bench.metrics'
    # default: the exact pairwise distances cost n^2 (0.2 s here instead of 0.8 s) and the
    # sampling floor, 0.5 sqrt(area / n), only rises from 0.010 to 0.014 (torus).
    n_surface: int = DEFAULT_N_SURFACE // 2
    # Orbit views for PSNR and the judge, every 360 / views degrees from the front: 12 gives
    # 3 front, 6 side and 3 back labels at the orbit's 15-degree elevation.
    views: int = 12
    # Shading of both the generated and the true renders: a headlight (as the contact sheet).
    shading: str = "lambertian"
    # Seed of the surface sampling: the same true points for every estimator.
    seed: int = 0
    # How the true object is drawn, for the oracle's supervision and every render metric:
    # "surface" its exact outline; "volume" the soft step docs/results' tables were scored
    # against, whose outlines lie 0.02-0.04 outside the shape (docs/mesh.md).
    truth_renderer: str = DEFAULT_TRUTH_RENDERER

    def __post_init__(self) -> None:
        if self.truth_renderer not in TRUTH_RENDERERS:
            raise SSD3DError(
                f"eval truth_renderer must be one of {', '.join(TRUTH_RENDERERS)}; "
                f"got {self.truth_renderer!r}"
            )
        if self.threshold is not None and not (
            math.isfinite(self.threshold) and self.threshold > 0
        ):
            raise SSD3DError(f"eval threshold must be a positive density; got {self.threshold}")
        for name in ("iou_resolution", "mesh_resolution"):
            if getattr(self, name) < 2:
                raise SSD3DError(f"eval {name} must be >= 2; got {getattr(self, name)}")
        for name in ("n_yaw", "n_surface", "views"):
            if getattr(self, name) < 1:
                raise SSD3DError(f"eval {name} must be >= 1; got {getattr(self, name)}")


@dataclass(frozen=True)
class EstimatorEntry:
    """One estimator of the benchmark: a short label for tables and its spec."""

    label: str
    spec: str

    @property
    def canonical(self) -> str:
        """The spec with every parameter spelled out (``describe``): the run identity."""
        return ORACLE_SPEC if self.is_oracle else describe(build_estimator(self.spec))

    @property
    def is_oracle(self) -> bool:
        return self.spec == ORACLE_SPEC


@dataclass(frozen=True)
class BenchConfig:
    """What to run: estimators x prompts x seeds at ``steps`` steps each."""

    estimators: tuple[EstimatorEntry, ...]
    prompts: tuple[str, ...]
    seeds: tuple[int, ...] = (0,)
    steps: int = DEFAULT_STEPS
    # Scored checkpoints after the initial scene (evenly spaced, the last at ``steps``).
    checkpoints: int = DEFAULT_CHECKPOINTS
    prior: str = "exact"
    # Prior weights or dataset (None: the prior's default).
    model: str | None = None
    # key=value overrides applied to every run's GenerateConfig.
    overrides: tuple[str, ...] = ()
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        if not self.estimators:
            raise SSD3DError("bench needs at least one estimator")
        if not self.prompts:
            raise SSD3DError("bench needs at least one prompt")
        if not self.seeds:
            raise SSD3DError("bench needs at least one seed")
        if self.steps < 1:
            raise SSD3DError(f"bench steps must be >= 1; got {self.steps}")
        if self.checkpoints < 1:
            raise SSD3DError(f"bench checkpoints must be >= 1; got {self.checkpoints}")
        if self.prior not in PRIORS:
            raise SSD3DError(f"unknown prior '{self.prior}' (known: {', '.join(PRIORS)})")
        labels = [e.label for e in self.estimators]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise SSD3DError(f"estimator labels must be distinct; repeated: {', '.join(dup)}")
        seen: dict[str, str] = {}
        for e in self.estimators:  # "ssd" and "ssd tau=200" are one run, counted twice
            if e.canonical in seen:
                raise SSD3DError(
                    f"estimators '{seen[e.canonical]}' and '{e.label}' are the same estimator "
                    f"({e.canonical})"
                )
            seen[e.canonical] = e.label

    def checkpoint_steps(self) -> list[int]:
        """Steps scored: 0 (the initial scene), then ``checkpoints`` evenly spaced to ``steps``."""
        later = {
            max(1, round(self.steps * k / self.checkpoints)) for k in range(1, 1 + self.checkpoints)
        }
        return [0, *sorted(later)]

    def plan(self) -> list[tuple[EstimatorEntry, str, int]]:
        """Every (estimator, prompt, seed), estimator-major (a stopped bench has whole rows)."""
        return [(e, p, s) for e in self.estimators for p in self.prompts for s in self.seeds]

    def generate_config(self, entry: EstimatorEntry, prompt: str, seed: int) -> GenerateConfig:
        """The pipeline config of one run: the prior's preset, the run's fields, overrides."""
        fields = {"prompt": prompt, "steps": self.steps, "seed": seed}
        if not entry.is_oracle:  # the oracle runs the preset's scene without a prior
            fields["estimator"] = entry.spec
        if self.model is not None:
            fields["model"] = self.model
        return resolve_config(self.prior, fields, list(self.overrides))

    def to_json(self) -> dict:
        return {
            "estimators": [{**asdict(e), "canonical": e.canonical} for e in self.estimators],
            "prompts": list(self.prompts),
            "seeds": list(self.seeds),
            "steps": self.steps,
            "checkpoints": self.checkpoint_steps(),
            "prior": self.prior,
            "model": self.model,
            "overrides": list(self.overrides),
            "eval": asdict(self.eval),
        }


# --- parsing the command line's lists ----------------------------------------------------


def derive_label(spec: str) -> str:
    """``"sds guidance_scale=100"`` -> ``"sds s=100"``: the name and abbreviated parameters."""
    name, *pairs = spec.split()
    short = []
    for pair in pairs:
        key, _, value = pair.partition("=")
        short.append(f"{LABEL_ABBREVIATIONS.get(key, key)}={value}")
    return " ".join([name, *short])


def parse_estimator(item: str) -> EstimatorEntry:
    """``"label:spec"`` or ``"spec"`` (label derived) -> EstimatorEntry; SSD3DError if bad."""
    label, sep, spec = item.partition(":")
    if not sep or "=" in label:  # no label given ("=" can only be in a spec)
        label, spec = "", item
    label, spec = label.strip(), " ".join(spec.split())
    if not spec:
        raise SSD3DError(f"estimator item {item!r} has an empty spec")
    if spec == ORACLE_SPEC:
        return EstimatorEntry(label or ORACLE_LABEL, ORACLE_SPEC)
    try:
        build_estimator(spec)
    except SSD3DError as e:
        raise SSD3DError(f"bad estimator {spec!r}: {e}") from None
    return EstimatorEntry(label or derive_label(spec), spec)


def parse_estimators(items: str | Sequence[str]) -> tuple[EstimatorEntry, ...]:
    """A ';'-separated string or a list of items -> entries, every spec checked."""
    if isinstance(items, str):
        items = split_list(items)
    return tuple(parse_estimator(item) for item in items)


def parse_prompts(items: str | Sequence[str]) -> tuple[str, ...]:
    """``"all"``, a ';'-separated string or a list -> ToyWorld base prompts, each checked."""
    if isinstance(items, str):
        if items.strip().lower() == "all":
            return tuple(all_prompts())
        items = split_list(items)
    prompts = []
    for item in items:
        parsed = parse_prompt(item)  # SSD3DError for anything outside the vocabulary
        if parsed.view is not None:
            raise SSD3DError(f"bench prompts take no view suffix; got {item!r}")
        prompts.append(parsed.base)
    if len(set(prompts)) != len(prompts):
        raise SSD3DError("bench prompts must be distinct")
    return tuple(prompts)


def _with_preset(items: str | Sequence[str], preset_spec: str) -> list[str]:
    """Each ``preset`` item (or ``label:preset``) replaced by the estimator ``ssd3d generate``
    runs with this prior and these overrides, labelled ``preset`` unless it has a label: a
    benchmark of the default run then follows the preset instead of a copy of its spec."""
    out = []
    for item in split_list(items) if isinstance(items, str) else items:
        label, sep, spec = item.partition(":")
        if not sep:
            label, spec = "", item
        if spec.strip() == PRESET_SPEC and "=" not in label:
            out.append(f"{label.strip() or PRESET_SPEC}:{preset_spec}")
        else:
            out.append(item)
    return out


def bench_config(
    *,
    estimators: str | Sequence[str] | None = None,
    prompts: str | Sequence[str] | None = None,
    seeds: int | None = None,
    steps: int | None = None,
    checkpoints: int | None = None,
    quick: bool = False,
    prior: str = "exact",
    model: str | None = None,
    overrides: Sequence[str] = (),
    eval_config: EvalConfig | None = None,
    oracle: bool = True,
) -> BenchConfig:
    """The default (or ``quick``) benchmark with the given fields replaced. Checks everything
    that can be checked without the prior: estimator specs, prompts, overrides.

    ``oracle``: put the oracle row (the scene fitted to the true renders) first, unless the
    estimators already name it."""
    if seeds is not None and seeds < 1:
        raise SSD3DError(f"--seeds must be >= 1; got {seeds}")
    extra = QUICK_OVERRIDES if quick else ()
    items = (
        estimators
        if estimators is not None
        else (QUICK_ESTIMATORS if quick else DEFAULT_ESTIMATORS)
    )
    preset_spec = resolve_config(prior, {}, [*extra, *overrides]).estimator
    entries = parse_estimators(_with_preset(items, preset_spec))
    if oracle and not any(e.is_oracle for e in entries):
        entries = (parse_estimator(ORACLE_SPEC), *entries)
    cfg = BenchConfig(
        estimators=entries,
        prompts=parse_prompts(
            prompts if prompts is not None else (QUICK_PROMPTS if quick else DEFAULT_PROMPTS)
        ),
        seeds=tuple(range(seeds if seeds is not None else DEFAULT_SEEDS)),
        steps=steps if steps is not None else (QUICK_STEPS if quick else DEFAULT_STEPS),
        checkpoints=(
            checkpoints
            if checkpoints is not None
            else (QUICK_CHECKPOINTS if quick else DEFAULT_CHECKPOINTS)
        ),
        prior=prior,
        model=model,
        overrides=(*extra, *overrides),
        eval=eval_config or EvalConfig(),
    )
    for entry, prompt, seed in cfg.plan():
        cfg.generate_config(entry, prompt, seed)  # bad overrides fail here, before any run
    return cfg


__all__ = [
    "DEFAULT_ESTIMATORS",
    "DEFAULT_PROMPTS",
    "QUICK_ESTIMATORS",
    "BenchConfig",
    "EstimatorEntry",
    "EvalConfig",
    "PRESET_SPEC",
    "bench_config",
    "derive_label",
    "parse_estimators",
    "parse_prompts",
    "split_list",
]
