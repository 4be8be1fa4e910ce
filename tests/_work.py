"""How much work a call does, for tests of algorithmic properties (not speed).

A test that asserts wall time fails on a loaded machine; what it means to check is that
the work grows as it should. :func:`growth` times a call on an input and on ``factor``
times that input in CPU time (the least of three runs, garbage collection off) and
returns the ratio: linear work gives about ``factor``, quadratic ``factor**2``. CPU time
of one process is not stretched by other jobs the way wall time is.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable
from typing import Any


def cpu_seconds(fn: Callable[[Any], Any], arg: Any, *, repeat: int = 3) -> float:
    """The least CPU time of ``repeat`` calls ``fn(arg)`` (at least 0.1 ms)."""
    best = math.inf
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeat):
            t0 = time.process_time()
            fn(arg)
            best = min(best, time.process_time() - t0)
    finally:
        gc.enable()
    return max(best, 1e-4)


def growth(fn: Callable[[Any], Any], make: Callable[[int], Any], n: int, factor: int = 10) -> float:
    """CPU time of ``fn(make(factor * n))`` over that of ``fn(make(n))``."""
    return cpu_seconds(fn, make(factor * n)) / cpu_seconds(fn, make(n))


__all__ = ["cpu_seconds", "growth"]
