"""PixelProcessor: the transformers Qwen-VL image processor's exact output, from NumPy.

Every comparison is against ``Qwen2VLImageProcessorPil`` built by
``earthvlm.models.processor.build_image_processor`` (both families' patch size and
mean/std), on random sizes that reach every branch of ``smart_resize``: tiny images
enlarged, native sizes, large ones shrunk, aspect ratios up to 200.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from earthvlm.data.pixels import (
    ImageDecodeError,
    PixelProcessor,
    array_to_rgb,
    decode_image,
    normalised_table,
    to_rgb,
)
from earthvlm.models.processor import FAMILIES, PATCH_SIZE, build_image_processor, build_processor
from earthvlm.models.tokenizer import build_tiny_tokenizer

FACTOR = {f: PATCH_SIZE[f] * 2 for f in FAMILIES}


def _pair(family: str, **kw):
    """(transformers image processor, PixelProcessor built from it). Defaults: 2x2 to
    8x8 tokens, so that small, native and shrunk sizes all occur below 400 px."""
    f = FACTOR[family]
    kw = {"min_pixels": (2 * f) ** 2, "max_pixels": (8 * f) ** 2, **kw}
    ip = build_image_processor(family, **kw)
    return ip, PixelProcessor.from_image_processor(ip)


@pytest.fixture(scope="module", params=FAMILIES)
def pair(request):
    return _pair(request.param)


def _same(ref, got) -> None:
    """Equal grids, and values equal to 1e-6 (in fact bit for bit)."""
    np.testing.assert_array_equal(got["image_grid_thw"], ref["image_grid_thw"])
    assert got["pixel_values"].dtype == np.float32
    assert got["pixel_values"].shape == ref["pixel_values"].shape
    np.testing.assert_allclose(got["pixel_values"], ref["pixel_values"], rtol=0, atol=1e-6)
    assert np.array_equal(got["pixel_values"], ref["pixel_values"])  # bit-identical


def _random_sizes(rng: np.random.Generator, n: int) -> list[tuple[int, int]]:
    sizes = [(1, 1), (2, 3), (7, 5), (1, 150), (150, 1), (3, 600), (600, 3), (64, 64)]
    while len(sizes) < n:
        h, w = (int(v) for v in rng.integers(1, 420, size=2))
        if max(h, w) / min(h, w) <= 200:
            sizes.append((h, w))
    return sizes


def test_matches_transformers_on_random_sizes(pair) -> None:
    ip, pp = pair
    rng = np.random.default_rng(0)
    for h, w in _random_sizes(rng, 100):
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        _same(ip(img, return_tensors="np"), pp(img))


def test_every_branch_is_reached(pair) -> None:
    """The random sizes above do enlarge, keep and shrink (else the test proves little)."""
    _, pp = pair
    seen = set()
    for h, w in _random_sizes(np.random.default_rng(0), 100):
        th, tw = pp.target_size(h, w)
        seen.add("up" if th * tw > h * w * 1.3 else "down" if th * tw < h * w / 1.3 else "same")
    assert seen == {"up", "down", "same"}


@pytest.mark.parametrize(
    "mode", ["L", "LA", "RGBA", "P", "P+transparency", "RGB+transparency", "CMYK", "1", "I;16"]
)
def test_pil_modes_are_converted_as_transformers_does(pair, mode: str) -> None:
    ip, pp = pair
    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (37, 90, 4), dtype=np.uint8)
    rgba[:10, :, 3] = 0  # fully transparent rows must become white
    base = Image.fromarray(rgba, mode="RGBA")
    if mode == "P+transparency":
        img = base.convert("RGB").convert("P")
        img.info["transparency"] = 3
    elif mode == "RGB+transparency":
        img = base.convert("RGB")
        img.info["transparency"] = (0, 0, 0)
    else:
        img = base.convert(mode)
    _same(ip(img, return_tensors="np"), pp(img))


@pytest.mark.parametrize("channels", [None, 1, 3, 4])
def test_uint8_arrays_match_transformers(pair, channels: int | None) -> None:
    ip, pp = pair
    rng = np.random.default_rng(2)
    shape = (45, 70) if channels is None else (45, 70, channels)
    arr = rng.integers(0, 256, shape, dtype=np.uint8)
    got = pp(arr)
    # transformers cannot batch a 2-D array; it must equal the (H, W, 1) image
    ref = ip(arr if channels else arr[:, :, None], return_tensors="np")
    _same(ref, got)


def test_array_to_rgb_composites_alpha_onto_white() -> None:
    px = np.array([[[10, 20, 30, 0], [10, 20, 30, 255], [0, 0, 0, 128]]], dtype=np.uint8)
    np.testing.assert_array_equal(
        array_to_rgb(px)[0], [[255, 255, 255], [10, 20, 30], [127, 127, 127]]
    )
    with pytest.raises(ValueError, match="uint8"):
        array_to_rgb(px.astype(np.float32))
    with pytest.raises(ValueError, match="channels-last"):
        array_to_rgb(np.zeros((4, 4, 2), dtype=np.uint8))


def test_to_rgb_keeps_an_rgb_image_and_whitens_transparency() -> None:
    rgb = Image.new("RGB", (4, 4), (1, 2, 3))
    assert to_rgb(rgb) is rgb
    clear = Image.new("RGBA", (4, 4), (9, 9, 9, 0))
    assert to_rgb(clear).getpixel((0, 0)) == (255, 255, 255)


def test_a_list_of_images_is_concatenated_in_order(pair) -> None:
    ip, pp = pair
    rng = np.random.default_rng(3)
    imgs = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
            for h, w in ((30, 200), (300, 90), (5, 5))]  # fmt: skip
    ref = ip(imgs, return_tensors="np")
    _same(ref, pp(imgs))
    _same(ref, pp([[imgs[0]], [imgs[1], imgs[2]]]))  # a processor passes one list per sample
    assert pp([])["pixel_values"].shape == (0, pp.patch_dim)


def test_the_table_fallback_is_exact_too() -> None:
    """A rescale factor whose fast arithmetic is not bit-exact uses a lookup table."""
    ip, pp = _pair("qwen3_vl", min_pixels=64 * 64, max_pixels=256 * 256)
    ip.rescale_factor = 0.0039
    pp = PixelProcessor.from_image_processor(ip)
    assert pp._lut is not None  # the fallback is really exercised
    img = Image.fromarray(np.random.default_rng(4).integers(0, 256, (70, 130, 3), np.uint8))
    _same(ip(img, return_tensors="np"), pp(img))


def test_jpeg_files_match_transformers_loading_them(tmp_path: Path) -> None:
    ip, pp = _pair("qwen2_5_vl")
    rng = np.random.default_rng(5)
    arr = rng.integers(0, 256, (60, 100, 3), dtype=np.uint8)
    plain, rotated = tmp_path / "plain.jpg", tmp_path / "rotated.jpg"
    Image.fromarray(arr).save(plain, quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(arr).save(rotated, quality=90, exif=exif)
    for path in (plain, rotated):
        _same(ip(str(path), return_tensors="np"), pp(path))
    assert decode_image(rotated).size == (60, 100)  # upright: the sides swap


def test_decode_refuses_bombs_and_broken_files(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    Image.new("RGB", (300, 200)).save(big)
    with pytest.raises(ImageDecodeError, match="over the budget"):
        decode_image(big, max_pixels=300 * 200 - 1)
    _, pp = _pair("qwen3_vl")
    strict = dataclasses.replace(pp, max_read_pixels=100)
    with pytest.raises(ImageDecodeError, match="over the budget"):
        strict([big])
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    with pytest.raises(ImageDecodeError, match="cannot decode"):
        pp(broken)
    with pytest.raises(ValueError, match="URLs are not fetched"):
        pp("https://example.com/a.jpg")


def test_settings_it_cannot_reproduce_are_refused() -> None:
    for flag in ("do_resize", "do_rescale", "do_normalize", "do_convert_rgb"):
        ip = build_image_processor("qwen3_vl")
        setattr(ip, flag, False)
        with pytest.raises(ValueError, match=flag):
            PixelProcessor.from_image_processor(ip)
    ip = build_image_processor("qwen3_vl")
    ip.resample = 2  # bilinear
    with pytest.raises(ValueError, match="bicubic"):
        PixelProcessor.from_image_processor(ip)
    with pytest.raises(ValueError, match="min_pixels"):
        PixelProcessor(16, (0.5,) * 3, (0.5,) * 3, min_pixels=10, max_pixels=5)
    with pytest.raises(ValueError, match="3 values"):
        PixelProcessor(16, (0.5,), (0.5,), min_pixels=1, max_pixels=5)
    _, pp = _pair("qwen3_vl")
    with pytest.raises(ValueError, match="max_pixels"):
        pp(Image.new("RGB", (8, 8)), max_pixels=10)
    pp(Image.new("RGB", (8, 8)), return_tensors="pt")  # neutral: the caller converts


@pytest.mark.parametrize("family", FAMILIES)
def test_drop_in_for_the_processor_image_processor(family: str) -> None:
    """A processor whose image processor is replaced encodes a conversation identically
    (the change the collator needs)."""
    f = FACTOR[family]
    proc = build_processor(
        family, build_tiny_tokenizer(), min_pixels=(2 * f) ** 2, max_pixels=(8 * f) ** 2
    )
    fast = copy.copy(proc)
    fast.image_processor = PixelProcessor.from_image_processor(proc.image_processor)
    rng = np.random.default_rng(6)
    images = [Image.fromarray(rng.integers(0, 256, s, dtype=np.uint8))
              for s in ((50, 90, 3), (200, 120, 3))]  # fmt: skip
    conv = [
        {"role": "user", "content": [{"type": "image", "image": images[0]},
                                     {"type": "image", "image": images[1]},
                                     {"type": "text", "text": "How many cars?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Three."}]},
    ]  # fmt: skip
    kw = {"tokenize": True, "return_dict": True, "return_tensors": "np"}
    ref, got = proc.apply_chat_template(conv, **kw), fast.apply_chat_template(conv, **kw)
    assert set(got) == set(ref)
    for key in ref:
        np.testing.assert_array_equal(got[key], ref[key], err_msg=key)
    assert proc.image_processor is not fast.image_processor  # the original is untouched


def test_it_pickles_for_dataloader_workers(pair) -> None:
    _, pp = pair
    clone = pickle.loads(pickle.dumps(pp))
    assert clone == pp
    img = Image.fromarray(np.random.default_rng(7).integers(0, 256, (40, 60, 3), np.uint8))
    np.testing.assert_array_equal(clone(img)["pixel_values"], pp(img)["pixel_values"])


def _unpack(pp: PixelProcessor, packed: np.ndarray) -> np.ndarray:
    """Packed rows -> float32 rows: the table lookup, repeated over the temporal patch."""
    table = normalised_table(pp.image_mean, pp.image_std, pp.rescale_factor)
    n, pp2 = packed.shape[0], pp.patch_size**2
    values = table[np.arange(3)[None, :, None], packed.reshape(n, 3, pp2)]
    return np.repeat(values[:, :, None], pp.temporal_patch_size, axis=2).reshape(n, -1)


def test_packed_patches_are_the_float_rows_before_normalising(pair) -> None:
    _, pp = pair
    rng = np.random.default_rng(8)
    for h, w in _random_sizes(rng, 30):
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        for image in (arr, Image.fromarray(arr)):  # strided array planes, PIL bands
            packed, full = pp.pack(image), pp(image)
            assert packed["pixel_values"].dtype == np.uint8
            assert packed["pixel_values"].shape == (full["pixel_values"].shape[0], pp.packed_dim)
            np.testing.assert_array_equal(packed["image_grid_thw"], full["image_grid_thw"])
            assert np.array_equal(_unpack(pp, packed["pixel_values"]), full["pixel_values"])
    assert pp.patch_dim == pp.temporal_patch_size * pp.packed_dim


def test_packed_rows_are_patches_in_merge_window_order() -> None:
    """A worked example: 2 x 2 merge windows of 16 px patches on a 64 x 64 image."""
    pp = PixelProcessor(16, (0.5,) * 3, (0.5,) * 3, min_pixels=64 * 64, max_pixels=64 * 64)
    y, x = np.mgrid[0:64, 0:64]
    image = np.stack([y, x, (y // 16) * 4 + x // 16], axis=-1).astype(np.uint8)
    rows = pp.pack(image)["pixel_values"].reshape(16, 3, 16, 16)
    # window (0, 1) holds patches (0, 2), (0, 3), (1, 2), (1, 3): rows 4..7
    assert [int(r[2, 0, 0]) for r in rows[4:8]] == [2, 3, 6, 7]
    assert int(rows[5, 0, 3, 7]) == 3 and int(rows[5, 1, 3, 7]) == 48 + 7  # y, x of a pixel
    assert np.array_equal(rows[9, 0], y[32:48, 16:32])  # patch (2, 1): rows 32.., cols 16..
    assert np.array_equal(rows[9, 1], x[32:48, 16:32])


def test_plans_write_either_format_and_refuse_other_arrays(pair) -> None:
    _, pp = pair
    plan = pp.plan(Image.fromarray(np.zeros((50, 70, 3), np.uint8)))
    n = plan.num_patches
    plan.write(np.empty((n, pp.patch_dim), np.float32))
    plan.write(np.empty((n, pp.packed_dim), np.uint8))
    for bad in (np.empty((n, pp.patch_dim), np.uint8), np.empty((n, pp.packed_dim), np.float32),
                np.empty((n, pp.packed_dim), np.float64)):  # fmt: skip
        with pytest.raises(ValueError, match=rf"give float32 \({n}, {pp.patch_dim}\) or packed "
                           rf"uint8 \({n}, {pp.packed_dim}\)"):  # fmt: skip
            plan.write(bad)
