"""The ToyWorld benchmark: every estimator distils every prompt, scored against ground truth.

- ``config``: what runs (estimators x prompts x seeds, steps) and how it is scored;
- ``metrics``: geometry, colour and appearance against the true object;
- ``scoring``: a scene's every metric at a checkpoint (``Scorer``), the judge;
- ``results``: the ``results.json`` file, its version, and what makes two runs the same;
- ``runner``: the grid's cells, here or on Ray (``run_bench``);
- ``tables``: tables, figures and the report page, from ``results.json`` alone.

The world it measures is ``ssd3d.toyworld``; nothing there imports this package.
"""

from ssd3d.bench.config import (
    DEFAULT_ESTIMATORS,
    DEFAULT_PROMPTS,
    QUICK_ESTIMATORS,
    BenchConfig,
    EstimatorEntry,
    EvalConfig,
    bench_config,
    derive_label,
    parse_estimators,
    parse_prompts,
)
from ssd3d.bench.results import (
    RESULTS_FILE,
    gallery_image,
    merge_results,
    new_bench_dir,
    open_results,
    prior_weights,
    read_results,
    selected_runs,
)
from ssd3d.bench.runner import BenchCell, BenchOutcome, run_bench
from ssd3d.bench.scoring import MULTI_FACE_SHAPES, Scorer, load_judge

__all__ = [
    "DEFAULT_ESTIMATORS",
    "DEFAULT_PROMPTS",
    "MULTI_FACE_SHAPES",
    "QUICK_ESTIMATORS",
    "RESULTS_FILE",
    "BenchCell",
    "BenchConfig",
    "BenchOutcome",
    "EstimatorEntry",
    "EvalConfig",
    "Scorer",
    "bench_config",
    "derive_label",
    "gallery_image",
    "load_judge",
    "merge_results",
    "new_bench_dir",
    "open_results",
    "parse_estimators",
    "parse_prompts",
    "prior_weights",
    "read_results",
    "run_bench",
    "selected_runs",
]
