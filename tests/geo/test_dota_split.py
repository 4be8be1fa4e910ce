"""DOTA split: window layout, the partially-inside rule, and the split -> merge round trip."""

from __future__ import annotations

import numpy as np
import pytest

from earthvlm.geo.boxes import obb_to_quad
from earthvlm.geo.dota_split import (
    crop_window,
    merge_detections,
    rotated_nms,
    sliding_windows,
    split_objects,
)
from earthvlm.geo.iou import quad_areas, quad_iou_pairs


@pytest.mark.parametrize(
    ("width", "starts"),
    [
        (300, [0]),  # smaller than a window: one (padded) window
        (512, [0]),
        (924, [0, 412]),  # 412 + 512 = 924: the second window ends on the border
        (1000, [0, 412, 488]),  # 824 + 512 > 1000: the last window moves back to 488
        (1236, [0, 412, 724]),
    ],
)
def test_window_starts(width: int, starts: list[int]) -> None:
    w = sliding_windows(width, 600)
    assert sorted(set(w[:, 0].tolist())) == starts
    assert sorted(set(w[:, 1].tolist())) == [0, 88]
    assert np.all(w[:, 2] - w[:, 0] == 512) and len(w) == 2 * len(starts)


def test_window_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="gap"):
        sliding_windows(1000, 1000, size=512, gap=512)
    with pytest.raises(ValueError, match="positive"):
        sliding_windows(0, 1000)


def test_crop_pads_past_the_image() -> None:
    img = np.arange(300 * 200 * 3, dtype=np.uint8).reshape(300, 200, 3)
    (win,) = sliding_windows(200, 300)
    out = crop_window(img, win)
    assert out.shape == (512, 512, 3)
    assert np.array_equal(out[:300, :200], img) and not out[300:].any() and not out[:, 200:].any()


def test_objects_are_shifted_and_duplicated_in_the_overlap() -> None:
    windows = sliding_windows(1000, 512)  # x starts 0, 412, 488
    quads = np.array([
        [10, 10, 40, 10, 40, 30, 10, 30],  # only in window 0
        [430, 200, 470, 200, 470, 220, 430, 220],  # in the overlap of windows 0 and 1
    ], dtype=float)  # fmt: skip
    per_window = split_objects(quads, windows)
    assert [w.rows.tolist() for w in per_window] == [[0, 1], [1], []]
    second = per_window[1]
    assert second.quads_px[0].tolist() == [[18, 200], [58, 200], [58, 220], [18, 220]]
    assert not any(w.truncated.any() for w in per_window)


def test_partially_inside_objects_follow_the_iof_rule() -> None:
    windows = np.array([[0, 0, 512, 512]])
    quads = np.array([
        [492, 100, 517, 100, 517, 110, 492, 110],  # 20 of 25 px inside: 0.8 -> kept, clipped
        [497, 200, 522, 200, 522, 210, 497, 210],  # 15 of 25 px inside: 0.6 -> dropped
    ], dtype=float)  # fmt: skip
    (kept,) = split_objects(quads, windows)
    assert kept.rows.tolist() == [0] and kept.truncated.tolist() == [True]
    assert kept.quads_px[0].tolist() == [[492, 100], [512, 100], [512, 110], [492, 110]]
    (both,) = split_objects(quads, windows, partial="difficult")
    assert both.rows.tolist() == [0, 1] and both.below_iof.tolist() == [False, True]
    assert both.quads_px[:, :, 0].max() <= 512


def test_objects_without_area_are_refused() -> None:
    with pytest.raises(ValueError, match="row 1"):
        split_objects([[0, 0, 10, 10], [5, 5, 5, 9]], sliding_windows(600, 600))
    with pytest.raises(ValueError, match="iof_thr"):
        split_objects([[0, 0, 10, 10]], sliding_windows(600, 600), iof_thr=0)


def test_a_rotated_object_cut_by_the_border_stays_inside_the_window() -> None:
    quad = obb_to_quad(500, 300, 60, 20, 30).reshape(1, 8)  # 60 px long, tip past x = 512
    (win,) = split_objects(quad, np.array([[0, 0, 512, 512]]))
    assert win.truncated.tolist() == [True]
    q = win.quads_px[0]
    assert q[:, 0].max() <= 512 + 1e-9 and q.min() >= 0
    assert quad_areas(q.reshape(1, 8))[0] <= quad_areas(quad)[0] + 1e-9


def test_split_then_merge_recovers_each_object_once() -> None:
    width, height = 1300, 900
    windows = sliding_windows(width, height)
    rng = np.random.default_rng(0)
    quads = [obb_to_quad(*rng.uniform(40, [width - 40, height - 40]), 30, 12, rng.uniform(0, 180))
             for _ in range(40)]  # fmt: skip
    quads.append(obb_to_quad(450, 250, 40, 16, 20))  # in the seam between windows 0 and 1
    quads.append(obb_to_quad(424, 600, 40, 16, 0))  # whole in window 3, 80 % in window 4
    quads = np.array(quads).reshape(-1, 8)
    labels = np.array(["car", "ship"] * 21)
    per_window = split_objects(quads, windows)
    assert [k for k, w in enumerate(per_window) if 40 in w.rows] == [0, 1]
    assert [
        (k, w.truncated[w.rows == 41][0]) for k, w in enumerate(per_window) if 41 in w.rows
    ] == [(3, False), (4, True)]
    # a perfect model: every window's objects come back, no scores, window by window
    wi = np.concatenate([[k] * len(w.rows) for k, w in enumerate(per_window)]).astype(int)
    rows = np.concatenate([w.rows for w in per_window])
    geom = np.concatenate([w.quads_px for w in per_window])
    merged = merge_detections(windows, wi, geom, labels[rows])
    recovered = rows[merged.rows]
    assert sorted(recovered.tolist()) == list(range(len(quads)))  # each object once
    # the whole copy wins over the cut one, so the merged geometry is the original
    iou = quad_iou_pairs(merged.quads_px, quads[recovered])
    assert iou.min() == pytest.approx(1.0)
    assert merged.scores is None


def test_nms_keeps_the_first_of_overlapping_boxes_per_group() -> None:
    q = np.array([[0, 0, 10, 10], [2, 0, 12, 10], [2, 0, 12, 10], [50, 0, 60, 10]], dtype=float)
    assert rotated_nms(q, np.array([1, 0, 2, 3]), 0.1).tolist() == [1, 3]
    groups = np.array([0, 0, 1, 0])
    assert rotated_nms(q, np.arange(4), 0.1, groups).tolist() == [0, 2, 3]
    # IoU 80/120 = 0.67 is kept at threshold 0.7 (suppression needs IoU > thr)
    assert rotated_nms(q[:2], np.arange(2), 0.7).tolist() == [0, 1]


def test_merge_prefers_scores_then_whole_copies() -> None:
    windows = np.array([[0, 0, 512, 512], [412, 0, 924, 512]])
    # the same object seen whole by window 1 and cut at x = 512 by window 0
    cut = [[480, 10], [512, 10], [512, 20], [480, 20]]
    whole = [[68, 10], [118, 10], [118, 20], [68, 20]]
    m = merge_detections(windows, [0, 1], np.array([cut, whole], dtype=float), ["car", "car"])
    assert m.rows.tolist() == [1]
    m = merge_detections(windows, [0, 1], np.array([cut, whole], dtype=float), ["car", "car"],
                         scores=[0.9, 0.8])  # fmt: skip
    assert m.rows.tolist() == [0] and m.scores.tolist() == [0.9]
    with pytest.raises(ValueError, match="window_index"):
        merge_detections(windows, [0, 2], np.array([cut, whole], dtype=float), ["car", "car"])
