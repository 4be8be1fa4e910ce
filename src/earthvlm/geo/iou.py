"""Polygon IoU of quads and horizontal boxes, vectorised (numpy only).

A quad is the polygon through its four vertices in the order given, as DOTA_devkit's
``polyiou`` reads it: a concave quad keeps its shape (no reordering of corners). Convex
quads (every box a detector or a model writes) go through a numpy Sutherland-Hodgman
kernel that clips thousands of pairs at once. A pair with a concave quad is measured as
``polyiou`` measures it: each polygon is a fan of triangles from a common apex, signed
by their turning direction, and the intersection is the signed sum of the pairwise
triangle intersections (exact for any simple polygon).

A *self-intersecting* quad (two opposite edges cross: a bow-tie, corners written in a
zig-zag order) is not a region. Here it has IoU 0 with everything, and
:func:`self_intersecting` finds it so that callers can count it; its area is the
shoelace value ``|signed area|`` (0 for the bow-tie of a box). DOTA_devkit, which has
no such check, applies the signed formula anyway: for the bow-tie of a box it gets 0
too, for an asymmetric bow-tie a number outside [0, 1] or a division by zero. Simple
quads score exactly as in DOTA_devkit, so AP on valid data is the devkit's.

Sparse IoU (:func:`sparse_quad_iou`) is what detection metrics and NMS need: the pairs
of two sets whose IoU is positive, within groups (image and class). Candidates come from
a sorted sweep over the horizontal boxes, a bound from the box areas drops pairs that
cannot reach ``min_iou``, and only the rest are clipped.

``geo`` is the lowest layer: numpy only, no torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Pairs clipped per numpy batch: small enough for the temporaries to stay in cache.
CHUNK = 4096

ArrayLike = np.ndarray | Sequence[Sequence[float]]


def as_quads(geometry: ArrayLike) -> np.ndarray:
    """``(N, 4, 2)`` float64 vertices from quads ``(N, 8)`` / ``(N, 4, 2)`` or boxes ``(N, 4)``.

    A ``(N, 4)`` array is read as horizontal boxes ``[x1, y1, x2, y2]``.

    Raises:
        ValueError: For any other shape.
    """
    a = np.asarray(geometry, dtype=np.float64)
    if a.ndim == 3 and a.shape[1:] == (4, 2):
        return a
    if a.ndim == 2 and a.shape[1] == 8:
        return a.reshape(-1, 4, 2)
    if a.ndim == 2 and a.shape[1] == 4:
        x1, y1, x2, y2 = a.T
        return np.stack([np.stack([x1, y1], 1), np.stack([x2, y1], 1),
                         np.stack([x2, y2], 1), np.stack([x1, y2], 1)], axis=1)  # fmt: skip
    if a.size == 0:
        return np.zeros((0, 4, 2))
    raise ValueError(
        f"expected quads (N, 8) or (N, 4, 2) or horizontal boxes (N, 4), got shape {a.shape}"
    )


def _turns(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cross products of consecutive edges at each vertex, and a rounding tolerance per quad
    (1e-12 of the summed squared edge lengths)."""
    e = q[:, [1, 2, 3, 0]] - q
    e_next = e[:, [1, 2, 3, 0]]
    turn = e[..., 0] * e_next[..., 1] - e[..., 1] * e_next[..., 0]
    return turn, 1e-12 * np.einsum("nkd,nkd->n", e, e)[:, None]


def _prepare(quads: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Oriented quads, their areas and a kind per quad: 1 convex, 0 simple but not
    convex (concave), -1 self-intersecting (see :func:`orient_quads`)."""
    q = as_quads(quads)
    turn, tol = _turns(q)
    left, right = np.all(turn >= -tol, axis=1), np.all(turn <= tol, axis=1)
    rel = q - q[:, :1]
    x, y = rel[..., 0], rel[..., 1]
    signed = 0.5 * np.sum(x * np.roll(y, -1, axis=1) - np.roll(x, -1, axis=1) * y, axis=1)
    # the vertex cycle is kept; one that turns clockwise is reversed (the same polygon)
    out = q.copy()
    flip = (right & ~left) | (~(left | right) & (signed < 0))
    out[flip] = q[flip, ::-1]
    kind = np.where(left | right, 1, 0).astype(np.int8)
    other = np.flatnonzero(kind == 0)
    kind[other[self_intersecting(q[other])]] = -1
    return out, np.abs(signed), kind


def self_intersecting(quads: ArrayLike) -> np.ndarray:
    """Which quads have two opposite edges that cross (a bow-tie vertex order).

    Proper crossings only: edges that touch, or overlap along a line, do not count (a
    quad with collinear or repeated vertices is degenerate, not crossing).
    """
    q = as_quads(quads)
    q = q - q[:, :1]
    # cross products below this are rounding at the quad's scale
    tol = 1e-12 * (np.einsum("nkd,nkd->n", q, q) + 1.0)

    def side(o: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        c = (a[:, 0] - o[:, 0]) * (b[:, 1] - o[:, 1]) - (a[:, 1] - o[:, 1]) * (b[:, 0] - o[:, 0])
        return np.where(np.abs(c) > tol, np.sign(c), 0.0)

    def crosses(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> np.ndarray:
        return (side(a, b, c) * side(a, b, d) < 0) & (side(c, d, a) * side(c, d, b) < 0)

    p0, p1, p2, p3 = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    with np.errstate(invalid="ignore", over="ignore"):
        return crosses(p0, p1, p2, p3) | crosses(p1, p2, p3, p0)


def orient_quads(quads: ArrayLike) -> np.ndarray:
    """Each quad ``(N, 4, 2)`` with its vertex cycle kept, reversed where it turns
    clockwise (negative signed area), so that every simple quad is positively oriented.
    """
    return _prepare(quads)[0]


def polygon_areas(polys: np.ndarray) -> np.ndarray:
    """Unsigned shoelace areas of ``(N, K, 2)`` vertex rings.

    Summed relative to each ring's first vertex: in image coordinates (say 1e5 px) the
    products would cancel away the area of a small box.
    """
    rel = polys - polys[..., :1, :]
    x, y = rel[..., 0], rel[..., 1]
    return 0.5 * np.abs(np.sum(x * np.roll(y, -1, axis=-1) - np.roll(x, -1, axis=-1) * y, -1))


def quad_areas(quads: ArrayLike) -> np.ndarray:
    """Polygon areas of quads in their vertex order (``|signed shoelace area|``)."""
    return _prepare(quads)[1]


def convex_mask(oriented: np.ndarray) -> np.ndarray:
    """Which oriented quads are convex (collinear and repeated vertices allowed)."""
    turn, tol = _turns(oriented)
    return np.all(turn >= -tol, axis=1)


def _clip_areas(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection areas of oriented convex quads ``a[i]`` and ``b[i]`` (one batch).

    Sutherland-Hodgman: ``a`` is clipped by the four half-planes of ``b``. The clipped
    polygon of each pair sits in fixed slots (4, then 5 ... 8: each half-plane adds at most
    one vertex to a convex polygon); unused trailing slots repeat the first vertex, which
    adds nothing to the shoelace sum. Each stage writes its kept points to their slots in
    one scatter (dropped points go to a spare column). Points are complex numbers
    (``x + iy``: one array instead of two, ``Im(conj(u) v)`` is the cross product), taken
    relative to ``a``'s first vertex so that products stay at the scale of the objects.
    """
    m = a.shape[0]
    za = a[..., 0] + 1j * a[..., 1]
    p = za - za[:, :1]
    zb = b[..., 0] + 1j * b[..., 1] - za[:, :1]
    edge_conj = np.conj(zb[:, [1, 2, 3, 0]] - zb)
    row_base = np.arange(m)[:, None]
    for j in range(4):
        k = p.shape[1]
        nxt = np.r_[1:k, 0]
        s = (edge_conj[:, j : j + 1] * (p - zb[:, j : j + 1])).imag  # >= 0: inside
        inside = s >= 0
        crosses = inside != inside[:, nxt]
        t = s / np.where(crosses, s - s[:, nxt], 1.0)
        keep = np.empty((m, 2 * k), dtype=bool)
        keep[:, 0::2], keep[:, 1::2] = inside, crosses
        v = np.empty((m, 2 * k), dtype=np.complex128)
        v[:, 0::2], v[:, 1::2] = p, p + t * (p[:, nxt] - p)
        pos = np.cumsum(keep, axis=1)
        target = np.where(keep, pos - 1, k + 1) + row_base * (k + 2)
        out = np.zeros((m, k + 2), dtype=np.complex128)
        out.reshape(-1)[target] = v
        trailing = np.arange(k + 1) >= pos[:, -1:]
        p = np.where(trailing, out[:, :1], out[:, : k + 1])
    nxt = np.r_[1 : p.shape[1], 0]
    return 0.5 * (np.conj(p) * p[:, nxt]).imag.sum(axis=1)


def convex_intersection_areas(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection areas of pairs ``a[i]``, ``b[i]`` of oriented convex quads ``(M, 4, 2)``.

    Both must come from :func:`orient_quads` and be convex (:func:`convex_mask`).
    """
    out = np.empty(a.shape[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        for i in range(0, a.shape[0], CHUNK):
            out[i : i + CHUNK] = _clip_areas(a[i : i + CHUNK], b[i : i + CHUNK])
    return np.maximum(out, 0.0)


def _fan_areas(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection areas of simple quads ``a[i]``, ``b[i]`` of any shape (both oriented
    by :func:`orient_quads`).

    DOTA_devkit's ``polyiou`` method: with a common apex ``o``, a polygon is the signed
    sum of its triangles ``(o, p_k, p_k+1)`` (sign: their turning direction), so the
    intersection of two polygons is the sum over triangle pairs of the signed areas of
    their (convex) intersections. The apex here is ``a[i]``'s first vertex, not the
    image origin, for precision far from it; the sum does not depend on the apex.
    """
    m = a.shape[0]
    if m == 0:
        return np.zeros(0)
    apex = np.broadcast_to(a[:, :1], (m, 4, 2))

    def fan(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The 4 triangles of a fan as positively turning degenerate quads, and signs."""
        t = np.stack([apex, p, np.roll(p, -1, axis=1)], axis=2)  # (m, 4, 3, 2)
        u, v = t[..., 1, :] - t[..., 0, :], t[..., 2, :] - t[..., 0, :]
        sign = np.sign(u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0])
        t = np.where((sign < 0)[..., None, None], t[..., ::-1, :], t)
        return np.concatenate([t, t[..., 2:, :]], axis=2), sign  # (m, 4, 4, 2)

    (ta, sa), (tb, sb) = fan(a), fan(b)
    pa = np.broadcast_to(ta[:, :, None], (m, 4, 4, 4, 2)).reshape(-1, 4, 2)
    pb = np.broadcast_to(tb[:, None, :], (m, 4, 4, 4, 2)).reshape(-1, 4, 2)
    sign = (sa[:, :, None] * sb[:, None, :]).reshape(-1)
    inter = np.zeros(len(sign))
    used = sign != 0
    inter[used] = convex_intersection_areas(pa[used], pb[used])
    return (inter * sign).reshape(m, 16).sum(axis=1)


def _pair_intersections(a: np.ndarray, b: np.ndarray, area_a: np.ndarray, area_b: np.ndarray,
                        kind_a: np.ndarray, kind_b: np.ndarray) -> np.ndarray:  # fmt: skip
    """Intersection areas of oriented pairs with known areas and kinds (0 for a pair with
    a self-intersecting quad)."""
    inter = np.zeros(a.shape[0])
    ok = (area_a > 0) & (area_b > 0) & (kind_a >= 0) & (kind_b >= 0)
    fast = ok & (kind_a == 1) & (kind_b == 1)
    inter[fast] = convex_intersection_areas(a[fast], b[fast])
    slow = ok & ~fast
    if slow.any():
        inter[slow] = np.clip(_fan_areas(a[slow], b[slow]), 0.0, None)
    return inter


def _pair_iou(a: np.ndarray, b: np.ndarray, area_a: np.ndarray, area_b: np.ndarray,
              kind_a: np.ndarray, kind_b: np.ndarray) -> np.ndarray:  # fmt: skip
    """IoU of oriented pairs with known areas and kinds (0 where either has no area or
    crosses itself)."""
    inter = _pair_intersections(a, b, area_a, area_b, kind_a, kind_b)
    union = area_a + area_b - inter
    ok = (area_a > 0) & (area_b > 0) & (union > 0)
    iou = np.where(ok, inter / np.where(ok, union, 1.0), 0.0)
    iou[np.isnan(area_a) | np.isnan(area_b)] = np.nan
    return np.clip(iou, 0.0, 1.0)


def quad_intersection_areas(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Intersection area of ``a[i]`` with ``b[i]`` for each row (see :func:`as_quads`)."""
    (qa, aa, ca), (qb, ab, cb) = _prepare(a), _prepare(b)
    if qa.shape != qb.shape:
        raise ValueError(
            f"pairwise areas need as many rows in a and b, got {len(qa)} and {len(qb)}"
        )
    return _pair_intersections(qa, qb, aa, ab, ca, cb)


def quad_iou_pairs(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """IoU of ``a[i]`` with ``b[i]`` for each row (quads or horizontal boxes, see :func:`as_quads`).

    A pair where either polygon has zero area or crosses itself has IoU 0; NaN
    coordinates give NaN.
    """
    (qa, aa, ca), (qb, ab, cb) = _prepare(a), _prepare(b)
    if qa.shape != qb.shape:
        raise ValueError(f"pairwise IoU needs as many rows in a and b, got {len(qa)} and {len(qb)}")
    return _pair_iou(qa, qb, aa, ab, ca, cb)


def quad_iou_matrix(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """The ``(N, K)`` IoU matrix of two sets of quads or horizontal boxes."""
    (qa, aa, ca), (qb, ab, cb) = _prepare(a), _prepare(b)
    ia, ib = np.repeat(np.arange(len(qa)), len(qb)), np.tile(np.arange(len(qb)), len(qa))
    iou = _pair_iou(qa[ia], qb[ib], aa[ia], ab[ib], ca[ia], cb[ib])
    return iou.reshape(len(qa), len(qb))


def xyxy_iou_matrix(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """The ``(N, K)`` IoU matrix of horizontal boxes ``[x1, y1, x2, y2]`` (continuous pixels)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (a[:, 2] - a[:, 0]).clip(0) * (a[:, 3] - a[:, 1]).clip(0)
    area_b = (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def xyxy_iou_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of ``a[i]`` with ``b[i]`` for (N, 4) ``xyxy`` arrays; 0 where the union is 0.

    Raises:
        ValueError: If the arrays are not both (N, 4).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 4 or a.shape != b.shape:
        raise ValueError(f"boxes must be two (N, 4) arrays, got {a.shape} and {b.shape}")
    iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0.0, None)
    ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0.0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a + area_b - inter
    out = np.zeros(len(a))
    np.divide(inter, union, out=out, where=union > 0)
    return out


def box_overlap_pairs(
    xyxy_a: np.ndarray,
    xyxy_b: np.ndarray,
    groups_a: np.ndarray | None = None,
    groups_b: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``(ia, ib)`` whose horizontal boxes overlap (closed) within one group.

    A sorted sweep: ``b`` is sorted by the key ``group * span + x1`` (``span`` exceeds
    the x range, so groups do not mix); each ``a`` takes the run of ``b`` with ``x1`` in
    ``[a.x1 - widest b of its group, a.x2]`` (two binary searches, widened by a margin
    far above the keys' rounding), and the exact overlap test filters the run. Pairs
    come sorted by ``ia``. Rows with NaN or inf take part in no pair.

    Args:
        xyxy_a: ``(N, 4)`` boxes.
        xyxy_b: ``(K, 4)`` boxes.
        groups_a: ``(N,)`` integer groups (image and class), or None for one group.
        groups_b: ``(K,)`` integer groups of ``b``.
    """
    xyxy_a = np.asarray(xyxy_a, dtype=np.float64).reshape(-1, 4)
    xyxy_b = np.asarray(xyxy_b, dtype=np.float64).reshape(-1, 4)
    n, k = len(xyxy_a), len(xyxy_b)
    ga = np.zeros(n, np.int64) if groups_a is None else np.asarray(groups_a, np.int64)
    gb = np.zeros(k, np.int64) if groups_b is None else np.asarray(groups_b, np.int64)
    sel_a = np.flatnonzero(np.isfinite(xyxy_a).all(axis=1))
    sel_b = np.flatnonzero(np.isfinite(xyxy_b).all(axis=1))
    if not len(sel_a) or not len(sel_b):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    # groups as small non-negative codes shared by a and b
    lo_g, hi_g = (
        min(ga.min(initial=0), gb.min(initial=0)),
        max(ga.max(initial=0), gb.max(initial=0)),
    )
    if lo_g >= 0 and hi_g <= 4 * (n + k):
        ca, cb, n_codes = ga, gb, int(hi_g) + 1
    else:
        codes, inv = np.unique(np.concatenate([ga, gb]), return_inverse=True)
        ca, cb, n_codes = inv[:n], inv[n:], len(codes)
    a, b = xyxy_a[sel_a], xyxy_b[sel_b]
    widest = np.zeros(n_codes)
    np.maximum.at(widest, cb[sel_b], b[:, 2] - b[:, 0])
    x0 = min(a[:, 0].min(), b[:, 0].min())
    span = max(a[:, 2].max(), b[:, 2].max()) - x0 + widest.max() + 1.0
    key_b = cb[sel_b] * span + (b[:, 0] - x0)
    order = np.argsort(key_b, kind="stable")
    key_sorted = key_b[order]
    margin = 1e-9 * n_codes * span + 1e-9
    g = ca[sel_a]
    lo = np.searchsorted(key_sorted, g * span + (a[:, 0] - x0) - widest[g] - margin, "left")
    hi = np.searchsorted(key_sorted, g * span + (a[:, 2] - x0) + margin, "right")
    counts = np.maximum(hi - lo, 0)
    total = int(counts.sum())
    ia = np.repeat(sel_a, counts)
    starts = np.repeat(lo - (np.cumsum(counts) - counts), counts)
    ib = sel_b[order[starts + np.arange(total)]]
    pa, pb = xyxy_a[ia], xyxy_b[ib]
    hit = (
        (ca[ia] == cb[ib])
        & (pb[:, 0] <= pa[:, 2])
        & (pb[:, 2] >= pa[:, 0])
        & (pb[:, 1] <= pa[:, 3])
        & (pb[:, 3] >= pa[:, 1])
    )
    return ia[hit], ib[hit]


def sparse_quad_iou(
    a: ArrayLike,
    b: ArrayLike,
    groups_a: np.ndarray | None = None,
    groups_b: np.ndarray | None = None,
    *,
    min_iou: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs of ``a`` and ``b`` in the same group with ``IoU > 0`` and ``IoU >= min_iou``.

    Pairs whose IoU is certainly below ``min_iou`` are never clipped: with the horizontal
    box overlap ``o`` and the polygon areas, ``IoU <= m / (area_a + area_b - m)`` for
    ``m = min(o, area_a, area_b)``.

    Args:
        a: ``(N, ...)`` quads or horizontal boxes (see :func:`as_quads`).
        b: ``(K, ...)`` quads or horizontal boxes.
        groups_a: ``(N,)`` integer groups (e.g. image x class), or None for one group.
        groups_b: ``(K,)`` integer groups.
        min_iou: Pairs below this IoU may be left out (they are, when the bound says so).

    Returns:
        ``(ia, ib, iou)``: index arrays into ``a`` and ``b`` and the IoUs, sorted by
        ``ia`` (pairs of one ``ia`` in no particular order).
    """
    (qa, area_a, kind_a), (qb, area_b, kind_b) = _prepare(a), _prepare(b)
    box_a = np.concatenate([qa.min(axis=1), qa.max(axis=1)], axis=1)
    box_b = np.concatenate([qb.min(axis=1), qb.max(axis=1)], axis=1)
    ia, ib = box_overlap_pairs(box_a, box_b, groups_a, groups_b)
    ba, bb = box_a[ia], box_b[ib]
    overlap = (np.minimum(ba[:, 2], bb[:, 2]) - np.maximum(ba[:, 0], bb[:, 0])) * (
        np.minimum(ba[:, 3], bb[:, 3]) - np.maximum(ba[:, 1], bb[:, 1])
    )
    aa, ab = area_a[ia], area_b[ib]
    m = np.minimum(overlap, np.minimum(aa, ab))
    with np.errstate(invalid="ignore", divide="ignore"):
        bound = np.where(m > 0, m / (aa + ab - m), 0.0)
    # a margin for rounding: a pair is only left out when the bound is clearly below
    keep = (m > 0) & (bound >= min_iou - 1e-9)
    ia, ib = ia[keep], ib[keep]
    iou = _pair_iou(qa[ia], qb[ib], area_a[ia], area_b[ib], kind_a[ia], kind_b[ib])
    hit = (iou > 0) & (iou >= min_iou)
    return ia[hit], ib[hit], iou[hit]


__all__ = [
    "as_quads",
    "box_overlap_pairs",
    "convex_intersection_areas",
    "convex_mask",
    "orient_quads",
    "polygon_areas",
    "quad_areas",
    "quad_intersection_areas",
    "quad_iou_matrix",
    "quad_iou_pairs",
    "self_intersecting",
    "sparse_quad_iou",
    "xyxy_iou_matrix",
    "xyxy_iou_pairs",
]
