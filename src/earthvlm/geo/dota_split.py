"""DOTA split: large images into overlapping 512 px windows, and detections merged back.

Windows (MMRotate ``img_split`` with one size, the setting RSCoVLM evaluates with):
``size`` 512, ``gap`` (overlap) 100, so windows start every 412 px; the last window of a
row or column is moved to end at the image border; a side shorter than a window gets
one window, which runs past the image (pad the crop, :func:`crop_window`). MMRotate's
``img_rate_thr`` (0.6) only removes windows when several sizes are mixed, so it has no
counterpart here.

Objects (:func:`split_objects`, DOTA_devkit's partially-inside rule): an object goes to
a window when the share of its area inside the window is at least ``iof_thr`` (0.7).
Its geometry is clipped to the window and shifted into the window frame; a clipped
object is flagged ``truncated``. Where DOTA_devkit departs: it keeps an object below
the threshold as difficult ("2"), here ``partial="difficult"`` (default ``"drop"``, as
MMRotate does); a clipped polygon with more than four vertices becomes its minimum
rotated rectangle with vertices clamped to the window (DOTA_devkit merges one edge of a
pentagon and drops larger polygons).

Merge (:func:`merge_detections`): per-window detections shifted back to the image frame
and deduplicated per class with polygon NMS at IoU 0.1 (DOTA_devkit ``ResultMerge``,
MMRotate ``merge_results``). Ranking: score, then, for equal scores (a model that writes
text has none), the detection farther from the window's inner edges (the copy the window
saw whole), then input order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import shapely

from earthvlm.geo.boxes import canonical_quad
from earthvlm.geo.iou import (
    ArrayLike,
    as_quads,
    box_overlap_pairs,
    quad_areas,
    quad_intersection_areas,
    sparse_quad_iou,
)

#: Window side (px) and overlap (px) of RSCoVLM's DOTA evaluation.
WINDOW_PX = 512
GAP_PX = 100


def _starts(length: int, size: int, step: int) -> list[int]:
    if length <= size:
        return [0]
    n = math.ceil((length - size) / step + 1)
    starts = [step * i for i in range(n)]
    if starts[-1] + size > length:
        starts[-1] = length - size
    return starts


def sliding_windows(
    width: int, height: int, size: int = WINDOW_PX, gap: int = GAP_PX
) -> np.ndarray:
    """Windows ``(W, 4)`` as integer ``[x0, y0, x1, y1]`` in image pixels, row by row.

    Raises:
        ValueError: When the image size is not positive or ``gap`` is not below ``size``.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width} x {height}")
    if not 0 <= gap < size:
        raise ValueError(f"gap must lie in [0, size), got gap {gap} for size {size}")
    step = size - gap
    xs, ys = _starts(width, size, step), _starts(height, size, step)
    return np.array([(x, y, x + size, y + size) for y in ys for x in xs], dtype=np.int64)


def crop_window(image: np.ndarray, window: Sequence[int], fill: float = 0) -> np.ndarray:
    """The pixels ``(H, W, ...)`` of one window, padded with ``fill`` past the image."""
    x0, y0, x1, y1 = (int(v) for v in window)
    out = np.full((y1 - y0, x1 - x0, *image.shape[2:]), fill, dtype=image.dtype)
    part = image[y0:y1, x0:x1]
    out[: part.shape[0], : part.shape[1]] = part
    return out


@dataclass(frozen=True, eq=False)
class WindowObjects:
    """The objects of one window.

    Attributes:
        window: ``[x0, y0, x1, y1]`` of the window in image pixels.
        rows: ``(n,)`` rows of the objects in the input.
        quads_px: ``(n, 4, 2)`` geometry in the window frame (clipped where cut).
        truncated: ``(n,)`` the window cuts the object.
        below_iof: ``(n,)`` less than ``iof_thr`` of it is inside (kept only with
            ``partial="difficult"``; mark such objects difficult).
    """

    window: np.ndarray
    rows: np.ndarray
    quads_px: np.ndarray
    truncated: np.ndarray
    below_iof: np.ndarray


def _clip_to_window(quad: np.ndarray, window: np.ndarray) -> np.ndarray:
    """The part of a quad inside a window, as a quad in image pixels."""
    x0, y0, x1, y1 = (float(v) for v in window)
    poly = shapely.make_valid(shapely.Polygon(quad))
    part = poly.intersection(shapely.box(x0, y0, x1, y1))
    ring = shapely.remove_repeated_points(shapely.simplify(part, 0)).convex_hull
    pts = np.asarray(ring.exterior.coords)[:-1] if ring.geom_type == "Polygon" else None
    if pts is None or len(pts) != 4:
        pts = np.asarray(shapely.minimum_rotated_rectangle(part).exterior.coords)[:4]
        pts = np.clip(pts, [x0, y0], [x1, y1])
    return canonical_quad(pts)


def split_objects(
    quads_px: ArrayLike,
    windows: np.ndarray,
    *,
    iof_thr: float = 0.7,
    partial: Literal["drop", "difficult"] = "drop",
) -> list[WindowObjects]:
    """Assign objects to windows and move them into window frames (see the module doc).

    Args:
        quads_px: ``(N, ...)`` quads or horizontal boxes in image pixels.
        windows: ``(W, 4)`` windows from :func:`sliding_windows`.
        iof_thr: Least share of an object's area inside a window for it to count.
        partial: ``"drop"`` objects below ``iof_thr`` or keep them flagged
            ``below_iof`` (``"difficult"``, DOTA_devkit's label "2").

    Returns:
        One :class:`WindowObjects` per window, in window order.

    Raises:
        ValueError: For an ``iof_thr`` outside (0, 1], an unknown ``partial``, or an
            object without area (or with NaN / inf coordinates).
    """
    if not 0 < iof_thr <= 1:
        raise ValueError(f"iof_thr must lie in (0, 1], got {iof_thr}")
    if partial not in ("drop", "difficult"):
        raise ValueError(f"partial must be 'drop' or 'difficult', got {partial!r}")
    q = as_quads(quads_px)
    area = quad_areas(q)
    bad = np.flatnonzero(~(area > 0))
    if len(bad):
        raise ValueError(
            f"{len(bad)} object(s) have no area or non-finite coordinates (first: row "
            f"{bad[0]}, {q[bad[0]].reshape(-1).tolist()}); drop or fix them before splitting"
        )
    win = np.asarray(windows, dtype=np.float64).reshape(-1, 4)
    box = np.concatenate([q.min(axis=1), q.max(axis=1)], axis=1)
    io, iw = box_overlap_pairs(box, win)
    inter = quad_intersection_areas(q[io], as_quads(win[iw]))
    with np.errstate(invalid="ignore", divide="ignore"):
        iof = np.where(area[io] > 0, inter / np.where(area[io] > 0, area[io], 1.0), 0.0)
    inside = np.all((q[io] >= win[iw, None, :2]) & (q[io] <= win[iw, None, 2:]), axis=(1, 2))
    take = (iof >= iof_thr) | ((partial == "difficult") & (iof > 0))
    io, iw, iof, inside = io[take], iw[take], iof[take], inside[take]
    out = []
    for w in range(len(win)):
        sel = iw == w
        rows = io[sel]
        geom = q[rows].copy()
        for k in np.flatnonzero(~inside[sel]):
            geom[k] = _clip_to_window(geom[k], win[w])
        geom -= win[w, :2]
        out.append(WindowObjects(win[w].astype(np.int64), rows, geom, ~inside[sel],
                                 iof[sel] < iof_thr))  # fmt: skip
    return out


def rotated_nms(
    quads_px: ArrayLike,
    order: np.ndarray,
    iou_thr: float,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """Greedy polygon NMS: rows kept, in ``order``.

    A row is dropped when a kept row earlier in ``order`` (in the same group) overlaps it
    with IoU above ``iou_thr`` (DOTA_devkit ``py_cpu_nms_poly`` keeps IoU <= thr).
    """
    q = as_quads(quads_px)
    order = np.asarray(order, dtype=np.int64)
    ia, ib, iou = sparse_quad_iou(q, q, groups, groups, min_iou=iou_thr)
    over = (iou > iou_thr) & (ia != ib)
    ia, ib = ia[over], ib[over]
    starts = np.searchsorted(ia, np.arange(len(q) + 1))
    dropped = np.zeros(len(q), bool)
    kept = []
    for i in order.tolist():
        if dropped[i]:
            continue
        kept.append(i)
        dropped[ib[starts[i] : starts[i + 1]]] = True
    return np.array(kept, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class MergedDetections:
    """Detections of one image after the merge.

    Attributes:
        rows: ``(n,)`` rows of the kept detections in the input, in rank order.
        quads_px: ``(n, 4, 2)`` their geometry in image pixels.
        labels: ``(n,)`` their classes.
        scores: ``(n,)`` their scores (None when none were given).
    """

    rows: np.ndarray
    quads_px: np.ndarray
    labels: np.ndarray
    scores: np.ndarray | None


def merge_detections(
    windows: np.ndarray,
    window_index: Sequence[int] | np.ndarray,
    quads_px: ArrayLike,
    labels: Sequence[str],
    scores: Sequence[float] | np.ndarray | None = None,
    *,
    iou_thr: float = 0.1,
) -> MergedDetections:
    """Per-window detections back in the image frame, duplicates across windows removed.

    Args:
        windows: ``(W, 4)`` the windows of the image (:func:`sliding_windows`).
        window_index: ``(N,)`` the window each detection was made in.
        quads_px: ``(N, ...)`` geometry in its window's frame.
        labels: ``(N,)`` classes (NMS runs per class).
        scores: ``(N,)`` scores, or None (a model that writes text).
        iou_thr: NMS IoU threshold (0.1 as DOTA_devkit and MMRotate merge).

    Raises:
        ValueError: On columns of different lengths or a window index out of range.
    """
    win = np.asarray(windows, dtype=np.float64).reshape(-1, 4)
    wi = np.asarray(window_index, dtype=np.int64).reshape(-1)
    q = as_quads(quads_px)
    labels_arr = np.asarray(labels, dtype=str).reshape(-1)
    n = len(q)
    if len(wi) != n or len(labels_arr) != n or (scores is not None and len(scores) != n):
        raise ValueError(f"one window index, label (and score) per detection: {n} detections")
    if n and (wi.min() < 0 or wi.max() >= len(win)):
        raise ValueError(f"window_index must lie in [0, {len(win)}), got {wi.min()}..{wi.max()}")
    image_q = q + win[wi, None, :2]
    # distance to the nearest inner window edge (an edge not on the outline of all windows)
    lo, hi = win[:, :2].min(axis=0), win[:, 2:].max(axis=0)
    box = np.concatenate([q.min(axis=1), q.max(axis=1)], axis=1)
    size = win[wi, 2:] - win[wi, :2]
    gaps = np.stack([box[:, 0], box[:, 1], size[:, 0] - box[:, 2], size[:, 1] - box[:, 3]], 1)
    inner = np.concatenate([win[wi, :2] > lo, win[wi, 2:] < hi], axis=1)
    margin = np.where(inner, gaps, np.inf).min(axis=1)
    sc = np.zeros(n) if scores is None else np.asarray(scores, dtype=np.float64)
    order = np.lexsort((np.arange(n), -margin, -sc))
    _, groups = np.unique(labels_arr, return_inverse=True)
    keep = rotated_nms(image_q, order, iou_thr, groups)
    return MergedDetections(keep, image_q[keep], labels_arr[keep],
                            None if scores is None else sc[keep])  # fmt: skip


__all__ = [
    "GAP_PX",
    "WINDOW_PX",
    "MergedDetections",
    "WindowObjects",
    "crop_window",
    "merge_detections",
    "rotated_nms",
    "sliding_windows",
    "split_objects",
]
