"""UHR reading: a global view and one native crop of a huge raster, vs decoding it whole.

Writes a SIZE x SIZE (default 20,000) RGB uint8 tiled GeoTIFF (512 px blocks, deflate,
predictor 2, 0.3 m UTM georeferencing, overviews 2, 4, ... down to ~256 px) into a
temporary folder, in strips of 512 rows, so generation holds one strip at a time (GDAL's
block cache capped at 256 MB). Then, each in a fresh process, the same work three ways:

* baseline, "PIL full decode": ``Image.open`` + ``load`` (with ``Image.MAX_IMAGE_PIXELS``
  lifted, as naive code does to get past the bomb check), resize to 512 x 512 (bicubic,
  the processor's filter), crop 1024 x 1024 px from the decoded image;
* floor, "rasterio overview + window": ``ds.read(out_shape=(3, 512, 512))`` (GDAL takes
  an overview) and ``ds.read(window=...)`` of the 1024 px crop, nothing else;
* ours, "earthvlm.uhr": ``UHRReader`` (safe open, format sniffing, header checks) given
  the GSD as a record carries it, the global view at a 512 x 512 budget, then a
  ``zoom_in`` call on it parsed and executed: a native 1024 x 1024 crop with its own GSD;
* the same with the GSD measured from the georeferencing (``gsd=None``: pyproj and the
  PROJ database, ~35 MB of the process).

Time is the work after imports, best of ``--repeat``. Memory is each process's peak
resident set (``VmHWM``; ``ru_maxrss`` where /proc is absent): GDAL and Pillow allocate in
C, which tracemalloc does not see. The largest peak over the repeats is kept, and shown
also above the process's size after its imports. Usage::

    .venv/bin/python benchmarks/bench_uhr.py [--size 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Global view budget and crop side of the benchmark.
GLOBAL_PX, CROP_PX = 512, 1024
#: Targets of the UHR issue, against the PIL baseline.
TARGET_SPEEDUP, TARGET_MEMORY = 70.0, 20.0
STRIP_ROWS = 512


def _rss_mib(field: str) -> float:
    """``VmRSS`` / ``VmHWM`` of this process in MiB (``ru_maxrss`` without /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def zoom_box(size: int) -> list[float]:
    """A 0-1000 box on the global view over about 1000 source px from 45 % of each side;
    the tool grows it to whole 32 px tokens: a native 1024 px crop."""
    lo, span = 450.0, 1000.0 * 1000.0 / size
    return [lo, lo, lo + span, lo + span]


def crop_window(size: int) -> tuple[int, int, int, int]:
    """The 1024 px crop every path reads: the window ``zoom_in`` reads for :func:`zoom_box`
    (its whole-pixel cover, grown about it; ``run_uhr`` checks that they agree)."""
    box, scale = zoom_box(size), size / 1000
    lo, hi = math.floor(box[0] * scale), math.ceil(box[2] * scale)
    x = lo - (CROP_PX - (hi - lo)) // 2
    return x, x, x + CROP_PX, x + CROP_PX


# -- generation ---------------------------------------------------------------------------


def generate(path: Path, size: int) -> None:
    """Write the test raster in strips (fields, roads and sensor noise, cheap to make)."""
    import numpy as np
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.transform import Affine
    from rasterio.windows import Window

    from earthvlm.synth.uhr import overview_factors

    rng = np.random.default_rng(0)
    noise = rng.integers(0, 24, (3, STRIP_ROWS, 1021), dtype=np.uint8)
    x = np.arange(size)
    field_x = (x // 317) * 73_856_093
    road_x = (x % 1500) < 12
    profile = {
        "driver": "GTiff", "width": size, "height": size, "count": 3, "dtype": "uint8",
        "crs": "EPSG:32633", "transform": Affine(0.3, 0, 500_000, 0, -0.3, 5_000_000),
        "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "deflate",
        "predictor": 2, "photometric": "RGB", "BIGTIFF": "IF_SAFER",
    }  # fmt: skip
    with rasterio.Env(GDAL_CACHEMAX=256), rasterio.open(path, "w", **profile) as dst:
        for y0 in range(0, size, STRIP_ROWS):
            h = min(STRIP_ROWS, size - y0)
            y = np.arange(y0, y0 + h)
            field = ((field_x[None, :] ^ ((y // 283) * 19_349_663)[:, None]) % 89).astype(np.uint8)
            road = road_x[None, :] | ((y % 1700) < 10)[:, None]
            strip = np.empty((3, h, size), dtype=np.uint8)
            for band, (base, gain) in enumerate(((40, 1), (70, 1), (30, 0))):
                tone = base + gain * field + noise[band, :h][:, x % 1021]
                strip[band] = np.where(road, 120 + noise[band, :h][:, x % 1021], tone)
            dst.write(strip, window=Window(0, y0, size, h))
        dst.build_overviews(list(overview_factors(size)), Resampling.average)


# -- the three paths, one per process -------------------------------------------------------


def run_pil(path: Path, size: int) -> None:
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # the naive path: past the bomb check
    x1, y1, x2, y2 = crop_window(size)
    with Image.open(path) as im:
        im.load()
        overview = im.resize((GLOBAL_PX, GLOBAL_PX), Image.Resampling.BICUBIC)
        crop = im.crop((x1, y1, x2, y2))
    assert overview.size == (GLOBAL_PX, GLOBAL_PX) and crop.size == (CROP_PX, CROP_PX)


def run_rasterio(path: Path, size: int) -> None:
    import rasterio
    from rasterio.windows import Window

    x1, y1, x2, y2 = crop_window(size)
    with rasterio.open(path) as ds:
        overview = ds.read(out_shape=(3, GLOBAL_PX, GLOBAL_PX))
        crop = ds.read(window=Window(x1, y1, x2 - x1, y2 - y1))
    assert overview.shape[1:] == (GLOBAL_PX, GLOBAL_PX) and crop.shape[1:] == (CROP_PX, CROP_PX)


def run_uhr(path: Path, size: int, *, measure_gsd: bool = False) -> None:
    from earthvlm.data.resolution import Resolution
    from earthvlm.scale.gsd import GSD
    from earthvlm.uhr import UHRReader, execute, format_tool_call, parse_tool_call

    resolution = Resolution(factor=32, min_pixels=32 * 32, max_pixels=CROP_PX * CROP_PX)
    gsd = None if measure_gsd else GSD.exact(0.3, "metadata", "the record")
    with UHRReader(path, resolution, gsd=gsd) as reader:
        overview = reader.global_view(max_pixels=GLOBAL_PX * GLOBAL_PX)
        text = "I need a closer look.\n" + format_tool_call(zoom_box(size))
        result = execute(parse_tool_call(text), [overview], reader)
    crop = result.view
    assert overview.hw == (GLOBAL_PX, GLOBAL_PX), overview.hw
    assert crop is not None and crop.is_native, result.observation
    assert crop.window_xyxy_px == crop_window(size), crop.window_xyxy_px
    assert crop.gsd == reader.gsd and overview.gsd.point_m > reader.gsd.point_m


def run_uhr_georef(path: Path, size: int) -> None:
    run_uhr(path, size, measure_gsd=True)


PATHS = {"pil": run_pil, "rasterio": run_rasterio, "uhr": run_uhr, "uhr_georef": run_uhr_georef}


def child(kind: str, path: Path, size: int) -> None:
    """Run one path (or the generation) in this process and print its figures as JSON."""
    import numpy  # noqa: F401  (common to every path: not counted as work)

    if kind.startswith("uhr"):
        import earthvlm.uhr  # noqa: F401
    elif kind == "rasterio":
        import rasterio  # noqa: F401
    elif kind == "pil":
        import PIL.Image  # noqa: F401
    after_imports = _rss_mib("VmRSS")
    t0 = time.perf_counter()
    generate(path, size) if kind == "generate" else PATHS[kind](path, size)
    seconds = time.perf_counter() - t0
    print(json.dumps({"s": seconds, "peak": _rss_mib("VmHWM"), "imports": after_imports}))


def measure(kind: str, path: Path, size: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", kind, str(path), "--size", str(size)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{kind} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size", type=int, default=20_000, help="raster side in px (>= 4096)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each path (best time)")
    ap.add_argument("--child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="4096 px, 1 run (CI smoke run)")
    args = ap.parse_args()
    if args.quick:
        args.size, args.repeat = 4096, 1
    if args.child:
        child(args.child[0], Path(args.child[1]), args.size)
        return
    if args.size < 4096:
        ap.error("--size must be at least 4096 (the crop is 1024 px around 45 % of the side)")
    with tempfile.TemporaryDirectory(prefix="bench_uhr_") as tmp:
        path = Path(tmp) / f"uhr_{args.size}.tif"
        gen = measure("generate", path, args.size)
        mib = path.stat().st_size / 2**20
        print(f"raster: {args.size} x {args.size} px RGB, tiled 512, deflate, overviews; "
              f"file {mib:.0f} MiB")  # fmt: skip
        print(f"generation (strips of {STRIP_ROWS} rows): {gen['s']:.1f} s, "
              f"peak RSS {gen['peak']:.0f} MiB")  # fmt: skip
        runs: dict[str, list[dict[str, float]]] = {k: [] for k in PATHS}
        for _ in range(args.repeat):  # interleaved, so machine noise hits all alike
            for kind in PATHS:
                runs[kind].append(measure(kind, path, args.size))
    best = {k: min(r["s"] for r in v) for k, v in runs.items()}
    peak = {k: max(r["peak"] for r in v) for k, v in runs.items()}
    work = {k: max(r["peak"] - r["imports"] for r in v) for k, v in runs.items()}
    names = {
        "pil": "baseline PIL full decode + resize",
        "rasterio": "floor rasterio overview + window",
        "uhr": "earthvlm.uhr global view + zoom_in",
        "uhr_georef": "same, GSD measured from georef",
    }
    print(f"{'path':38s} {'time s':>8s} {'peak RSS MiB':>13s} {'above imports MiB':>18s}")
    for k in PATHS:
        print(f"{names[k]:38s} {best[k]:8.3f} {peak[k]:13.0f} {work[k]:18.0f}")
    # per repeat, the paths ran back to back: ratios of one repeat share the machine's load
    ratios = sorted(a["s"] / b["s"] for a, b in zip(runs["pil"], runs["uhr"], strict=True))
    speedup, memory = statistics.median(ratios), peak["pil"] / peak["uhr"]
    print(f"time   PIL / ours      : {speedup:8.1f}x [{ratios[0]:.1f}-{ratios[-1]:.1f}], median "
          f"of {len(ratios)} interleaved runs (target >= {TARGET_SPEEDUP:g}x: "
          f"{'met' if speedup >= TARGET_SPEEDUP else 'MISSED'})")  # fmt: skip
    print(f"memory PIL / ours      : {memory:8.1f}x  (target >= {TARGET_MEMORY:g}x: "
          f"{'met' if memory >= TARGET_MEMORY else 'MISSED'}); "
          f"above imports {work['pil'] / max(work['uhr'], 1):.1f}x")  # fmt: skip
    print(f"time   ours / rasterio : {best['uhr'] / best['rasterio']:8.2f}x  "
          f"(peak RSS {peak['uhr'] / peak['rasterio']:.2f}x)")  # fmt: skip
    g = "uhr_georef"
    print(f"with the GSD measured  : time PIL / ours {best['pil'] / best[g]:.1f}x, "
          f"memory PIL / ours {peak['pil'] / peak[g]:.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
