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

import numpy as np


def obb_to_quad(cx: float, cy: float, w: float, h: float, angle_deg: float) -> np.ndarray:
    """The four corners (4, 2) of an oriented box, in canonical order."""
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    local = np.array([(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)])
    xs = cx + local[:, 0] * c + local[:, 1] * s
    ys = cy - local[:, 0] * s + local[:, 1] * c
    return canonical_quad(np.stack([xs, ys], axis=1))


def canonical_quad(quad: Sequence[float] | np.ndarray) -> np.ndarray:
    """Reorder four vertices clockwise on screen from the top-most (min y, then min x) one.

    Accepts a flat ``[x1, y1, ..., x4, y4]`` or a (4, 2) array; returns (4, 2).
    """
    q = np.asarray(quad, dtype=np.float64).reshape(4, 2)
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
