"""Named presets of the experiments' config dataclasses (micro-ScaleEarth, fusion)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from earthvlm.errors import ConfigError
from earthvlm.typed import apply_overrides, build_dataclass

T = TypeVar("T")


def build_preset(
    cls: type[T],
    presets: Mapping[str, Mapping[str, Any]],
    name: str,
    overrides: Mapping[str, Any],
    sets: Sequence[str] = (),
) -> T:
    """``cls`` from preset ``name``, then ``overrides`` (fields by name), then ``sets``
    (``--set key=value`` texts), validated by :func:`earthvlm.typed.build_dataclass`;
    ``preset=name`` is set.

    Raises:
        ConfigError: For an unknown preset, an unknown field (with a suggestion) or a
            bad value (a ``ValueError``).
    """
    if name not in presets:
        raise ConfigError(f"preset {name!r} unknown; choose from {sorted(presets)}")
    data = apply_overrides({**presets[name], **overrides}, sets)
    return build_dataclass(cls, {**data, "preset": name})


__all__ = ["build_preset"]
