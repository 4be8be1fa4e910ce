"""Aerial detection as plain text (RSCoVLM / LMMRotate): the target a VLM learns to write.

One object per line, integer pixel coordinates, then a space and the class name::

    12,40,30,44,28,52,10,48 small vehicle      (fmt="quad": four vertices)
    10,40,30,52 small vehicle                  (fmt="hbox": x1,y1,x2,y2)

Quad vertices are in the canonical order of :func:`earthvlm.geo.boxes.canonical_quad`
(clockwise on screen from the top-most vertex, min y then min x), recomputed *after*
rounding so that the integers themselves are canonical. Lines are sorted by class name,
then y1, then x1 (then the remaining coordinates, so the order is total). An image with
no object has the target :data:`NONE_TARGET` ("There is none.", the paper's wording);
keep such images in training.

Numpy only (no torch): the data layer must import without the training stack. The
matching parser will live here too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np

from earthvlm.geo.boxes import canonical_quad, quad_to_xyxy, xyxy_to_quad

#: The target of an image without any object.
NONE_TARGET = "There is none."

DetectionFormat = Literal["quad", "hbox"]


def _round(v: float) -> int:
    """Round half up (not Python's half-to-even), so x.5 always goes the same way."""
    return math.floor(float(v) + 0.5)


def _geometry(geom: Sequence[float] | np.ndarray, fmt: DetectionFormat) -> tuple[int, ...]:
    a = np.asarray(geom, dtype=np.float64).reshape(-1)
    if a.size not in (4, 8):
        raise ValueError(
            f"a box needs 4 values (x1, y1, x2, y2) or 8 (a quad), got {a.size}: {a.tolist()}"
        )
    if not np.all(np.isfinite(a)):
        raise ValueError(f"box has NaN or inf: {a.tolist()}")
    if fmt == "hbox":
        xyxy = quad_to_xyxy(a) if a.size == 8 else a
        return tuple(_round(v) for v in xyxy)
    quad = xyxy_to_quad(a) if a.size == 4 else a.reshape(4, 2)
    rounded = np.array([[_round(x), _round(y)] for x, y in quad], dtype=np.float64)
    return tuple(int(v) for v in canonical_quad(rounded).reshape(-1))


def serialise_detections(
    objects: Iterable[tuple[str, Sequence[float] | np.ndarray]],
    fmt: DetectionFormat = "quad",
) -> str:
    """The plain-text detection target of a list of objects.

    Args:
        objects: ``(class name, geometry)`` pairs; a geometry is a quad (8 values or a
            (4, 2) array) or a horizontal box ``[x1, y1, x2, y2]``, in pixels. Either
            kind is converted to ``fmt``.
        fmt: ``"quad"`` (``x1,y1,...,x4,y4 class``) or ``"hbox"`` (``x1,y1,x2,y2 class``).

    Returns:
        One line per object, sorted by class, then y1, then x1; :data:`NONE_TARGET`
        when ``objects`` is empty.

    Raises:
        ValueError: For an unknown format, a malformed box, or a class name that is
            empty, padded with spaces or holds a line break.
    """
    if fmt not in ("quad", "hbox"):
        raise ValueError(f"fmt must be 'quad' or 'hbox', got {fmt!r}")
    rows: list[tuple[str, tuple[int, ...]]] = []
    for cls, geom in objects:
        if not cls or cls != cls.strip() or "\n" in cls or "\r" in cls:
            raise ValueError(f"bad class name {cls!r}: non-empty, no padding, no line break")
        rows.append((cls, _geometry(geom, fmt)))
    if not rows:
        return NONE_TARGET
    rows.sort(key=lambda r: (r[0], r[1][1], r[1][0], r[1]))
    return "\n".join(",".join(str(v) for v in coords) + " " + cls for cls, coords in rows)


__all__ = ["NONE_TARGET", "DetectionFormat", "serialise_detections"]
