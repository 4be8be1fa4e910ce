"""GSD resolution cost vs the naive baseline, measured in the same run.

Baseline: ``rasterio.open(path).res`` (what most code does, and gets wrong for Web
Mercator, degrees and rotated grids). Ours: ``earthvlm.scale.resolve.resolve_gsd``
(safe open with format sniffing, geodesic measurement at the image centre, name parse).
Prints files/s for both and the time ratio: the median over paired, interleaved runs
with the min-max (``_paired.py``). Usage::

    .venv/bin/python benchmarks/bench_gsd.py [--repeat 20] [--pairs 7] [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import warnings

import rasterio
from _paired import paired
from rasterio.errors import NotGeoreferencedWarning

from earthvlm.scale.examples import write_georef_examples
from earthvlm.scale.resolve import resolve_gsd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=20, help="passes over the files per run")
    ap.add_argument("--pairs", type=int, default=7, help="paired, interleaved runs")
    ap.add_argument("--quick", action="store_true", help="2 passes, 3 pairs (CI smoke run)")
    args = ap.parse_args()
    if args.quick:
        args.repeat, args.pairs = 2, 3
    warnings.simplefilter("ignore", NotGeoreferencedWarning)
    with tempfile.TemporaryDirectory() as d:
        paths = [e.path for e in write_georef_examples(d)]

        def naive() -> None:
            for _ in range(args.repeat):
                for p in paths:
                    with rasterio.open(p) as ds:
                        _ = ds.res

        def ours() -> None:
            for _ in range(args.repeat):
                for p in paths:
                    resolve_gsd(p)

        runs = paired(naive, ours, args.pairs)
    n = len(paths) * args.repeat
    print(f"files per run: {n}")
    print(f"baseline rasterio.open().res : {n / min(runs.baseline_s):8.1f} files/s (fastest run)")
    print(f"earthvlm resolve_gsd         : {n / min(runs.ours_s):8.1f} files/s (fastest run)")
    slower = [1 / r for r in runs.ratios]
    print(
        f"time ratio ours / baseline   : {sorted(slower)[len(slower) // 2]:.2f}x "
        f"[{min(slower):.2f}-{max(slower):.2f}], median of {args.pairs} paired, interleaved runs"
    )


if __name__ == "__main__":
    main()
