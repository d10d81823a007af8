from dataclasses import dataclass, field

import pytest

from ssd3d.config import apply_overrides, from_dict, parse_override, to_dict
from ssd3d.errors import SSD3DError


@dataclass(frozen=True)
class Inner:
    grid_size: int = 24
    lr: float = 0.05
    fov_deg: tuple[float, float] = (40.0, 70.0)


@dataclass(frozen=True)
class Outer:
    steps: int = 600
    name: str = "x"
    flag: bool = True
    inner: Inner = field(default_factory=Inner)


def test_overrides_are_typed_and_nested():
    cfg = apply_overrides(Outer(), ["steps=10", "inner.lr=1e-2", "inner.fov_deg=[30, 60]"])
    assert cfg.steps == 10 and cfg.inner.lr == 0.01 and cfg.inner.fov_deg == (30.0, 60.0)
    assert isinstance(cfg.inner.fov_deg, tuple)
    assert from_dict(Outer, to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    "override,needle",
    [
        ("stepz=3", "did you mean 'steps'"),
        ("inner.grid=3", "did you mean 'inner.grid_size'"),
        ("steps=abc", "'steps' must be an integer"),
        ("flag=3", "'flag' must be true or false"),
        ("inner.fov_deg=[1]", "needs 2 items"),
        ("nokeyvalue", "key=value"),
    ],
)
def test_bad_overrides(override, needle):
    with pytest.raises(SSD3DError, match=needle):
        apply_overrides(Outer(), [override])


def test_parse_override_values():
    assert parse_override("a=1e-3") == ("a", 0.001)
    assert parse_override("a=true") == ("a", True)
    assert parse_override("a=hello world") == ("a", "hello world")
