"""Image preprocessing throughput, JPEG file -> ready ``pixel_values``, on one core.

Three paths over the same JPEG files, measured in the same run, round-robin (median of
the repeats, so that machine noise hits them alike):

* floor, ``decode``: PIL decoding alone (``Image.open`` + ``load``): no preprocessing
  can be faster than reading the pixels;
* baseline, ``transformers``: ``Qwen2VLImageProcessorPil`` (built by
  ``earthvlm.models.processor.build_image_processor``) called on ``Image.open(path)``
  with ``return_tensors="np"``, the path the collator uses today;
* ours, ``PixelProcessor``: ``earthvlm.data.pixels.PixelProcessor`` built from that
  image processor, called on the path (decode with a pixel-budget check, resize,
  normalise, patches).

Two image sets, 512 x 512 and 1024 x 1024, saved as quality-90 JPEG (decoding time
depends on the content, so the bits per pixel are printed): ``synthetic`` scenes
(``earthvlm.synth``: suburban, urban, farmland, harbour; smooth, 1-2 bpp) and
``landsat``, real texture: crops of ``../shared/data/rasters/RGB.byte.tif`` (Landsat 7,
mirrored at the edges for 1024; ~3.5 bpp), skipped when the file is absent.
``max_pixels`` is large enough for the native size, rounded to whole tokens: Qwen3-VL
(32 px tokens) keeps 512 and 1024, Qwen2.5-VL (28 px tokens) resizes to 504 and 1036
(PIL bicubic, in both paths: bit-identical output requires PIL's own resampler).

Printed per row: images/s of each path (per core), ours / transformers end to end, the
same ratio without the decoding both share ("excl. decode": the preprocessing itself),
and ours / decoding time. Before timing, every output is compared with the baseline's
(bit-identical expected; the benchmark fails above 1e-6). Threads are pinned to 1
(OpenMP, BLAS, torch). Targets from the data-engine issue: >= 4x the transformers path,
within 2x of decoding. Usage::

    .venv/bin/python benchmarks/bench_processor.py [--quick] [--repeat 7]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from PIL import Image  # noqa: E402

from earthvlm.data.pixels import PixelProcessor  # noqa: E402
from earthvlm.models.processor import build_image_processor  # noqa: E402
from earthvlm.synth.render import Canvas, optical_view  # noqa: E402
from earthvlm.synth.scene import generate_scene  # noqa: E402

KINDS = ("suburban", "urban", "farmland", "harbour")
LANDSAT = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "rasters" / "RGB.byte.tif"
)
SIZES = (512, 1024)
FAMILIES = ("qwen3_vl", "qwen2_5_vl")
TARGET_VS_TRANSFORMERS, TARGET_VS_DECODE = 4.0, 2.0


def _save(arr_hwc: np.ndarray, path: Path) -> Path:
    Image.fromarray(np.ascontiguousarray(arr_hwc)).save(path, quality=90)
    return path


def _synthetic(folder: Path, size: int, n: int) -> list[Path]:
    paths = []
    for i, kind in enumerate(KINDS[:n]):
        gsd = 0.5
        scene = generate_scene(kind, size * gsd, size * gsd, gsd, i)
        arr = optical_view(scene.render(Canvas(size, size, gsd)), np.random.default_rng(i))
        paths.append(_save(arr.transpose(1, 2, 0), folder / f"{kind}_{size}.jpg"))
    return paths


def _landsat(folder: Path, size: int, n: int) -> list[Path]:
    with rasterio.open(LANDSAT) as ds:
        arr = ds.read().transpose(1, 2, 0)  # (718, 791, 3) with no-data corners
    valid = arr[84:634, 95:695]  # the central 550 x 600 px, almost all valid
    big = np.pad(valid, ((0, size), (0, size), (0, 0)), mode="reflect")
    offsets = [(0, 0), (30, 60), (60, 20), (15, 90)][:n]
    return [_save(big[y : y + size, x : x + size], folder / f"landsat{i}_{size}.jpg")
            for i, (y, x) in enumerate(offsets)]  # fmt: skip


def _decode(path: Path) -> None:
    with Image.open(path) as im:
        im.load()


def _round_robin(fns: dict[str, Callable[[Path], object]], paths: list[Path], repeat: int):
    """Median seconds per image of each function, timed in turn over all paths."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for p in paths:
                fn(p)
            times[name].append((time.perf_counter() - t0) / len(paths))
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 images per size, 3 repeats")
    ap.add_argument("--repeat", type=int, default=7, help="round-robin repeats (median)")
    args = ap.parse_args()
    n, repeat = (2, 3) if args.quick else (4, args.repeat)
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(1)
    sets = {"synthetic": _synthetic}
    if LANDSAT.is_file():
        sets["landsat"] = _landsat
    else:
        print(f"{LANDSAT} not found: the landsat set is skipped")
    print(f"one thread; {n} JPEG(s) per set and size, median of {repeat} round-robin repeats")
    print(
        f"{'set':<10} {'family':<11} {'size':>5} {'bpp':>5} {'decode/s':>9} "
        f"{'transformers/s':>15} {'ours/s':>8} {'ours/transformers':>18} "
        f"{'same, excl. decode':>19} {'ours time/decode':>17} {'max |diff|':>11}"
    )
    failed = []
    with tempfile.TemporaryDirectory() as d:
        for set_name, make in sets.items():
            for size in SIZES:
                paths = make(Path(d), size, n)
                bpp = 8 * sum(p.stat().st_size for p in paths) / (len(paths) * size * size)
                for family in FAMILIES:
                    row = _measure(family, paths, repeat)
                    print(f"{set_name:<10} {family:<11} {size:>5} {bpp:>5.2f} {row['line']}")
                    failed += [f"{set_name} {family} {size}: {m}" for m in row["missed"]]
    print("targets: >= 4x the transformers path, <= 2x the decoding time")
    print("missed: " + "; ".join(failed) if failed else "all targets met")


def _measure(family: str, paths: list[Path], repeat: int) -> dict:
    """Check the outputs against transformers, then time the three paths."""
    ip = build_image_processor(family, min_pixels=64 * 64, max_pixels=2048 * 2048)
    pp = PixelProcessor.from_image_processor(ip)

    def hf(path: Path) -> dict:
        return ip(Image.open(path), return_tensors="np")

    diff = 0.0
    for p in paths:
        ref, got = hf(p), pp(p)
        if not np.array_equal(ref["image_grid_thw"], got["image_grid_thw"]):
            raise SystemExit(f"{p.name}: image_grid_thw differs from transformers")
        diff = max(diff, float(np.abs(ref["pixel_values"] - got["pixel_values"]).max()))
    if diff > 1e-6:
        raise SystemExit(f"{family}: pixel_values differ from transformers by {diff:g} > 1e-6")
    t = _round_robin({"decode": _decode, "hf": hf, "ours": pp}, paths, repeat)
    speedup, vs_floor = t["hf"] / t["ours"], t["ours"] / t["decode"]
    # the preprocessing alone (decoding is the same in both paths)
    work = (t["hf"] - t["decode"]) / max(t["ours"] - t["decode"], 1e-9)
    missed = []
    if speedup < TARGET_VS_TRANSFORMERS:
        missed.append(f"{speedup:.2f}x transformers")
    if vs_floor > TARGET_VS_DECODE:
        missed.append(f"{vs_floor:.2f}x decoding time")
    line = (
        f"{1 / t['decode']:>9.1f} {1 / t['hf']:>15.1f} {1 / t['ours']:>8.1f} "
        f"{speedup:>17.2f}x {work:>18.2f}x {vs_floor:>16.2f}x {diff:>11.1e}"
    )
    return {"line": line, "missed": missed}


if __name__ == "__main__":
    main()
