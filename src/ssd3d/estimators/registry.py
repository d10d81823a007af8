"""Estimators by name, with parameters: ``build_estimator("ssd tau=300 match_norm=false")``.

Adding an estimator: its module in this package, and its class in ``ESTIMATORS`` below.
"""

from __future__ import annotations

import dataclasses

from ssd3d.config import parse_spec
from ssd3d.estimators.base import Estimator
from ssd3d.estimators.peers import CSD, NFSD, ModeDisengaging, ModeSeeking
from ssd3d.estimators.sds import SDS
from ssd3d.estimators.ssd import SSD

ESTIMATORS: dict[str, type[Estimator]] = {
    cls.name: cls for cls in (SDS, SSD, CSD, NFSD, ModeSeeking, ModeDisengaging)
}


def build_estimator(spec: str, **params) -> Estimator:
    """Build an estimator from ``"name key=value ..."`` plus keyword parameters.

    Raises ``SSD3DError`` naming the bad estimator, parameter or value.
    """
    return parse_spec(spec, ESTIMATORS, "estimator", **params)


def _spell(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def describe(estimator: Estimator) -> str:
    """The spec string that builds this estimator back: ``"ssd tau=300 ..."``."""
    args = [f"{f.name}={_spell(getattr(estimator, f.name))}" for f in dataclasses.fields(estimator)]
    return " ".join([estimator.name, *args])
