"""The ToyWorld dataset file: round trip, the bytes on disk, and clear errors on bad files."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ssd3d.errors import SSD3DError
from ssd3d.toyworld.dataset_format import FORMAT_VERSION, ToyDataset, synthetic_dataset


@pytest.fixture(scope="module")
def dataset() -> ToyDataset:
    return synthetic_dataset(n_per_prompt=12, resolution=16, seed=3)


def _fields(d: ToyDataset) -> dict[str, torch.Tensor]:
    names = ("images", "labels", "view_labels", "azimuth_deg", "elevation_deg")
    return {k: getattr(d, k) for k in names}


def test_round_trip_keeps_every_field(dataset: ToyDataset, tmp_path: Path) -> None:
    dataset = dataset.subset(range(len(dataset)))
    dataset.extra_metadata["renderer"] = json.dumps({"samples_per_ray": 96})
    path = dataset.save(tmp_path / "sub" / "d.safetensors")
    back = ToyDataset.load(path)
    for name, value in _fields(dataset).items():
        assert torch.equal(getattr(back, name), value), name
        assert getattr(back, name).dtype == value.dtype
    assert back.prompts == dataset.prompts
    assert back.view_names == ["front", "side", "back", "overhead"]
    assert (back.seed, back.resolution, back.format_version) == (3, 16, FORMAT_VERSION)
    assert back.extra_metadata == {"renderer": '{"samples_per_ray": 96}'}
    # Atomic write: nothing but the file itself is left in the folder.
    assert [p.name for p in path.parent.iterdir()] == ["d.safetensors"]


def test_file_is_plain_safetensors_with_the_documented_dtypes(
    dataset: ToyDataset, tmp_path: Path
) -> None:
    path = dataset.save(tmp_path / "d.safetensors")
    raw = path.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_len])
    n = len(dataset)
    assert header["images"]["dtype"] == "U8" and header["images"]["shape"] == [n, 3, 16, 16]
    assert header["labels"]["dtype"] == "I64" and header["view_labels"]["dtype"] == "I64"
    assert header["azimuth_deg"]["dtype"] == "F32" and header["elevation_deg"]["shape"] == [n]
    meta = header["__metadata__"]
    assert json.loads(meta["prompts"]) == dataset.prompts
    assert meta["resolution"] == "16" and meta["seed"] == "3"


def test_synthetic_view_labels_follow_the_camera(dataset: ToyDataset) -> None:
    az, overhead = dataset.azimuth_deg.abs(), dataset.elevation_deg > 60
    expected = torch.where(az < 45, 0, torch.where(az < 135, 1, 2))
    expected = torch.where(overhead, 3, expected)
    assert torch.equal(dataset.view_labels, expected)
    assert set(dataset.labels.tolist()) == {0, 1, 2, 3}


def test_subset_keeps_metadata(dataset: ToyDataset) -> None:
    part = dataset.subset([5, 0])
    assert torch.equal(part.images, dataset.images[[5, 0]])
    assert part.prompts == dataset.prompts and len(part) == 2


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SSD3DError, match="not found"):
        ToyDataset.load(tmp_path / "nope.safetensors")


def test_not_safetensors(tmp_path: Path) -> None:
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"\x80\x04this is a pickle, not a safetensors file")
    with pytest.raises(SSD3DError, match="not a readable safetensors"):
        ToyDataset.load(path)


def test_truncated_file(dataset: ToyDataset, tmp_path: Path) -> None:
    path = dataset.save(tmp_path / "d.safetensors")
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(SSD3DError, match="safetensors"):
        ToyDataset.load(path)


def test_missing_fields_are_named(dataset: ToyDataset, tmp_path: Path) -> None:
    tensors = {k: v for k, v in _fields(dataset).items() if k != "view_labels"}
    meta = {k: v for k, v in dataset.metadata().items() if k != "prompts"}
    path = tmp_path / "partial.safetensors"
    save_file(tensors, path, metadata=meta)
    with pytest.raises(SSD3DError, match="view_labels, prompts"):
        ToyDataset.load(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"labels": torch.full((48,), 4, dtype=torch.int64)}, "'labels' must lie in"),
        ({"images": torch.zeros(48, 3, 16, 16)}, "'images' must be a torch.uint8"),
        ({"view_labels": torch.zeros(47, dtype=torch.int64)}, "'view_labels' must have shape"),
    ],
)
def test_bad_tensors(dataset: ToyDataset, tmp_path: Path, change: dict, message: str) -> None:
    path = tmp_path / "bad.safetensors"
    save_file({**_fields(dataset), **change}, path, metadata=dataset.metadata())
    with pytest.raises(SSD3DError, match=message):
        ToyDataset.load(path)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("format_version", str(FORMAT_VERSION + 1), "upgrade ssd3d"),
        ("resolution", "32", "does not match"),
        ("prompts", "not json", "'prompts' is malformed"),
        ("view_names", '"front"', "'view_names' must be a non-empty list"),
    ],
)
def test_bad_metadata(
    dataset: ToyDataset, tmp_path: Path, key: str, value: str, message: str
) -> None:
    path = tmp_path / "bad.safetensors"
    save_file(_fields(dataset), path, metadata={**dataset.metadata(), key: value})
    with pytest.raises(SSD3DError, match=message):
        ToyDataset.load(path)
