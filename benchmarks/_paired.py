"""Paired, interleaved timing: the ratio a benchmark reports and how much it moved.

A baseline timed once and our code timed at its best of three flatters us on a machine
whose load changes from second to second. :func:`paired` runs the two back to back,
``repeat`` times, alternating which goes first, and takes the ratio of each pair: the
pairs share the machine's state of the moment, so their ratios are comparable. The
report is the median ratio with the smallest and largest beside it (BENCHMARKS.md's
"median [min-max]").
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Paired:
    """Seconds of each run of the baseline and of ours, in pair order."""

    baseline_s: tuple[float, ...]
    ours_s: tuple[float, ...]

    @property
    def ratios(self) -> list[float]:
        """Baseline time / our time, per pair (above 1: we are faster)."""
        return [b / max(o, 1e-12) for b, o in zip(self.baseline_s, self.ours_s, strict=True)]

    @property
    def median(self) -> float:
        return statistics.median(self.ratios)

    def summary(self, unit: str = "x") -> str:
        """``22.1x [20.3-23.0], median of 5 paired runs``."""
        r = self.ratios
        return (
            f"{self.median:.2f}{unit} [{min(r):.2f}-{max(r):.2f}], median of {len(r)} "
            "paired, interleaved runs"
        )


def paired(baseline: Callable[[], Any], ours: Callable[[], Any], repeat: int = 5) -> Paired:
    """Time ``baseline()`` and ``ours()`` ``repeat`` times each, in pairs, alternating
    which runs first (so neither always gets the warm cache or the quiet moment)."""
    if repeat < 1:
        raise ValueError(f"repeat={repeat}: must be >= 1")
    base_s, ours_s = [], []
    for k in range(repeat):
        order = (("b", baseline), ("o", ours)) if k % 2 == 0 else (("o", ours), ("b", baseline))
        for who, fn in order:
            t0 = time.perf_counter()
            fn()
            (base_s if who == "b" else ours_s).append(time.perf_counter() - t0)
    return Paired(tuple(base_s), tuple(ours_s))


__all__ = ["Paired", "paired"]
