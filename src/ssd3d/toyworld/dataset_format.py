"""ToyWorld's rendered dataset on disk: one safetensors file, no pickle.

Tensors (N renders, square H = W = resolution):

| name            | dtype   | shape         | meaning                                          |
|-----------------|---------|---------------|--------------------------------------------------|
| `images`        | uint8   | [N, 3, H, W]  | RGB render, 0..255                               |
| `labels`        | int64   | [N]           | prompt index into the `prompts` metadata list    |
| `view_labels`   | int64   | [N]           | view index into `view_names`                     |
| `azimuth_deg`   | float32 | [N]           | camera azimuth of the render, degrees            |
| `elevation_deg` | float32 | [N]           | camera elevation of the render, degrees          |

Metadata (safetensors keeps str -> str): `prompts` (JSON list in label order),
`view_names` (JSON list), `resolution`, `seed`, `format_version`, and any `extra.*` keys the
renderer adds (kept as given, e.g. its settings as JSON).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from ssd3d.errors import SSD3DError

FORMAT_VERSION = 1
# DreamFusion's view-dependent prompt suffixes, in the order the view labels index them.
DEFAULT_VIEW_NAMES: tuple[str, ...] = ("front", "side", "back", "overhead")
# Extra metadata keys are stored under this prefix so they never clash with the fixed ones.
EXTRA_PREFIX = "extra."

_TENSORS: dict[str, torch.dtype] = {
    "images": torch.uint8,
    "labels": torch.int64,
    "view_labels": torch.int64,
    "azimuth_deg": torch.float32,
    "elevation_deg": torch.float32,
}
_METADATA = ("prompts", "view_names", "resolution", "seed", "format_version")


def write_safetensors_atomic(
    path: str | Path, tensors: dict[str, Tensor], metadata: dict[str, str]
) -> Path:
    """Write a safetensors file through a temporary file in the same folder and a rename, so
    a reader (or a crash) never sees half a file. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name beside the target (same filesystem, so the rename is atomic); created by
    # safetensors itself, so it gets the usual permissions rather than mkstemp's 0600.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_safetensors(path: str | Path, what: str) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file; ``SSD3DError`` naming ``what`` it should
    have been if the file is missing or not safetensors."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise SSD3DError(f"{what} not found: {path}")
    try:
        tensors = load_file(path)
        with safe_open(path, framework="pt") as f:
            metadata = dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError, UnicodeDecodeError) as e:
        raise SSD3DError(f"{what} {path} is not a readable safetensors file ({e})") from None
    return tensors, metadata


@dataclass
class ToyDataset:
    """N renders with their prompt and view labels and camera angles (see the module doc)."""

    images: Tensor  # [N, 3, H, W] uint8
    labels: Tensor  # [N] int64, index into prompts
    view_labels: Tensor  # [N] int64, index into view_names
    azimuth_deg: Tensor  # [N] float32
    elevation_deg: Tensor  # [N] float32
    prompts: list[str]  # base prompts in label order, e.g. "a red cube"
    view_names: list[str] = field(default_factory=lambda: list(DEFAULT_VIEW_NAMES))
    seed: int = 0  # seed the renders were drawn with
    resolution: int | None = None  # side of the square renders; None: read from the images
    extra_metadata: dict[str, str] = field(default_factory=dict)  # renderer's own notes
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.resolution is None and isinstance(self.images, Tensor):
            self.resolution = int(self.images.shape[-1])
        self.validate()

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def validate(self) -> None:
        """Dtypes, shapes and label ranges; ``SSD3DError`` naming the first bad field."""
        for name, dtype in _TENSORS.items():
            value = getattr(self, name)
            if not isinstance(value, Tensor) or value.dtype != dtype:
                got = value.dtype if isinstance(value, Tensor) else type(value).__name__
                raise SSD3DError(f"dataset field '{name}' must be a {dtype} tensor; got {got}")
        n = len(self)
        if self.images.dim() != 4 or self.images.shape[1] != 3:
            raise SSD3DError(
                f"dataset 'images' must be [N, 3, H, W]; got {tuple(self.images.shape)}"
            )
        if self.images.shape[2] != self.images.shape[3]:
            raise SSD3DError(f"dataset images must be square; got {tuple(self.images.shape[2:])}")
        if self.resolution != self.images.shape[-1]:
            raise SSD3DError(
                f"dataset 'resolution' {self.resolution} does not match the images "
                f"({self.images.shape[-1]} pixels)"
            )
        for name in ("labels", "view_labels", "azimuth_deg", "elevation_deg"):
            if getattr(self, name).shape != (n,):
                shape = tuple(getattr(self, name).shape)
                raise SSD3DError(f"dataset '{name}' must have shape [{n}]; got {shape}")
        for name in ("prompts", "view_names"):
            v = getattr(self, name)
            if not isinstance(v, list) or not v or not all(isinstance(p, str) and p for p in v):
                raise SSD3DError(f"dataset '{name}' must be a non-empty list of non-empty strings")
            if len(set(v)) != len(v):
                raise SSD3DError(f"dataset '{name}' has duplicates")
        for name, count in (("labels", len(self.prompts)), ("view_labels", len(self.view_names))):
            v = getattr(self, name)
            if n and (int(v.min()) < 0 or int(v.max()) >= count):
                raise SSD3DError(f"dataset '{name}' must lie in [0, {count}); got {int(v.max())}")
        bad = [k for k in self.extra_metadata if not isinstance(self.extra_metadata[k], str)]
        if bad:
            raise SSD3DError(f"dataset extra_metadata values must be strings; '{bad[0]}' is not")

    def images_float(self, index: Tensor | slice | None = None) -> Tensor:
        """Images (all, or ``index``) as float32 in [0, 1]: [N, 3, H, W]."""
        images = self.images if index is None else self.images[index]
        return images.float() / 255.0

    def subset(self, index: Tensor | Sequence[int]) -> ToyDataset:
        """The renders at ``index``, with the same prompts and metadata."""
        index = torch.as_tensor(index, dtype=torch.int64)
        return ToyDataset(
            images=self.images[index],
            labels=self.labels[index],
            view_labels=self.view_labels[index],
            azimuth_deg=self.azimuth_deg[index],
            elevation_deg=self.elevation_deg[index],
            prompts=list(self.prompts),
            view_names=list(self.view_names),
            seed=self.seed,
            resolution=self.resolution,
            extra_metadata=dict(self.extra_metadata),
            format_version=self.format_version,
        )

    def metadata(self) -> dict[str, str]:
        """The safetensors metadata this dataset is saved with."""
        meta = {
            "prompts": json.dumps(self.prompts),
            "view_names": json.dumps(self.view_names),
            "resolution": str(self.resolution),
            "seed": str(self.seed),
            "format_version": str(self.format_version),
        }
        meta.update({EXTRA_PREFIX + k: v for k, v in self.extra_metadata.items()})
        return meta

    def save(self, path: str | Path) -> Path:
        """Write the dataset to ``path`` (atomically: a temporary file, then a rename)."""
        self.validate()
        tensors = {name: getattr(self, name) for name in _TENSORS}
        return write_safetensors_atomic(path, tensors, self.metadata())

    @classmethod
    def load(cls, path: str | Path) -> ToyDataset:
        """Read a dataset file; ``SSD3DError`` if missing, not safetensors, or incomplete."""
        tensors, meta = read_safetensors(path, "ToyWorld dataset")
        missing = [k for k in _TENSORS if k not in tensors] + [
            k for k in _METADATA if k not in meta
        ]
        if missing:
            raise SSD3DError(
                f"ToyWorld dataset {path} lacks the field(s) {', '.join(missing)}; "
                "render it again with `ssd3d toyworld render-dataset`"
            )
        version = _parse(meta, "format_version", int, path)
        if version > FORMAT_VERSION:
            raise SSD3DError(
                f"ToyWorld dataset {path} has format_version {version}; this ssd3d reads "
                f"up to {FORMAT_VERSION} (upgrade ssd3d)"
            )
        dataset = cls(
            **{name: tensors[name] for name in _TENSORS},
            prompts=_parse(meta, "prompts", json.loads, path),
            view_names=_parse(meta, "view_names", json.loads, path),
            seed=_parse(meta, "seed", int, path),
            extra_metadata={
                k[len(EXTRA_PREFIX) :]: v for k, v in meta.items() if k.startswith(EXTRA_PREFIX)
            },
            resolution=_parse(meta, "resolution", int, path),
            format_version=version,
        )
        return dataset


def _parse(meta: dict[str, str], key: str, parse: Callable[[str], Any], path: str | Path) -> Any:
    try:
        return parse(meta[key])
    except (ValueError, TypeError):
        raise SSD3DError(f"ToyWorld dataset {path}: metadata '{key}' is malformed") from None


# --- a synthetic stand-in, for tests and quick experiments ----------------------------------

# (prompt, RGB, shape) of the synthetic stand-in: two colours x two flat shapes.
SYNTHETIC_PROMPTS: tuple[tuple[str, tuple[float, float, float], str], ...] = (
    ("a red square", (0.85, 0.15, 0.15), "square"),
    ("a red disc", (0.85, 0.15, 0.15), "disc"),
    ("a blue square", (0.15, 0.30, 0.85), "square"),
    ("a green disc", (0.15, 0.70, 0.20), "disc"),
)


def synthetic_dataset(
    n_per_prompt: int = 64, resolution: int = 16, seed: int = 0, num_prompts: int = 4
) -> ToyDataset:
    """Flat coloured squares and discs on white, in the dataset format (no renderer needed).

    The view label changes the picture the way a turntable would, so a classifier can read
    it: "front" a full-width shape, "side" a half-width one, "back" full width with a dark
    bar across it, "overhead" a smaller one. Position jitters by up to resolution / 8.
    Azimuth is drawn uniformly and the view label follows from it (front |az| < 45, side
    45..135, back beyond), except a quarter of the samples, which are "overhead" (elevation 75).
    """
    if not 1 <= num_prompts <= len(SYNTHETIC_PROMPTS):
        raise ValueError(f"num_prompts must lie in [1, {len(SYNTHETIC_PROMPTS)}]")
    g = torch.Generator().manual_seed(seed)
    table = SYNTHETIC_PROMPTS[:num_prompts]
    n = n_per_prompt * num_prompts
    labels = torch.arange(num_prompts).repeat_interleave(n_per_prompt)
    azimuth = torch.rand(n, generator=g) * 360 - 180
    overhead = torch.rand(n, generator=g) < 0.25
    elevation = torch.where(overhead, 75.0, 15.0)
    view = torch.where(azimuth.abs() < 45, 0, torch.where(azimuth.abs() < 135, 1, 2))
    view = torch.where(overhead, 3, view)
    shift = torch.randint(-(resolution // 8), resolution // 8 + 1, (n, 2), generator=g)
    coords = torch.arange(resolution) - (resolution - 1) / 2
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    images = torch.ones(n, 3, resolution, resolution)
    for i in range(n):
        _, rgb, shape = table[int(labels[i])]
        v = int(view[i])
        half = resolution * (0.2 if v == 3 else 0.3)
        sx = half * (0.5 if v == 1 else 1.0)
        x, y = xx - shift[i, 0], yy - shift[i, 1]
        if shape == "square":
            mask = (x.abs() <= sx) & (y.abs() <= half)
        else:
            mask = (x / sx) ** 2 + (y / half) ** 2 <= 1
        images[i][:, mask] = torch.tensor(rgb)[:, None]
        if v == 2:
            images[i][:, mask & (y.abs() <= resolution / 16)] = 0.1
    return ToyDataset(
        images=(images * 255).round().to(torch.uint8),
        labels=labels,
        view_labels=view.to(torch.int64),
        azimuth_deg=azimuth,
        elevation_deg=elevation.float(),
        prompts=[p for p, _, _ in table],
        view_names=list(DEFAULT_VIEW_NAMES),
        seed=seed,
    )
