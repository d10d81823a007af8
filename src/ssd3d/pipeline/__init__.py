"""The text-to-3D pipeline: config, the distillation loop, checkpoints, outputs."""

from ssd3d.pipeline.config import GenerateConfig, resolve_config
from ssd3d.pipeline.loop import Distillation, NonFiniteGradient
from ssd3d.pipeline.outputs import export_run, load_scene
from ssd3d.pipeline.run import generate, resume

__all__ = [
    "Distillation",
    "GenerateConfig",
    "NonFiniteGradient",
    "export_run",
    "generate",
    "load_scene",
    "resolve_config",
    "resume",
]
