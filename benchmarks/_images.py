"""JPEG test images and round-robin timing shared by the preprocessing benchmarks.

Two image sets, saved as quality-90 JPEG (decoding time depends on the content, so the
benchmarks print the bits per pixel): ``synthetic`` scenes (``earthvlm.synth``:
suburban, urban, farmland, harbour; smooth, 1-2 bpp) and ``landsat``, real texture:
crops of ``../shared/data/rasters/RGB.byte.tif`` (Landsat 7, mirrored at the edges for
1024 px; ~3.5 bpp), for runs where that file is present (:func:`image_sets`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image

from earthvlm.synth.render import Canvas, optical_view
from earthvlm.synth.scene import generate_scene

KINDS = ("suburban", "urban", "farmland", "harbour")
LANDSAT = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "rasters" / "RGB.byte.tif"
)
SIZES = (512, 1024)
FAMILIES = ("qwen3_vl", "qwen2_5_vl")

#: Makes ``n`` JPEGs of ``size`` x ``size`` px in a folder and returns their paths.
ImageSet = Callable[[Path, int, int], list[Path]]


def save_jpeg(arr_hwc: np.ndarray, path: Path) -> Path:
    """Save an ``(H, W, 3)`` uint8 array as a quality-90 JPEG (PIL's 4:2:0 default)."""
    Image.fromarray(np.ascontiguousarray(arr_hwc)).save(path, quality=90)
    return path


def synthetic_jpegs(folder: Path, size: int, n: int) -> list[Path]:
    """``n`` (at most 4) synthetic scenes at 0.5 m GSD, one per kind."""
    paths = []
    for i, kind in enumerate(KINDS[:n]):
        gsd = 0.5
        scene = generate_scene(kind, size * gsd, size * gsd, gsd, i)
        arr = optical_view(scene.render(Canvas(size, size, gsd)), np.random.default_rng(i))
        paths.append(save_jpeg(arr.transpose(1, 2, 0), folder / f"{kind}_{size}.jpg"))
    return paths


def landsat_jpegs(folder: Path, size: int, n: int) -> list[Path]:
    """``n`` (at most 4) overlapping crops of the Landsat scene."""
    with rasterio.open(LANDSAT) as ds:
        arr = ds.read().transpose(1, 2, 0)  # (718, 791, 3) with no-data corners
    valid = arr[84:634, 95:695]  # the central 550 x 600 px, almost all valid
    big = np.pad(valid, ((0, size), (0, size), (0, 0)), mode="reflect")
    offsets = [(0, 0), (30, 60), (60, 20), (15, 90)][:n]
    return [save_jpeg(big[y : y + size, x : x + size], folder / f"landsat{i}_{size}.jpg")
            for i, (y, x) in enumerate(offsets)]  # fmt: skip


def image_sets() -> dict[str, ImageSet]:
    """The image sets to run: ``synthetic`` always, ``landsat`` when its file is present."""
    sets: dict[str, ImageSet] = {"synthetic": synthetic_jpegs}
    if LANDSAT.is_file():
        sets["landsat"] = landsat_jpegs
    else:
        print(f"{LANDSAT} not found: the landsat set is skipped")
    return sets


def bits_per_pixel(paths: list[Path], size: int) -> float:
    """Mean compressed bits per pixel of square ``size`` px files."""
    return 8 * sum(p.stat().st_size for p in paths) / (len(paths) * size * size)


def decode(path: Path) -> None:
    """PIL decoding alone (the floor of any preprocessing)."""
    with Image.open(path) as im:
        im.load()


def round_robin(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Median seconds per call of each function, called in turn ``repeat`` times (so
    that machine noise hits them alike)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}
