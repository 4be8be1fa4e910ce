"""Images over the decode budget are read at the size the model sees, never decoded whole.

XLRS-Bench scenes are 10,000 px a side and LRS-VQA's reach 27,328: over the default
89.5 MP budget they used to be refused (``unreadable_image``) and scored wrong. Now a
JPEG is decoded by libjpeg at 1/2-1/8 scale, a PNG in strips of rows, a GeoTIFF from its
coarsest fitting overview (or GDAL's decimated read), and the model sees the same number
of tokens as for a full decode. Everything here is generated in ``tmp_path``: the large
files are mostly flat, so they are small on disk.
"""

from __future__ import annotations

import struct
import tracemalloc
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image, ImageFile
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import DatasetReader
from rasterio.windows import Window

from earthvlm.data import pixels as pixels_module
from earthvlm.data.collate import Collator
from earthvlm.data.pixels import (
    SOURCE_SIZE_KEY,
    ImageTooLargeError,
    PixelProcessor,
    decode_image,
    decode_reduced,
)
from earthvlm.data.record import ImagePart, ImageRef, Message, Record, TextPart
from earthvlm.geo.raster import RasterTooLargeError, open_raster, read_reduced
from earthvlm.models import build_tiny_backbone
from earthvlm.scale.gsd import GSD

#: The large scene: 12,000 x 9,000 px (108 MP, over the default 89.5 MP budget).
W, H = 12_000, 9_000
#: Its left half is this colour, the right half black, a square near the top right white.
RED = (200, 30, 0)
SQUARE = (W * 3 // 4, H // 8, W * 3 // 4 + W // 10, H // 8 + W // 10)  # x1, y1, x2, y2


@pytest.fixture(scope="module")
def backbone() -> Any:
    # tiny Qwen3-VL: 16 px patches, factor 32, at most 65,536 px: (9000, 12000) -> (192, 288)
    return build_tiny_backbone("qwen3_vl", "tiny", seed=0)


def _scene(scale: int = 1) -> Image.Image:
    """The scene's design at 1/scale of its size."""
    image = Image.new("RGB", (W // scale, H // scale))
    image.paste(RED, (0, 0, W // scale // 2, H // scale))
    image.paste((255, 255, 255), tuple(v // scale for v in SQUARE))
    return image


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``big.jpg``, ``big.tif`` (tiled, no overviews), ``big_ovr.tif`` (overviews 2-16) and
    ``small.jpg`` / ``small.tif`` (the same design at 1/10 of the size)."""
    root = tmp_path_factory.mktemp("scenes")
    _scene().save(root / "big.jpg", quality=75)  # ~1.7 MB (0.4 GB in memory while saved)
    _scene(10).save(root / "small.jpg", quality=75)
    profile = {
        "driver": "GTiff",
        "width": W,
        "height": H,
        "count": 3,
        "dtype": "uint8",
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
        "sparse_ok": True,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        for name in ("big.tif", "big_ovr.tif"):
            with rasterio.open(root / name, "w", **profile) as ds:
                rows = np.empty((3, 1000, W // 2), np.uint8)
                rows[:] = np.array(RED, np.uint8)[:, None, None]
                for y in range(0, H, 1000):
                    ds.write(rows, window=Window(0, y, W // 2, 1000))
                x1, y1, x2, y2 = SQUARE
                ds.write(
                    np.full((3, y2 - y1, x2 - x1), 255, np.uint8),
                    window=Window(x1, y1, x2 - x1, y2 - y1),
                )
                if name == "big_ovr.tif":
                    ds.build_overviews([2, 4, 8, 16], Resampling.average)
        small = np.asarray(_scene(10)).transpose(2, 0, 1)
        with rasterio.open(
            root / "small.tif", "w", **{**profile, "width": W // 10, "height": H // 10}
        ) as ds:
            ds.write(small)
    return root


def _record(rid: str, *paths: str, modality: str = "optical") -> Record:
    parts = [*(ImagePart(index=i) for i in range(len(paths))), TextPart(text="What is there?")]
    return Record(
        id=rid,
        task="vqa",
        source="test",
        images=[ImageRef(path=p, gsd=GSD.exact(0.5), modality=modality) for p in paths],
        messages=[
            Message(role="user", content=parts),
            Message(role="assistant", content="a field"),
        ],
    )


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The size of every file-backed PIL image decoded (``ImageFile.load``)."""
    seen: list[tuple[int, int]] = []
    load = ImageFile.ImageFile.load

    def spy(self: ImageFile.ImageFile) -> Any:
        if self.tile:  # something left to decode: a real decode, not a no-op
            seen.append(self.size)
        return load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    return seen


@pytest.fixture
def gdal_reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[tuple[int, int], tuple[int, ...]]]:
    """``((dataset width, height), shape of the array returned)`` of every rasterio read."""
    seen: list[tuple[tuple[int, int], tuple[int, ...]]] = []
    read = DatasetReader.read

    def spy(self: DatasetReader, *args: Any, **kwargs: Any) -> Any:
        out = read(self, *args, **kwargs)
        seen.append(((self.width, self.height), out.shape))
        return out

    monkeypatch.setattr(DatasetReader, "read", spy)
    return seen


def _peak_traced(fn: Callable[[], Any]) -> tuple[Any, int]:
    """``fn()`` and the peak of the memory Python and NumPy allocated meanwhile (bytes)."""
    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _pixels(batch: Any) -> np.ndarray:
    return batch.inputs["pixel_values"].numpy()


# -- the large scene -----------------------------------------------------------------------


def test_a_12000_x_9000_jpeg_is_read_reduced_never_decoded_whole(
    backbone: Any, scenes: Path, loads: list[tuple[int, int]]
) -> None:
    collator = Collator(backbone, scenes, mode="generate")
    batch = collator([_record("big", "big.jpg")])
    assert batch.ids == ["big"] and batch.ledger.ok == 1 and not batch.failures
    # libjpeg decoded it at 1/8 scale: nothing larger than 1500 x 1125 px was ever decoded
    assert loads and max(w * h for w, h in loads) <= (W // 8) * (H // 8)
    assert batch.reduced_images == [1] and batch.n_reduced == 1 and collator.reduced_reads == 1
    # the tokens a full decode would give: the processor's size for 9000 x 12000
    small = Collator(backbone, scenes, mode="generate")([_record("small", "small.jpg")])
    assert small.reduced_images == [0]
    assert batch.inputs["image_grid_thw"].tolist() == [[1, 12, 18]]  # 192 x 288 px
    assert torch.equal(batch.inputs["image_grid_thw"], small.inputs["image_grid_thw"])
    assert batch.inputs["input_ids"].shape == small.inputs["input_ids"].shape
    # and nearly the pixels of the same design decoded whole at 1/10 of the size
    diff = np.abs(_pixels(batch) - _pixels(small))
    assert _pixels(batch).shape == _pixels(small).shape
    assert diff.mean() < 0.005, diff.mean()


@pytest.mark.parametrize("name", ["big.tif", "big_ovr.tif"])
def test_a_large_geotiff_is_read_reduced_with_and_without_overviews(
    backbone: Any,
    scenes: Path,
    name: str,
    gdal_reads: list[tuple[tuple[int, int], tuple[int, ...]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import earthvlm.data.collate.images as image_reading

    def no_full_read(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the whole raster was read")

    monkeypatch.setattr(image_reading, "read_pixels", no_full_read)
    collator = Collator(backbone, scenes, mode="generate")
    batch, peak = _peak_traced(lambda: collator([_record("big", name)]))
    assert batch.ledger.ok == 1 and batch.reduced_images == [1] and collator.reduced_reads == 1
    # every array GDAL handed back is the model's size: 3 x 192 x 288
    assert [shape for _, shape in gdal_reads] == [(3, 192, 288)]
    read_from = gdal_reads[0][0]
    # overviews 2-16 exist: the 16x one (750 x 563 px) is read, not the 12,000 px raster
    assert read_from == ((750, 563) if name == "big_ovr.tif" else (W, H))
    assert peak < W * H * 3 // 50, peak  # NumPy and Python held far less than the raster
    monkeypatch.undo()
    small = Collator(backbone, scenes, mode="generate")([_record("small", "small.tif")])
    assert torch.equal(batch.inputs["image_grid_thw"], small.inputs["image_grid_thw"])
    diff = np.abs(_pixels(batch) - _pixels(small))
    assert diff.mean() < 0.005, diff.mean()


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_the_reduced_geotiff_read_itself(scenes: Path) -> None:
    with open_raster(scenes / "big_ovr.tif") as ds:
        out = read_reduced(ds, (90, 120))
        assert out.shape == (3, 90, 120) and out.dtype == np.uint8
        assert out[:, 45, 10].tolist() == list(RED) and out[:, 45, 100].tolist() == [0, 0, 0]
        with pytest.raises(RasterTooLargeError, match="over the budget"):
            read_reduced(ds, (900, 1200), max_pixels=1000)
        # the overview 16x (750 x 563) is what a 120 px read decodes: under 500,000 px
        read_reduced(ds, (90, 120), max_scan_pixels=500_000)
    with (
        open_raster(scenes / "big.tif") as ds,
        pytest.raises(RasterTooLargeError, match="build overviews"),
    ):
        read_reduced(ds, (90, 120), max_scan_pixels=500_000)


# -- small images: unchanged ---------------------------------------------------------------


def test_small_images_are_read_as_before_pixel_for_pixel(
    backbone: Any, scenes: Path, tmp_path: Path
) -> None:
    _scene(10).save(tmp_path / "small.png")
    for path in (scenes / "small.jpg", tmp_path / "small.png", scenes / "small.tif"):
        rec = _record("r", path.name)
        root = path.parent
        now = Collator(backbone, root, mode="generate")
        before = Collator(backbone, root, mode="generate", large_images="refuse")
        got, want = now([rec]), before([rec])
        assert got.reduced_images == [0] and now.reduced_reads == 0
        for key in ("pixel_values", "image_grid_thw", "input_ids"):
            assert torch.equal(got.inputs[key], want.inputs[key]), (path.name, key)
    # and the path without a size rule is the old decoder, for JPEG and PNG alike
    pp = PixelProcessor.from_image_processor(backbone.processor.image_processor)
    for path in (scenes / "small.jpg", tmp_path / "small.png"):
        rule = decode_image(path, reduce_to=pp.target_size)
        assert SOURCE_SIZE_KEY not in rule.info
        assert np.array_equal(pp(rule)["pixel_values"], pp(decode_image(path))["pixel_values"])


# -- PNG ------------------------------------------------------------------------------------


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, 256, (h // 30 + 1, w // 30 + 1, 3), dtype=np.uint8)
    return np.kron(cells, np.ones((30, 30, 1), np.uint8))[:h, :w]


def test_a_png_over_the_budget_is_read_in_strips(
    backbone: Any, tmp_path: Path, loads: list[tuple[int, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    Image.fromarray(_texture(900, 1200)).save(tmp_path / "scene.png")
    rec = _record("png", "scene.png")
    budget = 200_000  # 1200 x 900 = 1.08 MP is over it
    collator = Collator(backbone, tmp_path, mode="generate", max_read_pixels=budget)
    reduced = collator([rec])
    assert reduced.ledger.ok == 1 and reduced.reduced_images == [1]
    assert not loads  # PIL never decoded the PNG: GDAL read it in strips
    whole = Collator(backbone, tmp_path, mode="generate")([rec])  # the old full decode
    assert torch.equal(reduced.inputs["image_grid_thw"], whole.inputs["image_grid_thw"])
    assert np.abs(_pixels(reduced) - _pixels(whole)).mean() < 0.05
    # strips are whole multiples of the reduction factor: many small strips give the
    # same pixels as one
    one = decode_reduced(tmp_path / "scene.png", lambda h, w: (192, 288), max_pixels=budget)
    monkeypatch.setattr(pixels_module, "_STRIP_BYTES", 3 * 1200 * 10)  # 10 rows a strip
    many = decode_reduced(tmp_path / "scene.png", lambda h, w: (192, 288), max_pixels=budget)
    assert np.array_equal(np.asarray(one), np.asarray(many))
    assert one.info[SOURCE_SIZE_KEY] == (1200, 900)


def test_a_reduced_png_composites_alpha_onto_white(tmp_path: Path) -> None:
    rgba = np.zeros((400, 600, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, 300:, 3] = 255  # left half transparent, right half opaque red
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    la = np.zeros((400, 600, 2), np.uint8)
    la[:, 300:, 1] = 255  # left half transparent, right half opaque black
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    for name, right in (("rgba.png", [255, 0, 0]), ("la.png", [0, 0, 0])):
        out = np.asarray(decode_reduced(tmp_path / name, lambda h, w: (40, 60), max_pixels=10_000))
        assert out.shape == (40, 60, 3)
        assert out[20, 5].tolist() == [255, 255, 255] and out[20, 55].tolist() == right


def _interlaced_png(path: Path, w: int, h: int, rgb: tuple[int, int, int]) -> None:
    """A flat RGB PNG, Adam7-interlaced (neither Pillow nor GDAL writes them)."""
    raw = b""
    for x0, y0, dx, dy in (
        (0, 0, 8, 8),
        (4, 0, 8, 8),
        (0, 4, 4, 8),
        (2, 0, 4, 4),
        (0, 2, 2, 4),
        (1, 0, 2, 2),
        (0, 1, 1, 2),
    ):
        pw, ph = max(0, -(-(w - x0) // dx)), max(0, -(-(h - y0) // dy))
        if pw and ph:
            raw += (b"\x00" + bytes(rgb) * pw) * ph

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 1)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw))
        + _chunk(b"IEND", b"")
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def test_pngs_that_cannot_be_read_in_strips_are_refused_with_a_reason(
    backbone: Any, tmp_path: Path
) -> None:
    _interlaced_png(tmp_path / "adam7.png", 1200, 900, RED)
    with Image.open(tmp_path / "adam7.png") as im:  # a valid PNG, within a larger budget
        assert im.info.get("interlace") and im.convert("RGB").getpixel((5, 5)) == RED
    collator = Collator(backbone, tmp_path, mode="generate", max_read_pixels=200_000)
    batch = collator([_record("adam7", "adam7.png")])
    assert len(batch) == 0 and dict(batch.ledger.failed) == {"image_too_large": 1}
    assert "interlaced" in batch.failures[0][2] and collator.reduced_reads == 0
    assert Collator(backbone, tmp_path, mode="generate")([_record("ok", "adam7.png")]).ids == [
        "ok"
    ]  # within the default budget it is decoded whole, as before
    rule = lambda h, w: (96, 128)  # noqa: E731
    Image.new("P", (1200, 900)).save(tmp_path / "palette.png")
    Image.new("I;16", (1200, 900)).save(tmp_path / "grey16.png")
    for name, why in (("palette.png", "palette"), ("grey16.png", "16-bit")):
        with pytest.raises(ImageTooLargeError, match=why):
            decode_reduced(tmp_path / name, rule, max_pixels=200_000)


# -- refusals, budgets and counts ------------------------------------------------------------


def test_what_cannot_be_reduced_within_the_budgets_is_refused(
    backbone: Any, scenes: Path, tmp_path: Path
) -> None:
    Image.fromarray(_texture(900, 1200)).save(tmp_path / "progressive.jpg", progressive=True)
    Image.fromarray(_texture(900, 1200)).save(tmp_path / "scene.bmp")
    rule = lambda h, w: (192, 288)  # noqa: E731
    with pytest.raises(ImageTooLargeError, match="progressive"):
        decode_reduced(tmp_path / "progressive.jpg", rule, max_pixels=200_000)
    with pytest.raises(ImageTooLargeError, match="COG"):
        decode_reduced(tmp_path / "scene.bmp", rule, max_pixels=200_000)
    with pytest.raises(ImageTooLargeError, match="max_scan_pixels"):
        decode_reduced(scenes / "big.jpg", rule, max_scan_pixels=10_000_000)
    with pytest.raises(ImageTooLargeError, match="1/8 scale"):
        decode_reduced(scenes / "big.jpg", rule, max_pixels=1_000_000)  # 1500 x 1125 at best
    capped = Collator(backbone, scenes, mode="generate", max_scan_pixels=10_000_000)
    batch = capped(
        [
            _record("jpg", "big.jpg"),
            _record("tif", "big.tif"),
            _record("ovr", "big_ovr.tif"),
            _record("small", "small.jpg"),
        ]
    )
    # the overview 16x is under the scan cap; the raster without overviews is not
    assert batch.ids == ["ovr", "small"] and batch.reduced_images == [1, 0]
    assert dict(batch.ledger.failed) == {"image_too_large": 2}
    assert "build overviews" in dict((r, m) for r, _, m in batch.failures)["tif"]


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # refuse: as before
def test_the_counts_add_up_and_refuse_mode_is_the_old_behaviour(
    backbone: Any, scenes: Path
) -> None:
    records = [
        _record("small", "small.jpg"),
        _record("jpg", "big.jpg"),
        _record("two", "big_ovr.tif", "small.tif"),
        _record("gone", "missing.jpg"),
    ]
    collator = Collator(backbone, scenes, mode="generate", image_cache=4)
    batch = collator(records)
    assert batch.ids == ["small", "jpg", "two"] and batch.reduced_images == [0, 1, 1]
    assert batch.ledger.ok == 3 and dict(batch.ledger.failed) == {"missing_image": 1}
    assert batch.ledger.balanced and collator.reduced_reads == 2
    again = collator(records[1:2])  # from the cache: shown reduced, not read again
    assert again.reduced_images == [1] and collator.reduced_reads == 2
    old = Collator(backbone, scenes, mode="generate", large_images="refuse")(records)
    assert old.ids == ["small"] and old.reduced_images == [0]
    assert dict(old.ledger.failed) == {"unreadable_image": 2, "missing_image": 1}
    for bad in ({"large_images": "tile"}, {"max_scan_pixels": 0}, {"max_read_pixels": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Collator(backbone, scenes, **bad)


@pytest.mark.parametrize("modality", ["sar", "multispectral"])
def test_sar_and_multispectral_rasters_are_read_reduced_too(
    backbone: Any, tmp_path: Path, write_geotiff: Callable[..., Path], modality: str
) -> None:
    rng = np.random.default_rng(2)
    if modality == "sar":  # VV, VH in dB as uint8
        data = np.kron(rng.integers(0, 255, (2, 30, 40), np.uint8), np.ones((1, 30, 30), np.uint8))
        bands = ["VV", "VH"]
    else:  # Sentinel-2-like DN: reflectance x 10000
        data = np.kron(rng.integers(0, 9000, (4, 30, 40)), np.ones((1, 30, 30))).astype("uint16")
        bands = ["B02", "B03", "B04", "B08"]
    write_geotiff(tmp_path / "scene.tif", data=data, dtype=data.dtype.name)
    rec = _record("r", "scene.tif", modality=modality)
    rec = rec.model_copy(update={"images": [rec.images[0].model_copy(update={"bands": bands})]})
    reduced = Collator(backbone, tmp_path, max_read_pixels=200_000)([rec])
    whole = Collator(backbone, tmp_path)([rec])
    frames = 1 if modality == "sar" else 2  # 4 bands: two three-band frames
    assert reduced.reduced_images == [frames] and whole.reduced_images == [0]
    assert reduced.modalities == whole.modalities == [[modality] * frames]
    assert torch.equal(reduced.inputs["image_grid_thw"], whole.inputs["image_grid_thw"])
    assert np.abs(_pixels(reduced) - _pixels(whole)).mean() < 0.05


def test_a_reduced_jpeg_is_upright(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    _scene(10).save(tmp_path / "rotated.jpg", quality=90, exif=exif)  # stored 1200 x 900
    out = decode_reduced(
        tmp_path / "rotated.jpg", lambda h, w: (h // 10, w // 10), max_pixels=100_000
    )
    full = decode_image(tmp_path / "rotated.jpg").resize((90, 120), Image.Resampling.BICUBIC)
    assert out.size == (90, 120) and out.info[SOURCE_SIZE_KEY] == (900, 1200)
    assert np.abs(np.asarray(out, float) - np.asarray(full, float)).mean() < 3


def test_a_resize_instruction_applies_to_a_reduced_image(backbone: Any, tmp_path: Path) -> None:
    from earthvlm.data.augment import resize_record

    Image.fromarray(_texture(900, 1200)).save(tmp_path / "scene.jpg", quality=90)
    Image.fromarray(_texture(600, 800)).save(tmp_path / "other.jpg", quality=90)
    rec = _record("r", "scene.jpg")
    rec = rec.model_copy(
        update={"images": [rec.images[0].model_copy(update={"width": 1200, "height": 900})]}
    )
    tenth = resize_record(rec, 0.1)  # 120 x 90 px: the processor keeps 128 x 96
    reduced = Collator(backbone, tmp_path, max_read_pixels=200_000)([tenth])
    whole = Collator(backbone, tmp_path)([tenth])
    assert reduced.reduced_images == [1] and whole.reduced_images == [0]
    assert reduced.inputs["image_grid_thw"].tolist() == [[1, 6, 8]]
    assert torch.equal(reduced.inputs["image_grid_thw"], whole.inputs["image_grid_thw"])
    moved = tenth.images[0].model_copy(update={"path": "other.jpg"})
    stale = tenth.model_copy(update={"images": [moved]})
    batch = Collator(backbone, tmp_path, max_read_pixels=200_000)([stale])
    assert dict(batch.ledger.failed) == {"stale_resize": 1}


def test_a_bomb_header_costs_nothing(backbone: Any, tmp_path: Path) -> None:
    """A PNG whose header claims 60,000 x 60,000 px (Pillow's own check would raise on
    it): refused on the header, nothing decoded."""
    header = struct.pack(">IIBBBBB", 60_000, 60_000, 8, 2, 0, 0, 0)
    data = zlib.compress(b"\x00" * 100_000)  # the first rows: all a decoder would need
    (tmp_path / "bomb.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data)
    )
    batch = Collator(backbone, tmp_path, mode="generate")([_record("bomb", "bomb.png")])
    assert dict(batch.ledger.failed) == {"image_too_large": 1}
    assert "max_scan_pixels" in batch.failures[0][2]
