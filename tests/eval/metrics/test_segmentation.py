"""Referring-segmentation metrics on 4x4 masks, counted by hand."""

from __future__ import annotations

import json

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
