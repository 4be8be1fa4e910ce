"""Referring-segmentation metrics on 4x4 masks, counted by hand."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from earthvlm.eval.metrics import mask_iou, score_segmentation


def mask(*pixels: tuple[int, int]) -> np.ndarray:
    m = np.zeros((4, 4), dtype=bool)
    for r, c in pixels:
        m[r, c] = True
    return m


T1 = mask((0, 0), (0, 1), (1, 0), (1, 1))  # 4 pixels
P1 = mask((0, 0), (0, 1))  # 2 pixels inside T1
EMPTY = mask()
P3 = mask((3, 0), (3, 1), (3, 2))  # 3 pixels, target empty
T4 = mask((2, 2), (2, 3))  # 2 pixels, prediction missing


def test_mask_iou_and_the_empty_convention() -> None:
    assert mask_iou(P1, T1) == pytest.approx(2 / 4)
    assert mask_iou(EMPTY, EMPTY) == 1.0  # nothing predicted for nothing: right
    assert mask_iou(EMPTY, EMPTY, empty_iou=0.0) == 0.0
    assert mask_iou(P3, EMPTY) == 0.0
    assert mask_iou(P1.astype(np.uint8), T1.astype(float)) == pytest.approx(0.5)  # 0/1 numbers


def test_score_segmentation_by_hand() -> None:
    res = score_segmentation([P1, EMPTY, P3, None], [T1, EMPTY, EMPTY, T4])
    # per-sample IoU: 2/4 = 0.5; both empty -> 1; empty target, 3 predicted -> 0; missing -> 0
    assert res.ious == pytest.approx([0.5, 1.0, 0.0, 0.0])
    assert res.miou == pytest.approx((0.5 + 1 + 0 + 0) / 4)  # 0.375
    assert res.giou == pytest.approx(0.375)
    # cIoU = sum I / sum U = (2 + 0 + 0 + 0) / (4 + 0 + 3 + 2); the missing prediction
    # adds its target's 2 pixels to the union
    assert res.ciou == pytest.approx(2 / 9)
    # EarthMind release: mean over samples of (fg IoU + bg IoU) / 2, an empty union -> 0
    #   s1: fg 2/4, bg: ~P1 has 14 px, ~T1 12 px, ~T1 inside ~P1 -> 12/14
    #   s2: fg 0 (empty union), bg 16/16          s3: fg 0, bg 13/16        s4: failed, 0
    s1, s2, s3 = (0.5 + 12 / 14) / 2, (0 + 1) / 2, (0 + 13 / 16) / 2
    assert res.miou_fg_bg == pytest.approx((s1 + s2 + s3 + 0) / 4)
    # both classes cumulated: I = (2+12) + (0+16) + (0+13) + (0+14), U = (4+14) + (0+16)
    # + (3+16) + (2+16), the missing prediction read as an empty mask
    assert res.ciou_fg_bg == pytest.approx(57 / 71)
    assert res.ledger.read == 4 and res.ledger.ok == 3
    assert res.ledger.failed["missing prediction"] == 1
    assert res.to_dict()["ciou"] == pytest.approx(2 / 9)
    json.dumps(res.to_dict(), allow_nan=False)


def test_giou_keeps_the_gres_convention_when_miou_changes_it() -> None:
    res = score_segmentation([P1, EMPTY, P3, None], [T1, EMPTY, EMPTY, T4], empty_iou=0.0)
    assert res.miou == pytest.approx((0.5 + 0 + 0 + 0) / 4)
    assert res.giou == pytest.approx((0.5 + 1 + 0 + 0) / 4)


def test_all_empty_ciou_follows_the_convention() -> None:
    assert score_segmentation([EMPTY], [EMPTY]).ciou == 1.0
    assert score_segmentation([EMPTY], [EMPTY], empty_iou=0.0).ciou == 0.0


def test_segmentation_input_checks() -> None:
    with pytest.raises(ValueError, match="shape"):
        score_segmentation([np.zeros((2, 2), bool)], [np.zeros((4, 4), bool)])
    with pytest.raises(ValueError, match="threshold probabilities"):
        score_segmentation([np.full((4, 4), 0.7)], [T1])
    with pytest.raises(ValueError, match="empty_iou"):
        score_segmentation([P1], [T1], empty_iou=2.0)
    with pytest.raises(ValueError, match="predictions has 1, targets has 2"):
        score_segmentation([P1], [T1, T1])


# Polygon masks: referring-segmentation masks come from COCO polygons, and the papers'
# mIoU used pycocotools' rasteriser; ours must give the same pixels. The RLE counts below
# were recorded from pycocotools 2.0.11 (``decode(frPyObjects([poly], h, w))``).
_COCO_POLYGONS = [
    ("convex (rotated box)", [2.3, 1.1, 9.7, 3.4, 8.2, 8.9, 0.8, 6.6], 10, 11,
     [14, 3, 4, 6, 4, 6, 5, 6, 4, 6, 4, 6, 5, 6, 4, 5, 5, 1, 16]),
    ("concave (dart)", [1, 1, 10, 5, 1, 9, 4.6, 5], 10, 12,
     [18, 1, 3, 1, 4, 1, 4, 2, 2, 2, 5, 4, 6, 4, 6, 4, 7, 2, 8, 2, 34]),
    ("self-intersecting (bow-tie)", [0.5, 0.5, 8.5, 7.5, 8.5, 0.5, 0.5, 7.5], 9, 10,
     [10, 6, 4, 4, 6, 2, 16, 2, 6, 4, 4, 6, 3, 6, 11]),
    ("tiny (under a pixel)", [3.2, 2.1, 3.9, 2.4, 3.4, 2.8], 6, 6, [20, 1, 15]),
    ("on and past the borders", [-2.5, -1, 7, 0, 9.5, 6.2, 0, 7], 7, 8, [0, 48, 2, 5, 1]),
    ("pentagram (even-odd hole)", [6, 0.5, 9.5, 11, 0.5, 4.5, 11.5, 4.5, 2.5, 11], 12, 12,
     [29, 1, 11, 2, 1, 2, 9, 3, 4, 3, 3, 1, 5, 3, 3, 1, 10, 2, 8, 2, 1, 2, 7, 1, 30]),
]  # fmt: skip


@pytest.mark.parametrize(("name", "poly", "h", "w", "counts"), _COCO_POLYGONS)
def test_polygon_masks_are_pycocotools_pixels(name, poly, h, w, counts) -> None:
    from earthvlm.data.sources._masks import decode_segmentation, encode_rle

    got = decode_segmentation([poly], h, w)
    assert encode_rle(got)["counts"] == counts, name


def _random_polygons(rng: np.random.Generator, n: int):
    """Convex and concave stars, random (often self-intersecting) point lists, tiny ones,
    integer and half-pixel vertices on and past the borders, one-decimal coordinates."""
    for i in range(n):
        h, w = (int(v) for v in rng.integers(1, 50, 2))
        k = int(rng.integers(3, 11))
        kind = i % 5
        if kind == 0:
            xy = np.c_[rng.uniform(-5, w + 5, k), rng.uniform(-5, h + 5, k)]
        elif kind == 1:
            xy = rng.uniform(0, [w, h]) + rng.uniform(-1, 1, (k, 2))
        elif kind == 2:
            ang = np.sort(rng.uniform(0, 2 * np.pi, k))
            r = rng.uniform(0.3, 1, k) * rng.uniform(1, max(h, w))
            xy = np.c_[w / 2 + r * np.cos(ang), h / 2 + r * np.sin(ang)]
        elif kind == 3:
            xy = np.c_[rng.integers(0, w + 1, k), rng.integers(0, h + 1, k)] + rng.choice(
                [0, 0.5], (k, 2)
            )
        else:
            xy = np.round(np.c_[rng.uniform(-2, w + 2, k), rng.uniform(-2, h + 2, k)], 1)
        yield xy.reshape(-1).tolist(), h, w


def test_polygon_masks_equal_pycocotools_on_random_polygons() -> None:
    mask_api = pytest.importorskip(
        "pycocotools.mask", reason="pycocotools is not installed (pip install pycocotools)"
    )
    from earthvlm.data.sources._masks import polygon_mask

    rng = np.random.default_rng(19)
    for poly, h, w in _random_polygons(rng, 600):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # its numpy 2 notice
            want = mask_api.decode(mask_api.frPyObjects([poly], h, w))[:, :, 0].astype(bool)
        assert np.array_equal(polygon_mask(poly, h, w), want), (poly, h, w)


def test_polygon_far_outside_any_image_is_refused() -> None:
    from earthvlm.data.sources._masks import MaskFormatError, decode_segmentation

    with pytest.raises(MaskFormatError, match="not pixels of this image"):
        decode_segmentation([[0, 0, 1e9, 0, 1e9, 1e9]], 10, 10)
    with pytest.raises(MaskFormatError, match="finite"):
        decode_segmentation([[0, 0, float("nan"), 0, 5, 5]], 10, 10)
