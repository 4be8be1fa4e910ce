"""Synthetic-world throughput vs the GeoTIFF IO floor, measured in the same run.

Baseline (the IO floor): encoding the same number of random uint8 (3, 128, 128)
arrays as GeoTIFF with ``earthvlm.geo.raster.write_geotiff`` (rasterio, deflate,
predictor 2: what the dataset writer does), i.e. what writing costs with no rendering
at all. Ours, single process, per scene kind and overall:

* ``render``: ``generate_scene`` + ``Scene.render`` + ``optical_view`` at 128 x 128,
  GSD drawn log-uniformly in 0.05-30 m as the dataset writer draws it;
* ``render+write``: the same plus ``write_geotiff`` of the optical view;
* chips at 64 x 64 (``render_chip``, classes in turn), render only and render + write;
* one UHR scene (8192 x 8192 by default) written tile by tile, in a fresh process:
  wall time, Python peak (tracemalloc: numpy arrays included, GDAL's cache not) and
  the process's peak RSS (``ru_maxrss``, whole process).

The issue's target is >= 500 samples/s per core at 128 x 128. Usage::

    .venv/bin/python benchmarks/bench_synth.py [--n 60] [--uhr-size 8192] [--no-uhr]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from earthvlm.geo.raster import write_geotiff
from earthvlm.synth.chips import CHIP_CLASSES, render_chip
from earthvlm.synth.dataset import UTM_CRS, utm_transform
from earthvlm.synth.render import Canvas, optical_view
from earthvlm.synth.scene import SCENE_KINDS, generate_scene

SIZE, CHIP = 128, 64
TARGET = 500.0


def _gsd(rng: np.random.Generator) -> float:
    return float(10 ** rng.uniform(math.log10(0.05), math.log10(30.0)))


def _write(out: Path, name: str, arr: np.ndarray, gsd: float) -> None:
    n = arr.shape[-1]
    write_geotiff(
        out / name, arr, crs=UTM_CRS, transform=utm_transform(gsd, n, n, 5.0e6),
        tags={"EARTHVLM_GSD_M": repr(gsd)}, band_names=("red", "green", "blue"),
    )  # fmt: skip


def _scene(kind: str, i: int) -> tuple[np.ndarray, float]:
    rng = np.random.default_rng([i, 1])
    gsd = _gsd(rng)
    scene = generate_scene(kind, SIZE * gsd, SIZE * gsd, gsd, i)
    canvas = scene.render(Canvas(SIZE, SIZE, gsd))
    return optical_view(canvas, rng), gsd


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _uhr_child(path: str, size: int, queue: mp.Queue) -> None:
    from earthvlm.synth.uhr import write_uhr_scene

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    t0 = time.perf_counter()
    u = write_uhr_scene(path, size_px=size, gsd_m=0.3, kind="farmland", seed=0)
    dt = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    t1 = time.perf_counter()  # again without tracemalloc (its hooks cost a little)
    write_uhr_scene(path + ".2", size_px=size, gsd_m=0.3, kind="grassland", seed=1)
    dt2 = time.perf_counter() - t1
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put((dt, dt2, peak, rss0 * 1024, rss * 1024, Path(path).stat().st_size, len(u.labels)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=60, help="scenes per kind (and chips per class)")
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    ap.add_argument("--uhr-size", type=int, default=8192)
    ap.add_argument("--no-uhr", action="store_true")
    ap.add_argument("--quick", action="store_true", help="2 per kind, 1 run, no UHR (CI)")
    args = ap.parse_args()
    if args.quick:
        args.n, args.repeat, args.no_uhr = 2, 1, True
    n, rep = args.n, args.repeat
    with tempfile.TemporaryDirectory() as d:
        out = Path(d)
        noise = np.random.default_rng(0).integers(0, 256, (n, 3, SIZE, SIZE), dtype=np.uint8)
        t_floor = _best(lambda: [_write(out, f"r{i}.tif", noise[i], 1.0) for i in range(n)], rep)
        floor = n / t_floor
        print(f"baseline: write_geotiff of random uint8 3x{SIZE}x{SIZE} : {floor:8.1f} /s")
        print(f"target: {TARGET:.0f} samples/s per core (render + write)\n")
        print(f"{'kind':12s} {'render/s':>9s} {'+write/s':>9s} {'(+write)/floor time':>20s}")
        tot_r = tot_w = 0.0
        rows = []
        for kind in SCENE_KINDS:
            t_r = _best(lambda k=kind: [_scene(k, i) for i in range(n)], rep)

            def both(k: str = kind) -> None:
                for i in range(n):
                    arr, gsd = _scene(k, i)
                    _write(out, f"{k}{i}.tif", arr, gsd)

            t_w = _best(both, rep)
            tot_r, tot_w = tot_r + t_r, tot_w + t_w
            rows.append((kind, n / t_r, n / t_w, t_w / t_floor))
        for kind, r, w, ratio in rows:
            flag = "" if w >= TARGET else "  below target"
            print(f"{kind:12s} {r:9.1f} {w:9.1f} {ratio:19.2f}x{flag}")
        m = n * len(SCENE_KINDS)
        ratio = tot_w / len(SCENE_KINDS) / t_floor
        print(f"{'all kinds':12s} {m / tot_r:9.1f} {m / tot_w:9.1f} {ratio:19.2f}x")

        classes = sorted(CHIP_CLASSES)

        def chips(write: bool) -> None:
            for i in range(n):
                c = render_chip(classes[i % len(classes)], np.random.default_rng([i, 4]))
                if write:
                    _write(out, f"c{i}.tif", c.image, c.gsd_m)

        t_c = _best(lambda: chips(False), rep)
        t_cw = _best(lambda: chips(True), rep)
        print(
            f"\nchips {CHIP}x{CHIP}: render {n / t_c:8.1f} /s, render+write {n / t_cw:8.1f} /s "
            f"({t_cw / t_floor:.2f}x the floor's time for as many 128 px writes)"
        )
        if args.no_uhr:
            return
        ctx = mp.get_context("spawn")  # a fresh process: its peak RSS is the UHR write's
        q: mp.Queue = ctx.Queue()
        p = ctx.Process(target=_uhr_child, args=(str(out / "uhr.tif"), args.uhr_size, q))
        p.start()
        dt, dt2, peak, rss0, rss, nbytes, n_obj = q.get()
        p.join()
        s = args.uhr_size
        print(
            f"\nUHR {s}x{s} (farmland, 0.3 m, {n_obj} targets): {dt:.1f} s with tracemalloc, "
            f"{dt2:.1f} s without (grassland); {s * s / dt2 / 1e6:.2f} Mpx/s\n"
            f"  Python peak (tracemalloc) {peak / 2**20:.0f} MiB; process peak RSS "
            f"{rss / 2**20:.0f} MiB (at start {rss0 / 2**20:.0f} MiB); "
            f"file {nbytes / 2**20:.0f} MiB; full float canvas: {11 * 4 * s * s / 2**30:.1f} GiB"
        )


if __name__ == "__main__":
    main()
