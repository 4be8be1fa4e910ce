"""Scenes laid out in metres: land cover, roads, and objects from the catalogue.

A scene covers a window of the world ``width_m x height_m`` and is generated from a
seed; :meth:`Scene.render` rasterises it at any GSD. Scene kinds come in two families:

* scenes with **scale cues**: ``urban``, ``suburban``, ``industrial``, ``harbour``,
  ``airport``, ``farmland``. Roads have real widths (3.5 m lanes, dashed lane marks),
  buildings, vehicles and courts have real sizes, fields are 100-800 m parcels; a GSD
  estimator can read the scale off them.
* **homogeneous** scenes: ``forest``, ``water``, ``grassland``, ``desert``. Their
  texture is scale-free (value noise defined in pixels, not metres), so the image
  statistics do not depend on the GSD and an estimator should be uncertain.

Objects are placed only fully inside the window (no truncated labels), and only when
they would be at least a pixel long at the scene's intended GSD (smaller ones would
not show; at coarse GSDs blocks of buildings become a built-up texture instead), at
most :data:`MAX_OBJECTS` per scene.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from earthvlm.synth.catalogue import CLASSES, PlacedObject
from earthvlm.synth.render import Canvas, fractal_noise, value_noise

CUE_KINDS = ("urban", "suburban", "industrial", "harbour", "airport", "farmland")
HOMOGENEOUS_KINDS = ("forest", "water", "grassland", "desert")
SCENE_KINDS = CUE_KINDS + HOMOGENEOUS_KINDS

#: Land-use class name of each scene kind (for scene-level questions).
LAND_USE: dict[str, str] = {
    "urban": "dense residential", "suburban": "sparse residential",
    "industrial": "industrial", "harbour": "harbor", "airport": "airport",
    "farmland": "farmland", "forest": "forest", "water": "water",
    "grassland": "meadow", "desert": "bare land",
}  # fmt: skip

_LANE_M = 3.5

#: The object classes each scene kind's generator may place.
PLACED_CLASSES: dict[str, tuple[str, ...]] = {
    "urban": ("small vehicle", "large vehicle", "building", "basketball court", "tennis court"),
    "suburban": ("small vehicle", "large vehicle", "building", "swimming pool", "tennis court"),
    "industrial": ("small vehicle", "large vehicle", "building", "storage tank"),
    "harbour": ("ship", "large vehicle", "storage tank"),
    "airport": ("plane", "small vehicle", "large vehicle"),
    "farmland": ("building",),
}
#: Objects shorter than this many pixels are not placed (they would not show).
MIN_PLACED_PX = 1.0
#: At most this many objects per scene (rendering cost; dense scenes stay readable).
MAX_OBJECTS = 200


@dataclass(frozen=True)
class Strip:
    """A long rectangle (road, runway, quay edge) in world metres."""

    cx: float
    cy: float
    length: float
    width: float
    heading: float
    material: str


@dataclass
class Scene:
    """A generated scene: its kind, extent, background, strips and objects.

    Attributes:
        kind: One of :data:`SCENE_KINDS`.
        width_m: Extent in x.
        height_m: Extent in y.
        gsd_m: The GSD it was generated for (decides which objects are placed).
        seed: Its seed (textures are hashed from it).
        strips: Roads, runways and marks, painted before objects.
        areas: Filled rectangles (blocks, parcels, water bodies), painted first.
        objects: Placed objects, painted last, all fully inside the window.
        possible_classes: Classes its generator may place (an absent one is a true "no"
            only if it would have been visible).
    """

    kind: str
    width_m: float
    height_m: float
    gsd_m: float
    seed: int
    strips: list[Strip] = field(default_factory=list)
    areas: list[Strip] = field(default_factory=list)
    objects: list[PlacedObject] = field(default_factory=list)
    possible_classes: tuple[str, ...] = ()

    @property
    def has_scale_cues(self) -> bool:
        """False for homogeneous (scale-free) scenes."""
        return self.kind in CUE_KINDS

    def render(self, canvas: Canvas) -> Canvas:
        """Paint the scene onto ``canvas`` (any GSD, any window of the world)."""
        _background(self, canvas)
        for a in self.areas:
            canvas.paint_shape("rect", a.cx, a.cy, a.length, a.width, a.heading, a.material)
        for s in self.strips:
            canvas.paint_shape("rect", s.cx, s.cy, s.length, s.width, s.heading, s.material)
        for obj in self.objects:
            canvas.paint_object(obj)
        return canvas

    def rasterise(self, gsd_m: float | None = None) -> Canvas:
        """Render the whole window at ``gsd_m`` (default: the scene's own GSD)."""
        g = gsd_m or self.gsd_m
        w = max(1, round(self.width_m / g))
        h = max(1, round(self.height_m / g))
        return self.render(Canvas(h, w, g))


def _background(scene: Scene, canvas: Canvas) -> None:
    xs, ys = canvas.pixel_centres_m()
    seed = scene.seed
    kind = scene.kind
    if kind in HOMOGENEOUS_KINDS:
        # scale-free: noise lattice in pixels, so statistics do not depend on the GSD
        g = canvas.gsd_m
        px, py = xs / g, ys / g
        n = fractal_noise(px, py, 24.0, seed, octaves=4)
        a, b = {"forest": ("forest", "grass"), "water": ("water", "water"),
                "grassland": ("grass", "dry_grass"), "desert": ("sand", "soil")}[kind]  # fmt: skip
        canvas.blend(a, b, np.clip((n - 0.3) * 1.2, 0, 1) if a != b else n * 0)
        canvas.modulate(0.85 + 0.3 * fractal_noise(px, py, 6.0, seed + 1, octaves=3))
        return
    if kind == "farmland":
        canvas.fill("soil")
        return
    base = {"urban": ("concrete", "asphalt"), "suburban": ("grass", "dry_grass"),
            "industrial": ("concrete", "soil"), "harbour": ("concrete", "asphalt"),
            "airport": ("grass", "dry_grass")}[kind]  # fmt: skip
    n = fractal_noise(xs, ys, 80.0, seed, octaves=3)
    canvas.blend(base[0], base[1], np.clip(n * 1.2 - 0.1, 0, 1))
    canvas.modulate(0.9 + 0.2 * value_noise(xs, ys, 2.0, seed + 3))


# -- generation -------------------------------------------------------------------


class _Placer:
    """Places objects fully inside the window without overlaps (grid-free rejection)."""

    def __init__(self, scene: Scene, rng: np.random.Generator) -> None:
        self.scene, self.rng = scene, rng
        self.boxes: list[tuple[float, float, float, float]] = []

    def visible(self, cls: str, length_m: float) -> bool:
        return length_m / self.scene.gsd_m >= MIN_PLACED_PX

    def try_place(
        self,
        cls: str,
        x: float,
        y: float,
        heading: float,
        length: float | None = None,
        body: str | None = None,
        allow_overlap: bool = False,
    ) -> PlacedObject | None:
        c = CLASSES[cls]
        if len(self.scene.objects) >= MAX_OBJECTS:
            return None
        if length is None:
            length = float(self.rng.uniform(*c.length_m))
        if not self.visible(cls, length):
            return None
        obj = PlacedObject(
            cls, x, y, length, length * c.aspect, heading,
            body or str(self.rng.choice(c.body)),
        )  # fmt: skip
        corners = obj.corners_m()
        x0, y0 = corners.min(axis=0)
        x1, y1 = corners.max(axis=0)
        margin = self.scene.gsd_m
        if (
            x0 < margin
            or y0 < margin
            or x1 > self.scene.width_m - margin
            or y1 > self.scene.height_m - margin
        ):
            return None
        if not allow_overlap:
            for bx0, by0, bx1, by1 in self.boxes:
                if x0 < bx1 and bx0 < x1 and y0 < by1 and by0 < y1:
                    return None
        self.boxes.append((x0, y0, x1, y1))
        self.scene.objects.append(obj)
        return obj


def _road_grid(
    scene: Scene, rng: np.random.Generator, block: tuple[float, float], lanes: tuple[int, int]
) -> list[Strip]:
    """Axis-aligned roads every ``block`` metres (random phase), with dashed lane marks."""
    roads: list[Strip] = []
    W, H = scene.width_m, scene.height_m
    for axis in (0, 1):
        extent = W if axis == 0 else H
        pos = float(rng.uniform(-block[1], 0))
        while pos < extent + block[1]:
            n_lanes = int(rng.integers(lanes[0], lanes[1] + 1))
            width = n_lanes * _LANE_M + 1.0
            if -width < pos < extent + width:
                if axis == 0:  # vertical road at x = pos
                    roads.append(Strip(pos, H / 2, width, H + 2 * width, 0.0, "asphalt"))
                else:
                    roads.append(Strip(W / 2, pos, W + 2 * width, width, 0.0, "asphalt"))
                _lane_marks(scene, roads[-1], n_lanes, axis)
            pos += float(rng.uniform(*block)) + width
    scene.strips[:0] = roads
    return roads


def _lane_marks(scene: Scene, road: Strip, n_lanes: int, axis: int) -> None:
    """Dashed marks between lanes: 3 m dashes, 9 m gaps, 0.15 m wide (drawn if visible)."""
    if 0.15 / scene.gsd_m < 0.15:
        return
    for k in range(1, n_lanes):
        offset = (
            -road.length / 2 + 0.5 + k * _LANE_M
            if axis == 0
            else -road.width / 2 + 0.5 + k * _LANE_M
        )
        span = scene.height_m if axis == 0 else scene.width_m
        t = -6.0
        while t < span + 6:
            if axis == 0:
                scene.strips.append(Strip(road.cx + offset, t, 0.15, 3.0, 0.0, "lane_mark"))
            else:
                scene.strips.append(Strip(t, road.cy + offset, 3.0, 0.15, 0.0, "lane_mark"))
            t += 12.0


def _cars_on_roads(placer: _Placer, roads: list[Strip], density_per_100m: float) -> None:
    rng = placer.rng
    largest = CLASSES["large vehicle"].length_m[1]
    if largest / placer.scene.gsd_m < MIN_PLACED_PX:
        return  # no vehicle would show at this GSD: skip thousands of placement attempts
    for road in roads:
        vertical = road.length < road.width
        span = road.width if vertical else road.length
        n_lanes = max(1, int((min(road.length, road.width) - 1.0) / _LANE_M))
        n = rng.poisson(density_per_100m * span / 100 * n_lanes)
        for _ in range(min(n, 200)):
            lane = int(rng.integers(0, n_lanes))
            across = -min(road.length, road.width) / 2 + 0.5 + (lane + 0.5) * _LANE_M
            along = float(rng.uniform(-span / 2, span / 2))
            cls = "large vehicle" if rng.random() < 0.15 else "small vehicle"
            heading = 90.0 if vertical else 0.0
            heading += 180.0 if lane % 2 else 0.0
            x = road.cx + (across if vertical else along)
            y = road.cy + (along if vertical else across)
            placer.try_place(cls, x, y, heading)


def _buildings_in_blocks(
    scene: Scene,
    placer: _Placer,
    roads: list[Strip],
    size: tuple[float, float],
    fill: float,
    extras: tuple[str, ...],
) -> None:
    """Fill the space between roads with buildings (or a built-up texture when tiny)."""
    rng = placer.rng
    xs = sorted([r.cx for r in roads if r.length < r.width])
    ys = sorted([r.cy for r in roads if r.width < r.length])
    xs = [-1e9, *xs, 1e9]
    ys = [-1e9, *ys, 1e9]
    mean_px = (size[0] + size[1]) / 2 / scene.gsd_m
    for i in range(len(xs) - 1):
        for j in range(len(ys) - 1):
            bx0, bx1 = max(xs[i] + 8.0, 0.0), min(xs[i + 1] - 8.0, scene.width_m)
            by0, by1 = max(ys[j] + 8.0, 0.0), min(ys[j + 1] - 8.0, scene.height_m)
            if bx1 - bx0 < 5 or by1 - by0 < 5:
                continue
            if mean_px < 4.0:  # buildings of a few pixels: a built-up block texture
                scene.areas.append(
                    Strip((bx0 + bx1) / 2, (by0 + by1) / 2, bx1 - bx0, by1 - by0, 0.0,
                          str(rng.choice(["roof_grey", "roof_red", "concrete"])))
                )  # fmt: skip
                continue
            area = (bx1 - bx0) * (by1 - by0)
            n = int(fill * area / ((size[0] + size[1]) / 2) ** 2 * 2.5)
            for _ in range(min(n, 60)):
                length = float(rng.uniform(*size))
                x, y = float(rng.uniform(bx0, bx1)), float(rng.uniform(by0, by1))
                placer.try_place("building", x, y, float(rng.choice([0.0, 90.0])), length)
            for cls in extras:
                if rng.random() < 0.3:
                    x, y = float(rng.uniform(bx0, bx1)), float(rng.uniform(by0, by1))
                    placer.try_place(cls, x, y, float(rng.choice([0.0, 90.0])))


def generate_scene(kind: str, width_m: float, height_m: float, gsd_m: float, seed: int) -> Scene:
    """Generate a scene of ``kind`` covering ``width_m x height_m``, for rendering near ``gsd_m``.

    Raises:
        ValueError: For an unknown kind (the message lists the known ones).
    """
    if kind not in SCENE_KINDS:
        raise ValueError(f"unknown scene kind {kind!r}; known: {', '.join(SCENE_KINDS)}")
    scene = Scene(kind, float(width_m), float(height_m), float(gsd_m), int(seed))
    scene.possible_classes = PLACED_CLASSES.get(kind, ())
    rng = np.random.default_rng([int(seed), 0x5CE4E])
    placer = _Placer(scene, rng)
    W, H = scene.width_m, scene.height_m
    if kind in ("urban", "suburban"):
        urban = kind == "urban"
        roads = _road_grid(
            scene, rng, (60.0, 120.0) if urban else (100.0, 200.0), (2, 4) if urban else (2, 2)
        )
        _cars_on_roads(placer, roads, 6.0 if urban else 2.0)
        _buildings_in_blocks(
            scene, placer, roads, (15.0, 45.0) if urban else (12.0, 20.0), 0.45 if urban else 0.2,
            ("basketball court", "tennis court") if urban else ("swimming pool", "tennis court"),
        )  # fmt: skip
    elif kind == "industrial":
        roads = _road_grid(scene, rng, (150.0, 300.0), (2, 3))
        _cars_on_roads(placer, roads, 1.5)
        for _ in range(int(min(60, 1 + W * H / 4000))):
            x, y = float(rng.uniform(0, W)), float(rng.uniform(0, H))
            placer.try_place("storage tank", x, y, 0.0)
        _buildings_in_blocks(scene, placer, roads, (40.0, 60.0), 0.2, ("large vehicle",))
    elif kind == "harbour":
        water_w = W * float(rng.uniform(0.4, 0.6))
        scene.areas.append(Strip(W - water_w / 2, H / 2, water_w, H, 0.0, "water"))
        scene.strips.append(Strip(W - water_w, H / 2, 2.0, H, 0.0, "concrete"))
        for _ in range(int(min(40, 1 + water_w * H / 20000))):
            x = float(rng.uniform(W - water_w, W))
            y = float(rng.uniform(0, H))
            placer.try_place("ship", x, y, float(rng.choice([90.0, 270.0, 0.0, 180.0])))
        for _ in range(int(min(40, 1 + (W - water_w) * H / 3000))):
            x, y = float(rng.uniform(0, W - water_w)), float(rng.uniform(0, H))
            placer.try_place(str(rng.choice(["large vehicle", "storage tank"])), x, y, 90.0)
    elif kind == "airport":
        rw_w = float(rng.uniform(45, 60))
        ry = H * float(rng.uniform(0.3, 0.7))
        scene.strips.append(Strip(W / 2, ry, W * 2, rw_w, 0.0, "asphalt"))
        t = 0.0
        while t < W:  # runway centre line: 36 m stripes, 24 m gaps, 0.9 m wide
            scene.strips.append(Strip(t + 18, ry, 36.0, 0.9, 0.0, "line_white"))
            t += 60.0
        apron_y = ry + rw_w / 2 + 60.0
        scene.areas.append(Strip(W / 2, apron_y + 100, W * 2, 200.0, 0.0, "concrete"))
        for _ in range(int(min(40, 1 + W / 60))):
            x = float(rng.uniform(0, W))
            y = float(rng.uniform(apron_y, apron_y + 200))
            placer.try_place("plane", x, y, float(rng.uniform(0, 360)))
        _cars_on_roads(placer, [Strip(W / 2, apron_y + 5, W * 2, 8.0, 0.0, "asphalt")], 2.0)
    elif kind == "farmland":
        x = float(rng.uniform(-400, 0))
        while x < W:
            pw = float(rng.uniform(100, 800))
            y = float(rng.uniform(-400, 0))
            while y < H:
                ph = float(rng.uniform(100, 800))
                mat = str(rng.choice(["crop", "soil", "dry_grass", "crop"]))
                scene.areas.append(Strip(x + pw / 2, y + ph / 2, pw - 4, ph - 4, 0.0, mat))
                y += ph
            x += pw
        if rng.random() < 0.5:
            scene.strips.append(
                Strip(W / 2, H * float(rng.uniform(0, 1)), W * 2, 7.0, 0.0, "asphalt")
            )
        for _ in range(int(rng.integers(0, 4))):
            placer.try_place("building", float(rng.uniform(0, W)), float(rng.uniform(0, H)), 0.0)
    return scene
