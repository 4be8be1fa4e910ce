"""One small registry: a name -> ``"module:attr"``, imported when the name is used.

Every kind of pluggable part (dataset readers, benchmarks, adapter methods) keeps its
names in one :class:`Registry`. Registering costs nothing (no import); :meth:`Registry.get`
imports the target's module on first use, so a registry of many parts stays cheap to load
and a part's heavy dependencies load only when it is asked for. Names are compared
lower-case with ``-`` and ``_`` read alike; a taken name is refused, and an unknown one is
answered with the near names ("did you mean ...?") and the known ones::

    READERS = Registry("reader", error=SourceError, base=SourceReader, separator="-")
    READERS.register("dota", "earthvlm.data.sources.dota:DOTA")
    reader = READERS.build("DOTA", version="1.5")

A core module: it imports no earthvlm subpackage and no torch.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from collections.abc import Iterable
from typing import Any, Generic, TypeVar, cast

from earthvlm.errors import EarthVLMError

T = TypeVar("T")

#: How close a name must be to a registered one to be suggested (:mod:`difflib` ratio).
NAME_CUTOFF = 0.5


def did_you_mean(word: str, choices: Iterable[str], *, n: int = 3, cutoff: float = 0.6) -> str:
    """``"; did you mean a, b?"`` naming the choices close to ``word``, or ``""``."""
    near = difflib.get_close_matches(word, list(choices), n=n, cutoff=cutoff)
    return f"; did you mean {', '.join(near)}?" if near else ""


class Registry(Generic[T]):
    """Names of one kind of part, each mapped to the ``"module:attr"`` that holds it.

    Args:
        kind: What is registered, as messages name it (``"source"``, ``"benchmark"``).
        error: The exception raised for a bad name, target or option.
        base: When given, a target must import to a subclass of it.
        separator: ``"_"`` or ``"-"``: names are stored and looked up lower-case with the
            other one read as this one (``Synth-VQA`` finds ``synth_vqa``).
        declares_name: A target must carry a ``name`` attribute equal to its registered
            name (a part that calls itself otherwise would report under the wrong name).

    Attributes:
        entries: Registered name -> ``"module:attr"`` (the one table; tests may patch it).
    """

    def __init__(
        self,
        kind: str,
        *,
        error: type[Exception] = EarthVLMError,
        base: type | None = None,
        separator: str = "_",
        declares_name: bool = False,
    ) -> None:
        if separator not in ("_", "-"):
            raise ValueError(f"separator={separator!r}: give '_' or '-'")
        self.kind = kind
        self.error = error
        self.base = base
        self.separator = separator
        self.declares_name = declares_name
        self.entries: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self.entries)} names)"

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.key(name) in self.entries

    def key(self, name: str) -> str:
        """The name as stored: stripped, lower-case, ``-``/``_`` as :attr:`separator`."""
        other = "-" if self.separator == "_" else "_"
        return name.strip().lower().replace(other, self.separator)

    def register(self, name: str, target: str) -> None:
        """Register ``target`` (``"module:attr"``) under ``name``; nothing is imported.

        Raises:
            error: If the target is not ``module:attr`` or the name is empty or taken.
        """
        module, sep, attr = target.partition(":")
        if not sep or not module or not attr:
            raise self.error(f"{self.kind} {name!r}: target {target!r} is not 'module:attr'")
        key = self.key(name)
        if not key:
            raise self.error(f"{self.kind} target {target!r} needs a non-empty name")
        if key in self.entries:
            raise self.error(
                f"{self.kind} {key!r} is already registered as {self.entries[key]!r}; "
                "pick another name"
            )
        self.entries[key] = target

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self.entries)

    def unknown(self, name: str) -> Exception:
        """The error for a name that is not registered (near names, then the known ones)."""
        hint = did_you_mean(self.key(name), self.entries, cutoff=NAME_CUTOFF)
        return self.error(f"unknown {self.kind} {name!r}{hint} Known: {', '.join(self.names())}")

    def resolve(self, name: str) -> str:
        """The registered name ``name`` stands for.

        Raises:
            error: For an unknown name (with "did you mean ...?").
        """
        key = self.key(name)
        if key not in self.entries:
            raise self.unknown(name)
        return key

    def get(self, name: str) -> T:
        """What is registered under ``name``, its module imported now.

        Raises:
            error: For an unknown name (with "did you mean ...?"), or a target that does
                not import, is not a subclass of :attr:`base` or declares another name.
        """
        key = self.resolve(name)
        target = self.entries[key]
        module, _, attr = target.partition(":")
        try:
            obj = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise self.error(f"{self.kind} {key!r}: cannot import {target} ({e})") from None
        if self.base is not None and not (isinstance(obj, type) and issubclass(obj, self.base)):
            raise self.error(
                f"{self.kind} {key!r}: {target} is not a {self.base.__name__} subclass"
            )
        if self.declares_name and getattr(obj, "name", None) != key:
            raise self.error(
                f"{self.kind} {key!r}: {target} calls itself {getattr(obj, 'name', None)!r}; "
                "register it under the name it declares"
            )
        return cast(T, obj)

    def build(self, name: str, /, **options: Any) -> Any:
        """An instance of the class registered under ``name``, made with ``options``.

        For a dataclass, every option must be one of its ``__init__`` fields.

        Raises:
            error: For an unknown name or option (with "did you mean ...?").
            ValueError: For an option value the class refuses (its message names it).
        """
        cls: Any = self.get(name)
        if dataclasses.is_dataclass(cls):
            known = [f.name for f in dataclasses.fields(cls) if f.init]
            for option in options:
                if option not in known:
                    listed = ", ".join(sorted(known)) or "none"
                    raise self.error(
                        f"{self.key(name)}: unknown option {option!r}"
                        f"{did_you_mean(option, known)} Options: {listed}"
                    )
        return cls(**options)


__all__ = ["NAME_CUTOFF", "Registry", "did_you_mean"]
