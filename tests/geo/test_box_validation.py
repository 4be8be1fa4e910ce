"""Box validation and repair: a reason for every bad box, never an exception for bad values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earthvlm.geo.boxes import (
    BOX_DEGENERATE,
    BOX_INVERTED,
    BOX_NOT_FINITE,
    BOX_NOT_NUMERIC,
    BOX_OUT_OF_IMAGE,
    BOX_WRONG_LENGTH,
    box_problem,
    canonical_quad,
    clip_quad,
    normalise_box,
    obb_to_quad,
    quad_is_degenerate,
)

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("values", "kind", "reason"),
    [
        ([1, 2, 3, 4], None, None),
        ([[0, 0], [4, 0], [4, 3], [0, 3]], None, None),  # (4, 2) quads are fine
        ([10, 10, 4, 2, 30], None, None),  # obb
        ([1, 2, 3], None, BOX_WRONG_LENGTH),
        ([1, 2, 3, 4, 5, 6], None, BOX_WRONG_LENGTH),
        ([1, 2, 3, 4], "quad", BOX_WRONG_LENGTH),
        ([], None, BOX_WRONG_LENGTH),
        ("1,2,3,4", None, BOX_NOT_NUMERIC),
        ([1, 2, "x", 4], None, BOX_NOT_NUMERIC),
        ([[1, 2], [3]], None, BOX_NOT_NUMERIC),
        ({"x": 1}, None, BOX_NOT_NUMERIC),
        ([1, 2, 3, NAN], None, BOX_NOT_FINITE),
        ([0, 0, INF, 4, 4, 4, 0, 4], None, BOX_NOT_FINITE),
        ([1, 2, 1, 4], None, BOX_DEGENERATE),  # zero width
        ([5, 2, 1, 4], None, BOX_INVERTED),
        ([0, 0, 1, 1, 2, 2, 3, 3], None, BOX_DEGENERATE),  # collinear
        ([2, 2, 2, 2, 2, 2, 2, 2], None, BOX_DEGENERATE),  # coincident
        ([0, 0, 4, 0, 0, 3, 4, 3], None, None),  # bow-tie order: canonical order fixes it
        ([10, 10, 0, 2, 30], None, BOX_DEGENERATE),  # obb without width
        ([1, 1, 1, 1e-130, 0], None, BOX_DEGENERATE),  # its height vanishes next to cy
        ([1.7e308, 0, 1e308, 1, 0], None, BOX_NOT_FINITE),  # its corners overflow
    ],
)
def test_box_problem_names_the_reason(values, kind, reason) -> None:
    assert box_problem(values, kind) == reason


def test_out_of_image_with_tolerance() -> None:
    assert box_problem([0, 0, 10, 10], width=10, height=10) is None
    assert box_problem([0, 0, 10.5, 10], width=10, height=10) == BOX_OUT_OF_IMAGE
    assert box_problem([0, 0, 10.5, 10], width=10, height=10, tol_px=1) is None
    assert box_problem([-2, 0, 4, 0, 4, 4, -2, 4], width=10, height=10) == BOX_OUT_OF_IMAGE
    assert box_problem(obb_to_quad(5, 5, 4, 4, 45).reshape(-1), width=8, height=8) is None
    assert box_problem([5, 5, 12, 2, 45], width=8, height=8) == BOX_OUT_OF_IMAGE
    with pytest.raises(ValueError, match="image size"):
        box_problem([0, 0, 1, 1], width=10)
    with pytest.raises(ValueError, match="kind"):
        box_problem([0, 0, 1, 1], "obb2")  # type: ignore[arg-type]


def test_degenerate_is_relative_to_the_extent() -> None:
    far = np.array([0, 0, 4, 0, 4, 3, 0, 3], dtype=float) + 1e7
    assert not quad_is_degenerate(far)
    # collinear up to float noise along a diagonal
    sliver = [0, 0, 500, 500 + 1e-10, 1000, 1000, 500, 500 - 1e-10]
    assert quad_is_degenerate(sliver) and box_problem(sliver) == BOX_DEGENERATE
    # a thin but real axis-aligned box is not degenerate, as for xyxy boxes
    assert not quad_is_degenerate([0, 0, 1000, 0, 1000, 0.01, 0, 0.01])


@pytest.mark.parametrize(
    ("values", "expected", "problem", "repairs"),
    [
        ([1, 2, 30, 40], (1, 2, 30, 40), None, ()),
        ([30, 40, 1, 2], (1, 2, 30, 40), None, ("swapped_corners",)),
        ([-5, 2, 30, 400], (0, 2, 30, 100), None, ("clipped",)),
        ([200, 2, 300, 40], None, BOX_OUT_OF_IMAGE, ()),
        ([1, 2, 1, 40], None, BOX_DEGENERATE, ()),
        ([1, 2, 3], None, BOX_WRONG_LENGTH, ()),
        ([0, 3, 4, 3, 4, 0, 0, 0], (0, 0, 4, 0, 4, 3, 0, 3), None, ("vertex_order",)),
        ([-2, 0, 4, 0, 4, 4, -2, 4], (0, 0, 4, 0, 4, 4, 0, 4), None, ("clipped",)),
        ([150, 0, 160, 0, 160, 9, 150, 9], None, BOX_OUT_OF_IMAGE, ()),
        ([0, 0, 1, 1, 2, 2, 3, 3], None, BOX_DEGENERATE, ()),
        ([10, 10, 4, 2, 0], (8, 9, 12, 9, 12, 11, 8, 11), None, ()),  # obb -> quad
    ],
)
def test_normalise_box_repairs_or_refuses(values, expected, problem, repairs) -> None:
    fixed = normalise_box(values, width=100, height=100)
    assert fixed.problem == problem and fixed.repairs == repairs
    assert fixed.values == (None if expected is None else tuple(float(v) for v in expected))


def test_clip_quad_is_exact_for_axis_aligned_and_canonical() -> None:
    clipped = clip_quad([12, -3, 12, 5, -1, 5, -1, -3], 10, 4)
    assert clipped.tolist() == [[0, 0], [10, 0], [10, 4], [0, 4]]
    rotated = clip_quad(obb_to_quad(5, 5, 12, 4, 30), 10, 10)
    assert rotated.min() >= 0 and rotated.max() <= 10
    assert np.array_equal(canonical_quad(rotated), rotated)


_value = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**400), 10**400),
    st.text(max_size=3),
    st.none(),
)
_values = st.one_of(
    st.lists(_value, max_size=10),
    st.lists(st.floats(-1e4, 1e4), min_size=4, max_size=8),
    st.lists(st.lists(st.floats(-50, 150), max_size=3), max_size=5),
    st.text(max_size=10),
)


@settings(max_examples=300, deadline=None)
@given(values=_values, kind=st.sampled_from([None, "xyxy", "quad", "obb"]))
def test_any_values_get_a_verdict_and_repairs_are_valid(values, kind) -> None:
    problem = box_problem(values, kind, width=100, height=80)
    assert problem is None or problem.startswith("box_")
    fixed = normalise_box(values, kind, width=100, height=80)
    assert (fixed.values is None) != (fixed.problem is None)
    if fixed.values is not None:  # what it returns is valid
        assert box_problem(fixed.values, width=100, height=80) is None
    if problem is None:  # a valid box is kept, at most reordered
        assert fixed.problem is None and set(fixed.repairs) <= {"vertex_order"}
    elif problem == BOX_INVERTED:
        assert "swapped_corners" in fixed.repairs or fixed.problem == BOX_OUT_OF_IMAGE
    elif problem == BOX_OUT_OF_IMAGE:
        assert "clipped" in fixed.repairs or fixed.problem == BOX_OUT_OF_IMAGE
    else:  # malformed or degenerate: nothing to repair
        assert fixed.problem == problem


def test_canonical_order_keeps_a_concave_quad_and_repairs_only_a_crossing_one() -> None:
    from earthvlm.geo.iou import quad_iou_pairs

    arrow = [2, 2, 0, 4, 4, 2, 0, 0]  # a dart drawn counter-clockwise on screen
    got = canonical_quad(arrow)
    # the same cycle, clockwise on screen, from the top-most vertex
    assert got.tolist() == [[0, 0], [4, 2], [0, 4], [2, 2]]
    assert quad_iou_pairs([arrow], got.reshape(1, 8))[0] == pytest.approx(1.0)
    fixed = normalise_box(arrow, width=10, height=10)
    assert fixed.values == (0, 0, 4, 2, 0, 4, 2, 2) and fixed.repairs == ("vertex_order",)
    # a bow-tie is re-read as the simple quad through its points (a repair, as before)
    assert canonical_quad([0, 0, 4, 0, 0, 3, 4, 3]).tolist() == [[0, 0], [4, 0], [4, 3], [0, 3]]
