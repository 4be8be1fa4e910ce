"""COCO-style masks without pycocotools: polygons, RLE, and the REFER ``refs`` pickle.

Referring-segmentation sets in the REFER layout (RefCOCO, RRSIS-D, RefSegRS, and
EarthMind-Bench's segmentation split) keep masks in a COCO ``instances.json``: each
annotation's ``segmentation`` is a list of polygons ``[[x1, y1, x2, y2, ...], ...]`` in
pixels, or run-length encoding (RLE) ``{"size": [h, w], "counts": ...}`` with ``counts``
a list of run lengths (uncompressed) or COCO's compressed string. The referring
expressions live in ``refs(<splitBy>).p``, a Python pickle of plain lists and dicts.

* :func:`decode_segmentation` turns either form into a boolean ``(h, w)`` mask. A polygon
  fills the pixels whose centre lies inside it (pycocotools is not a dependency; its
  rasteriser agrees on the area, e.g. 4 x 3 pixels for a 4 x 3 rectangle, and can differ
  on a pixel cut by an oblique edge).
* :func:`encode_rle` writes a mask as uncompressed RLE (column-major, starting with a
  run of zeros), the JSON-ready form records and predictions carry.
* :func:`load_plain_pickle` reads a pickle that may hold only plain data (lists, dicts,
  strings, numbers): any class reference raises, so a tampered file cannot run code.

NumPy only.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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


def _fill_polygon(mask: np.ndarray, pts: list[tuple[float, float]]) -> None:
    """Set the pixels whose centre lies inside the polygon (even-odd rule), so that a
    rectangle ``[1, 1, 5, 1, 5, 4, 1, 4]`` fills 4 x 3 pixels, its area."""
    h, w = mask.shape
    xs = np.array([p[0] for p in pts])
    ys = np.array([p[1] for p in pts])
    x0, x1 = max(int(np.floor(xs.min())), 0), min(int(np.ceil(xs.max())), w)
    y0, y1 = max(int(np.floor(ys.min())), 0), min(int(np.ceil(ys.max())), h)
    if x0 >= x1 or y0 >= y1:
        return
    px, py = np.meshgrid(np.arange(x0, x1) + 0.5, np.arange(y0, y1) + 0.5)
    inside = np.zeros(px.shape, dtype=bool)
    for (xi, yi), (xj, yj) in zip(pts, pts[1:] + pts[:1], strict=True):
        if yi == yj:
            continue  # a horizontal edge crosses no scan line through a centre
        crosses = (yi > py) != (yj > py)
        inside ^= crosses & (px < (xj - xi) * (py - yi) / (yj - yi) + xi)
    mask[y0:y1, x0:x1] |= inside


def _polygon_points(poly: list[Any]) -> list[tuple[float, float]]:
    """``[x1, y1, x2, y2, ...]`` or ``[[x1, y1], ...]`` -> points (at least three)."""
    if poly and all(isinstance(p, list | tuple) for p in poly):
        pts = [tuple(p) for p in poly]
    else:
        pts = [tuple(poly[i : i + 2]) for i in range(0, len(poly), 2)]
    ok = all(
        len(p) == 2 and all(isinstance(v, int | float) and not isinstance(v, bool) for v in p)
        for p in pts
    )
    if not ok or len(pts) < 3:
        raise MaskFormatError(f"a polygon needs at least three (x, y) points, got {poly!r}")
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


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(
            f"the pickle names {module}.{name}; only plain lists, dicts, strings and numbers "
            "are accepted"
        )


def load_plain_pickle(path: Path) -> Any:
    """A pickle holding only plain data.

    Raises:
        pickle.UnpicklingError: If it references any class or function, or is damaged.
    """
    data = Path(path).read_bytes()
    try:
        return _PlainUnpickler(io.BytesIO(data), encoding="latin1").load()
    except (EOFError, ValueError, TypeError) as e:
        raise pickle.UnpicklingError(f"{path}: not a readable pickle ({e})") from None


__all__ = [
    "MaskFormatError",
    "decode_segmentation",
    "encode_rle",
    "load_plain_pickle",
]
