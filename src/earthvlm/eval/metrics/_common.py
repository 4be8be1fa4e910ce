"""Pieces every metric module shares: input checks, accuracy tables, JSON-ready floats.

Not public API; the metric modules re-export what users need.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from earthvlm.data.ledger import Ledger


def check_lengths(**named: Sequence[Any]) -> int:
    """The common length of several per-item sequences.

    Raises:
        ValueError: If one is a bare string (a common slip for a list of one string) or
            the lengths differ.
    """
    lengths: dict[str, int] = {}
    for name, seq in named.items():
        if isinstance(seq, (str, bytes)):
            raise ValueError(f"{name} is a single string; pass a sequence with one entry per item")
        try:
            lengths[name] = len(seq)
        except TypeError:
            raise ValueError(
                f"{name} must be a sequence (list or tuple) with one entry per item, "
                f"got {type(seq).__name__}"
            ) from None
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{k} has {v}" for k, v in lengths.items())
        raise ValueError(f"one entry per item is needed in each input, but {listed}")
    return next(iter(lengths.values()), 0)


def check_text(value: Any, name: str, index: int) -> str | None:
    """``value`` when it is a string or None (a missing prediction).

    Raises:
        ValueError: For anything else, naming the input and the item.
    """
    if value is None or isinstance(value, str):
        return value
    raise ValueError(
        f"{name}[{index}] must be a string (or None for a missing prediction), "
        f"got {type(value).__name__}"
    )


def ratio(num: float, den: float) -> float:
    """``num / den``, NaN when there is nothing to divide by."""
    return float(num) / float(den) if den else math.nan


def mean(values: Sequence[float]) -> float:
    """The mean, NaN for no values."""
    return math.fsum(values) / len(values) if len(values) else math.nan


def json_float(x: float | None) -> float | None:
    """A float for JSON: NaN and None become None."""
    if x is None or math.isnan(x):
        return None
    return float(x)


@dataclass(frozen=True)
class GroupScore:
    """Accuracy of one group of items (a category, a subtask, a question type).

    Attributes:
        n: Items scored in the group.
        n_correct: Items judged correct.
    """

    n: int
    n_correct: int

    @property
    def accuracy(self) -> float:
        """``n_correct / n`` (NaN for an empty group)."""
        return ratio(self.n_correct, self.n)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"n": self.n, "n_correct": self.n_correct, "accuracy": json_float(self.accuracy)}


@dataclass(frozen=True)
class AccuracyTable:
    """Accuracy per group with the overall (micro) and average (macro) accuracy.

    Attributes:
        by_group: Group name -> its score, sorted by name.
    """

    by_group: Mapping[str, GroupScore]

    @property
    def n(self) -> int:
        return sum(g.n for g in self.by_group.values())

    @property
    def n_correct(self) -> int:
        return sum(g.n_correct for g in self.by_group.values())

    @property
    def overall(self) -> float:
        """OA: correct items over all items (micro)."""
        return ratio(self.n_correct, self.n)

    @property
    def average(self) -> float:
        """AA: the mean of the per-group accuracies (macro), NaN without groups."""
        return mean([g.accuracy for g in self.by_group.values()])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "n": self.n,
            "n_correct": self.n_correct,
            "overall_accuracy": json_float(self.overall),
            "average_accuracy": json_float(self.average),
            "by_group": {k: v.to_dict() for k, v in self.by_group.items()},
        }


def accuracy_table(correct: Sequence[bool], groups: Sequence[str]) -> AccuracyTable:
    """Group per-item correctness by group name (items in the same order)."""
    n: dict[str, int] = {}
    k: dict[str, int] = {}
    for ok, g in zip(correct, groups, strict=True):
        n[g] = n.get(g, 0) + 1
        k[g] = k.get(g, 0) + int(bool(ok))
    return AccuracyTable({g: GroupScore(n[g], k[g]) for g in sorted(n)})


def group_names(groups: Sequence[Any] | None, n: int, name: str) -> list[str]:
    """Per-item group names as strings (``"all"`` for every item when ``groups`` is None).

    Raises:
        ValueError: If a group name is missing or not a string.
    """
    if groups is None:
        return ["all"] * n
    out = []
    for i, g in enumerate(groups):
        if not isinstance(g, str) or not g:
            raise ValueError(f"{name}[{i}] must be a non-empty string, got {g!r}")
        out.append(g)
    return out


def new_ledger(stage: str) -> Ledger:
    """A fresh ledger for one scoring run."""
    return Ledger(stage=stage)
