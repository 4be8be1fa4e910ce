"""Grounding Acc@IoU with hand-computed IoUs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earthvlm.eval.metrics import paired_iou_xyxy, parse_box, score_grounding


def test_paired_iou_by_hand() -> None:
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [5, 5, 5, 9], [3, 3, 3, 3]])
    b = np.array([[5, 5, 15, 15], [0, 0, 10, 5], [20, 20, 30, 30], [0, 0, 10, 10], [3, 3, 3, 3]])
    got = paired_iou_xyxy(a, b)
    # overlap 5x5 = 25, union 100 + 100 - 25 = 175 -> 1/7
    # half box: 50 / 100 = 0.5; disjoint: 0; zero-width box: area 0 -> 0 / 100 = 0
    # two identical points: union 0 -> defined as 0, no division by zero
    assert got == pytest.approx([1 / 7, 0.5, 0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="\\(N, 4\\)"):
        paired_iou_xyxy(np.zeros((2, 4)), np.zeros((3, 4)))


@pytest.mark.parametrize(
    ("text", "box"),
    [
        ("[10, 20, 30, 40]", (10, 20, 30, 40)),
        ('[{"bbox_2d": [1.5, 2, 3, 4], "label": "ship"}]', (1.5, 2, 3, 4)),
        ("<|box_start|>(10,20),(30,40)<|box_end|>", (10, 20, 30, 40)),
        ("The ship is at 5, 6, 7, 8 in the image.", (5, 6, 7, 8)),
        ("first [1,1,2,2] then [0,0,9,9]", (1, 1, 2, 2)),  # the first box counts
        ("[4, 4, 4, 9]", (4, 4, 4, 9)),  # zero width is a valid (if useless) box
    ],
)
def test_parse_box(text: str, box: tuple[float, ...]) -> None:
    assert parse_box(text).box_xyxy == box


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("no box here", "no box"),
        ("[30, 40, 10, 20]", "out of order"),
        ("[1, 2, 3]", "no box"),
        (None, "no response"),
    ],
)
def test_parse_box_failures_say_why(text: str | None, reason: str) -> None:
    got = parse_box(text)
    assert got.box_xyxy is None and reason in (got.reason or "")


def test_score_grounding_by_hand() -> None:
    preds = [
        "[0, 0, 10, 10]",  # IoU 1
        "[5, 5, 15, 15]",  # IoU 1/7
        "I cannot find it",  # parse failure: IoU 0, counted
        [0, 0, 10, 5],  # IoU exactly 0.5: not > 0.5
        "[1, 1, 2, 2]",  # reference empty: skipped
        "[9, 9, 2, 2]",  # corners out of order: failed
    ]
    refs = [[0, 0, 10, 10]] * 4 + [[], [0, 0, 10, 10]]
    res = score_grounding(preds, refs)
    assert res.n == 5
    assert res.ious == pytest.approx([1.0, 1 / 7, 0.0, 0.5, 0.0])
    # > 0.1: 1, 1/7, 0.5 -> 3/5; > 0.3: 1, 0.5 -> 2/5; > 0.5: 1 -> 1/5; > 0.7: 1/5
    assert res.accuracy == pytest.approx({0.1: 3 / 5, 0.3: 2 / 5, 0.5: 1 / 5, 0.7: 1 / 5})
    assert res.mean_iou == pytest.approx((1 + 1 / 7 + 0 + 0.5 + 0) / 5)
    assert res.ledger.read == 6 and res.ledger.ok == 3 and res.ledger.n_failed == 2
    assert res.ledger.skipped["no reference box"] == 1
    assert res.to_dict()["acc@0.5"] == pytest.approx(0.2)
    json.dumps(res.to_dict(), allow_nan=False)


def test_grounding_input_checks() -> None:
    with pytest.raises(ValueError, match="references\\[0\\]"):
        score_grounding(["[0,0,1,1]"], [[0, 0, 1]])
    with pytest.raises(ValueError, match="thresholds"):
        score_grounding(["[0,0,1,1]"], [[0, 0, 1, 1]], thresholds=[1.0])
    res = score_grounding(["[0,0,1,1]"], [[2, 2, 2, 5]])  # zero-area reference
    assert res.n == 0 and res.ledger.skipped["reference box has zero area"] == 1


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_parse_box_never_raises(text: str) -> None:
    got = parse_box(text)
    assert (got.box_xyxy is None) == (got.reason is not None)


coord = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(coord, coord, coord, coord), min_size=1, max_size=8))
def test_iou_is_symmetric_and_bounded(raw: list[tuple[float, ...]]) -> None:
    a = np.array([[min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)] for x1, y1, x2, y2 in raw])
    b = a[::-1].copy()
    iou = paired_iou_xyxy(a, b)
    assert np.all((iou >= 0) & (iou <= 1 + 1e-12))
    assert iou == pytest.approx(paired_iou_xyxy(b, a))
