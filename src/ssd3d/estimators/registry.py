"""Estimators by name, with parameters: ``build_estimator("ssd tau=300 match_norm=false")``."""

from __future__ import annotations

import dataclasses
import difflib

from ssd3d.config import parse_override
from ssd3d.errors import SSD3DError
from ssd3d.estimators.base import Estimator
from ssd3d.estimators.peers import CSD, NFSD, ModeDisengaging, ModeSeeking
from ssd3d.estimators.sds import SDS
from ssd3d.estimators.ssd import SSD

ESTIMATORS: dict[str, type[Estimator]] = {
    cls.name: cls for cls in (SDS, SSD, CSD, NFSD, ModeSeeking, ModeDisengaging)
}


# Parameters of earlier versions, still read so that recorded specs (benchmark results,
# run folders) keep parsing: old name -> (new name, old value -> new value). The old
# "adaptive" coefficient was the per-sample one.
LEGACY_PARAMETERS = {
    "variance_reduction": (
        "coefficient",
        {"adaptive": "per_sample", "sds": "one", "none": "zero"},
    ),
}


def _unknown(kind: str, value: str, valid: list[str]) -> SSD3DError:
    close = difflib.get_close_matches(value, valid, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return SSD3DError(f"unknown {kind} '{value}' (known: {', '.join(valid)}){hint}")


def build_estimator(spec: str, **params) -> Estimator:
    """Build an estimator from ``"name key=value ..."`` plus keyword parameters.

    Raises ``SSD3DError`` naming the bad estimator, parameter or value.
    """
    name, *pairs = spec.split()
    if name not in ESTIMATORS:
        raise _unknown("estimator", name, list(ESTIMATORS))
    cls = ESTIMATORS[name]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in [parse_override(p) for p in pairs] + list(params.items()):
        if key not in fields and key in LEGACY_PARAMETERS and LEGACY_PARAMETERS[key][0] in fields:
            params.pop(key, None)
            key, values = LEGACY_PARAMETERS[key]
            value = values.get(value, value)
        if key not in fields:
            raise _unknown(f"parameter of estimator '{name}'", key, list(fields))
        default = fields[key].default
        if isinstance(default, bool) and not isinstance(value, bool):
            raise SSD3DError(f"estimator '{name}': {key} must be true or false; got {value!r}")
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SSD3DError(f"estimator '{name}': {key} must be a number; got {value!r}")
            if isinstance(default, int) and value != int(value):
                raise SSD3DError(f"estimator '{name}': {key} must be an integer; got {value!r}")
            value = type(default)(value)
        params[key] = value
    try:
        return cls(**params)
    except ValueError as e:
        raise SSD3DError(f"estimator '{name}': {e}") from None


def _spell(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def describe(estimator: Estimator) -> str:
    """The spec string that builds this estimator back: ``"ssd tau=300 ..."``."""
    args = [f"{f.name}={_spell(getattr(estimator, f.name))}" for f in dataclasses.fields(estimator)]
    return " ".join([estimator.name, *args])
