"""A run folder: every path and file format of one run lives here, and nowhere else.

```
<run>/
  config.yaml        the resolved GenerateConfig (written first: the folder is a run from then on)
  log.jsonl          one JSON line per step (StepRecord)
  checkpoint/        scene, optimiser, generator and estimator state (``checkpoint.py``)
  turntable.mp4/.gif, contact_sheet.png, mesh.glb/.obj/.ply, image.png, ...   the exports
  report.html        the page of the run (``ssd3d.report.run_page``)
  summary.json       written last: the run is trained, exported and reported
```

A batch, the app, the benchmark and the report all go through ``RunDir``: none of them
spells a file name of a run folder.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
from pathlib import Path

import yaml

from ssd3d.atomic import atomic_write_bytes, disk_error
from ssd3d.config import from_dict, to_dict
from ssd3d.errors import SSD3DError
from ssd3d.pipeline.checkpoint import (
    SCENE_FILE,
    STATE_FILE,
    TrainingState,
    load_checkpoint,
    recover_checkpoint,
    save_checkpoint,
)
from ssd3d.pipeline.config import GenerateConfig

CONFIG_FILE = "config.yaml"
LOG_FILE = "log.jsonl"
CHECKPOINT_DIR = "checkpoint"
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"
TRAINING_PLOT = "training.png"
# What a run may leave behind, in the order a report lists them.
EXPORT_FILES = (
    "mesh.glb",
    "mesh.obj",
    "mesh.ply",
    "gaussians.ply",
    "turntable.mp4",
    "turntable.gif",
    "contact_sheet.png",
    "image.png",
)


class RunDir:
    """One run folder (it need not exist yet: ``create`` makes a new one)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # --- where things are -------------------------------------------------------------------
    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def log_path(self) -> Path:
        return self.path / LOG_FILE

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT_DIR

    @property
    def summary_path(self) -> Path:
        return self.path / SUMMARY_FILE

    @property
    def report_path(self) -> Path:
        return self.path / REPORT_FILE

    # --- making one -----------------------------------------------------------------------
    @classmethod
    def create(cls, out_root: str | os.PathLike, prompt: str) -> RunDir:
        """``out_root/<slug>``, or ``<slug>-2``, ``-3``… if taken: never overwrite a run."""
        out_root = Path(out_root)
        try:
            out_root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SSD3DError(f"cannot create output folder {out_root}: {e.strerror}") from None
        if not os.access(out_root, os.W_OK | os.X_OK):
            raise SSD3DError(f"output folder {out_root} is not writable")
        slug = slugify(prompt)
        for n in range(1, 10_000):
            candidate = out_root / (slug if n == 1 else f"{slug}-{n}")
            try:
                candidate.mkdir()
                return cls(candidate)
            except FileExistsError:
                continue
            except OSError as e:
                raise SSD3DError(f"cannot create run folder {candidate}: {e.strerror}") from None
        raise SSD3DError(f"too many runs named {slug} in {out_root}")

    def is_run(self) -> bool:
        return self.config_path.is_file()

    def require_run(self) -> RunDir:
        if not self.path.is_dir():
            raise SSD3DError(f"{self.path} is not a folder")
        if not self.is_run():
            raise SSD3DError(f"{self.path} is not an ssd3d run folder (no {CONFIG_FILE})")
        return self

    # --- config ---------------------------------------------------------------------------
    def write_config(self, cfg: GenerateConfig) -> None:
        text = yaml.safe_dump(to_dict(cfg), sort_keys=False)
        _write(self.config_path, text.encode())

    def read_config(self) -> GenerateConfig:
        self.require_run()
        try:
            data = yaml.safe_load(self.config_path.read_text())
        except yaml.YAMLError:
            raise SSD3DError(f"{self.config_path} is not valid YAML") from None
        except OSError as e:
            raise SSD3DError(f"cannot read {self.config_path}: {e.strerror}") from None
        if not isinstance(data, dict):
            raise SSD3DError(
                f"{self.config_path} does not hold a run's config (empty or not a mapping)"
            )
        return from_dict(GenerateConfig, data)

    # --- log --------------------------------------------------------------------------------
    def append_log(self, record: dict) -> None:
        try:
            with open(self.log_path, "a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as e:
            raise _io_error(e, self.log_path) from None

    def read_log(self) -> list[dict]:
        """The log's records. A line that does not parse is dropped: only the last line can
        be torn (a kill mid-write), and the steps it held are redone by a resume."""
        try:
            lines = self.log_path.read_text().splitlines()
        except FileNotFoundError:
            return []
        records = []
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("step"), int):
                records.append(record)
        return records

    def truncate_log(self, step: int) -> None:
        """Keep the records of steps <= ``step`` (those after the checkpoint a resume starts
        from are written again), and nothing torn."""
        if not self.log_path.exists():
            return
        kept = [r for r in self.read_log() if r["step"] <= step]
        _write(self.log_path, "".join(json.dumps(r) + "\n" for r in kept).encode())

    # --- checkpoint -------------------------------------------------------------------------
    def save_checkpoint(self, state: TrainingState) -> None:
        try:
            save_checkpoint(self.checkpoint_path, state)
        except OSError as e:
            raise _io_error(e, self.checkpoint_path) from None

    def load_checkpoint(self) -> TrainingState:
        return load_checkpoint(self.checkpoint_path)

    def checkpoint_step(self) -> int | None:
        """The step of the last checkpoint, None when there is none (or it is unreadable).
        A swap a kill interrupted is finished first, so such a run resumes, not restarts."""
        recover_checkpoint(self.checkpoint_path)
        try:
            info = json.loads((self.checkpoint_path / STATE_FILE).read_text())
            return int(info["step"]) if isinstance(info, dict) else None
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def scene_digest(self) -> str:
        """SHA-256 of the checkpoint's scene tensors (names and bytes, by name): equal
        digests, bit-for-bit equal results."""
        from safetensors.torch import load_file

        digest = hashlib.sha256()
        tensors = load_file(str(self.checkpoint_path / SCENE_FILE))
        for name in sorted(tensors):
            digest.update(name.encode())
            digest.update(tensors[name].contiguous().numpy().tobytes())
        return digest.hexdigest()

    # --- summary: the completion marker ------------------------------------------------------
    def write_summary(self, summary: dict) -> None:
        _write(self.summary_path, (json.dumps(summary, indent=1) + "\n").encode())

    def read_summary(self) -> dict | None:
        """The summary of a complete run; None while it is not complete."""
        try:
            data = json.loads(self.summary_path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def is_complete(self) -> bool:
        return self.read_summary() is not None


def slugify(prompt: str, max_length: int = 60) -> str:
    """``"A red cube!"`` -> ``"a-red-cube"``."""
    slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")
    return slug[:max_length].rstrip("-") or "run"


def _io_error(e: OSError, path: Path) -> SSD3DError:
    """An OSError as one line: a vanished run folder says so; a full disk (and the rest) as
    every other writer says it (``atomic.disk_error``)."""
    if e.errno == errno.ENOENT:
        return SSD3DError(f"{path.parent} disappeared while the run was writing to it")
    return disk_error(e, str(path))


def _write(path: Path, data: bytes) -> None:
    try:
        atomic_write_bytes(path, data)
    except OSError as e:
        raise _io_error(e, path) from None


__all__ = [
    "CHECKPOINT_DIR",
    "CONFIG_FILE",
    "EXPORT_FILES",
    "LOG_FILE",
    "REPORT_FILE",
    "SUMMARY_FILE",
    "TRAINING_PLOT",
    "RunDir",
    "slugify",
]
