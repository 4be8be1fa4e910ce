"""Aerial detection as text (RSCoVLM / LMMRotate): the target a VLM learns to write.

Two styles. ``plain``: one object per line, integer pixel coordinates, then a space and
the class name::

    12,40,30,44,28,52,10,48 small vehicle      (fmt="quad": four vertices)
    10,40,30,52 small vehicle                  (fmt="hbox": x1,y1,x2,y2)

``json``: a fenced list with one object per line, the layout Qwen2.5-VL emits and the
RSCoVLM release trains (geometry key first, then ``label``; key ``"bbox_2d"`` for
horizontal boxes, ``"quadrant bbox"`` for quads, see :data:`JSON_KEYS`; object lines
are indented by one tab)::

    ```json
    [
        {"quadrant bbox": [12, 40, 30, 44, 28, 52, 10, 48], "label": "small vehicle"}
    ]
    ```

Quad vertices are in the canonical order of :func:`earthvlm.geo.boxes.canonical_quad`
(clockwise on screen from the top-most vertex, min y then min x), recomputed *after*
rounding so that the integers themselves are canonical. Objects are grouped by class
name (sorted), then ordered by y1, then x1 (then the remaining coordinates, so the order
is total). An image with no object has the target :data:`NONE_TARGET` ("There is none.",
the paper's wording) in both styles; keep such images in training.

The matching parser, which also reads damaged model output, is
:func:`earthvlm.data.detection_parse.parse_detections`. Numpy only (no torch): the data
layer must import without the training stack.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np

from earthvlm.geo.boxes import canonical_quad, quad_to_xyxy, xyxy_to_quad

#: The target of an image without any object.
NONE_TARGET = "There is none."

DetectionFormat = Literal["quad", "hbox"]
DetectionStyle = Literal["plain", "json"]

#: The geometry key of the JSON style, per format (Qwen2.5-VL's ``bbox_2d``; the RSCoVLM
#: release's ``quadrant bbox`` for quads).
JSON_KEYS: dict[str, str] = {"hbox": "bbox_2d", "quad": "quadrant bbox"}


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
    style: DetectionStyle = "plain",
) -> str:
    """The detection target of a list of objects, as plain lines or as JSON.

    Args:
        objects: ``(class name, geometry)`` pairs; a geometry is a quad (8 values or a
            (4, 2) array) or a horizontal box ``[x1, y1, x2, y2]``, in pixels. Either
            kind is converted to ``fmt``.
        fmt: ``"quad"`` (``x1,y1,...,x4,y4 class``) or ``"hbox"`` (``x1,y1,x2,y2 class``).
        style: ``"plain"`` (one line per object) or ``"json"`` (a fenced JSON list, one
            object per line, keys from :data:`JSON_KEYS`).

    Returns:
        The objects grouped by class (sorted), then ordered by y1, then x1;
        :data:`NONE_TARGET` when ``objects`` is empty, in either style.

    Raises:
        ValueError: For an unknown format or style, a malformed box, or a class name
            that is empty, padded with spaces or holds a line break.
    """
    if fmt not in ("quad", "hbox"):
        raise ValueError(f"fmt must be 'quad' or 'hbox', got {fmt!r}")
    if style not in ("plain", "json"):
        raise ValueError(f"style must be 'plain' or 'json', got {style!r}")
    rows: list[tuple[str, tuple[int, ...]]] = []
    for cls, geom in objects:
        if not cls or cls != cls.strip() or "\n" in cls or "\r" in cls:
            raise ValueError(f"bad class name {cls!r}: non-empty, no padding, no line break")
        rows.append((cls, _geometry(geom, fmt)))
    if not rows:
        return NONE_TARGET
    rows.sort(key=lambda r: (r[0], r[1][1], r[1][0], r[1]))
    if style == "plain":
        return "\n".join(",".join(str(v) for v in coords) + " " + cls for cls, coords in rows)
    key = json.dumps(JSON_KEYS[fmt])
    lines = [
        f'\t{{{key}: {json.dumps(list(coords))}, "label": {json.dumps(cls, ensure_ascii=False)}}}'
        for cls, coords in rows
    ]
    return "```json\n[\n" + ",\n".join(lines) + "\n]\n```"


__all__ = ["JSON_KEYS", "NONE_TARGET", "DetectionFormat", "DetectionStyle", "serialise_detections"]
