"""The object catalogue of the synthetic world: physical sizes, shapes, materials.

Sizes are the commonly published ones (see the project's physical-facts notes): a car
is 4.5 x 1.8 m, a tennis court 23.77 x 10.97 m, a narrow-body airliner 38 m long. An
object is drawn from parts (oriented rectangles and ellipses in metres, relative to
its centre and heading), so what an image shows depends on the GSD: a car is a clear
shape at 0.1 m, a smudge at 1 m and gone at 10 m.

Scale ambiguity by design: :data:`AMBIGUOUS_PAIRS` lists classes that look alike in
pixels at different GSDs (a car at 0.3 m and a building at 3 m are both a 2.5:1
rectangle of ~15 px; a storage tank at 0.5 m and a roundabout at 5 m are both discs of
~30 px). :data:`CONFUSION` gives the hard negative of each class for "is this A or
B?" questions (ScaleEarth sec. 2.3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Part:
    """One drawable part of an object, in metres relative to the object's centre.

    The object's length runs along its heading (local x); width along local y.

    Attributes:
        shape: ``rect`` or ``ellipse``.
        dx: Centre offset along the length, as a fraction of the object's length.
        dy: Centre offset across, as a fraction of the object's width.
        length: Part length as a fraction of the object's length.
        width: Part width as a fraction of the object's width.
        material: Material name (see :mod:`earthvlm.synth.materials`); ``"body"``
            means the object's own drawn colour.
        angle: Extra rotation of the part in degrees.
    """

    shape: str
    dx: float = 0.0
    dy: float = 0.0
    length: float = 1.0
    width: float = 1.0
    material: str = "body"
    angle: float = 0.0


@dataclass(frozen=True)
class ObjectClass:
    """A class of object with its physical size range and how it is drawn.

    Attributes:
        name: The class name used in questions and labels.
        length_m: (min, max) length in metres (the longer side; diameter for discs).
        aspect: Width / length.
        parts: The parts drawn, in order (later parts on top).
        body: Candidate body materials (one is drawn per object).
        height_m: Height above ground (SAR double bounce, shadows).
        category: ``vehicle``, ``structure``, ``facility``, ``vessel``, ``aircraft``.
        context: Where it is placed: ``road``, ``urban``, ``water``, ``open``, ``apron``.
    """

    name: str
    length_m: tuple[float, float]
    aspect: float
    parts: tuple[Part, ...]
    body: tuple[str, ...]
    height_m: float = 0.0
    category: str = "structure"
    context: str = "open"

    def footprint_px(self, length_m: float, gsd_m: float) -> float:
        """Length in pixels of an object of ``length_m`` at ``gsd_m``: size / GSD."""
        return length_m / gsd_m


def _rect(**kw: float | str) -> Part:
    return Part("rect", **kw)  # type: ignore[arg-type]


def _disc(**kw: float | str) -> Part:
    return Part("ellipse", **kw)  # type: ignore[arg-type]


_CAR_COLOURS = ("paint_white", "paint_black", "paint_red", "paint_blue", "paint_grey")

CLASSES: dict[str, ObjectClass] = {
    c.name: c
    for c in (
        ObjectClass(
            "small vehicle",
            (3.8, 5.2),
            0.4,
            (_rect(), _rect(dx=0.12, length=0.3, width=0.8, material="glass")),
            _CAR_COLOURS,
            1.5,
            "vehicle",
            "road",
        ),
        ObjectClass(
            "large vehicle",
            (10.0, 16.5),
            0.2,
            (_rect(), _rect(dx=0.38, length=0.2, width=0.9, material="paint_grey")),
            _CAR_COLOURS,
            3.5,
            "vehicle",
            "road",
        ),
        ObjectClass(
            "building",
            (12.0, 60.0),
            0.4,
            (_rect(), _rect(length=1.0, width=0.08, material="roof_ridge")),
            ("roof_red", "roof_grey", "roof_white", "roof_dark"),
            8.0,
            "structure",
            "urban",
        ),
        ObjectClass(
            "storage tank",
            (10.0, 40.0),
            1.0,
            (_disc(), _disc(length=0.85, width=0.85, material="tank_roof")),
            ("tank_white",),
            12.0,
            "facility",
            "open",
        ),
        ObjectClass(
            "roundabout",
            (25.0, 60.0),
            1.0,
            (_disc(material="asphalt"), _disc(length=0.55, width=0.55, material="grass")),
            ("asphalt",),
            0.0,
            "facility",
            "road",
        ),
        ObjectClass(
            "swimming pool",
            (8.0, 25.0),
            0.5,
            (_rect(material="concrete"), _rect(length=0.88, width=0.8, material="pool_water")),
            ("concrete",),
            0.0,
            "facility",
            "urban",
        ),
        ObjectClass(
            "tennis court",
            (23.77, 23.77),
            0.4615,
            (
                _rect(material="court_green"),
                _rect(length=1.0, width=0.03, material="line_white"),
                _rect(dx=0.0, length=0.02, width=1.0, material="line_white"),
                _rect(dy=0.45, length=1.0, width=0.03, material="line_white"),
                _rect(dy=-0.45, length=1.0, width=0.03, material="line_white"),
            ),
            ("court_green",),
            0.0,
            "facility",
            "urban",
        ),
        ObjectClass(
            "basketball court",
            (28.0, 28.0),
            0.536,
            (
                _rect(material="court_orange"),
                _rect(length=0.02, width=1.0, material="line_white"),
                _disc(length=0.13, width=0.24, material="line_white"),
                _disc(length=0.11, width=0.2, material="court_orange"),
            ),
            ("court_orange",),
            0.0,
            "facility",
            "urban",
        ),
        ObjectClass(
            "ship",
            (20.0, 300.0),
            0.16,
            (
                _rect(length=0.85, dx=-0.075),
                _disc(dx=0.35, length=0.3, width=1.0),
                _rect(dx=-0.3, length=0.15, width=0.7, material="roof_white"),
            ),
            ("paint_grey", "paint_red", "paint_blue", "paint_black"),
            15.0,
            "vessel",
            "water",
        ),
        ObjectClass(
            "plane",
            (8.3, 70.7),
            1.0,
            (
                _rect(length=1.0, width=0.12),
                _rect(dx=0.05, length=0.15, width=1.0),
                _rect(dx=-0.42, length=0.08, width=0.35),
            ),
            ("paint_white", "paint_grey"),
            6.0,
            "aircraft",
            "apron",
        ),
        ObjectClass(
            "bridge",
            (40.0, 400.0),
            0.06,
            (_rect(material="concrete"), _rect(length=1.0, width=0.15, material="line_white")),
            ("concrete",),
            10.0,
            "structure",
            "water",
        ),
    )
}

#: Pairs that look alike in pixels at GSDs a decade apart (object chips use the same
#: template for both members, so only the GSD separates them).
AMBIGUOUS_PAIRS: tuple[tuple[str, str], ...] = (
    ("small vehicle", "building"),
    ("storage tank", "roundabout"),
)

#: The hard negative of each class for discriminative questions.
CONFUSION: dict[str, str] = {
    "small vehicle": "building",
    "building": "small vehicle",
    "large vehicle": "ship",
    "storage tank": "roundabout",
    "roundabout": "storage tank",
    "swimming pool": "tennis court",
    "tennis court": "basketball court",
    "basketball court": "tennis court",
    "ship": "large vehicle",
    "plane": "ship",
    "bridge": "large vehicle",
}


@dataclass(frozen=True)
class PlacedObject:
    """An object instance in a scene, in metres.

    Attributes:
        cls: Its class name.
        x_m: Centre easting in scene metres (from the scene's left edge).
        y_m: Centre northing offset in scene metres (from the scene's top edge, down).
        length_m: Its length.
        width_m: Its width.
        heading_deg: Heading, counter-clockwise from the scene's x axis.
        body: Its body material.
        extra: Anything else (e.g. colour name for questions).
    """

    cls: str
    x_m: float
    y_m: float
    length_m: float
    width_m: float
    heading_deg: float
    body: str
    extra: dict[str, str] = field(default_factory=dict)

    def corners_m(self) -> np.ndarray:
        """The 4 corners of its oriented bounding rectangle, (4, 2) in scene metres."""
        c, s = math.cos(math.radians(self.heading_deg)), math.sin(math.radians(self.heading_deg))
        hl, hw = self.length_m / 2, self.width_m / 2
        local = np.array([(-hl, -hw), (hl, -hw), (hl, hw), (-hl, hw)])
        # y grows downward in scene coordinates, so a positive heading turns towards -y
        xs = self.x_m + local[:, 0] * c + local[:, 1] * s
        ys = self.y_m - local[:, 0] * s + local[:, 1] * c
        return np.stack([xs, ys], axis=1)
