"""Image preprocessing throughput, JPEG file -> ready ``pixel_values``, on one core.

Four paths over the same JPEG files, measured in the same run, round-robin (median of
the repeats, so that machine noise hits them alike):

* floor, ``decode``: PIL decoding alone (``Image.open`` + ``load``): no preprocessing
  can be faster than reading the pixels;
* baseline, ``transformers``: ``Qwen2VLImageProcessorPil`` (built by
  ``earthvlm.models.processor.build_image_processor``) called on ``Image.open(path)``
  with ``return_tensors="np"``, the path the collator uses today;
* ours, ``PixelProcessor``: ``earthvlm.data.pixels.PixelProcessor`` built from that
  image processor, called on the path (decode with a pixel-budget check, resize,
  normalise, patches);
* ours packed, ``PixelProcessor.pack``: the same rows as uint8 patches, neither
  normalised nor repeated over the temporal patch (the model expands them on its device,
  ``earthvlm.models.pixels``; compared after that expansion on the CPU).

Two image sets, 512 x 512 and 1024 x 1024, saved as quality-90 JPEG (decoding time
depends on the content, so the bits per pixel are printed): ``synthetic`` scenes
(``earthvlm.synth``: suburban, urban, farmland, harbour; smooth, 1-2 bpp) and
``landsat``, real texture: crops of ``../shared/data/rasters/RGB.byte.tif`` (Landsat 7,
mirrored at the edges for 1024; ~3.5 bpp), skipped when the file is absent (both made
by ``_images.py``, shared with ``bench_collate.py``).
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
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _images import FAMILIES, SIZES, bits_per_pixel, decode, image_sets, round_robin  # noqa: E402
from PIL import Image  # noqa: E402

from earthvlm.data.pixels import PixelProcessor  # noqa: E402
from earthvlm.models.pixels import PackedPixels  # noqa: E402
from earthvlm.models.processor import build_image_processor  # noqa: E402

TARGET_VS_TRANSFORMERS, TARGET_VS_DECODE = 4.0, 2.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 images per size, 3 repeats")
    ap.add_argument("--repeat", type=int, default=7, help="round-robin repeats (median)")
    args = ap.parse_args()
    n, repeat = (2, 3) if args.quick else (4, args.repeat)
    torch.set_num_threads(1)
    sets = image_sets()
    print(f"one thread; {n} JPEG(s) per set and size, median of {repeat} round-robin repeats")
    print(
        f"{'set':<10} {'family':<11} {'size':>5} {'bpp':>5} {'decode/s':>9} "
        f"{'transformers/s':>15} {'ours/s':>8} {'ours/transformers':>18} "
        f"{'same, excl. decode':>19} {'ours time/decode':>17} {'max |diff|':>11} "
        f"{'packed/s':>9} {'packed/transformers':>20} {'packed time/decode':>19}"
    )
    failed = []
    with tempfile.TemporaryDirectory() as d:
        for set_name, make in sets.items():
            for size in SIZES:
                paths = make(Path(d), size, n)
                bpp = bits_per_pixel(paths, size)
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

    expander = PackedPixels.from_processor(pp)
    diff = 0.0
    for p in paths:
        ref, got, packed = hf(p), pp(p), pp.pack(p)
        expanded = expander.expand(torch.from_numpy(packed["pixel_values"])).numpy()
        for out in (got, packed):
            if not np.array_equal(ref["image_grid_thw"], out["image_grid_thw"]):
                raise SystemExit(f"{p.name}: image_grid_thw differs from transformers")
        for values in (got["pixel_values"], expanded):
            diff = max(diff, float(np.abs(ref["pixel_values"] - values).max()))
    if diff > 1e-6:
        raise SystemExit(f"{family}: pixel_values differ from transformers by {diff:g} > 1e-6")
    fns = {"decode": decode, "hf": hf, "ours": pp, "packed": pp.pack}
    per_batch = round_robin({k: lambda f=f: [f(p) for p in paths] for k, f in fns.items()}, repeat)
    t = {k: v / len(paths) for k, v in per_batch.items()}  # seconds per image
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
        f"{speedup:>17.2f}x {work:>18.2f}x {vs_floor:>16.2f}x {diff:>11.1e} "
        f"{1 / t['packed']:>9.1f} {t['hf'] / t['packed']:>19.2f}x "
        f"{t['packed'] / t['decode']:>18.2f}x"
    )
    return {"line": line, "missed": missed}


if __name__ == "__main__":
    main()
