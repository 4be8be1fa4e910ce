"""How many torch threads a CPU run uses, from how busy the machine is.

The tiny backbones gain little from a second thread on an idle machine, and torch's
OpenMP threads spin while they wait for a core: with the cores already taken by other
jobs, two threads ran a training step 3-8x slower than one (2 cores, load average 3-4,
2026-12-08; a newcomer's quickstart was on course for hours). So a CPU run takes the
cores other jobs leave free, at least one, judged from the load average less its own
threads. ``OMP_NUM_THREADS`` set by the user is obeyed as it is.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch


class CpuThreads:
    """Call :meth:`pick` before each phase of a CPU run (a training run, an evaluation).

    Args:
        log: Receives a line when the number of threads changes.
    """

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log = log
        self.fixed = "OMP_NUM_THREADS" in os.environ or torch.cuda.is_available()
        self.cores = os.cpu_count() or 1
        self.mine = 0  # threads this process has been using (part of the load average)

    def pick(self) -> int:
        """Set and return the threads for the next phase."""
        if self.fixed or not hasattr(os, "getloadavg"):
            return torch.get_num_threads()
        others = max(0.0, os.getloadavg()[0] - self.mine)
        n = max(1, min(self.cores, int(self.cores - others + 0.5)))
        if n != torch.get_num_threads():
            self.log(
                f"{n} torch thread(s): load average {others:.1f} from other jobs on "
                f"{self.cores} cores (set OMP_NUM_THREADS to choose)"
            )
            torch.set_num_threads(n)
        self.mine = n
        return n


__all__ = ["CpuThreads"]
