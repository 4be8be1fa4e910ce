"""Typed configs from text: one YAML reader, one ``--set`` syntax, one builder.

Every config a user writes (a training run, GRPO, a mixture, the experiments, the fusion
world) is a frozen stdlib dataclass. :func:`build_dataclass` validates a nested mapping
into one with pydantic (a ``TypeAdapter`` of the dataclass: nested dataclasses,
``Literal``, tuples, mappings and ``X | None`` come from the annotations) and departs from
pydantic's lax mode where a YAML slip should fail rather than be coerced:

* unknown keys are refused, with "did you mean ...?";
* ``int`` and ``bool`` fields are strict: ``2.5``, ``2.0``, ``"3"`` and ``true`` are not
  integers, ``"yes"`` and ``1`` are not booleans;
* ``float`` fields take integers and numeric strings (YAML 1.1 reads ``1e-5``, without
  a dot, as a string), but not booleans.

These are set on the ``TypeAdapter``'s core schema (:func:`_tighten`), so the dataclasses
keep plain annotations (``int``, not ``StrictInt``) and the code using them is unchanged;
pydantic's strict mode as a whole would refuse mappings for nested dataclasses and lists
for tuples.

Every problem is a :class:`~earthvlm.errors.ConfigError` (a ``ValueError``) naming the
dotted key, what was found and what is allowed; a ``ValueError`` raised by a dataclass's
``__post_init__`` surfaces with its own message. :func:`read_yaml` reads a file and
refuses YAML aliases (a "billion laughs" document expands exponentially);
:func:`apply_overrides` sets ``--set key=value`` overrides; :func:`load_yaml_config`
does all three. This module imports nothing from earthvlm but :mod:`earthvlm.errors`,
so every layer may use it.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import TypeAdapter, ValidationError
from pydantic_core import SchemaValidator, core_schema

from earthvlm.errors import ConfigError

T = TypeVar("T")


# -- YAML ----------------------------------------------------------------------------------


class _NoAliasLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses aliases: a config has no use for them, and nested
    ones ("billion laughs") expand to exponentially large data."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            message = (
                f"found the alias *{event.anchor}: aliases are not allowed in a config; "
                "write the values out"
            )
            raise yaml.composer.ComposerError(None, None, message, event.start_mark)
        return super().compose_node(parent, index)


class _NoAliasDumper(yaml.SafeDumper):
    """``yaml.SafeDumper`` that writes a repeated list or mapping out again, never as an
    alias, so that what is written :func:`read_yaml` reads back."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def parse_yaml(text: str) -> Any:
    """``text`` parsed as YAML (safe types only, aliases refused).

    Raises:
        yaml.YAMLError: If it is not valid YAML or holds an alias.
    """
    return yaml.load(text, Loader=_NoAliasLoader)  # a SafeLoader subclass


def dump_yaml(data: Any) -> str:
    """``data`` as YAML text, keys in their order, without aliases."""
    return yaml.dump(data, Dumper=_NoAliasDumper, sort_keys=False)


def read_yaml(path: str | Path, what: str = "config") -> dict[str, Any]:
    """The mapping in a YAML file (``{}`` for an empty file).

    Raises:
        ConfigError: If the file is missing, is not valid YAML, holds an alias or is not
            a mapping.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such {what} file")
    try:
        data = parse_yaml(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{p}: not valid YAML ({e})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a {what} is a mapping of fields, got {type(data).__name__}")
    return data


# -- overrides -----------------------------------------------------------------------------


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=2e-4"`` -> ``(["optim", "lr"], "2e-4")``; the value is parsed as YAML.

    Raises:
        ConfigError: Without ``=`` or a dotted key, or for a value that is not YAML.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(
            f"--set {text!r}: expected key=value with a dotted key, e.g. optim.lr=1e-4"
        )
    try:
        value = parse_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML ({e})") from None
    return key.split("."), value


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of ``data`` with each ``key=value`` override set (sections created as needed).

    Raises:
        ConfigError: For a malformed override, or a key through a value that is not a section.
    """
    out = copy.deepcopy(dict(data))
    for text in overrides:
        keys, value = parse_override(text)
        node = out
        for k in keys[:-1]:
            child = node.get(k)
            if child is None:
                child = node[k] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {text!r}: {k!r} is not a section")
            node = child
        node[keys[-1]] = value
    return out


# -- the builder ---------------------------------------------------------------------------


def _yaml11_float(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value  # the strict float schema judges it


#: Keys of a core schema that hold values (defaults, literal choices, metadata), not schemas.
_NOT_SCHEMA = frozenset({"default", "expected", "metadata", "serialization", "config", "cls"})


def _tighten(node: Any) -> None:
    """In place: the departures from lax mode listed in the module docstring."""
    if isinstance(node, list):
        for item in node:
            _tighten(item)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if kind in ("int", "bool"):
        node["strict"] = True
    elif kind == "float":
        strict = {**node, "strict": True}
        node.clear()
        node.update(core_schema.no_info_before_validator_function(_yaml11_float, strict))
        return
    elif kind == "dataclass-args":
        node["extra_behavior"] = "forbid"
    for key, value in node.items():
        if key not in _NOT_SCHEMA:
            _tighten(value)


@functools.cache
def _validator(cls: type) -> SchemaValidator:
    schema = copy.deepcopy(TypeAdapter(cls).core_schema)
    _tighten(schema)
    return SchemaValidator(schema)


def _path(where: str, loc: Sequence[Any]) -> str:
    out = where
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            out += " key"
        else:
            out += f".{part}" if out else str(part)
    return out


def _optional(tp: Any) -> Any:
    """``X | None`` -> ``X``; other types unchanged."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return next((a for a in typing.get_args(tp) if a is not type(None)), None)
    return tp


def _is_dataclass(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _type_at(cls: Any, loc: Sequence[Any]) -> Any:
    """The annotation at ``loc`` inside ``cls`` (``X | None`` as ``X``), or None."""
    tp = cls
    for part in loc:
        tp = _optional(tp)
        if _is_dataclass(tp) and isinstance(part, str):
            tp = typing.get_type_hints(tp).get(part)
        elif typing.get_origin(tp) is tuple and isinstance(part, int):
            args = typing.get_args(tp)
            tp = args[0] if args[-1] is Ellipsis else args[min(part, len(args) - 1)]
        else:
            return None
    return _optional(tp)


#: Errors listed in one message, and characters of a value shown in one error.
_MAX_ERRORS, _MAX_VALUE = 10, 80


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 3] + "..."


_EXPECTED = {
    "int": "an integer",
    "bool": "true or false",
    "float": "a number",
    "string": "a string",
    "tuple": "a list",
    "list": "a list",
    "dict": "a mapping",
    "mapping": "a mapping",
}


def _message(cls: type, error: Any, where: str) -> str:
    loc, kind, value = tuple(error["loc"]), error["type"], error.get("input")
    path = _path(where, loc)
    if kind == "value_error":  # raised by a __post_init__: its own message
        message = str(error["ctx"]["error"])
        # a section defined elsewhere (AugmentConfig) names its fields from its own name
        # ("augment.json_prob"): name them from the config's root instead
        head, _, last = path.rpartition(".")
        if head and message.startswith(f"{last}.") and not message.startswith(f"{path}."):
            return f"{head}.{message}"
        return message
    if kind == "unexpected_keyword_argument":
        section = _type_at(cls, loc[:-1])
        names = [f.name for f in dataclasses.fields(section)] if _is_dataclass(section) else []
        prefix = _path(where, loc[:-1])
        prefix = f"{prefix}." if prefix else ""
        close = difflib.get_close_matches(str(loc[-1]), names, n=1)
        hint = f"; did you mean {prefix + close[0]!r}?" if close else ""
        valid = f" (valid: {', '.join(names)})" if names else ""
        return f"unknown config key {path!r}{hint}{valid}"
    if kind == "literal_error":
        choices = list(typing.get_args(_type_at(cls, loc))) or error["ctx"]["expected"]
        return f"{path}={_shown(value)}: choose one of {choices}"
    if kind == "dataclass_type":
        name = error.get("ctx", {}).get("class_name", "the section's")
        return f"{path or 'a config'}: expected a mapping of {name} fields, got {_shown(value)}"
    if kind == "too_long":
        return f"{path}={_shown(value)}: expected at most {error['ctx']['max_length']} values"
    if kind in ("missing", "missing_argument") and loc and isinstance(loc[-1], int):
        return f"{_path(where, loc[:-1])}={_shown(value)}: too few values"
    for prefix, expected in _EXPECTED.items():
        if kind.startswith(f"{prefix}_"):
            return f"{path}={_shown(value)}: expected {expected}"
    return f"{path}={_shown(value)}: {error['msg']}"


def _named_item(data: Any, error: Any, where: str) -> str:
    """`` (subsets[2] is 'dota')`` when the error lies in a list item with a ``name``: an
    index is hard to count in a long list (a ``__post_init__`` names its own item)."""
    if error["type"] == "value_error":
        return ""
    found, node = "", data
    for k, part in enumerate(error["loc"]):
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            break
        if isinstance(part, int) and isinstance(node, Mapping):
            name = node.get("name")
            if isinstance(name, str) and k + 1 < len(error["loc"]):
                found = f" ({_path(where, error['loc'][: k + 1])} is {name!r})"
    return found


def build_dataclass(cls: type[T], data: Any, where: str = "") -> T:
    """``cls`` (a dataclass) validated from ``data``, a nested mapping (parsed YAML).

    Args:
        cls: The dataclass.
        data: Its fields; nested dataclasses as mappings, tuples as lists.
        where: Dotted key that ``data`` sits at, prefixed to the keys in errors.

    Raises:
        ConfigError: Naming every wrong key: unknown (with a suggestion), missing, of the
            wrong type, not among the allowed values, or refused by ``__post_init__``.
    """
    try:
        return _validator(cls).validate_python(data)
    except ValidationError as e:
        errors = e.errors()
    missing = [
        _path(where, err["loc"])
        for err in errors
        if err["type"] in ("missing", "missing_argument") and not isinstance(err["loc"][-1], int)
    ]
    messages = [f"config is missing {missing}"] if missing else []
    for err in errors:
        if err["type"] not in ("missing", "missing_argument") or isinstance(err["loc"][-1], int):
            messages.append(_message(cls, err, where) + _named_item(data, err, where))
    messages = list(dict.fromkeys(messages))
    more = len(messages) - _MAX_ERRORS
    tail = [f"and {more} more"] if more > 0 else []
    raise ConfigError("; ".join(messages[:_MAX_ERRORS] + tail)) from None


def load_yaml_config(
    cls: type[T], path: str | Path, overrides: Sequence[str] = (), *, what: str = "config"
) -> T:
    """``cls`` from a YAML file with ``--set``-style ``overrides`` applied.

    Raises:
        ConfigError: If the file is missing or not a YAML mapping (naming the file), or
            for a bad key or value (naming the file and the dotted key).
    """
    data = apply_overrides(read_yaml(path, what), overrides)
    try:
        return build_dataclass(cls, data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def plain(value: Any) -> Any:
    """``value`` with tuples as lists, recursively: ready for YAML or JSON."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


__all__ = [
    "ConfigError",
    "apply_overrides",
    "build_dataclass",
    "dump_yaml",
    "load_yaml_config",
    "parse_override",
    "parse_yaml",
    "plain",
    "read_yaml",
]
