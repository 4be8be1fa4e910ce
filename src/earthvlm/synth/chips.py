"""Object chips: one object near the centre of a small image, the scale experiment's data.

Designed so that pixels cannot tell the members of an ambiguous pair apart and the GSD
can (the project's micro-ScaleEarth notes):

* every class draws its pixel length from the same range (default 12-28 px), and the
  GSD follows from the drawn physical length: ``gsd = length_m / length_px``;
* the members of a pair share one template (a 2.5:1 rectangle for small vehicle /
  building, a disc for storage tank / roundabout), drawn in one body colour from a
  palette shared by every class;
* background materials and texture (defined in pixels) do not depend on class or GSD;
* the object sits within +-4 px of the centre (a tiny ViT with 16 px patches learns
  centred shapes in CPU minutes, and objects anywhere in the frame it does not).

The physical length ranges of pair members are disjoint, so ``length_px * gsd``
separates them exactly, while pixels alone leave them at chance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from earthvlm.synth.catalogue import Part
from earthvlm.synth.materials import MATERIAL_INDEX, MATERIAL_TABLE
from earthvlm.synth.render import Canvas, fractal_noise, optical_view


@dataclass(frozen=True)
class ChipClass:
    """A chip class: its template and physical length range.

    Attributes:
        name: Class name (the answer).
        template: Parts drawn, all in the body colour (relative to length and width).
        aspect: Width / length.
        length_m: (min, max) physical length in metres.
        pair: The other member of its ambiguous pair, if any.
    """

    name: str
    template: tuple[Part, ...]
    aspect: float
    length_m: tuple[float, float]
    pair: str | None = None


_RECT = (Part("rect"),)
_DISC = (Part("ellipse"),)
_PLANE = (
    Part("rect", width=0.12),
    Part("rect", dx=0.05, length=0.15),
    Part("rect", dx=-0.42, length=0.08, width=0.35),
)
_SHIP = (Part("rect", dx=-0.075, length=0.85), Part("ellipse", dx=0.35, length=0.3))

CHIP_CLASSES: dict[str, ChipClass] = {
    c.name: c
    for c in (
        ChipClass("small vehicle", _RECT, 0.4, (3.8, 5.2), pair="building"),
        ChipClass("building", _RECT, 0.4, (20.0, 40.0), pair="small vehicle"),
        ChipClass("storage tank", _DISC, 1.0, (10.0, 20.0), pair="roundabout"),
        ChipClass("roundabout", _DISC, 1.0, (35.0, 60.0), pair="storage tank"),
        ChipClass("plane", _PLANE, 1.0, (30.0, 70.0)),
        ChipClass("ship", _SHIP, 0.2, (20.0, 120.0)),
    )
}  # fmt: skip

_BACKGROUNDS = ("grass", "dry_grass", "soil", "sand", "concrete", "asphalt")
# "plain" chips: one flat dark background, one bright body (still independent of class)
_PLAIN_BACKGROUNDS = ("asphalt", "soil", "grass")
_PLAIN_BODIES = ("paint_white", "tank_white", "roof_white", "paint_red")
_BODIES = ("paint_white", "paint_black", "paint_red", "paint_blue", "paint_grey", "roof_red",
           "tank_white", "roof_dark")  # fmt: skip


@dataclass(frozen=True)
class Chip:
    """A rendered chip and its ground truth.

    Attributes:
        image: uint8 RGB (3, size, size).
        cls: Class name.
        gsd_m: Metres per pixel.
        length_m: The object's physical length.
        length_px: Its length in pixels.
        centre_px: Its centre (x, y) in pixels.
        heading_deg: Its heading.
        xyxy_px: Enclosing horizontal box in pixels.
    """

    image: np.ndarray
    cls: str
    gsd_m: float
    length_m: float
    length_px: float
    centre_px: tuple[float, float]
    heading_deg: float
    xyxy_px: tuple[float, float, float, float]


def render_chip(
    cls: str,
    rng: np.random.Generator,
    *,
    size: int = 64,
    length_px: tuple[float, float] = (12.0, 28.0),
    jitter_px: float = 4.0,
    gsd_m: float | None = None,
    style: str = "textured",
) -> Chip:
    """Render one chip of class ``cls``.

    Args:
        cls: A key of :data:`CHIP_CLASSES`.
        rng: The random generator (all randomness comes from it).
        size: Chip side in pixels.
        length_px: Range of the object's length in pixels (the same for every class).
        jitter_px: Maximum offset of the object centre from the chip centre.
        gsd_m: Force this GSD (the pixel length then follows from the drawn physical
            length); by default the pixel length is drawn and the GSD follows.
        style: ``textured``: a blend of two background materials under fractal texture
            and a body from eight colours, some dark (hard: a from-scratch tiny ViT
            does not learn the shapes in CPU minutes); ``plain``: one flat dark
            background and a bright body (a tiny model learns the shapes in ~600
            steps). Either way nothing about the background or colour depends on the
            class or the GSD.

    Raises:
        KeyError: For an unknown class (the message lists the known ones).
    """
    if cls not in CHIP_CLASSES:
        raise KeyError(f"unknown chip class {cls!r}; known: {sorted(CHIP_CLASSES)}")
    c = CHIP_CLASSES[cls]
    length_m = float(rng.uniform(*c.length_m))
    if gsd_m is None:
        lpx = float(rng.uniform(*length_px))
        gsd = length_m / lpx
    else:
        gsd = float(gsd_m)
        lpx = length_m / gsd
    canvas = Canvas(size, size, gsd)
    if style == "textured":
        a, b = rng.choice(len(_BACKGROUNDS), size=2, replace=False)
        xs, ys = np.arange(size)[None, :] + 0.5, np.arange(size)[:, None] + 0.5
        n = fractal_noise(xs, ys, float(rng.uniform(8, 24)), int(rng.integers(1 << 30)), octaves=3)
        canvas.blend(_BACKGROUNDS[a], _BACKGROUNDS[b], n)
        bodies = _BODIES
    elif style == "plain":
        canvas.fill(str(rng.choice(_PLAIN_BACKGROUNDS)))
        bodies = _PLAIN_BODIES
    else:
        raise ValueError(f"style={style!r}: choose 'textured' or 'plain'")
    centre = size / 2 + rng.uniform(-jitter_px, jitter_px, 2)
    heading = float(rng.uniform(0, 360))
    body = MATERIAL_TABLE[MATERIAL_INDEX[str(rng.choice(bodies))]]
    ox, oy = centre * gsd
    cos, sin = np.cos(np.radians(heading)), np.sin(np.radians(heading))
    width_m = length_m * c.aspect
    for part in c.template:
        du, dv = part.dx * length_m, part.dy * width_m
        canvas.paint_shape(
            part.shape, ox + du * cos + dv * sin, oy - du * sin + dv * cos,
            part.length * length_m, part.width * width_m, heading + part.angle, body,
        )  # fmt: skip
    hl, hw = lpx / 2, lpx * c.aspect / 2
    ex = abs(hl * cos) + abs(hw * sin)
    ey = abs(hl * sin) + abs(hw * cos)
    box = (
        max(0.0, centre[0] - ex), max(0.0, centre[1] - ey),
        min(float(size), centre[0] + ex), min(float(size), centre[1] + ey),
    )  # fmt: skip
    image = optical_view(canvas, rng)
    return Chip(image, cls, gsd, length_m, lpx, (float(centre[0]), float(centre[1])), heading, box)
