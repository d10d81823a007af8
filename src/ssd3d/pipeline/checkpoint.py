"""Checkpoints: safetensors for tensors, JSON for the rest; never pickle.

A checkpoint folder holds ``scene.safetensors`` (the scene's state_dict),
``optimizer.safetensors`` (Adam's moment tensors and the random generator's state) and
``state.json`` (step, Adam's scalars, format version). It is written to a temporary
folder and swapped in, so an interrupted save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ssd3d.errors import SSD3DError

FORMAT_VERSION = 1
SCENE_FILE = "scene.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"
RNG_KEY = "rng_state"


@dataclass
class TrainingState:
    """Everything a resumed run needs besides the config."""

    step: int  # steps completed
    scene: dict[str, torch.Tensor]
    optimizer: dict  # torch.optim state_dict
    rng_state: torch.Tensor  # torch.Generator.get_state()


def _optimizer_tensors(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for index, per_param in state_dict["state"].items():
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    groups = [{k: v for k, v in g.items()} for g in state_dict["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def _optimizer_state_dict(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if not name.startswith("state."):
            continue
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = value
    for name, value in meta["scalars"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(folder: Path, state: TrainingState) -> None:
    """Write ``state`` to ``folder`` atomically (temp folder, then swap)."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    scene = {k: v.detach().cpu().contiguous() for k, v in state.scene.items()}
    save_file(scene, str(tmp / SCENE_FILE))
    tensors, meta = _optimizer_tensors(state.optimizer)
    tensors[RNG_KEY] = state.rng_state.cpu().contiguous()
    save_file(tensors, str(tmp / OPTIMIZER_FILE))
    info = {"format_version": FORMAT_VERSION, "step": state.step, "optimizer": meta}
    (tmp / STATE_FILE).write_text(json.dumps(info, indent=1))
    if folder.exists():
        shutil.rmtree(old, ignore_errors=True)
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(folder: Path) -> TrainingState:
    """Read a checkpoint folder; a missing or corrupt one is an ``SSD3DError``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SSD3DError(f"no checkpoint at {folder}")
    try:
        info = json.loads((folder / STATE_FILE).read_text())
        scene = load_file(str(folder / SCENE_FILE))
        tensors = load_file(str(folder / OPTIMIZER_FILE))
        if info.get("format_version") != FORMAT_VERSION:
            raise SSD3DError(f"checkpoint {folder} has an unknown format version")
        return TrainingState(
            step=int(info["step"]),
            scene=scene,
            optimizer=_optimizer_state_dict(tensors, info["optimizer"]),
            rng_state=tensors[RNG_KEY],
        )
    except SSD3DError:
        raise
    except (OSError, ValueError, KeyError, SafetensorError) as e:
        raise SSD3DError(f"checkpoint {folder} is missing or corrupt: {e}") from None
