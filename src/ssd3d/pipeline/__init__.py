"""The text-to-3D pipeline: config, the distillation loop, checkpoints, the run folder and
its outputs. The sequence that drives it (generate, resume, export) is ``ssd3d.generation``."""

from ssd3d.pipeline.config import GenerateConfig, resolve_config
from ssd3d.pipeline.loop import Distillation, NonFiniteGradient
from ssd3d.pipeline.outputs import export_outputs, load_scene
from ssd3d.pipeline.run import prepare
from ssd3d.pipeline.run_dir import RunDir

__all__ = [
    "Distillation",
    "GenerateConfig",
    "NonFiniteGradient",
    "RunDir",
    "export_outputs",
    "load_scene",
    "prepare",
    "resolve_config",
]
