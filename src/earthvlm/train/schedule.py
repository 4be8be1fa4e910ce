"""Schedules as pure functions of the optimiser step: learning rate and lambda_gsd.

Both are functions of the step alone, so a resumed run needs nothing but the step to
continue them exactly (the checkpoint still records them, for people).
"""

from __future__ import annotations

import math


def warmup_steps(total_steps: int, warmup_ratio: float) -> int:
    """Steps of linear warm-up: ``ceil(warmup_ratio * total_steps)``."""
    return math.ceil(warmup_ratio * total_steps)


def cosine_with_warmup(step: int, total_steps: int, warmup_ratio: float) -> float:
    """The learning-rate multiplier at optimiser step ``step`` (0-based).

    Linear warm-up from ``1 / warmup`` to 1 over the first ``ceil(warmup_ratio * total)``
    steps, then cosine decay towards 0 at ``total_steps``. Unlike the common
    ``step / warmup`` form, the first step already moves the weights (a run of a few
    steps is not half wasted on a zero learning rate).
    """
    warm = warmup_steps(total_steps, warmup_ratio)
    if step < warm:
        return (step + 1) / warm
    span = max(1, total_steps - warm)
    progress = min(1.0, (step - warm) / span)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def lambda_gsd(
    step: int, total_steps: int, *, warmup: float = 0.3, steady: float = 0.1, frac: float = 0.1
) -> float:
    """Eq. 4's weight of L_nll: ``warmup`` for the first ``frac`` of steps, then ``steady``.

    "lambda_gsd(t) = 0.3 during the first 10% of training steps and 0.1 thereafter,
    stabilizing SSE-U early" (ScaleEarth sec. 3.2).
    """
    return warmup if step < frac * total_steps else steady


__all__ = ["cosine_with_warmup", "lambda_gsd", "warmup_steps"]
