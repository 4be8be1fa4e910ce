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
    quad_areas,
    quad_intersection_areas,
    quad_iou_matrix,
    quad_iou_pairs,
    self_intersecting,
    sparse_quad_iou,
    xyxy_iou_matrix,
)


def crossing(quads: np.ndarray) -> np.ndarray:
    """Reference: shapely says two opposite edges cross (interiors meet in a point)."""
    q = np.asarray(quads, dtype=float).reshape(-1, 4, 2)
    e = [shapely.linestrings(q[:, [i, (i + 1) % 4]]) for i in range(4)]
    return shapely.crosses(e[0], e[2]) | shapely.crosses(e[1], e[3])


def shapely_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Reference IoU of rows of two quad arrays: the polygons through the vertices in the
    given order (what DOTA_devkit computes for simple ones), 0 for a crossing quad."""
    a, b = np.asarray(a, float).reshape(-1, 4, 2), np.asarray(b, float).reshape(-1, 4, 2)
    pa = shapely.make_valid(shapely.polygons(a))
    pb = shapely.make_valid(shapely.polygons(b))
    inter = shapely.area(shapely.intersection(pa, pb))
    union = shapely.area(pa) + shapely.area(pb) - inter
    iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
    return np.where(crossing(a) | crossing(b), 0.0, iou)


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
    # the bow-tie is no box: IoU 0 (DOTA_devkit's signed areas also give 0 here)
    assert iou[:4].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert iou[4] == pytest.approx(0.5)
    assert iou[5] == pytest.approx(shapely_iou(a[5:], b[5:])[0]) and 0 < iou[5] < 1
    # areas in the given vertex order; the bow-tie's two lobes cancel (as in DOTA_devkit)
    assert quad_areas(a).tolist() == [16, 0, 0, 0, 8, pytest.approx(6)]
    assert self_intersecting(a).tolist() == [False, False, False, True, False, False]
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


def dota_polyiou(p: np.ndarray, q: np.ndarray) -> float:
    """DOTA_devkit's ``polyiou.iou_poly`` for two quads, written out per pair (the method
    of its C++: signed triangle fans from the origin, each pair of triangles intersected
    by half-plane cuts; polygons turned to positive area first)."""

    def area(v: np.ndarray) -> float:
        x, y = v[:, 0], v[:, 1]
        return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))

    def cut(poly: list, a: np.ndarray, b: np.ndarray) -> list:
        def side(pt: np.ndarray) -> float:
            return (b[0] - a[0]) * (pt[1] - a[1]) - (b[1] - a[1]) * (pt[0] - a[0])

        out = []
        for i, cur in enumerate(poly):
            nxt = poly[(i + 1) % len(poly)]
            sc, sn = side(cur), side(nxt)
            if sc > 1e-8:
                out.append(cur)
            if (sc > 1e-8) != (sn > 1e-8) and abs(sc - sn) > 1e-12:
                out.append(cur + (nxt - cur) * sc / (sc - sn))
        return out

    def tri_inter(a, b, c, d) -> float:
        o = np.zeros(2)
        s1 = np.sign(a[0] * b[1] - a[1] * b[0])
        s2 = np.sign(c[0] * d[1] - c[1] * d[0])
        if s1 == 0 or s2 == 0:
            return 0.0
        if s1 < 0:
            a, b = b, a
        if s2 < 0:
            c, d = d, c
        poly = [o, a, b]
        for u, v in ((o, c), (c, d), (d, o)):
            poly = cut(poly, u, v)
            if not poly:
                return 0.0
        return abs(area(np.array(poly))) * s1 * s2

    p, q = p.reshape(4, 2).astype(float), q.reshape(4, 2).astype(float)
    p = p[::-1] if area(p) < 0 else p
    q = q[::-1] if area(q) < 0 else q
    inter = sum(
        tri_inter(p[i], p[(i + 1) % 4], q[j], q[(j + 1) % 4]) for i in range(4) for j in range(4)
    )
    return inter / (abs(area(p)) + abs(area(q)) - inter)


def random_simple_quads(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random simple quads, most of them concave: a triangle ``A B C`` and a point ``P``
    inside it, in the order ``A B P C`` (a dart), else a rotated rectangle; random first
    vertex and direction."""
    tri = rng.uniform(0, 40, (n, 1, 2)) + rng.uniform(-20, 20, (n, 3, 2))
    w = rng.dirichlet([2, 2, 2], n)
    dart = np.stack([tri[:, 0], tri[:, 1], np.einsum("nk,nkd->nd", w, tri), tri[:, 2]], 1)
    box = np.array([obb_to_quad(*rng.uniform(0, 40, 2), *rng.uniform(2, 30, 2),
                                rng.uniform(0, 180)) for _ in range(n)])  # fmt: skip
    q = np.where(rng.random((n, 1, 1)) < 0.7, dart, box)
    q = np.roll(q, rng.integers(0, 4), axis=1)
    return np.where(rng.random((n, 1, 1)) < 0.5, q, q[:, ::-1])


def test_concave_quads_keep_their_vertex_order_as_in_dota_devkit() -> None:
    # an arrow-head: reordering its corners by angle makes another quad (the old reading
    # gave IoU 1 with the triangle through its three outer corners, the true one is 0.75)
    arrow = np.array([[0, 0, 4, 2, 0, 4, 2, 2]], dtype=float)
    hull = np.array([[0, 0, 4, 2, 0, 4, 0, 2]], dtype=float)  # the triangle, 4 corners
    assert quad_areas(arrow)[0] == pytest.approx(4.0)
    assert quad_iou_pairs(arrow, hull)[0] == pytest.approx(4 / 8)
    assert quad_iou_pairs(arrow, hull)[0] == pytest.approx(dota_polyiou(arrow[0], hull[0]))
    rng = np.random.default_rng(11)
    a, b = random_simple_quads(rng, 400), random_simple_quads(rng, 400)
    b[:200] = a[:200] + rng.normal(0, 2.0, (200, 4, 2))  # overlapping pairs
    b[:200] = np.where(crossing(b[:200])[:, None, None], a[:200], b[:200])
    assert not crossing(a).any() and not crossing(b).any()
    concave = ~np.array([shapely.equals(shapely.convex_hull(p), p)
                         for p in shapely.polygons(a)])  # fmt: skip
    assert concave.sum() > 100  # the test is about them
    got = quad_iou_pairs(a.reshape(-1, 8), b.reshape(-1, 8))
    np.testing.assert_allclose(got, shapely_iou(a, b), atol=1e-9)
    want = np.array([dota_polyiou(p, q) for p, q in zip(a, b, strict=True)])
    np.testing.assert_allclose(got, want, atol=1e-9)
    assert (got[:200] > 0).mean() > 0.9


def test_self_intersecting_quads_score_zero_and_are_found() -> None:
    square = np.array([0, 0, 4, 0, 4, 4, 0, 4], dtype=float)
    bowtie = np.array([0, 0, 4, 0, 0, 4, 4, 4], dtype=float)  # "Z" order of the corners
    lopsided = np.array([0, 0, 6, 0, 0, 3, 4, 4], dtype=float)  # edges 1-2 and 3-0 cross
    assert self_intersecting(np.stack([square, bowtie, lopsided])).tolist() == [
        False, True, True
    ]  # fmt: skip
    iou = quad_iou_pairs(np.stack([bowtie, lopsided, square]), np.stack([square, square, bowtie]))
    assert iou.tolist() == [0.0, 0.0, 0.0]
    assert quad_iou_pairs(lopsided[None], lopsided[None])[0] == 0.0  # not even with itself
    # DOTA_devkit agrees on the symmetric bow-tie of a box (its lobes cancel) ...
    assert dota_polyiou(bowtie, square) == pytest.approx(0.0)
    # ... but gives the lopsided one an IoU of -3 with itself: no value to threshold
    assert dota_polyiou(lopsided, lopsided) == pytest.approx(-3.0)
    # shapely calls both invalid
    assert not shapely.is_valid(shapely.polygons(bowtie.reshape(4, 2)))
    # a sparse search never pairs them either
    ia, _, _ = sparse_quad_iou(np.stack([bowtie, square]), np.stack([square]))
    assert ia.tolist() == [1]
    # touching is not crossing: a vertex on the opposite edge, collinear vertices
    touching = np.array([[0, 0, 4, 0, 2, 0, 2, 4], [0, 0, 2, 0, 4, 0, 2, 2]], dtype=float)
    assert not self_intersecting(touching).any()
