"""What a training run shows while it runs: step, loss, steps per second, time left.

On a terminal a live bar (one per run); elsewhere (a log file, CI, a pipe) one plain
line every ``every`` steps and at the last one, so a job that only writes to a file still
shows that it moves. The speed is measured from the second step of this call on (the
first carries the start-up: data loader, first allocations), so the time left is honest
from the first few steps.
"""

from __future__ import annotations

import math
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

#: Plain lines per run on a non-terminal (about; the last step always gets one).
LINES_PER_RUN = 10


def format_seconds(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min`` (``?`` when not finite)."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def default_every(total: int) -> int:
    """Steps between plain lines: about :data:`LINES_PER_RUN` lines per run."""
    return max(1, math.ceil(total / LINES_PER_RUN))


class StepProgress:
    """The progress of one run: use as a context manager, call :meth:`update` per step.

    Args:
        console: Where it shows (its ``is_terminal`` picks the bar or plain lines).
        label: The run's name on the bar or line (e.g. ``stage1``).
        total: Steps of the whole run.
        start: The step this call starts at (a resumed run starts past 0).
        enabled: False shows nothing (another process's view, ``progress: false``).
        every: Steps between plain lines (default: :func:`default_every`).
    """

    def __init__(
        self,
        console: Console,
        label: str,
        total: int,
        start: int = 0,
        *,
        enabled: bool = True,
        every: int | None = None,
    ) -> None:
        self.console = console
        self.label = label
        self.total = total
        self.start = start
        self.enabled = enabled
        self.live = enabled and console.is_terminal
        self.every = every or default_every(total)
        self._t_first: float | None = None
        self._step_first = start
        self._bar: Progress | None = None
        self._task: Any = None

    def __enter__(self) -> StepProgress:
        if self.live:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                console=self.console,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(
                self.label, total=self.total, completed=self.start, info=""
            )
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def rate(self, step: int) -> float:
        """Steps per second since the first step of this call (NaN before two steps)."""
        if self._t_first is None or step <= self._step_first:
            return math.nan
        return (step - self._step_first) / max(time.perf_counter() - self._t_first, 1e-9)

    def seconds_left(self, step: int) -> float:
        """The time left at the measured speed (NaN until it is measured)."""
        r = self.rate(step)
        return (self.total - step) / r if r > 0 else math.nan

    def info(self, step: int, loss: float | None) -> str:
        """``loss 0.4521, 7.9 steps/s, 1 min 02 s left``."""
        parts = [] if loss is None else [f"loss {loss:.4f}"]
        r = self.rate(step)
        if math.isfinite(r):
            parts += [f"{r:.2f} steps/s", f"{format_seconds(self.seconds_left(step))} left"]
        return ", ".join(parts)

    def update(self, step: int, loss: float | None) -> None:
        """Show that ``step`` (1-based, global) finished with ``loss``."""
        if self._t_first is None:  # the clock starts after the first step of this call
            self._t_first, self._step_first = time.perf_counter(), step
        if not self.enabled:
            return
        info = self.info(step, loss)
        if self._bar is not None:
            self._bar.update(self._task, completed=step, info=info)
        elif step % self.every == 0 or step == self.total:
            self.console.print(f"{self.label}: step {step}/{self.total}, {info}", highlight=False)


__all__ = ["LINES_PER_RUN", "StepProgress", "default_every", "format_seconds"]
