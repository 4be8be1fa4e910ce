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

from typing import TYPE_CHECKING, Any

from earthvlm.data.sources._base import (
    Problem,
    RowError,
    SkipRow,
    SourceError,
    SourceReader,
    coerce_option,
)
from earthvlm.registry import Registry

if TYPE_CHECKING:
    from collections.abc import Iterable

#: The readers, by source name (lower-case, ``_`` read as ``-``).
REGISTRY: Registry[type[SourceReader]] = Registry(
    "source", error=SourceError, base=SourceReader, separator="-"
)
#: Source name -> ``"module:attr"`` of its reader class.
SOURCES: dict[str, str] = REGISTRY.entries

for _name, _target in (
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
    ("earthmind-bench", "earthvlm.data.sources.earthmind:EarthMindBench"),
    ("vrsbench", "earthvlm.data.sources.vrsbench:VRSBench"),
    ("xlrs-bench-lite", "earthvlm.data.sources.xlrs:XLRSBenchLite"),
    ("omniearth-bench", "earthvlm.data.sources.omniearth:OmniEarthBench"),
    ("lrs-gro", "earthvlm.data.sources.lrs_gro:LRSGRO"),
):
    REGISTRY.register(_name, _target)


def register_source(name: str, target: str) -> None:
    """Register a reader under ``name`` (``target`` is ``"module:attr"``).

    Raises:
        SourceError: If the name is taken or the target is not ``module:attr``.
    """
    REGISTRY.register(name, target)


def list_sources() -> list[str]:
    """The registered source names, sorted."""
    return REGISTRY.names()


def get_source(name: str) -> type[SourceReader]:
    """The reader class registered under ``name`` (its module imported now).

    Raises:
        SourceError: For an unknown name (with "did you mean ...?") or a target that
            does not import to a :class:`SourceReader` subclass.
    """
    return REGISTRY.get(name)


def build_reader(name: str, **options: Any) -> SourceReader:
    """An instance of the reader ``name`` with ``options`` (its dataclass fields).

    Raises:
        SourceError: For an unknown source or option (with "did you mean ...?").
        ValueError: For an option value the reader refuses (the message names it).
    """
    reader: SourceReader = REGISTRY.build(name, **options)
    return reader


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
    "REGISTRY",
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
