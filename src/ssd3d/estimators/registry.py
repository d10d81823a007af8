"""Estimators by name, with parameters: ``build_estimator("ssd tau=300 match_norm=false")``.

Adding an estimator: its module in this package, and its class in ``ESTIMATORS`` below.
"""

from __future__ import annotations

import dataclasses

from ssd3d.config import parse_spec
from ssd3d.estimators.base import Estimator
from ssd3d.estimators.inversion import ISM, SDI
from ssd3d.estimators.peers import CSD, NFSD, ModeDisengaging, ModeSeeking
from ssd3d.estimators.sds import SDS
from ssd3d.estimators.ssd import SSD
from ssd3d.estimators.vsd import VSD

ESTIMATORS: dict[str, type[Estimator]] = {
    cls.name: cls for cls in (SDS, SSD, CSD, NFSD, ISM, SDI, VSD, ModeSeeking, ModeDisengaging)
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


def build_estimator(spec: str, **params) -> Estimator:
    """Build an estimator from ``"name key=value ..."`` plus keyword parameters.

    Raises ``SSD3DError`` naming the bad estimator, parameter or value.
    """
    name, *pairs = spec.split() or [""]
    fields = {f.name for f in dataclasses.fields(ESTIMATORS[name])} if name in ESTIMATORS else set()
    renamed = []
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key not in fields and key in LEGACY_PARAMETERS and LEGACY_PARAMETERS[key][0] in fields:
            key, values = LEGACY_PARAMETERS[key]
            value = values.get(value, value)
        renamed.append(f"{key}={value}")
    return parse_spec(" ".join([name, *renamed]), ESTIMATORS, "estimator", **params)


def _spell(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def describe(estimator: Estimator) -> str:
    """The spec string that builds this estimator back: ``"ssd tau=300 ..."``."""
    args = [f"{f.name}={_spell(getattr(estimator, f.name))}" for f in dataclasses.fields(estimator)]
    return " ".join([estimator.name, *args])
