"""Box formats and conversions: the one home of box geometry.

Formats (all in pixels of one image; x right, y down):

* ``xyxy``: ``[x1, y1, x2, y2]``, horizontal.
* ``quad``: ``[x1, y1, ..., x4, y4]``, four vertices. Canonical order: clockwise as seen
  on screen, starting from the top-most vertex (min y, then min x), the order aerial
  detection as text uses (RSCoVLM / LMMRotate).
* ``obb``: ``[cx, cy, w, h, angle_deg]``, ``w`` along the box's own x axis, rotated
  counter-clockwise on screen by ``angle_deg``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np


def obb_to_quad(cx: float, cy: float, w: float, h: float, angle_deg: float) -> np.ndarray:
    """The four corners (4, 2) of an oriented box, in canonical order."""
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    local = np.array([(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)])
    xs = cx + local[:, 0] * c + local[:, 1] * s
    ys = cy - local[:, 0] * s + local[:, 1] * c
    return canonical_quad(np.stack([xs, ys], axis=1))


def canonical_quad(quad: Sequence[float] | np.ndarray) -> np.ndarray:
    """The quad's vertices clockwise on screen from the top-most (min y, then min x) one.

    A simple quad keeps its cycle of vertices (only its direction and first vertex
    change), so a concave quad stays the polygon it was drawn as. A quad whose edges
    cross (a bow-tie order) or that has no area is re-read in angular order around the
    vertex mean, the simple quad through the same points.

    Accepts a flat ``[x1, y1, ..., x4, y4]`` or a (4, 2) array; returns (4, 2).
    """
    from earthvlm.geo.iou import self_intersecting  # iou imports nothing from here

    q = np.asarray(quad, dtype=np.float64).reshape(4, 2)
    rel = q - q[0]
    # > 0: clockwise on screen (y down)
    x, y = rel[:, 0], rel[:, 1]
    signed = float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))
    if signed != 0 and np.isfinite(signed) and not self_intersecting(q[None])[0]:
        q = q if signed > 0 else q[::-1]
    else:
        centre = q.mean(axis=0)
        # clockwise on screen (y down) is increasing atan2(dy, dx)
        order = np.argsort(np.arctan2(q[:, 1] - centre[1], q[:, 0] - centre[0]), kind="stable")
        q = q[order]
    top = min(range(4), key=lambda i: (q[i, 1], q[i, 0]))
    return np.roll(q, -top, axis=0)


def quad_to_xyxy(quad: Sequence[float] | np.ndarray) -> np.ndarray:
    """The horizontal box ``[x1, y1, x2, y2]`` enclosing a quad."""
    q = np.asarray(quad, dtype=np.float64).reshape(-1, 2)
    return np.array([q[:, 0].min(), q[:, 1].min(), q[:, 0].max(), q[:, 1].max()])


def xyxy_to_quad(xyxy: Sequence[float]) -> np.ndarray:
    """The four corners (4, 2) of a horizontal box, canonical order."""
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    return np.array([(x1, y1), (x2, y1), (x2, y2), (x1, y2)])


def quad_area(quad: Sequence[float] | np.ndarray) -> float:
    """The polygon area of a quad (shoelace), in square pixels."""
    q = np.asarray(quad, dtype=np.float64).reshape(-1, 2)
    x, y = q[:, 0], q[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)))


def clip_xyxy(xyxy: Sequence[float], width: float, height: float) -> np.ndarray:
    """Clip a horizontal box to the image ``[0, width] x [0, height]``."""
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    return np.array([min(max(x1, 0), width), min(max(y1, 0), height),
                     min(max(x2, 0), width), min(max(y2, 0), height)])  # fmt: skip


# -- validation and repair: the quarantine reasons ---------------------------------------

#: Reasons a box is refused, shared by dataset quarantine and model-output parsing (where
#: they overlap, the same strings as the record validator's error types).
BOX_NOT_NUMERIC = "box_not_numeric"
BOX_WRONG_LENGTH = "box_wrong_length"
BOX_NOT_FINITE = "box_not_finite"
BOX_DEGENERATE = "box_degenerate"
BOX_INVERTED = "box_inverted"
BOX_OUT_OF_IMAGE = "box_out_of_image"

#: Box kinds by number of values: ``xyxy`` (4), ``quad`` (8), ``obb`` (5).
BoxKind = Literal["xyxy", "quad", "obb"]
_KIND_BY_SIZE: dict[int, BoxKind] = {4: "xyxy", 8: "quad", 5: "obb"}


def _box_values(values: object, kind: BoxKind | None) -> tuple[np.ndarray, BoxKind] | str:
    """The values as a flat float array and their kind, or why they are not a box."""
    if kind is not None and kind not in ("xyxy", "quad", "obb"):
        raise ValueError(f"kind must be 'xyxy', 'quad', 'obb' or None, got {kind!r}")
    try:
        a = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError, OverflowError):
        return BOX_NOT_NUMERIC
    found = _KIND_BY_SIZE.get(a.size)
    if found is None or (kind is not None and kind != found):
        return BOX_WRONG_LENGTH
    if not np.all(np.isfinite(a)):
        return BOX_NOT_FINITE
    return a, found


def _check_image_size(width: float, height: float) -> None:
    if not (math.isfinite(width) and math.isfinite(height) and width > 0 and height > 0):
        raise ValueError(f"image size must be finite and positive, got {width} x {height}")


def quad_is_degenerate(quad: Sequence[float] | np.ndarray) -> bool:
    """True when a quad spans no area: coincident or collinear vertices.

    Judged on the canonical order (so a "bow-tie" vertex order is not degenerate) and
    relative to the quad's extent, so float rounding in large coordinates does not count.
    """
    with np.errstate(all="ignore"):
        q = canonical_quad(quad)
        lo, extent = q.min(axis=0), q.max(axis=0) - q.min(axis=0)
        if not np.all(np.isfinite(extent)):
            return False
        if extent[0] <= 0 or extent[1] <= 0:
            return True
        return quad_area((q - lo) / extent) <= 1e-9


def box_problem(
    values: object,
    kind: BoxKind | None = None,
    *,
    width: float | None = None,
    height: float | None = None,
    tol_px: float = 0.0,
) -> str | None:
    """Why ``values`` is not a valid box (one of the ``BOX_*`` reasons), or None.

    Checks, in order: numbers (:data:`BOX_NOT_NUMERIC`), 4, 8 or 5 of them, or the count
    of ``kind`` (:data:`BOX_WRONG_LENGTH`), finite (:data:`BOX_NOT_FINITE`), an area
    (:data:`BOX_DEGENERATE`: zero width or height, coincident or collinear quad vertices;
    :data:`BOX_INVERTED`: an ``xyxy`` with ``x2 < x1`` or ``y2 < y1``), and, when the image
    size is given, every corner inside it up to ``tol_px`` (:data:`BOX_OUT_OF_IMAGE`).
    A quad's vertex order is not checked: :func:`canonical_quad` restores it.

    Args:
        values: ``xyxy``, ``quad`` (flat or (4, 2)) or ``obb`` values, in pixels.
        kind: The expected kind; None infers it from the number of values.
        width: Image width in pixels (with ``height``, enables the image check).
        height: Image height in pixels.
        tol_px: How far outside the image a corner may lie (annotation tools round).

    Raises:
        ValueError: Only for a bad ``kind`` or image size, never for bad ``values``.
    """
    if width is not None or height is not None:
        _check_image_size(float(width or 0), float(height or 0))
    got = _box_values(values, kind)
    if isinstance(got, str):
        return got
    with np.errstate(all="ignore"):
        return _problem(*got, width=width, height=height, tol_px=tol_px)


def _problem(
    a: np.ndarray, kind: BoxKind, *, width: float | None, height: float | None, tol_px: float
) -> str | None:
    if kind == "xyxy":
        x1, y1, x2, y2 = a
        if x2 == x1 or y2 == y1:
            return BOX_DEGENERATE
        if x2 < x1 or y2 < y1:
            return BOX_INVERTED
        corners = a.reshape(2, 2)
    elif kind == "obb":
        corners = obb_to_quad(*a)
        if not np.all(np.isfinite(corners)):
            return BOX_NOT_FINITE
        if a[2] <= 0 or a[3] <= 0 or quad_is_degenerate(corners):  # tiny next to the centre
            return BOX_DEGENERATE
    else:
        if quad_is_degenerate(a):
            return BOX_DEGENERATE
        corners = a.reshape(4, 2)
    if width is not None and height is not None:
        xs, ys = corners[:, 0], corners[:, 1]
        if (
            xs.min() < -tol_px
            or ys.min() < -tol_px
            or xs.max() > width + tol_px
            or ys.max() > height + tol_px
        ):
            return BOX_OUT_OF_IMAGE
    return None


def clip_quad(quad: Sequence[float] | np.ndarray, width: float, height: float) -> np.ndarray:
    """Clamp a quad's vertices into ``[0, width] x [0, height]``; canonical (4, 2).

    Exact for an axis-aligned quad. For a rotated quad crossing the border it is an
    approximation: the exact intersection can have up to 8 vertices, and a quad is
    what the text formats can carry.
    """
    q = np.asarray(quad, dtype=np.float64).reshape(4, 2)
    q = np.stack([np.clip(q[:, 0], 0, width), np.clip(q[:, 1], 0, height)], axis=1)
    return canonical_quad(q)


@dataclass(frozen=True)
class FixedBox:
    """What :func:`normalise_box` made of a box.

    Attributes:
        values: The repaired box: ``xyxy`` (4 values) for an ``xyxy`` input, else a
            canonical quad (8 values); None when refused.
        problem: Why it was refused (a ``BOX_*`` reason), or None.
        repairs: What was repaired: ``swapped_corners``, ``vertex_order``, ``clipped``.
    """

    values: tuple[float, ...] | None
    problem: str | None = None
    repairs: tuple[str, ...] = ()


def normalise_box(
    values: object, kind: BoxKind | None = None, *, width: float, height: float
) -> FixedBox:
    """Repair what can be repaired in a box and say why the rest is refused.

    Repairs (in ``FixedBox.repairs``): an ``xyxy`` with swapped corners
    (``swapped_corners``); quad vertices not in canonical order (``vertex_order``); a box
    reaching outside the image (``clipped``: :func:`clip_xyxy` or :func:`clip_quad`).
    Refusals: the reasons of :func:`box_problem` for malformed or degenerate values, and
    :data:`BOX_OUT_OF_IMAGE` when no area is left inside the image after clipping. An
    ``obb`` becomes its canonical quad.

    Raises:
        ValueError: Only for a bad ``kind`` or image size, never for bad ``values``.
    """
    _check_image_size(width, height)
    got = _box_values(values, kind)
    if isinstance(got, str):
        return FixedBox(None, got)
    with np.errstate(all="ignore"):  # huge but finite values overflow to inf, then clip
        return _normalise(*got, width=width, height=height)


def _normalise(a: np.ndarray, kind: BoxKind, *, width: float, height: float) -> FixedBox:
    repairs: list[str] = []
    if kind == "xyxy":
        x1, y1, x2, y2 = (float(v) for v in a)
        if x2 == x1 or y2 == y1:
            return FixedBox(None, BOX_DEGENERATE)
        if x2 < x1 or y2 < y1:
            x1, x2, y1, y2 = min(x1, x2), max(x1, x2), min(y1, y2), max(y1, y2)
            repairs.append("swapped_corners")
        if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
            repairs.append("clipped")
            x1, y1, x2, y2 = (float(v) for v in clip_xyxy((x1, y1, x2, y2), width, height))
            if x2 <= x1 or y2 <= y1:
                return FixedBox(None, BOX_OUT_OF_IMAGE)
        return FixedBox((x1, y1, x2, y2), None, tuple(repairs))
    if kind == "obb":
        if a[2] <= 0 or a[3] <= 0:
            return FixedBox(None, BOX_DEGENERATE)
        q = obb_to_quad(*a)
        if not np.all(np.isfinite(q)):
            return FixedBox(None, BOX_NOT_FINITE)
        if quad_is_degenerate(q):
            return FixedBox(None, BOX_DEGENERATE)
    else:
        q = a.reshape(4, 2)
        if quad_is_degenerate(q):
            return FixedBox(None, BOX_DEGENERATE)
        canonical = canonical_quad(q)
        if not np.array_equal(canonical, q):
            repairs.append("vertex_order")
        q = canonical
    if q[:, 0].min() < 0 or q[:, 1].min() < 0 or q[:, 0].max() > width or q[:, 1].max() > height:
        repairs.append("clipped")
        q = clip_quad(q, width, height)
        if quad_is_degenerate(q):
            return FixedBox(None, BOX_OUT_OF_IMAGE)
    return FixedBox(tuple(float(v) for v in q.reshape(-1)), None, tuple(repairs))


# -- frames: the pixels of the source image <-> the coordinates a model reads and writes --

#: Frames a backbone writes boxes in (``Backbone.box_frame``): Qwen2.5-VL grounds in
#: absolute pixels of the resized image it saw, Qwen3-VL in coordinates normalised to
#: 0-1000 along each axis.
BOX_FRAMES = ("abs_px_resized", "norm1000")


def _coords(coords: Sequence[float] | np.ndarray) -> np.ndarray:
    a = np.array(coords, dtype=np.float64)  # a copy: callers get a new array
    if a.ndim == 0 or a.shape[-1] % 2:
        raise ValueError(
            f"coordinates of shape {a.shape}: the last axis must alternate x and y (an xyxy "
            "box (4,), a flat quad (8,), points (..., 2), or stacks of these)"
        )
    return a


def scale_xy(coords: Sequence[float] | np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Coordinates with every x multiplied by ``sx`` and every y by ``sy``.

    ``coords`` is any array whose last axis alternates x and y: an xyxy box (4,), a flat
    quad (8,), points or a (4, 2) quad, or stacks of these ((N, 4), (N, 8), (N, 4, 2)).
    Coordinates are continuous, with pixel edges at integers (the image spans
    ``[0, width] x [0, height]``), the convention under which a resize of the whole image
    maps edge to edge and a box scales exactly by the side ratios.
    """
    out = _coords(coords)
    out[..., 0::2] *= sx
    out[..., 1::2] *= sy
    return out


def _check_hw(name: str, hw: Sequence[int]) -> tuple[int, int]:
    if len(hw) != 2 or min(hw) <= 0:
        raise ValueError(f"{name}={tuple(hw)}: give (height, width) in pixels, both > 0")
    return int(hw[0]), int(hw[1])


def _frame_scale(
    frame: str, source_hw: Sequence[int], resized_hw: Sequence[int], *, inverse: bool = False
) -> tuple[float, float]:
    """``(sx, sy)`` from source pixels to ``frame`` (or back, with ``inverse``)."""
    (sh, sw), (rh, rw) = _check_hw("source_hw", source_hw), _check_hw("resized_hw", resized_hw)
    if frame == "abs_px_resized":
        (fx, fy) = (rw, rh)
    elif frame == "norm1000":
        (fx, fy) = (1000, 1000)
    else:
        raise ValueError(f"frame={frame!r}: choose one of {list(BOX_FRAMES)}")
    return (sw / fx, sh / fy) if inverse else (fx / sw, fy / sh)


def px_to_frame(
    coords_px: Sequence[float] | np.ndarray,
    frame: str,
    *,
    source_hw: Sequence[int],
    resized_hw: Sequence[int],
) -> np.ndarray:
    """Source-image pixel coordinates -> the frame a model writes boxes in.

    Args:
        coords_px: Boxes or quads in pixels of the source image (see :func:`scale_xy`).
        frame: ``"abs_px_resized"`` (pixels of the resized image: Qwen2.5-VL) or
            ``"norm1000"`` (0-1000 along each axis: Qwen3-VL).
        source_hw: ``(height, width)`` of the source image in pixels.
        resized_hw: ``(height, width)`` of the image the model sees (after
            :func:`earthvlm.data.resolution.smart_resize`); unused by ``"norm1000"``,
            which does not depend on it.

    Returns:
        Float coordinates (not rounded: text serialisation rounds).
    """
    sx, sy = _frame_scale(frame, source_hw, resized_hw)
    return scale_xy(coords_px, sx, sy)


def frame_to_px(
    coords: Sequence[float] | np.ndarray,
    frame: str,
    *,
    source_hw: Sequence[int],
    resized_hw: Sequence[int],
) -> np.ndarray:
    """The inverse of :func:`px_to_frame`: a model's coordinates -> source-image pixels,
    for evaluation against source annotations and for cropping the native image."""
    sx, sy = _frame_scale(frame, source_hw, resized_hw, inverse=True)
    return scale_xy(coords, sx, sy)
