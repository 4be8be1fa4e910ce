"""COCO-style masks without pycocotools: polygons, RLE, and the REFER ``refs`` pickle.

Referring-segmentation sets in the REFER layout (RefCOCO, RRSIS-D, RefSegRS, and
EarthMind-Bench's segmentation split) keep masks in a COCO ``instances.json``: each
annotation's ``segmentation`` is a list of polygons ``[[x1, y1, x2, y2, ...], ...]`` in
pixels, or run-length encoding (RLE) ``{"size": [h, w], "counts": ...}`` with ``counts``
a list of run lengths (uncompressed) or COCO's compressed string. The referring
expressions live in ``refs(<splitBy>).p``, a Python pickle of plain lists and dicts.

* :func:`decode_segmentation` turns either form into a boolean ``(h, w)`` mask. A polygon
  is filled pixel for pixel as pycocotools fills it (``maskApi.c``'s ``rleFrPoly``, the
  rasteriser behind ``annToMask`` and so behind the published referring-segmentation
  numbers), without depending on pycocotools: see :func:`polygon_mask`.
* :func:`encode_rle` writes a mask as uncompressed RLE (column-major, starting with a
  run of zeros), the JSON-ready form records and predictions carry.
* :func:`load_plain_pickle` reads a pickle that may hold only plain data (lists, dicts,
  strings, numbers): any class reference raises, so a tampered file cannot run code; a
  damaged one raises :class:`pickle.UnpicklingError` naming it, whatever the damage.

NumPy only.
"""

from __future__ import annotations

import io
import math
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np


class MaskFormatError(ValueError):
    """A segmentation that is neither polygons nor RLE of the stated size."""


def _string_counts(s: str) -> list[int]:
    """Run lengths from COCO's compressed RLE string (``maskApi.c``'s ``rleFrString``):
    6-bit characters offset by 48, five value bits each, bit 5 = more follows, bit 4 of
    the last character = negative; from the third run on, values are deltas from the run
    two before."""
    counts: list[int] = []
    p = 0
    while p < len(s):
        x = k = 0
        more = True
        while more:
            if p >= len(s):
                raise MaskFormatError("compressed RLE string ends inside a number")
            c = ord(s[p]) - 48
            if not 0 <= c < 64:
                raise MaskFormatError(f"compressed RLE holds an invalid character {s[p]!r}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def _rle_mask(rle: dict[str, Any]) -> np.ndarray:
    size = rle.get("size")
    if not (
        isinstance(size, Sequence) and len(size) == 2 and all(isinstance(v, int) for v in size)
    ):
        raise MaskFormatError(f"RLE size must be [height, width], got {size!r}")
    h, w = int(size[0]), int(size[1])
    counts = rle.get("counts")
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    if isinstance(counts, str):
        runs = _string_counts(counts)
    elif isinstance(counts, Sequence) and all(isinstance(v, int) for v in counts):
        runs = [int(v) for v in counts]
    else:
        raise MaskFormatError("RLE counts must be a list of run lengths or a COCO string")
    if any(r < 0 for r in runs) or sum(runs) != h * w:
        raise MaskFormatError(f"RLE runs sum to {sum(runs)}, not height x width = {h * w}")
    flat = np.zeros(h * w, dtype=bool)
    pos = 0
    for i, r in enumerate(runs):
        if i % 2:
            flat[pos : pos + r] = True
        pos += r
    return flat.reshape((w, h)).T  # column-major, as COCO stores it


def decode_segmentation(seg: Any, height: int, width: int) -> np.ndarray:
    """A COCO ``segmentation`` (polygons or RLE, or a list of RLEs) as a ``(height, width)``
    boolean mask; several parts are united.

    Raises:
        MaskFormatError: For anything else, or an RLE whose size is not ``(height, width)``.
    """
    mask = np.zeros((height, width), dtype=bool)
    if isinstance(seg, dict):
        seg = [seg]
    if not isinstance(seg, list):
        raise MaskFormatError(f"segmentation must be polygons or RLE, got {type(seg).__name__}")
    polygons = [p for p in seg if isinstance(p, list)]
    for part in seg:
        if isinstance(part, dict):
            m = _rle_mask(part)
            if m.shape != mask.shape:
                raise MaskFormatError(
                    f"RLE size {list(m.shape)} but the image is {height} x {width}"
                )
            mask |= m
        elif not isinstance(part, list):
            raise MaskFormatError(f"a segmentation part must be a polygon or RLE, got {part!r}")
    for poly in polygons:
        _fill_polygon(mask, _polygon_points(poly))
    return mask


#: pycocotools traces polygon edges on a grid 5 times finer than the pixels.
_UPSAMPLE = 5
#: Fine steps one polygon may take (a perimeter of 4 million pixels): beyond that the
#: coordinates cannot be pixels of an image, and the walk would exhaust memory.
_MAX_STEPS = 20_000_000


def _c_int(a: np.ndarray) -> np.ndarray:
    """C's ``(int)`` of doubles: truncation toward zero (not floor) for negative values."""
    return np.trunc(a).astype(np.int64)


def polygon_mask(xy: Sequence[float], height: int, width: int) -> np.ndarray:
    """A polygon ``[x1, y1, x2, y2, ...]`` filled as pycocotools fills it (``(h, w)`` bool).

    The method of ``rleFrPoly`` in pycocotools' ``maskApi.c``: vertices are rounded onto a
    grid 5 times finer than the pixels, each edge is walked one fine step at a time along
    its longer axis (the other coordinate rounded half up, from the edge's lower end);
    where the walk crosses the fine line through a pixel column's centre, the column
    toggles in and out of the polygon at the next pixel row (clamped to the image). The
    toggles, in column-major order, are the run-length encoding: so the rule is even-odd,
    and a pixel can differ from "its centre is inside" by the grid's rounding.
    """
    v = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    x0 = _c_int(_UPSAMPLE * v[:, 0] + 0.5)
    y0 = _c_int(_UPSAMPLE * v[:, 1] + 0.5)
    xs, ys = x0, y0  # each edge from vertex k to vertex k + 1
    xe, ye = np.roll(x0, -1), np.roll(y0, -1)
    dx, dy = np.abs(xe - xs), np.abs(ye - ys)
    along_x = dx >= dy
    flip = (along_x & (xs > xe)) | (~along_x & (ys > ye))
    # the walk starts from the lower end (so that rounding does not depend on direction)
    # but lists the points from the edge's first vertex to its last
    lo_x, hi_x = np.where(flip, xe, xs), np.where(flip, xs, xe)
    lo_y, hi_y = np.where(flip, ye, ys), np.where(flip, ys, ye)
    steps = np.where(along_x, dx, dy)
    if steps.sum() > _MAX_STEPS:
        raise MaskFormatError(
            f"a polygon with a perimeter of {steps.sum() / _UPSAMPLE:.0f} px (image "
            f"{height} x {width}): its coordinates are not pixels of this image"
        )
    # a zero-length edge is one point whose rounding never matters (C divides 0 by 0)
    run = np.where(along_x, hi_y - lo_y, hi_x - lo_x)
    slope = run / np.maximum(steps, 1)
    n = steps + 1
    edge = np.repeat(np.arange(len(v)), n)
    d = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    t = np.where(flip[edge], steps[edge] - d, d)
    rounded_x = _c_int(lo_x[edge] + slope[edge] * t + 0.5)
    rounded_y = _c_int(lo_y[edge] + slope[edge] * t + 0.5)
    u = np.where(along_x[edge], t + lo_x[edge], rounded_x)
    v_ = np.where(along_x[edge], rounded_y, t + lo_y[edge])
    # column crossings: consecutive points in different fine columns
    moved = u[1:] != u[:-1]
    cu = np.minimum(u[1:], u[:-1])[moved]
    cv = np.minimum(v_[1:], v_[:-1])[moved]
    col = (cu + 0.5) / _UPSAMPLE - 0.5
    keep = (np.floor(col) == col) & (col >= 0) & (col <= width - 1)
    row = np.ceil(np.clip((cv[keep] + 0.5) / _UPSAMPLE - 0.5, 0, height))
    toggles = col[keep].astype(np.int64) * height + row.astype(np.int64)
    # a pixel is in when an odd number of toggles lie at or before it (column-major);
    # toggles at one place cancel in pairs, one at h * w is past the image
    at, count = np.unique(toggles, return_counts=True)
    at = at[(count % 2 == 1) & (at < height * width)]
    flat = np.zeros(height * width, dtype=bool)
    flat[at] = True
    return np.logical_xor.accumulate(flat).reshape(width, height).T


def _fill_polygon(mask: np.ndarray, pts: list[tuple[float, float]]) -> None:
    """Unite ``mask`` with the polygon filled as pycocotools fills it."""
    h, w = mask.shape
    if h and w:
        mask |= polygon_mask([c for p in pts for c in p], h, w)


def _polygon_points(poly: list[Any]) -> list[tuple[float, float]]:
    """``[x1, y1, x2, y2, ...]`` or ``[[x1, y1], ...]`` -> points (at least three)."""
    if poly and all(isinstance(p, list | tuple) for p in poly):
        pts = [tuple(p) for p in poly]
    else:
        pts = [tuple(poly[i : i + 2]) for i in range(0, len(poly), 2)]
    ok = all(
        len(p) == 2
        and all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in p
        )
        for p in pts
    )
    if not ok or len(pts) < 3:
        raise MaskFormatError(
            f"a polygon needs at least three finite (x, y) points, got {str(poly)[:200]}"
        )
    return [(float(x), float(y)) for x, y in pts]


def encode_rle(mask: Any) -> dict[str, Any]:
    """A boolean mask as uncompressed COCO RLE ``{"size": [h, w], "counts": [...]}``."""
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise MaskFormatError(f"a mask must be 2-D, got shape {m.shape}")
    flat = m.T.reshape(-1)  # column-major
    change = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    edges = np.concatenate(([0], change, [flat.size]))
    runs = np.diff(edges).tolist()
    if flat.size and flat[0]:
        runs = [0, *runs]
    return {"size": [int(m.shape[0]), int(m.shape[1])], "counts": [int(r) for r in runs]}


#: Largest refs pickle read (bytes): the REFER files are a few MB.
MAX_PICKLE_BYTES = 256 << 20


def _unshared(load: Any) -> Any:
    """Wrap a memo ``GET`` loader: refuse a list, dict, set or tuple fetched a second time.

    A pickler writes plain data with each container once; a memo reference to one lets a
    file of a few kilobytes stand for billions of rows (one sentence list shared by every
    ref), which the reader would then turn into records one by one.
    """

    def get(self: _PlainUnpickler) -> None:
        load(self)
        if isinstance(self.stack[-1], list | dict | set | frozenset | tuple):
            raise pickle.UnpicklingError(
                "the pickle refers to one list or dict from two places; plain data files "
                "do not (a crafted file can stand for billions of rows that way)"
            )

    return get


def _refused(self: _PlainUnpickler) -> None:
    raise pickle.UnpicklingError(
        "the pickle builds or calls an object (or names a class); only plain lists, dicts, "
        "strings and numbers are accepted"
    )


_BASE_DISPATCH: dict[int, Any] = pickle._Unpickler.dispatch  # type: ignore[attr-defined]
_DISPATCH: dict[int, Any] = {
    **_BASE_DISPATCH,
    # no memo reference to a container (see _unshared)
    **{
        op[0]: _unshared(_BASE_DISPATCH[op[0]])
        for op in (pickle.GET, pickle.BINGET, pickle.LONG_BINGET)
    },
    # every opcode that names a class, calls or builds an object, or reads outside data
    **{
        op[0]: _refused
        for op in (
            pickle.GLOBAL,
            pickle.STACK_GLOBAL,
            pickle.REDUCE,
            pickle.BUILD,
            pickle.INST,
            pickle.OBJ,
            pickle.NEWOBJ,
            pickle.NEWOBJ_EX,
            pickle.EXT1,
            pickle.EXT2,
            pickle.EXT4,
            pickle.PERSID,
            pickle.BINPERSID,
            pickle.NEXT_BUFFER,
            pickle.READONLY_BUFFER,
        )
    },
}


class _PlainUnpickler(pickle._Unpickler):  # type: ignore[name-defined]
    """The pure-Python unpickler with every opcode that names a class, calls or builds an
    object refused, and no container shared.

    Pure Python on purpose: its memo is a dict, where the C unpickler's is an array sized
    by the index a ``PUT`` names, so that one damaged byte makes it allocate and clear up
    to 64 GiB (``LONG_BINPUT 0xffffffff``) before anything else fails. About 0.1 s per MB.
    """

    dispatch: ClassVar[dict[int, Any]] = _DISPATCH

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(
            f"the pickle names {module}.{name}; only plain lists, dicts, strings and numbers "
            "are accepted"
        )


def load_plain_pickle(path: Path) -> Any:
    """A pickle holding only plain data (lists, dicts, strings, numbers).

    No code runs: every class or function reference is refused. A damaged file fails
    with :class:`pickle.UnpicklingError` whatever the damage (a bad opcode argument
    raises ``AttributeError``, ``KeyError``, ``OverflowError``, ``MemoryError`` and the
    like inside the unpickler), naming the file and the error.

    Raises:
        pickle.UnpicklingError: If it references any class or function, shares a
            container, is over :data:`MAX_PICKLE_BYTES`, or is damaged.
    """
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_PICKLE_BYTES:
        raise pickle.UnpicklingError(
            f"{path}: {size:,} bytes, over the {MAX_PICKLE_BYTES:,} accepted for a refs pickle"
        )
    data = path.read_bytes()
    try:
        return _PlainUnpickler(io.BytesIO(data), encoding="latin1").load()
    except pickle.UnpicklingError as e:
        raise pickle.UnpicklingError(f"{path}: not a plain-data pickle ({e})") from None
    except Exception as e:  # damage (MemoryError, RecursionError too): no foreign code ran
        raise pickle.UnpicklingError(
            f"{path}: not a readable pickle ({type(e).__name__}: {str(e)[:200]})"
        ) from None


__all__ = [
    "MaskFormatError",
    "decode_segmentation",
    "encode_rle",
    "load_plain_pickle",
    "polygon_mask",
]
