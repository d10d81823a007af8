"""Checkpoints: safetensors for tensors, JSON for the rest; never pickle.

A checkpoint folder holds ``scene.safetensors`` (the scene's state_dict),
``optimizer.safetensors`` (Adam's moment tensors and the random generator's state) and
``state.json`` (step, Adam's scalars, format version). It is written to
``checkpoint.tmp`` (``state.json`` last: its presence marks the folder complete), synced
to the disk, then swapped in: ``checkpoint`` -> ``checkpoint.old``, ``checkpoint.tmp`` ->
``checkpoint``. A kill or a full disk at any point leaves a loadable checkpoint: the old
one, or, if the kill came between the two renames, ``.tmp`` (complete) or ``.old``, which
``load_checkpoint`` falls back to and moves back into place.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from ssd3d import atomic
from ssd3d.errors import SSD3DError

FORMAT_VERSION = 1
SCENE_FILE = "scene.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"
RNG_KEY = "rng_state"
# The estimator's companion state (a running coefficient's sums) in the optimizer file.
ESTIMATOR_PREFIX = "estimator."
# VSD's particle score (its adapters' weights and their AdamW moments) in the same file.
PARTICLE_PREFIX = "particle."


@dataclass
class TrainingState:
    """Everything a resumed run needs besides the config."""

    step: int  # steps completed
    scene: dict[str, torch.Tensor]
    optimizer: dict  # torch.optim state_dict
    rng_state: torch.Tensor  # torch.Generator.get_state()
    # The estimator's companion (``Estimator.make_state()``) as tensors; {} when stateless.
    estimator: dict[str, torch.Tensor] = field(default_factory=dict)
    # VSD's particle score (``pipeline.variational``) as tensors; {} for other estimators.
    particle: dict[str, torch.Tensor] = field(default_factory=dict)


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


def _siblings(folder: Path) -> tuple[Path, Path]:
    return folder.with_name(folder.name + ".tmp"), folder.with_name(folder.name + ".old")


def save_checkpoint(folder: Path, state: TrainingState) -> None:
    """Write ``state`` to ``folder`` atomically (temp folder, synced, then swap).

    A full disk (or another filesystem error) is an ``SSD3DError`` and leaves the previous
    checkpoint as it was.
    """
    folder = Path(folder)
    tmp, old = _siblings(folder)
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        scene = {k: v.detach().cpu().contiguous() for k, v in state.scene.items()}
        atomic.write_synced(tmp / SCENE_FILE, save(scene))
        tensors, meta = _optimizer_tensors(state.optimizer)
        tensors[RNG_KEY] = state.rng_state.cpu().contiguous()
        for key, value in state.estimator.items():
            tensors[ESTIMATOR_PREFIX + key] = value.detach().cpu().contiguous()
        for key, value in state.particle.items():
            tensors[PARTICLE_PREFIX + key] = value.detach().cpu().contiguous()
        atomic.write_synced(tmp / OPTIMIZER_FILE, save(tensors))
        info = {"format_version": FORMAT_VERSION, "step": state.step, "optimizer": meta}
        # Last: a .tmp with a state.json holds both tensor files whole (synced before it).
        atomic.write_synced(tmp / STATE_FILE, json.dumps(info, indent=1).encode())
        atomic.fsync_dir(tmp)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)  # frees the space; the old checkpoint stays
        raise atomic.disk_error(e, f"the checkpoint {folder}") from None
    if folder.exists():
        shutil.rmtree(old, ignore_errors=True)
        folder.rename(old)
    tmp.rename(folder)
    atomic.fsync_dir(folder.parent)  # the swap is on disk before the old one goes
    shutil.rmtree(old, ignore_errors=True)


def _read(folder: Path) -> TrainingState:
    try:
        info = json.loads((folder / STATE_FILE).read_text())
        scene = load_file(str(folder / SCENE_FILE))
        tensors = load_file(str(folder / OPTIMIZER_FILE))
        if not isinstance(info, dict):
            raise SSD3DError(f"checkpoint {folder} is corrupt: {STATE_FILE} is not an object")
        if info.get("format_version") != FORMAT_VERSION:
            raise SSD3DError(f"checkpoint {folder} has an unknown format version")
        return TrainingState(
            step=int(info["step"]),
            scene=scene,
            optimizer=_optimizer_state_dict(tensors, info["optimizer"]),
            rng_state=tensors[RNG_KEY],
            estimator={
                k[len(ESTIMATOR_PREFIX) :]: v
                for k, v in tensors.items()
                if k.startswith(ESTIMATOR_PREFIX)
            },
            particle={
                k[len(PARTICLE_PREFIX) :]: v
                for k, v in tensors.items()
                if k.startswith(PARTICLE_PREFIX)
            },
        )
    except SSD3DError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError, SafetensorError) as e:
        raise SSD3DError(f"checkpoint {folder} is missing or corrupt: {e}") from None


def recover_checkpoint(folder: Path) -> bool:
    """Finish a swap a kill interrupted: if ``folder`` is missing, move the newest complete
    sibling (``.tmp`` whose ``state.json`` was written, else ``.old``) into its place.
    Returns whether ``folder`` now exists. Left alone where the rename is refused (a
    read-only folder): ``load_checkpoint`` then reads the sibling where it lies."""
    folder = Path(folder)
    if folder.is_dir():
        return True
    for candidate in _siblings(folder):
        if not (candidate / STATE_FILE).is_file():
            continue
        try:
            _read(candidate)
        except SSD3DError:
            continue  # a .tmp torn by a power cut: try .old
        try:
            candidate.rename(folder)
            atomic.fsync_dir(folder.parent)
        except OSError:
            return False
        return True
    return False


def load_checkpoint(folder: Path) -> TrainingState:
    """Read a checkpoint folder (recovering it from an interrupted swap, see
    ``recover_checkpoint``); a missing or corrupt one is an ``SSD3DError``."""
    folder = Path(folder)
    if recover_checkpoint(folder):
        return _read(folder)
    for candidate in _siblings(folder):
        if (candidate / STATE_FILE).is_file():
            try:
                return _read(candidate)
            except SSD3DError:
                continue
    raise SSD3DError(f"no checkpoint at {folder}")
