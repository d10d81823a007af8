"""ToyWorld: a closed world with ground truth (shapes with exact SDFs, colours, metrics).

The exact prior over ToyWorld's renders lives in ``ssd3d.priors.exact`` (it takes tensors
and knows nothing of ToyWorld).
"""

from ssd3d.toyworld.metrics import (
    DEFAULT_OCCUPANCY_THRESHOLD,
    chamfer_distance,
    colour_error,
    iou_over_yaw,
    psnr,
    sample_surface,
    score_object,
)
from ssd3d.toyworld.shapes import (
    SHAPE_RADIUS,
    SHAPES,
    UP_AXIS,
    GroundTruthField,
    get_shape,
    rotate_yaw,
    sdf,
    surface_mesh,
    surface_points,
)
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
    "DEFAULT_OCCUPANCY_THRESHOLD",
    "SHAPE_RADIUS",
    "SHAPES",
    "UP_AXIS",
    "VIEW_LABELS",
    "GroundTruthField",
    "Prompt",
    "all_prompts",
    "chamfer_distance",
    "colour_error",
    "colour_rgb",
    "get_shape",
    "iou_over_yaw",
    "make_prompt",
    "parse_prompt",
    "psnr",
    "rotate_yaw",
    "sample_surface",
    "score_object",
    "sdf",
    "surface_mesh",
    "surface_points",
]
