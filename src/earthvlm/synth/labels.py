"""Labels of a rendered scene: per-object boxes in pixels, visibility, masks, counts.

Boxes go through :mod:`earthvlm.geo.boxes` (canonical quad order) so every synthetic
label agrees with the rest of the project. Visibility follows the usual overhead-imagery
rules of thumb (the project's physical-facts notes): an object is *detectable* from
about 2 pixels along its length and *identifiable* from about 8; questions only ask
about what the GSD lets the image show.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from earthvlm.geo.boxes import canonical_quad, quad_to_xyxy
from earthvlm.synth.catalogue import CLASSES, PlacedObject
from earthvlm.synth.materials import COLOUR_NAMES
from earthvlm.synth.render import Canvas
from earthvlm.synth.scene import Scene

#: Pixels along an object's length from which it is detectable / identifiable.
DETECTABLE_PX = 2.0
IDENTIFIABLE_PX = 8.0


@dataclass(frozen=True)
class ObjectLabel:
    """One object as the image shows it.

    Attributes:
        index: Position in the scene's object list (instance id - 1 in the mask).
        cls: Class name.
        quad_px: Canonical quad (4, 2) in pixels.
        xyxy_px: Enclosing horizontal box in pixels.
        obb_px: ``(cx, cy, w, h, angle_deg)`` in pixels.
        length_px: Length in pixels (physical length / GSD).
        width_px: Width in pixels.
        colour: A colour word for the body, when it has one.
    """

    index: int
    cls: str
    quad_px: np.ndarray
    xyxy_px: np.ndarray
    obb_px: tuple[float, float, float, float, float]
    length_px: float
    width_px: float
    colour: str | None

    @property
    def detectable(self) -> bool:
        """At least :data:`DETECTABLE_PX` long and a pixel wide."""
        return self.length_px >= DETECTABLE_PX and self.width_px >= 1.0

    @property
    def identifiable(self) -> bool:
        """At least :data:`IDENTIFIABLE_PX` long: its class can be told from pixels."""
        return self.length_px >= IDENTIFIABLE_PX

    @property
    def centre_px(self) -> tuple[float, float]:
        return self.obb_px[0], self.obb_px[1]


def label_object(obj: PlacedObject, index: int, canvas: Canvas) -> ObjectLabel:
    """The pixel-space label of one placed object on ``canvas``."""
    g = canvas.gsd_m
    corners = np.array([canvas.to_px(x, y) for x, y in obj.corners_m()])
    quad = canonical_quad(corners)
    cx, cy = canvas.to_px(obj.x_m, obj.y_m)
    return ObjectLabel(
        index=index,
        cls=obj.cls,
        quad_px=quad,
        xyxy_px=quad_to_xyxy(quad),
        obb_px=(cx, cy, obj.length_m / g, obj.width_m / g, obj.heading_deg % 360.0),
        length_px=obj.length_m / g,
        width_px=obj.width_m / g,
        colour=COLOUR_NAMES.get(obj.body),
    )


def label_scene(scene: Scene, canvas: Canvas) -> list[ObjectLabel]:
    """Labels of every placed object, in scene order."""
    return [label_object(o, i, canvas) for i, o in enumerate(scene.objects)]


def counts(labels: list[ObjectLabel], *, detectable_only: bool = True) -> Counter[str]:
    """Objects per class (by default only the detectable ones)."""
    return Counter(lb.cls for lb in labels if lb.detectable or not detectable_only)


def instance_mask(scene: Scene, canvas: Canvas) -> np.ndarray:
    """A (H, W) uint16 map: 0 background, k + 1 where object k's outline (the union of
    its drawn parts: a plane's fuselage, wings and tail, not their enclosing square)
    covers the pixel centre (later objects on top)."""
    mask = np.zeros((canvas.height, canvas.width), dtype=np.uint16)
    g = canvas.gsd_m
    for k, obj in enumerate(scene.objects):
        corners = obj.corners_m()
        c0, r0 = canvas.to_px(*corners.min(axis=0))
        c1, r1 = canvas.to_px(*corners.max(axis=0))
        c0, r0 = max(0, math.floor(c0)), max(0, math.floor(r0))
        c1, r1 = min(canvas.width, math.ceil(c1)), min(canvas.height, math.ceil(r1))
        if c1 <= c0 or r1 <= r0:
            continue
        xs = canvas.origin_m[0] + (np.arange(c0, c1) + 0.5) * g - obj.x_m
        ys = canvas.origin_m[1] + (np.arange(r0, r1) + 0.5) * g - obj.y_m
        c, s = math.cos(math.radians(obj.heading_deg)), math.sin(math.radians(obj.heading_deg))
        inside = np.zeros((r1 - r0, c1 - c0), dtype=bool)
        for part in CLASSES[obj.cls].parts:  # placed as Canvas.paint_object places them
            du, dv = part.dx * obj.length_m, part.dy * obj.width_m
            px, py = xs - (du * c + dv * s), ys - (-du * s + dv * c)
            a = math.radians(obj.heading_deg + part.angle)
            ca, sa = math.cos(a), math.sin(a)
            u = px[None, :] * ca - py[:, None] * sa
            v = px[None, :] * sa + py[:, None] * ca
            hl, hw = part.length * obj.length_m / 2, part.width * obj.width_m / 2
            if part.shape == "ellipse":
                inside |= (u / hl) ** 2 + (v / hw) ** 2 <= 1
            else:
                inside |= (np.abs(u) <= hl) & (np.abs(v) <= hw)
        mask[r0:r1, c0:c1][inside] = k + 1
    return mask
