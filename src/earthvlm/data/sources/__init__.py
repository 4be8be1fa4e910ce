"""Readers that convert public dataset formats into records, and their registry.

One file per format; each reader is a dataclass whose class attributes describe its
files and whose fields are its options. ``read(root)`` yields
:class:`~earthvlm.data.record.Record` rows and keeps a ledger (every row ok, skipped
with a reason, or quarantined with the file, the row, the reason and the fix). The
registry maps a name to ``"module:attr"``; a reader's module is imported only when the
name is used::

    from earthvlm.data.sources import build_reader
    reader = build_reader("dota", version="1.5")
    records = list(reader.read("DOTA/train"))
    print(reader.ledger.summary())

Torch-free, like the rest of :mod:`earthvlm.data`.
"""

from __future__ import annotations

import difflib
import importlib
from typing import TYPE_CHECKING, Any

from earthvlm.data.sources._base import (
    Problem,
    RowError,
    SkipRow,
    SourceError,
    SourceReader,
    coerce_option,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

_BUILTIN: tuple[tuple[str, str], ...] = (
    ("dota", "earthvlm.data.sources.dota:DOTA"),
    ("coco", "earthvlm.data.sources.coco:COCODetection"),
    ("rsvqa-lr", "earthvlm.data.sources.rsvqa:RSVQALR"),
    ("rsvqa-hr", "earthvlm.data.sources.rsvqa:RSVQAHR"),
    ("patternnet", "earthvlm.data.sources.class_folders:PatternNet"),
    ("class-folders", "earthvlm.data.sources.class_folders:ClassFolders"),
    ("refgeo", "earthvlm.data.sources.refgeo:RefGeo"),
    ("geochat", "earthvlm.data.sources.geochat:GeoChatInstruct"),
    ("vhm", "earthvlm.data.sources.llava:VHMConversations"),
    ("llava", "earthvlm.data.sources.llava:LLaVAConversations"),
    ("lrs-vqa", "earthvlm.data.sources.lrs_vqa:LRSVQA"),
)

#: Source name -> ``"module:attr"`` of its reader class.
SOURCES: dict[str, str] = {}


def register_source(name: str, target: str) -> None:
    """Register a reader under ``name`` (``target`` is ``"module:attr"``).

    Raises:
        SourceError: If the name is taken or the target is not ``module:attr``.
    """
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise SourceError(f"source {name!r}: target {target!r} is not 'module:attr'")
    if name in SOURCES:
        raise SourceError(
            f"source {name!r} is already registered as {SOURCES[name]!r}; pick another name"
        )
    SOURCES[name] = target


for _name, _target in _BUILTIN:
    register_source(_name, _target)


def list_sources() -> list[str]:
    """The registered source names, sorted."""
    return sorted(SOURCES)


def get_source(name: str) -> type[SourceReader]:
    """The reader class registered under ``name`` (its module imported now).

    Raises:
        SourceError: For an unknown name (with "did you mean ...?") or a target that
            does not import to a :class:`SourceReader` subclass.
    """
    key = name.strip().lower().replace("_", "-")
    if key not in SOURCES:
        near = difflib.get_close_matches(key, SOURCES, n=3)
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        raise SourceError(f"unknown source {name!r}{hint} Known: {', '.join(list_sources())}")
    module, _, attr = SOURCES[key].partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise SourceError(f"source {key!r}: cannot import {SOURCES[key]} ({e})") from None
    if not (isinstance(cls, type) and issubclass(cls, SourceReader)):
        raise SourceError(f"source {key!r}: {SOURCES[key]} is not a SourceReader subclass")
    return cls


def build_reader(name: str, **options: Any) -> SourceReader:
    """An instance of the reader ``name`` with ``options`` (its dataclass fields).

    Raises:
        SourceError: For an unknown source or option (with "did you mean ...?").
        ValueError: For an option value the reader refuses (the message names it).
    """
    cls = get_source(name)
    known = cls.option_types()
    for key in options:
        if key not in known:
            near = difflib.get_close_matches(key, known, n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise SourceError(
                f"{cls.name}: unknown option {key!r}{hint} Options: {', '.join(sorted(known))}"
            )
    return cls(**options)


def parse_options(name: str, pairs: Iterable[str]) -> dict[str, Any]:
    """``key=value`` texts (the CLI's ``--opt``) as typed options of the reader ``name``.

    Raises:
        SourceError: For a malformed pair, an unknown option or a value of the wrong type.
    """
    cls = get_source(name)
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SourceError(f"option {pair!r}: write key=value, e.g. version=1.5")
        out[key.strip()] = coerce_option(cls, key.strip(), value.strip())
    return out


__all__ = [
    "SOURCES",
    "Problem",
    "RowError",
    "SkipRow",
    "SourceError",
    "SourceReader",
    "build_reader",
    "get_source",
    "list_sources",
    "parse_options",
    "register_source",
]
