"""Typed dataclasses from plain data (YAML / JSON): the one builder every config uses.

:func:`build_dataclass` walks a dataclass's annotations and converts a nested dict into
it, raising ``ValueError`` that names the dotted key, what was found and what is
allowed (with a "did you mean" for unknown keys). It imports nothing from earthvlm, so
every layer may use it (the training config, the model recipe a saved run is rebuilt
from, GRPO's and the experiments' configs).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import types
import typing
from typing import Any, Literal


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """``value`` as type ``tp`` (from a dataclass annotation), or a ValueError at ``where``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ValueError(f"{where}: null is not allowed")
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except ValueError as e:
                errors.append(str(e))
        raise ValueError(errors[0])
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ValueError(f"{where}={value!r}: choose one of {list(choices)}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where}={value!r}: expected a list")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ValueError(f"{where}={value!r}: expected {len(args)} values")
        pairs = enumerate(zip(value, args, strict=True))
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in pairs)
    if origin in (dict, collections.abc.Mapping):
        if not isinstance(value, dict):
            raise ValueError(f"{where}={value!r}: expected a mapping")
        key_tp, value_tp = typing.get_args(tp) or (Any, Any)
        return {
            _coerce(k, key_tp, f"{where} key"): _coerce(v, value_tp, f"{where}.{k}")
            for k, v in value.items()
        }
    if tp is Any:
        return value
    if _is_dataclass_type(tp):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return _build(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}={value!r}: expected true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}={value!r}: expected an integer")
        return value
    if tp is float:
        if isinstance(value, bool):
            raise ValueError(f"{where}={value!r}: expected a number")
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-5 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ValueError(f"{where}={value!r}: expected a number")
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}={value!r}: expected a string")
        return value
    raise TypeError(f"{where}: unsupported config type {tp!r}")  # a bug in this module


def _build(cls: type, data: dict[str, Any], where: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            prefix = f"{where}." if where else ""
            hint = f"; did you mean {prefix + close[0]!r}?" if close else f"; valid: {names}"
            raise ValueError(f"unknown config key {path!r}{hint}")
        kwargs[key] = _coerce(value, hints[key], path)
    try:
        return cls(**kwargs)
    except ValueError as e:
        # a section defined outside this module (AugmentConfig) names its fields from its
        # own name ("augment.json_prob"): name them from the config's root instead
        head, _, last = where.rpartition(".")
        message = str(e)
        if head and message.startswith(f"{last}.") and not message.startswith(f"{where}."):
            raise ValueError(f"{head}.{message}") from None
        raise
    except TypeError as e:  # a required field is missing
        missing = [
            f.name
            for f in dataclasses.fields(cls)
            if f.name not in kwargs
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        prefix = f"{where}." if where else ""
        raise ValueError(f"config is missing {[prefix + m for m in missing]}") from e


#: Public name of the builder.
build_dataclass = _build
plain = _plain

__all__ = ["build_dataclass", "plain"]
