"""ToyWorld: a closed world with ground truth: shapes with exact SDFs, colours, prompts,
the true object as a field, and its rendered dataset.

What is measured against this world (the benchmark and its metrics) lives in
``ssd3d.bench``; the models trained on it in ``ssd3d.models``.
"""

from ssd3d.toyworld.shapes import (
    SHAPE_RADIUS,
    SHAPES,
    UP_AXIS,
    get_shape,
    rotate_yaw,
    sdf,
    surface_mesh,
    surface_points,
)
from ssd3d.toyworld.truth import GroundTruthField
from ssd3d.toyworld.vocabulary import (
    COLOURS,
    VIEW_LABELS,
    Prompt,
    all_prompts,
    colour_rgb,
    make_prompt,
    parse_prompt,
)

__all__ = [
    "COLOURS",
    "SHAPE_RADIUS",
    "SHAPES",
    "UP_AXIS",
    "VIEW_LABELS",
    "GroundTruthField",
    "Prompt",
    "all_prompts",
    "colour_rgb",
    "get_shape",
    "make_prompt",
    "parse_prompt",
    "rotate_yaw",
    "sdf",
    "surface_mesh",
    "surface_points",
]
