"""Named presets of the experiments' config dataclasses (micro-ScaleEarth, fusion)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def build_preset(cls: type[T], presets: Mapping[str, Mapping[str, Any]], name: str,
                 overrides: Mapping[str, Any]) -> T:  # fmt: skip
    """``cls`` from preset ``name`` with ``overrides`` applied and ``preset=name`` set.

    Raises:
        ValueError: For an unknown preset or field.
    """
    if name not in presets:
        raise ValueError(f"preset {name!r} unknown; choose from {sorted(presets)}")
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    bad = sorted(set(overrides) - names)
    if bad:
        raise ValueError(f"unknown {cls.__name__} field(s) {bad}; valid: {sorted(names)}")
    return cls(**{**presets[name], **overrides, "preset": name})


__all__ = ["build_preset"]
