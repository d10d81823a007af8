"""``results.json``: the benchmark's one results file, its format version, and what makes two
runs the same run (so a rerun into the same folder adds only the missing ones)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from ssd3d.bench.config import BenchConfig
from ssd3d.bench.oracle import ORACLE_SPEC
from ssd3d.errors import SSD3DError
from ssd3d.estimators import build_estimator, describe
from ssd3d.pipeline.run_dir import slugify

RESULTS_FILE = "results.json"
# Each run's final scene from GALLERY_VIEWS orbit views (front, side, back, side) with normal
# maps, for report.html's gallery.
GALLERY_DIR = "gallery"
GALLERY_VIEWS = 4
# Where `ssd3d bench` writes without --out, like every command: under outputs/.
DEFAULT_BENCH_ROOT = Path("outputs/bench")
RESULTS_FORMAT = "ssd3d-bench"
RESULTS_VERSION = 1


def run_key(run: dict) -> tuple:
    """What makes two runs the same run: estimator (canonical spec), prompt, seed, steps."""
    return (run["canonical"], run["prompt"], run["seed"], run["steps"])


def read_results(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise SSD3DError(f"cannot read benchmark results {path}: {e}") from None
    if data.get("format") != RESULTS_FORMAT:
        raise SSD3DError(f"{path} is not an ssd3d benchmark results file")
    return data


def write_results(path: Path, data: dict) -> None:
    from ssd3d.atomic import atomic_write_bytes

    # NaN and inf are written as JSON's NaN / Infinity extensions (Python's json reads them).
    atomic_write_bytes(path, (json.dumps(data, indent=1) + "\n").encode())


def new_bench_dir(root: Path = DEFAULT_BENCH_ROOT, name: str | None = None) -> Path:
    """``root/<name or timestamp>``, with ``-2``, ``-3``… if taken: never reuse a folder."""
    base = name or datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(1, 10_000):
        candidate = Path(root) / (base if n == 1 else f"{base}-{n}")
        if not candidate.exists():
            return candidate
    raise SSD3DError(f"too many benchmark folders named {base} in {root}")


def prior_weights(prior: str, model: str | None) -> str | None:
    """sha256 (first 12 hex digits) of the file the prior's numbers come from: the toy
    prior's weights, or the exact prior's dataset when given as a file. None where there is
    no one file (the exact prior's cached dataset is named by its settings, Stable
    Diffusion by ``model``). A shipped prior replaced in place then cannot extend old runs."""
    if prior == "toy":
        from ssd3d.models.unet import shipped_prior_path

        path = Path(model) if model else shipped_prior_path()
    elif prior == "exact" and model:
        path = Path(model)
    else:
        return None
    return file_sha(path)  # None: loading the prior says what is missing


# How the judge's scores are computed: 2 = multi-face as balanced accuracy against the
# labels of the object turned by its best-IoU yaw (docs/results/judge-views.md). Files
# without it were scored by the first judge with plain accuracy against unturned labels.
JUDGE_RULE = 2


def file_sha(path: Path) -> str | None:
    """sha256 (first 12 hex digits) of a file, None if there is none."""
    path = Path(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12] if path.is_file() else None


def judge_identity(judge_file: str | Path | None) -> dict:
    """What scored R-precision and multi-face: the judge's weights and the scoring rule."""
    if judge_file is None:
        from ssd3d.models.judge import shipped_judge_path

        judge_file = shipped_judge_path()
    return {"weights": file_sha(judge_file), "rule": JUDGE_RULE}


def check_same_judge(data: dict, identity: dict, path: Path) -> None:
    """Refuse to add runs scored by another judge (or rule) to a file's judged runs."""
    old = data.get("judge") or {}
    if not data.get("runs") or not old.get("available"):
        return
    made_with = {"weights": old.get("weights"), "rule": old.get("rule")}
    if made_with != identity:
        before = made_with["weights"] or "the first judge"
        raise SSD3DError(
            f"{path} was scored by another judge or rule ({before}, rule "
            f"{made_with['rule'] or 1}; now {identity['weights']}, rule {identity['rule']}): "
            "use another --out"
        )


# Fields of the recorded run config that differ between the runs of one benchmark by design.
PER_RUN_FIELDS = frozenset({"prompt", "estimator", "seed", "steps"})


def _flatten(config: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_same_run_settings(data: dict, generate_config: dict, path: Path) -> None:
    """Refuse to add runs to a file whose runs were made with other run settings: the
    overrides are compared on opening, but a default changed in the code since (a scene's
    learning rate, say) would otherwise mix two settings under one table. Settings one side
    lacks (added to the config since) are not compared."""
    old = data.get("generate_config")
    if not data.get("runs") or not old:
        return
    before, now = _flatten(old), _flatten(generate_config)
    changed = sorted(
        k for k in before.keys() & now.keys() if k not in PER_RUN_FIELDS and before[k] != now[k]
    )
    if changed:
        shown = ", ".join(f"{k} {before[k]!r} -> {now[k]!r}" for k in changed[:3])
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        raise SSD3DError(
            f"{path} was made with other run settings ({shown}{more}): the defaults changed "
            "since; use another --out"
        )


def open_results(out_dir: Path, cfg: BenchConfig) -> dict:
    """The results of ``out_dir`` to continue (checked compatible with ``cfg``), or new ones.

    A folder that exists without ``results.json`` must be empty: nothing is overwritten.
    """
    out_dir = Path(out_dir)
    path = out_dir / RESULTS_FILE
    if path.is_file():
        data = read_results(path)
        old = data["config"]
        for key in ("prior", "model", "overrides", "eval"):
            new = cfg.to_json()[key]
            if old.get(key) != new:
                raise SSD3DError(
                    f"{path} was made with {key} = {old.get(key)!r}, not {new!r}: "
                    "continue it with the same settings or use another --out"
                )
        made_with = data.get("prior_info", {}).get("weights")  # absent in older files
        weights = prior_weights(cfg.prior, cfg.model)
        if made_with is not None and made_with != weights:
            raise SSD3DError(
                f"{path} was made with other {cfg.prior} weights (sha256 {made_with}, now "
                f"{weights}): continue it with those or use another --out"
            )
        data["config"] = cfg.to_json()
        return data
    if out_dir.exists() and any(out_dir.iterdir()):
        raise SSD3DError(f"{out_dir} exists, is not empty and holds no {RESULTS_FILE}")
    return {
        "format": RESULTS_FORMAT,
        "version": RESULTS_VERSION,
        "config": cfg.to_json(),
        "threshold": cfg.eval.threshold,
        "runs": [],
    }


def merge_results(datas: Sequence[dict]) -> dict:
    """One results dict from parts of one grid run apart (split by estimators or prompts).

    The parts must agree on what makes their numbers comparable (prior, model, overrides,
    evaluation); a run present in several parts is kept once (the first). The merged file
    holds the first part's plan: continuing it with the whole grid's options (``ssd3d bench
    --out``) finds every run done and writes the table and plot.
    """
    base = datas[0]
    merged = {**base, "runs": []}
    seen = set()
    for data in datas:
        for key in ("prior", "model", "overrides", "eval"):
            if data["config"].get(key) != base["config"].get(key):
                raise SSD3DError(f"the parts differ in {key}: cannot merge them")
        weights = data.get("prior_info", {}).get("weights")
        if weights != base.get("prior_info", {}).get("weights"):
            raise SSD3DError("the parts were made with other prior weights: cannot merge them")
        for run in data["runs"]:
            if run_key(run) not in seen:
                seen.add(run_key(run))
                merged["runs"].append(run)
    return merged


def selected_runs(data: dict) -> list[dict]:
    """The runs of the file's current plan (estimators x prompts x seeds at its steps),
    labelled with the current labels. Runs of earlier plans stay in the file, unused."""
    cfg = data["config"]
    labels = {entry_canonical(data, e): e["label"] for e in cfg["estimators"]}
    prompts, seeds = set(cfg["prompts"]), set(cfg["seeds"])
    out = []
    for run in data["runs"]:
        if (
            run["canonical"] in labels
            and run["prompt"] in prompts
            and run["seed"] in seeds
            and run["steps"] == cfg["steps"]
        ):
            out.append({**run, "label": labels[run["canonical"]]})
    return out


def entry_canonical(data: dict, entry: dict) -> str:
    """The estimator an entry of the plan ran: the canonical spec recorded with the plan, or
    (files written before it was) the one its runs recorded, or else today's reading of its
    spec. A spec such as ``"ssd"`` means whatever SSD's defaults were when it ran, so old
    results keep their rows after the defaults change."""
    if "canonical" in entry:
        return entry["canonical"]
    for run in data["runs"]:
        if run.get("spec") == entry["spec"] and run.get("canonical"):
            return run["canonical"]
    if entry["spec"] == ORACLE_SPEC:
        return ORACLE_SPEC
    return describe(build_estimator(entry["spec"]))


def gallery_image(key: tuple) -> str:
    """Where a run's gallery views go, relative to the results folder: one file per run key."""
    _, prompt, seed, _ = key
    digest = hashlib.sha1(json.dumps(key).encode()).hexdigest()[:10]
    return f"{GALLERY_DIR}/{slugify(prompt)}-seed{seed}-{digest}.png"


__all__ = [
    "GALLERY_DIR",
    "GALLERY_VIEWS",
    "RESULTS_FILE",
    "gallery_image",
    "merge_results",
    "new_bench_dir",
    "open_results",
    "prior_weights",
    "read_results",
    "entry_canonical",
    "run_key",
    "selected_runs",
    "write_results",
    "check_same_run_settings",
]
