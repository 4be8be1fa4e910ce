"""Dynamic resolution: smart_resize as transformers computes it, the three tiers, the GSD
of the view the model sees, and boxes converted to the backbone's frame and back."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
    smart_resize as hf_smart_resize,
)

from earthvlm.data.pixels import PixelProcessor
from earthvlm.data.resolution import Resolution, Tier, smart_resize
from earthvlm.geo.boxes import BOX_FRAMES, frame_to_px, px_to_frame, scale_xy
from earthvlm.models.processor import FAMILIES, PATCH_SIZE, build_image_processor
from earthvlm.scale.gsd import GSD, GSDKind, GSDSource

# -- smart_resize -------------------------------------------------------------------------


def _hf(h: int, w: int, factor: int, lo: int, hi: int):
    try:
        return hf_smart_resize(h, w, factor=factor, min_pixels=lo, max_pixels=hi)
    except ValueError:
        return ValueError


def _ours(h: int, w: int, factor: int, lo: int, hi: int):
    try:
        return smart_resize(h, w, factor, lo, hi)
    except ValueError:
        return ValueError


def test_smart_resize_equals_transformers_on_random_sizes() -> None:
    """>= 500 sizes per setting: both backbones' factors, the Qwen default range and a
    narrow one, tiny to UHR sides, aspect ratios across the 200 limit, exact halves."""
    rng = np.random.default_rng(0)
    settings = [
        (32, 32 * 32, 256 * 256),
        (28, 56 * 56, 28 * 28 * 1280),  # the Qwen2-VL processor's defaults
        (32, 64 * 32 * 32, 16384 * 32 * 32),
        (28, 4 * 28 * 28, 8 * 8 * 28 * 28),
    ]
    errors = 0
    for factor, lo, hi in settings:
        sides = np.exp(rng.uniform(0, math.log(20000), size=(520, 2))).astype(int)
        halves = [(factor // 2 + factor * k, factor * (k + 1) + factor // 2) for k in range(10)]
        strips = [(1, 200), (1, 201), (3, 600), (3, 601), (201, 1), (50, 10000)]
        for h, w in [*map(tuple, sides.tolist()), *halves, *strips]:
            h, w = max(1, h), max(1, w)
            expected = _hf(h, w, factor, lo, hi)
            assert _ours(h, w, factor, lo, hi) == expected, (h, w, factor, lo, hi)
            errors += expected is ValueError
    assert errors >= 8  # the aspect-ratio refusal was exercised


def test_smart_resize_says_what_to_do() -> None:
    with pytest.raises(ValueError, match=r"aspect ratio must be smaller than 200.*crop"):
        smart_resize(10, 2500, 32, 1024, 1 << 20)
    with pytest.raises(ValueError, match="must be > 0"):
        smart_resize(0, 10, 32, 1024, 1 << 20)


# -- the policy -----------------------------------------------------------------------


@pytest.fixture
def policy() -> Resolution:
    """Qwen3-VL tokens (32 px), 8x8 to 32x32 tokens."""
    return Resolution(factor=32, min_pixels=256 * 256, max_pixels=1024 * 1024)


def test_small_images_are_enlarged_to_min_pixels(policy: Resolution) -> None:
    plan = policy.plan(100, 150, GSD.exact(0.5))
    assert plan.tier is Tier.SMALL and not plan.zoom
    h, w = plan.resized_hw
    assert h * w >= policy.min_pixels and h % 32 == 0 and w % 32 == 0
    assert plan.downsample < 1
    assert plan.gsd.point_m == pytest.approx(0.5 * plan.downsample)
    assert plan.gsd.point_m < 0.5  # enlarged: finer pixels


def test_regular_images_keep_their_size_and_gsd(policy: Resolution) -> None:
    gsd = GSD.exact(0.3, GSDSource.GEOREF, "from the geotransform")
    plan = policy.plan(512, 768, gsd)
    assert plan.tier is Tier.REGULAR and plan.resized_hw == (512, 768)
    assert plan.gsd is gsd and plan.downsample == 1.0 and plan.num_tokens == 16 * 24
    rounded = policy.plan(500, 700, gsd)  # rounded to whole tokens: 512 x 704
    assert rounded.tier is Tier.REGULAR and rounded.resized_hw == (512, 704)
    assert rounded.gsd.point_m == pytest.approx(0.3 * math.sqrt(500 * 700 / (512 * 704)))


def test_uhr_images_go_to_zoom_with_a_coarser_global_view(policy: Resolution) -> None:
    plan = policy.plan(8192, 4096, GSD.exact(0.3, GSDSource.METADATA, "DOTA header"))
    assert plan.tier is Tier.UHR and plan.zoom
    h, w = plan.resized_hw
    assert h * w <= policy.max_pixels and (h, w) == (1440, 704)
    assert plan.downsample == pytest.approx(math.sqrt(8192 * 4096 / (1440 * 704)))
    assert plan.gsd.point_m == pytest.approx(0.3 * plan.downsample)
    assert plan.gsd.source is GSDSource.METADATA  # provenance kept
    assert "DOTA header" in plan.gsd.detail and "8192x4096 -> 1440x704" in plan.gsd.detail
    assert plan.source_gsd.point_m == 0.3


def test_range_gsd_scales_both_ends_and_unknown_stays_unknown(policy: Resolution) -> None:
    plan = policy.plan(4096, 4096, GSD.range(0.1, 0.4))
    assert plan.gsd.kind is GSDKind.RANGE
    assert plan.gsd.bounds_m == pytest.approx((0.4, 1.6))  # 4096 -> 1024: 4x
    for gsd in (GSD.unknown("no metadata"), None):
        unknown = policy.plan(4096, 4096, gsd)
        assert unknown.gsd.kind is GSDKind.UNKNOWN and unknown.zoom


def test_a_higher_uhr_threshold_downsamples_without_zoom(policy: Resolution) -> None:
    lenient = Resolution(32, policy.min_pixels, policy.max_pixels, uhr_pixels=4096 * 4096)
    plan = lenient.plan(2048, 2048)
    assert plan.tier is Tier.REGULAR and not plan.zoom and plan.resized_hw == (1024, 1024)
    assert lenient.plan(4096, 4097).tier is Tier.UHR


@pytest.mark.parametrize("family", FAMILIES)
def test_plans_predict_what_the_processor_produces(family: str) -> None:
    factor = PATCH_SIZE[family] * 2
    ip = build_image_processor(family, min_pixels=(4 * factor) ** 2, max_pixels=(16 * factor) ** 2)
    pp = PixelProcessor.from_image_processor(ip)
    res_ip, res_pp = Resolution.from_processor(ip), Resolution.from_processor(pp)
    assert res_ip == res_pp == Resolution(factor, (4 * factor) ** 2, (16 * factor) ** 2)
    rng = np.random.default_rng(1)
    for h, w in rng.integers(1, 800, size=(25, 2)).tolist():
        if max(h, w) / min(h, w) > 200:
            continue
        plan = res_pp.plan(h, w)
        grid = ip(Image.new("RGB", (w, h)), return_tensors="np")["image_grid_thw"][0]
        assert tuple(int(g) * ip.patch_size for g in grid[1:]) == plan.resized_hw
        assert plan.num_tokens == int(grid.prod()) // 4


def test_bad_policies_are_refused() -> None:
    with pytest.raises(ValueError, match="factor"):
        Resolution(0, 10, 20)
    with pytest.raises(ValueError, match="min_pixels"):
        Resolution(32, 2048, 1024)
    with pytest.raises(ValueError, match="uhr_pixels"):
        Resolution(32, 1024, 2048, uhr_pixels=0)


# -- scalable boxes -------------------------------------------------------------------


def test_boxes_follow_the_backbone_frame(policy: Resolution) -> None:
    plan = policy.plan(500, 700)  # seen at 512 x 704
    whole = [0, 0, 700, 500]
    np.testing.assert_allclose(plan.boxes_to_frame(whole, "abs_px_resized"), [0, 0, 704, 512])
    np.testing.assert_allclose(plan.boxes_to_frame(whole, "norm1000"), [0, 0, 1000, 1000])
    np.testing.assert_allclose(
        plan.boxes_to_frame([70, 50, 140, 100], "norm1000"), [100, 100, 200, 200]
    )


@pytest.mark.parametrize("frame", BOX_FRAMES)
def test_frames_round_trip_for_boxes_and_quads(frame: str) -> None:
    rng = np.random.default_rng(2)
    src, dst = (3000, 4000), (1024, 1344)
    for shape in ((4,), (8,), (4, 2), (7, 4), (7, 8), (7, 4, 2)):
        coords = rng.uniform(0, 3000, size=shape)
        there = px_to_frame(coords, frame, source_hw=src, resized_hw=dst)
        back = frame_to_px(there, frame, source_hw=src, resized_hw=dst)
        assert there.shape == coords.shape
        np.testing.assert_allclose(back, coords, rtol=1e-12)
    assert not np.shares_memory(coords, there)  # a new array, the input untouched


def test_a_box_lands_on_its_object_in_the_resized_image() -> None:
    """Draw a white rectangle, resize as the processor does, find it again: the
    converted box is where the rectangle is (to a pixel)."""
    img = np.zeros((480, 900, 3), dtype=np.uint8)
    img[120:300, 450:720] = 255  # box x1, y1, x2, y2 = 450, 120, 720, 300
    plan = Resolution(28, 56 * 56, 320 * 320).plan(480, 900)  # a 2.6x downsample
    h, w = plan.resized_hw
    small = np.asarray(Image.fromarray(img).resize((w, h), resample=Image.Resampling.BICUBIC))
    ys, xs = np.nonzero(small[:, :, 0] > 127)
    found = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    box = plan.boxes_to_frame([450, 120, 720, 300], "abs_px_resized")
    np.testing.assert_allclose(box, found, atol=1.0)
    back = plan.boxes_from_frame(found, "abs_px_resized")  # evaluation in source pixels
    np.testing.assert_allclose(back, [450, 120, 720, 300], atol=1.0 / min(plan.scale_xy))


def test_box_conversions_refuse_malformed_input() -> None:
    with pytest.raises(ValueError, match="alternate x and y"):
        scale_xy([1, 2, 3], 2, 2)
    with pytest.raises(ValueError, match="frame="):
        px_to_frame([0, 0, 1, 1], "pixels", source_hw=(10, 10), resized_hw=(10, 10))
    with pytest.raises(ValueError, match="source_hw"):
        px_to_frame([0, 0, 1, 1], "norm1000", source_hw=(0, 10), resized_hw=(10, 10))
