"""Polygon IoU: the numpy clipping kernel against shapely, known angles, degenerate quads."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from earthvlm.geo.boxes import obb_to_quad
from earthvlm.geo.iou import (
    as_quads,
    box_overlap_pairs,
    orient_quads,
    quad_areas,
    quad_intersection_areas,
    quad_iou_matrix,
    quad_iou_pairs,
    sparse_quad_iou,
    xyxy_iou_matrix,
)


def shapely_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Reference IoU of rows of two quad arrays, read as simple polygons."""
    pa = shapely.make_valid(shapely.polygons(orient_quads(a)))
    pb = shapely.make_valid(shapely.polygons(orient_quads(b)))
    inter = shapely.area(shapely.intersection(pa, pb))
    union = shapely.area(pa) + shapely.area(pb) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


obb = st.tuples(
    st.floats(0, 100), st.floats(0, 100),  # centre
    st.floats(0.5, 60), st.floats(0.5, 60),  # size
    st.floats(0, 180),  # angle (deg)
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(obb, obb), min_size=1, max_size=40))
def test_rotated_rectangles_match_shapely(pairs) -> None:
    a = np.array([obb_to_quad(*p) for p, _ in pairs])
    b = np.array([obb_to_quad(*q) for _, q in pairs])
    np.testing.assert_allclose(quad_iou_pairs(a, b), shapely_iou(a, b), rtol=0, atol=1e-9)


def test_far_from_the_origin_small_boxes_keep_their_iou() -> None:
    # at 1e5 px a shoelace sum in image coordinates cancels away a 0.5 px box's area
    rng = np.random.default_rng(4)
    p = np.c_[rng.uniform(0, 50, (200, 2)), rng.uniform(0.3, 5, (200, 2)), rng.uniform(0, 180, 200)]
    q = p + np.c_[rng.normal(0, 0.3, (200, 2)), np.zeros((200, 2)), rng.normal(0, 5, 200)]
    a = np.array([obb_to_quad(*r) for r in p]).reshape(-1, 8)
    b = np.array([obb_to_quad(*r) for r in q]).reshape(-1, 8)
    near = quad_iou_pairs(a, b)
    np.testing.assert_allclose(near, shapely_iou(a, b), atol=1e-12)
    np.testing.assert_allclose(quad_iou_pairs(a + 1e5, b + 1e5), near, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 12), min_size=16, max_size=16), min_size=1, max_size=30))
def test_integer_quads_match_shapely(rows) -> None:
    # integer vertices: shared edges, collinear and repeated points, bow-ties, darts
    r = np.array(rows, dtype=float)
    a, b = r[:, :8], r[:, 8:]
    np.testing.assert_allclose(quad_iou_pairs(a, b), shapely_iou(a, b), rtol=0, atol=1e-9)


@pytest.mark.parametrize(
    ("angle", "expected"),
    [(0, 1.0), (90, 1.0), (180, 1.0), (45, 1 / math.sqrt(2)), (-45, 1 / math.sqrt(2))],
)
def test_square_rotated_about_its_centre(angle: float, expected: float) -> None:
    # square [-1, 1]^2 and itself rotated by 45 deg overlap in a regular octagon of
    # inradius 1: area 8 (sqrt 2 - 1); IoU = 8 (sqrt 2 - 1) / (8 - 8 (sqrt 2 - 1)) = 1 / sqrt 2
    sq = obb_to_quad(10, 20, 2, 2, 0)
    rot = obb_to_quad(10, 20, 2, 2, angle)
    assert quad_iou_pairs([sq.reshape(-1)], [rot.reshape(-1)])[0] == pytest.approx(
        expected, abs=1e-12
    )
    inter = quad_intersection_areas([sq.reshape(-1)], [rot.reshape(-1)])[0]
    if angle % 90:
        assert inter == pytest.approx(8 * (math.sqrt(2) - 1), abs=1e-12)


def test_rectangle_turned_a_quarter_keeps_a_third() -> None:
    # 2 x 1 and 1 x 2 about one centre: intersection 1, union 2 + 2 - 1 = 3
    a, b = obb_to_quad(0, 0, 2, 1, 0), obb_to_quad(0, 0, 2, 1, 90)
    assert quad_iou_pairs(a.reshape(1, 8), b.reshape(1, 8))[0] == pytest.approx(1 / 3, abs=1e-12)


def test_degenerate_quads() -> None:
    square = [0, 0, 4, 0, 4, 4, 0, 4]
    line = [0, 0, 2, 0, 4, 0, 1, 0]  # all on y = 0: no area
    point = [1, 1] * 4
    bowtie = [0, 0, 4, 4, 4, 0, 0, 4]  # the square's corners in a crossing order
    triangle = [0, 0, 4, 0, 4, 4, 4, 4]  # a repeated vertex
    dart = [0, 0, 4, 2, 0, 4, 1, 2]  # non-convex
    a = np.array([square, line, point, bowtie, triangle, dart], dtype=float)
    b = np.array([square] * 6, dtype=float)
    iou = quad_iou_pairs(a, b)
    assert iou[:4].tolist() == [1.0, 0.0, 0.0, 1.0]
    assert iou[4] == pytest.approx(0.5)
    assert iou[5] == pytest.approx(shapely_iou(a[5:], b[5:])[0]) and 0 < iou[5] < 1
    assert quad_areas(a).tolist() == [16, 0, 0, 16, 8, pytest.approx(6)]
    # NaN geometry gives NaN, not a silent 0
    assert np.isnan(quad_iou_pairs([[np.nan] * 8], [square])[0])


def test_horizontal_boxes_agree_with_the_box_formula() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 20, (30, 4)).astype(float)
    b = rng.integers(0, 20, (25, 4)).astype(float)
    a[:, 2:] = a[:, :2] + rng.integers(1, 8, (30, 2))
    b[:, 2:] = b[:, :2] + rng.integers(1, 8, (25, 2))
    np.testing.assert_allclose(quad_iou_matrix(a, b), xyxy_iou_matrix(a, b), atol=1e-12)
    assert xyxy_iou_matrix([[0, 0, 2, 1]], [[0, 0, 1, 1]])[0, 0] == 0.5


def test_as_quads_shapes() -> None:
    assert as_quads([[1, 2, 3, 4]]).tolist() == [[[1, 2], [3, 2], [3, 4], [1, 4]]]
    assert as_quads(np.zeros((3, 4, 2))).shape == (3, 4, 2)
    assert as_quads([]).shape == (0, 4, 2)
    with pytest.raises(ValueError, match="expected quads"):
        as_quads([[1, 2, 3]])


def test_box_overlap_pairs_is_the_brute_force_set() -> None:
    rng = np.random.default_rng(1)
    a = rng.uniform(0, 100, (200, 4))
    b = rng.uniform(0, 100, (150, 4))
    a[:, 2:] = a[:, :2] + rng.uniform(0, 15, (200, 2))
    b[:, 2:] = b[:, :2] + rng.uniform(0, 30, (150, 2))
    b[7] = [10, 10, 20, 20]
    a[3] = [20, 15, 25, 18]  # touches b[7] on x = 20: closed boxes overlap
    a[5] = np.nan
    ga, gb = rng.integers(0, 4, 200), rng.integers(0, 4, 150)
    gb[7] = ga[3]
    ia, ib = box_overlap_pairs(a, b, ga, gb)
    got = set(zip(ia.tolist(), ib.tolist(), strict=True))
    want = {
        (i, j)
        for i in range(200)
        for j in range(150)
        if ga[i] == gb[j]
        and a[i, 0] <= b[j, 2] and b[j, 0] <= a[i, 2]
        and a[i, 1] <= b[j, 3] and b[j, 1] <= a[i, 3]
    }  # fmt: skip
    assert got == want and (3, 7) in got and len(ia) == len(got)
    assert np.all(np.diff(ia) >= 0)


@pytest.mark.parametrize("min_iou", [0.0, 0.3, 0.5, 0.9])
def test_sparse_iou_equals_the_dense_matrix(min_iou: float) -> None:
    rng = np.random.default_rng(2)
    a = np.array([obb_to_quad(*rng.uniform(0, 200, 2), *rng.uniform(4, 40, 2), rng.uniform(0, 180))
                  for _ in range(150)])  # fmt: skip
    # b: jittered copies of a (IoUs spread over (0, 1]) and random boxes
    b = a[:100] + rng.normal(0, 1.5, (100, 4, 2))
    b = np.concatenate([b, a[100:] + rng.uniform(-20, 20, (50, 1, 2))])
    ga, gb = rng.integers(0, 2, 150), rng.integers(0, 2, 150)
    dense = quad_iou_matrix(a, b) * (ga[:, None] == gb[None, :])
    ia, ib, iou = sparse_quad_iou(a, b, ga, gb, min_iou=min_iou)
    want = {(i, j) for i, j in zip(*np.nonzero((dense > 0) & (dense >= min_iou)), strict=True)}
    assert set(zip(ia.tolist(), ib.tolist(), strict=True)) == want
    np.testing.assert_allclose(iou, dense[ia, ib], atol=1e-12)
    assert np.all(np.diff(ia) >= 0)
