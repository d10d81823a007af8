"""Typed configuration: frozen dataclasses, YAML presets and checked ``key=value`` overrides.

A preset is a dataclass written out as YAML. Overrides address nested fields with dots
(``scene.grid_size=32``); an unknown key is an error that names the nearest valid one, and
values are parsed as YAML and then checked against the field's type. The same routine
(``from_dict``) turns the command line's sugar into types: ``"ssd tau=600"`` into an
estimator (``parse_spec``), ``"a; b"`` lists into items (``split_list``).

Hand-written rather than a library's, because the errors are the interface: one line, the
full key, "did you mean ...", exit 2. OmegaConf's structured configs (threestudio) raise
multi-line validation errors without suggestions; tyro (nerfstudio) builds a whole command
line from the types and has no form for ``"name key=value ..."`` specs.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from ssd3d.errors import SSD3DError

T = TypeVar("T")


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _unknown_key(key: str, valid: list[str], where: str, what: str = "config key") -> SSD3DError:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = (
        f" (did you mean '{where}{close[0]}'?)"
        if close
        else f" (valid: {', '.join(sorted(valid))})"
    )
    return SSD3DError(f"unknown {what} '{where}{key}'{hint}")


def _coerce(value: Any, tp: Any, name: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints widen to floats, lists to tuples."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, name)
            except SSD3DError:
                pass
        raise SSD3DError(f"config value for '{name}' has the wrong type: {value!r}")
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise SSD3DError(
                f"config value for '{name}' must be one of {', '.join(map(str, choices))}; got {value!r}"
            )
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise SSD3DError(f"config value for '{name}' must be a list; got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise SSD3DError(
                    f"config value for '{name}' needs {len(args)} items; got {len(value)}"
                )
            items = [_coerce(v, a, name) for v, a in zip(value, args, strict=True)]
        else:
            inner = args[0] if args else Any
            items = [_coerce(v, inner, name) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise SSD3DError(f"config value for '{name}' must be a mapping; got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise SSD3DError(f"config value for '{name}' must be a mapping; got {value!r}")
        return from_dict(tp, value, where=f"{name}.")
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SSD3DError(f"config value for '{name}' must be a number; got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SSD3DError(f"config value for '{name}' must be an integer; got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise SSD3DError(f"config value for '{name}' must be true or false; got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            return str(value)
        return value
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "", what: str = "config key") -> T:
    """Build dataclass ``cls`` from a (possibly partial) mapping; missing fields keep defaults.

    ``what`` names the keys in errors ("config key", "parameter of estimator 'ssd'"). A
    ``ValueError`` from the class's own checks becomes a one-line ``SSD3DError``.
    """
    if not isinstance(data, dict):
        raise SSD3DError(f"config for '{where or cls.__name__}' must be a mapping; got {data!r}")
    types_ = _field_types(cls)
    unknown = [k for k in data if k not in types_]
    if unknown:
        raise _unknown_key(unknown[0], list(types_), where, what)
    kwargs = {k: _coerce(v, types_[k], where + k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field left out
        raise SSD3DError(f"config for '{where or cls.__name__}' is incomplete: {e}") from None
    except ValueError as e:  # the class's own range checks
        raise SSD3DError(f"{where.rstrip('.') or cls.__name__}: {e}") from None


def split_list(text: str) -> list[str]:
    """``"a; b ;"`` -> ``["a", "b"]``: the command line's lists of specs, which hold spaces
    and commas (``"ssd tau=600"``, ``[1, 2]``), are separated by ';'."""
    return [item.strip() for item in text.split(";") if item.strip()]


def parse_spec(spec: str, registry: dict[str, type[T]], kind: str, **params: Any) -> T:
    """``"ssd tau=600 match_norm=false"`` -> ``registry["ssd"](tau=600, match_norm=False)``,
    each value checked against the field's type; ``params`` add or replace values."""
    name, *pairs = spec.split() or [""]
    if name not in registry:
        close = difflib.get_close_matches(name, list(registry), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise SSD3DError(f"unknown {kind} '{name}' (known: {', '.join(registry)}){hint}")
    values = dict(parse_override(p) for p in pairs) | params
    try:
        return from_dict(registry[name], values, what="parameter")
    except SSD3DError as e:
        message = str(e)
        if message.startswith(f"{registry[name].__name__}: "):  # a range check: say whose
            message = message.split(": ", 1)[1]
        raise SSD3DError(f"{kind} '{name}': {message}") from None


def to_dict(obj: Any) -> Any:
    """Plain YAML-able data (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def parse_override(text: str) -> tuple[str, Any]:
    """``"a.b=3"`` -> ``("a.b", 3)``; the value is parsed as YAML (``1e-2``, ``[1, 2]``, ``true``)."""
    if "=" not in text:
        raise SSD3DError(f"override '{text}' is not of the form key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise SSD3DError(f"override '{text}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    # YAML reads 1e-2 as a string; numbers written that way are still numbers.
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            pass
    return key, value


def nest(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``[("a.b", 1)]`` -> ``{"a": {"b": 1}}``."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise SSD3DError(f"override '{key}' sets a field inside a plain value")
        node[parts[-1]] = value
    return out


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``update`` wins."""
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def apply_overrides(obj: T, overrides: list[str]) -> T:
    """Return a copy of dataclass ``obj`` with ``key=value`` overrides applied and checked."""
    update = nest([parse_override(o) for o in overrides])
    return from_dict(type(obj), merge(to_dict(obj), update))


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise SSD3DError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise SSD3DError(
            f"config file {path} is not valid YAML: {str(e).splitlines()[0]}"
        ) from None
    if not isinstance(data, dict):
        raise SSD3DError(f"config file {path} must hold a mapping at the top level")
    return data
