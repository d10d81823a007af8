"""The ToyWorld benchmark: every estimator distils every prompt, scored against ground truth.

Estimators x prompts x seeds run at one step budget with the pipeline's own loop
(``prepare(cfg, prior)`` then ``run_step()``), the prior loaded once and shared. At a few
checkpoints (the initial scene, then evenly spaced to the end) the scene is scored:

- ``iou``: 3D IoU of occupancy (density > ``EvalConfig.threshold``) with the true shape,
  maximised over yaw about the up axis (``toyworld.metrics.iou_over_yaw``);
- ``chamfer``: the generated surface (marching cubes of the density at the same threshold,
  area-sampled) against the true surface turned by that best yaw; inf for an empty field;
- ``colour_error``: mean RGB distance of the albedo on the true surface at the best yaw;
- ``psnr``: ``EvalConfig.views`` orbit renders of the scene against renders of the true
  object (``GroundTruthField``) turned by the best yaw, same cameras, same headlight
  shading. Aligned by the best yaw so that PSNR scores appearance given the shape, like
  Chamfer and colour; ``psnr_yaw0`` is the same against the unturned truth (the prompts'
  view labels fix a front, so an object that comes out turned loses there);
- ``r_precision``: the judge's top-1 prompt on those orbit views (fraction right);
- ``multi_face``: the balanced accuracy of the judge's view labels on those orbit views
  against the labels each camera sees on the object turned by the best yaw, for the shapes
  whose front and back differ (``MULTI_FACE_SHAPES``). Balanced (the mean over front, side
  and back of the fraction read right), so that a judge answering "side" for every view of
  an object it cannot read scores 1/3, not 0.5; turned, because a Janus object shows its
  front from behind whichever way it faces (docs/results/judge-views.md).

R-precision and the multi-face score are NaN when no judge is available. A run whose
gradient turns non-finite (``NonFiniteGradient``) is recorded with its error and the
benchmark goes on. Results are written to ``results.json`` after every run, so a stopped
benchmark continues where it stopped when pointed at the same folder. Each finished run
also leaves its final scene's orbit views in ``gallery/``, for ``report.html``'s gallery.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ssd3d.bench.config import NOMINAL_STEP_SECONDS, BenchConfig, EstimatorEntry, EvalConfig
from ssd3d.bench.oracle import TrueRenders
from ssd3d.bench.results import (
    GALLERY_VIEWS,
    JUDGE_RULE,
    RESULTS_FILE,
    check_same_judge,
    check_same_run_settings,
    gallery_image,
    judge_identity,
    new_bench_dir,
    open_results,
    prior_weights,
    run_key,
    write_results,
)
from ssd3d.bench.scoring import Scorer, load_judge
from ssd3d.config import to_dict
from ssd3d.errors import SSD3DError
from ssd3d.pipeline.config import GenerateConfig
from ssd3d.pipeline.loop import NonFiniteGradient
from ssd3d.pipeline.outputs import orbit_sheet
from ssd3d.pipeline.run import load_prior_for, prepare
from ssd3d.scene import build_scene


@dataclass
class BenchOutcome:
    """What ``run_bench`` did."""

    out_dir: Path
    results: dict
    ran: list[tuple[str, str, int]]  # (label, prompt, seed) of the runs executed this time
    skipped: list[tuple[str, str, int]]  # already in results.json
    estimate_s: float  # estimated seconds for the runs to do, printed up front
    wall_s: float
    # Runs that could not run (an error other than a non-finite gradient, or their Ray
    # worker kept dying): (label, prompt, seed, error). Not in results.json: tried again
    # next time.
    failed: list[tuple[str, str, int, str]] = field(default_factory=list)


def _run_one(
    cfg: GenerateConfig,
    prior,
    checkpoint_steps: list[int],
    scorer: Scorer,
    initial: dict[str, float],
    image_path: Path,
    oracle: bool = False,
) -> dict:
    """One run: train to ``cfg.steps``, scoring at the checkpoints, then save its gallery
    views to ``image_path``; NonFiniteGradient is recorded, not raised."""
    from ssd3d.export import save_png

    run = prepare(cfg, prior, _true_renders(cfg, scorer) if oracle else None)
    w, h = cfg.camera.width, cfg.camera.height
    checkpoints = [{"step": 0, **initial}]
    train_s = eval_s = prior_calls = 0.0
    status, error = "ok", None
    try:
        while run.step < cfg.steps:
            start = time.perf_counter()
            prior_calls += run.run_step().prior_calls
            train_s += time.perf_counter() - start
            if run.step in checkpoint_steps:
                start = time.perf_counter()
                checkpoints.append({"step": run.step, **scorer.score(run.scene, cfg.prompt, w, h)})
                eval_s += time.perf_counter() - start
    except NonFiniteGradient as e:
        status, error = "failed", str(e)
    if status == "ok":
        sheet = orbit_sheet(run.scene, GALLERY_VIEWS, cfg.export.contact_resolution)
        save_png(sheet, image_path)
    return {
        "status": status,
        "error": error,
        "steps_done": run.step,
        "checkpoints": checkpoints,
        "train_seconds": round(train_s, 3),
        "eval_seconds": round(eval_s, 3),
        "seconds_per_step": round(train_s / max(run.step, 1), 4),
        # Network evaluations of the step's batch, averaged over the run (guidance counts
        # them: 2 for SDS with guidance, more for ISM's and SDI's DDIM inversion).
        "prior_calls_per_step": round(prior_calls / max(run.step, 1), 3),
    }


@dataclass(frozen=True)
class BenchCell:
    """One (estimator, prompt, seed) of the grid as a job of ``ssd3d.batch.runner``: run
    here with the bench's loaded prior and scorer, or as a Ray task that loads its own."""

    entry: EstimatorEntry
    cfg: GenerateConfig  # the run's pipeline config
    checkpoint_steps: tuple[int, ...]
    eval: EvalConfig
    # "auto" (the shipped judge), a judge file, None (no judge), or "given" (the object
    # ``run_bench`` was handed: only here, not on Ray).
    judge: str | None
    # The results folder: the run's gallery views go to ``gallery_image`` under it (on Ray
    # too: like a batch's run folders, it must be on storage every node sees).
    out_dir: Path
    threads: int | None = None

    @property
    def id(self) -> str:
        key = json.dumps([self.entry.canonical, self.cfg.prompt, self.cfg.seed, self.cfg.steps])
        return hashlib.sha256(key.encode()).hexdigest()[:10]

    @property
    def label(self) -> str:
        return f"{self.entry.label} | {self.cfg.prompt} | seed {self.cfg.seed}"

    def scorer_key(self) -> tuple:
        return ("scorer", self.eval, self.judge)

    def initial_key(self) -> tuple:
        # The initial scene depends on neither the seed nor the estimator (_calibrate).
        return ("initial", replace(self.cfg, estimator="", seed=0), self.eval, self.judge)

    def resources(self):
        from ssd3d.batch.runner import Resources

        return Resources(threads=self.threads, gpus=1 if self.cfg.device.startswith("cuda") else 0)

    def run(self, context) -> dict:
        cfg = self.cfg
        prior = None if self.entry.is_oracle else context.prior(cfg)
        scorer = context.memo(
            self.scorer_key(), lambda: Scorer(self.eval, _load_judge_spec(self.judge, cfg.device))
        )
        initial = context.memo(
            self.initial_key(),
            lambda: scorer.score(
                _initial_scene(cfg), cfg.prompt, cfg.camera.width, cfg.camera.height
            ),
        )
        start = time.perf_counter()
        image = gallery_image((self.entry.canonical, cfg.prompt, cfg.seed, cfg.steps))
        result = _run_one(
            cfg,
            prior,
            list(self.checkpoint_steps),
            scorer,
            initial,
            self.out_dir / image,
            oracle=self.entry.is_oracle,
        )
        return {
            "label": self.entry.label,
            "spec": self.entry.spec,
            "canonical": self.entry.canonical,
            "prompt": cfg.prompt,
            "seed": cfg.seed,
            "steps": cfg.steps,
            **result,
            "image": image if result["status"] == "ok" else None,
            "wall_seconds": round(time.perf_counter() - start, 3),
        }


def _load_judge_spec(spec: str | None, device: str):
    """The judge a cell names (see ``BenchCell.judge``), or None."""
    if spec is None:
        return None
    if spec == "given":
        raise SSD3DError("a judge object can only be used in this process: give its file")
    return load_judge(None if spec == "auto" else spec, device=device)[0]


def _true_renders(cfg: GenerateConfig, scorer: Scorer) -> TrueRenders:
    """The oracle's supervision: the true object drawn as the scorer draws it."""
    return TrueRenders(cfg.prompt, cfg.background.colour, scorer.cfg.truth_renderer)


def _calibrate(cfg: GenerateConfig, prior, scorer: Scorer, oracle: bool, steps: int = 4):
    """(initial-scene metrics, seconds per step, seconds per scoring) from a throwaway run.

    The initial scene does not depend on the seed or the estimator (a zero grid plus the
    blob bias), so its score is computed once per prompt and shared by every run.
    """
    run = prepare(cfg, prior, _true_renders(cfg, scorer) if oracle else None)
    start = time.perf_counter()
    initial = scorer.score(run.scene, cfg.prompt, cfg.camera.width, cfg.camera.height)
    eval_s = time.perf_counter() - start
    try:
        run.run_step()  # warm-up (first-call allocations)
        start = time.perf_counter()
        for _ in range(steps):
            run.run_step()
        step_s = (time.perf_counter() - start) / steps
    except NonFiniteGradient:  # this run will fail; the estimate falls back on a nominal time
        step_s = NOMINAL_STEP_SECONDS
    return initial, step_s, eval_s


def run_bench(
    cfg: BenchConfig,
    out_dir: Path | None = None,
    *,
    prior=None,
    judge="auto",
    progress: bool = True,
    echo: Callable[[str], None] = print,
    ray: str | None = None,
    threads: int | None = None,
    retries: int | None = None,
) -> BenchOutcome:
    """Run every (estimator, prompt, seed) not yet in ``out_dir/results.json``; write
    results.json after each run, then table.md, metrics_vs_steps.png and report.html.

    prior: a loaded prior (None: load ``cfg.prior`` once). judge: a loaded judge, a judge
    file, None for none, or "auto" (the shipped one if present).
    ray: None runs the grid here, one run after another; else its cells are Ray tasks
    (``ssd3d.batch.runner``; "local", "auto" or an address), each loading the prior and
    judge itself. threads: torch threads per run (None: as they are here; 1 on Ray).
    """
    from ssd3d.batch.runner import (
        DEFAULT_RETRIES,
        Interrupted,
        WorkerContext,
        import_ray,
        run_jobs,
    )
    from ssd3d.bench.tables import write_report

    if ray is not None:
        import_ray()  # a missing extra is said before anything is written
    wall_start = time.perf_counter()
    out_dir = Path(out_dir) if out_dir is not None else new_bench_dir()
    out_dir = out_dir.absolute()  # Ray workers do not share our working directory
    data = open_results(out_dir, cfg)
    done = {run_key(r) for r in data["runs"]}
    todo, skipped = [], []
    for entry, prompt, seed in cfg.plan():
        key = (entry.canonical, prompt, seed, cfg.steps)
        (skipped if key in done else todo).append((entry, prompt, seed))

    any_cfg = cfg.generate_config(*cfg.plan()[0])
    if ray is not None:
        if prior is not None:
            raise SSD3DError("a loaded prior cannot go to Ray workers: they load cfg.prior")
    elif any(not entry.is_oracle for entry, _, _ in todo):
        # The oracle's runs are fitted to the true renders: a grid of them alone needs no
        # prior (at a new render size the exact prior would first render its dataset).
        if prior is None:
            echo(f"loading the {cfg.prior} prior…")
            prior = load_prior_for(any_cfg)
        for prompt in cfg.prompts:  # unknown to this prior: fail before any run
            prior.embed([prompt])
    judge_note, judge_spec = "", judge
    if judge == "auto":
        judge, judge_note = load_judge(device=any_cfg.device)
        judge_spec = "auto" if judge is not None else None
    elif isinstance(judge, (str, Path)):
        judge_spec = str(judge)
        judge, judge_note = load_judge(judge_spec, device=any_cfg.device)
        if judge is None:
            raise SSD3DError(judge_note)
    elif judge is None:
        judge_note = "no judge given"
    else:
        judge_spec = "given"
        if ray is not None:
            raise SSD3DError("a loaded judge cannot go to Ray workers: give its file")
    if threads is not None and threads < 1:
        raise SSD3DError(f"--threads must be >= 1; got {threads}")
    # The rule is this code's whatever the judge; a judge object handed in has no file.
    identity = {"weights": None, "rule": JUDGE_RULE} if judge is not None else {}
    if judge is not None and judge_spec != "given":
        identity = judge_identity(None if judge_spec == "auto" else judge_spec)
        check_same_judge(data, identity, out_dir / RESULTS_FILE)
    data["judge"] = {"available": judge is not None, "note": judge_note, **identity}
    data["prior_info"] = {
        "name": cfg.prior,
        "model": cfg.model or "default",
        "weights": prior_weights(cfg.prior, cfg.model),
    }
    data["machine"] = {
        "platform": platform.platform(),
        "torch": torch.__version__,
        "threads": threads or (torch.get_num_threads() if ray is None else 1),
        "device": any_cfg.device,
        **({"ray": ray} if ray is not None else {}),
    }
    run_settings = to_dict(replace(any_cfg, prompt="", estimator="", seed=0))
    if todo:
        check_same_run_settings(data, run_settings, out_dir / RESULTS_FILE)
        data["generate_config"] = run_settings
    else:  # nothing added: the file keeps the settings its runs were made with
        data.setdefault("generate_config", run_settings)
    # The level every scene is scored at: the evaluation's, else the representation's own,
    # "measured" when each scene measures its own from its renders.
    if cfg.eval.threshold is not None:
        data["threshold"] = cfg.eval.threshold
    else:
        fresh = build_scene(any_cfg)
        data["threshold"] = "measured" if fresh.measures_surface_level else fresh.surface_level

    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / RESULTS_FILE
    write_results(results_path, data)  # the folder is this benchmark's from now on
    checkpoint_steps = tuple(cfg.checkpoint_steps())
    cells = [
        BenchCell(
            e,
            cfg.generate_config(e, p, s),
            checkpoint_steps,
            cfg.eval,
            judge_spec,
            out_dir,
            threads,
        )
        for e, p, s in todo
    ]
    context = None
    estimate = 0.0
    if cells and ray is None:
        # Here the cells share the bench's prior, judge and initial scores.
        context = WorkerContext(prior)
        scorer = Scorer(cfg.eval, judge)
        context.put(cells[0].scorer_key(), scorer)
        # Timed on an estimator's cell: the oracle's steps skip the prior.
        timed = next((c for c in cells if not c.entry.is_oracle), cells[0])
        initial, step_s, eval_s = _calibrate(timed.cfg, prior, scorer, timed.entry.is_oracle)
        context.put(timed.initial_key(), initial)
        n_scores = len(todo) * (len(checkpoint_steps) - 1) + len(cfg.prompts) - 1
        estimate = len(todo) * cfg.steps * step_s + n_scores * eval_s
        echo(
            f"{len(todo)} runs to do ({len(skipped)} already in {results_path}), "
            f"{cfg.steps} steps each: {step_s:.2f} s/step and {eval_s:.1f} s per scoring "
            f"measured now, estimated {estimate / 60:.1f} min"
        )
    elif cells:
        echo(
            f"{len(todo)} runs to do ({len(skipped)} already in {results_path}), "
            f"{cfg.steps} steps each, on Ray ({ray})"
        )
    ran: list[tuple[str, str, int]] = []
    failed: list[tuple[str, str, int, str]] = []

    def record(outcome) -> None:
        cell = outcome.job
        key = (cell.entry.label, cell.cfg.prompt, cell.cfg.seed)
        if not outcome.ok:
            failed.append((*key, outcome.error))
            echo(f"failed: {cell.label}: {outcome.error}")
            return
        data["runs"].append(outcome.result)
        write_results(results_path, data)
        ran.append(key)

    try:
        if cells:
            run_jobs(
                cells,
                record,
                ray=ray,
                track_dir=out_dir / ".running",
                retries=DEFAULT_RETRIES if retries is None else retries,
                progress=progress,
                desc="bench",
                context=context,
            )
    except Interrupted:
        if data["runs"]:
            write_report(out_dir, data)
        raise SSD3DError(
            f"interrupted after {len(ran)} runs; finished runs are in {results_path}. "
            f"Continue with --out {out_dir}"
        ) from None
    wall = time.perf_counter() - wall_start
    data["last_wall_seconds"] = round(wall, 1)
    write_results(results_path, data)
    write_report(out_dir, data)
    return BenchOutcome(
        out_dir, data, ran, [(e.label, p, s) for e, p, s in skipped], estimate, wall, failed
    )


def _initial_scene(cfg: GenerateConfig):
    """The scene every run of ``cfg`` starts from, as the loop builds it."""
    return build_scene(cfg).to(cfg.device)


__all__ = ["BenchCell", "BenchOutcome", "run_bench"]
