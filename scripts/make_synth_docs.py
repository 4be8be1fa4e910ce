"""Regenerate the figures of docs/synth.md under docs/synth/ (deterministic).

* ``kinds_by_gsd.png``: every scene kind (rows) at 0.1, 0.5, 2 and 10 m (columns);
* ``views.png``: one harbour scene as optical (partly clouded), SAR (dB) and
  multispectral false colour (NIR B08, red B04, green B03);
* ``chips.png``: object chips, one row per class; the ambiguous pairs (small vehicle /
  building, storage tank / roundabout) sit on adjacent rows, GSD under each chip;
* ``uhr.png``: an 8192 x 8192 UHR scene's global view (its 1/16 overview) with the
  native-resolution crop around one target.

PNGs are palette-quantised to stay small (about 1 MB in all). Usage::

    .venv/bin/python scripts/make_synth_docs.py [--out docs/synth] [--uhr-size 8192]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from rasterio.windows import Window

from earthvlm.geo.raster import open_raster, read_pixels
from earthvlm.synth.chips import CHIP_CLASSES, render_chip
from earthvlm.synth.materials import BANDS
from earthvlm.synth.render import (
    Canvas,
    cloud_alpha,
    multispectral_view,
    optical_view,
    sar_view,
)
from earthvlm.synth.scene import SCENE_KINDS, generate_scene
from earthvlm.synth.uhr import write_uhr_scene

GSDS = (0.1, 0.5, 2.0, 10.0)
BG = (255, 255, 255)
INK = (20, 20, 20)


def _font(size: int = 13) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _rgb(arr: np.ndarray) -> Image.Image:
    """(3, H, W) or (1, H, W) uint8 -> PIL RGB."""
    if arr.shape[0] == 1:
        arr = np.repeat(arr, 3, axis=0)
    return Image.fromarray(np.ascontiguousarray(arr.transpose(1, 2, 0)), "RGB")


MARK = (255, 40, 40)


def _save(
    img: Image.Image,
    path: Path,
    colours: int = 192,
    marks: list[tuple[float, float, float, float]] = (),  # type: ignore[assignment]
) -> int:
    """Palette-quantise and save; ``marks`` (rectangles) are drawn after quantising, in
    a reserved palette entry, so that a thin outline keeps its colour."""
    q = img.quantize(colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    if marks:
        palette = q.getpalette() or []
        palette = palette[: 3 * colours] + [0] * max(0, 3 * colours - len(palette))
        q.putpalette([*palette, *MARK])
        draw = ImageDraw.Draw(q)
        for box in marks:
            draw.rectangle(box, outline=colours, width=2)
    q.save(path, optimize=True)
    return path.stat().st_size


def kinds_by_gsd(out: Path, cell: int = 128) -> int:
    label_w, head_h, pad = 96, 22, 4
    w = label_w + len(GSDS) * (cell + pad)
    h = head_h + len(SCENE_KINDS) * (cell + pad)
    sheet = Image.new("RGB", (w, h), BG)
    draw = ImageDraw.Draw(sheet)
    for j, g in enumerate(GSDS):
        draw.text((label_w + j * (cell + pad) + cell // 2 - 16, 4), f"{g:g} m", INK, _font())
    for i, kind in enumerate(SCENE_KINDS):
        y = head_h + i * (cell + pad)
        draw.text((6, y + cell // 2 - 8), kind, INK, _font())
        for j, g in enumerate(GSDS):
            scene = generate_scene(kind, cell * g, cell * g, g, seed=100 + i)
            canvas = scene.render(Canvas(cell, cell, g))
            tile = _rgb(optical_view(canvas, np.random.default_rng([i, j])))
            sheet.paste(tile, (label_w + j * (cell + pad), y))
    return _save(sheet, out / "kinds_by_gsd.png")


def views(out: Path, size: int = 224) -> int:
    g = 2.0  # a harbour with five ships; the clouds hide some, SAR shows them all
    scene = generate_scene("harbour", size * g, size * g, g, seed=12)
    canvas = scene.render(Canvas(size, size, g))
    clouds = cloud_alpha(canvas, 0.4, seed=3)
    rng = np.random.default_rng(0)
    opt = optical_view(canvas, rng, clouds)
    sar = sar_view(canvas, rng)
    ms = multispectral_view(canvas, rng, clouds).astype(np.float32)
    nir, red, green = (ms[BANDS.index(b)] / 10000 for b in ("B08", "B04", "B03"))
    false = np.stack([nir, red, green]) / 0.4  # the optical view's stretch and gamma
    false = (np.clip(false, 0, 1) ** (1 / 1.4) * 255 + 0.5).astype(np.uint8)
    titles = ("optical + clouds", "SAR (sigma0 dB)", "false colour NIR-R-G")
    pad, head = 6, 22
    sheet = Image.new("RGB", (3 * size + 2 * pad, size + head), BG)
    draw = ImageDraw.Draw(sheet)
    for k, (arr, title) in enumerate(zip((opt, sar, false), titles, strict=True)):
        x = k * (size + pad)
        sheet.paste(_rgb(arr), (x, head))
        draw.text((x + 4, 4), title, INK, _font())
    return _save(sheet, out / "views.png")


def chips(out: Path, per_row: int = 6, scale: int = 2) -> int:
    order = ["small vehicle", "building", "storage tank", "roundabout", "plane", "ship"]
    assert sorted(order) == sorted(CHIP_CLASSES)
    side = 64 * scale
    label_w, foot, pad = 110, 16, 4
    sheet = Image.new(
        "RGB", (label_w + per_row * (side + pad), len(order) * (side + foot + pad)), BG
    )
    draw = ImageDraw.Draw(sheet)
    for i, cls in enumerate(order):
        y = i * (side + foot + pad)
        pair = CHIP_CLASSES[cls].pair
        draw.text((6, y + side // 2 - 14), cls, INK, _font())
        if pair:
            draw.text((6, y + side // 2 + 2), f"(pair: {pair})", (110, 110, 110), _font(11))
        for j in range(per_row):
            chip = render_chip(cls, np.random.default_rng([i, j, 17]))
            img = _rgb(chip.image).resize((side, side), Image.Resampling.NEAREST)
            x = label_w + j * (side + pad)
            sheet.paste(img, (x, y))
            draw.text((x + 2, y + side + 1), f"{chip.gsd_m:.2f} m", INK, _font(11))
    return _save(sheet, out / "chips.png")


def uhr(out: Path, size_px: int, view: int = 512, crop: int = 256) -> int:
    with tempfile.TemporaryDirectory() as d:
        scene = write_uhr_scene(
            Path(d) / "uhr.tif", size_px=size_px, gsd_m=0.3, kind="farmland", seed=2
        )
        factor = size_px // view
        with open_raster(scene.path) as ds:
            # decimated read: GDAL serves it from the matching internal overview
            glob = ds.read(out_shape=(3, view, view))
            cars = [lb for lb in scene.labels if lb.cls == "small vehicle"]
            target = (cars or scene.labels)[0]
            cx, cy = (round(v) for v in target.centre_px)
            c0 = min(max(cx - crop // 2, 0), size_px - crop)
            r0 = min(max(cy - crop // 2, 0), size_px - crop)
            native = read_pixels(ds, window=Window(c0, r0, crop, crop))
    big = 2 * crop
    pad, head = 8, 22
    sheet = Image.new("RGB", (view + pad + big, max(view, big) + head), BG)
    draw = ImageDraw.Draw(sheet)
    sheet.paste(_rgb(glob), (0, head))
    x0, y0 = c0 / factor, head + r0 / factor
    box = (x0 - 4, y0 - 4, x0 + crop / factor + 4, y0 + crop / factor + 4)
    sheet.paste(_rgb(native).resize((big, big), Image.Resampling.NEAREST), (view + pad, head))
    draw.text(
        (4, 4), f"global view: {size_px} px at {scene.gsd_m:.2f} m, shown 1/{factor}", INK, _font()
    )
    draw.text(
        (view + pad + 4, 4), f"native crop {crop} x {crop} px (x2): a {target.cls}", INK, _font()
    )
    return _save(sheet, out / "uhr.png", colours=224, marks=[box])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("docs/synth"))
    ap.add_argument("--uhr-size", type=int, default=8192)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    total = 0
    for name, fn in (
        ("kinds_by_gsd", lambda: kinds_by_gsd(args.out)),
        ("views", lambda: views(args.out)),
        ("chips", lambda: chips(args.out)),
        ("uhr", lambda: uhr(args.out, args.uhr_size)),
    ):
        n = fn()
        total += n
        print(f"{name:14s} {n / 1024:7.0f} KiB")
    print(f"{'total':14s} {total / 1024:7.0f} KiB")


if __name__ == "__main__":
    main()
