"""GSD resolution cost vs the naive baseline, measured in the same run.

Baseline: ``rasterio.open(path).res`` (what most code does, and gets wrong for Web
Mercator, degrees and rotated grids). Ours: ``earthvlm.scale.resolve.resolve_gsd``
(safe open with format sniffing, geodesic measurement at the image centre, name parse).
Prints files/s for both and the ratio. Usage::

    .venv/bin/python benchmarks/bench_gsd.py [--repeat 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import rasterio
from rasterio.errors import NotGeoreferencedWarning

from earthvlm.scale.examples import write_georef_examples
from earthvlm.scale.resolve import resolve_gsd


def _time(fn, paths: list[Path], repeat: int) -> float:
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(repeat):
            for p in paths:
                fn(p)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    warnings.simplefilter("ignore", NotGeoreferencedWarning)
    with tempfile.TemporaryDirectory() as d:
        paths = [e.path for e in write_georef_examples(d)]

        def naive(p: Path) -> None:
            with rasterio.open(p) as ds:
                _ = ds.res

        def ours(p: Path) -> None:
            resolve_gsd(p)

        n = len(paths) * args.repeat
        t_naive = _time(naive, paths, args.repeat)
        t_ours = _time(ours, paths, args.repeat)
    print(f"files per run: {n}")
    print(f"baseline rasterio.open().res : {n / t_naive:8.1f} files/s")
    print(f"earthvlm resolve_gsd         : {n / t_ours:8.1f} files/s")
    print(f"time ratio ours / baseline   : {t_ours / t_naive:8.2f}x")


if __name__ == "__main__":
    main()
