"""Every benchmark runs: each ``benchmarks/bench_*.py --quick`` (a smoke run of seconds)
exits 0, so a moved import or a changed API cannot leave a benchmark broken unnoticed.
The figures themselves are not checked here (they belong to BENCHMARKS.md's machine)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("bench_*.py"))


def test_every_benchmark_offers_a_quick_mode() -> None:
    assert SCRIPTS
    missing = [s for s in SCRIPTS if '"--quick"' not in (BENCHMARKS / s).read_text()]
    assert not missing, f"benchmarks without --quick: {missing}"


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_quick_run_finishes(script: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick"],
        cwd=BENCHMARKS,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (
        f"{script} --quick failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    )
    assert proc.stdout.strip(), f"{script} --quick printed nothing"
