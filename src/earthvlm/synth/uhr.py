"""Ultra-high-resolution (UHR) scenes: 8192 px and more a side, rendered tile by tile.

A UHR scene is a large, mostly-background window of the world (farmland, grassland,
open water, industrial outskirts) holding a few small targets (vehicles, storage tanks,
ships, planes) far apart: at the global view (an overview) they are below a pixel, so
finding them takes zooming into native-resolution windows, the setting UHR
benchmarks (XLRS-Bench, MME-RealWorld) test.

Rendering never holds the whole float canvas (11 float32 channels: 3 GB at 8192 px).
The scene is laid out once in metres; each tile (``tile_px`` a side, 1024 by default)
gets its own :class:`~earthvlm.synth.render.Canvas` with a one-pixel halo (so the
point-spread function sees its true neighbours), paints only the areas, strips and
objects whose bounding box meets the tile, and is written into a tiled (512 px
blocks), deflate-compressed GeoTIFF opened once with the full size. Overviews
(2, 4, 8, ... down to ~256 px) are built at the end, and the file is written under a
temporary name and renamed, so a reader never sees a half-written scene.

Seamless by construction: textures are hashed value noise at world coordinates, the
sensor noise is a fixed per-scene table indexed by *global* pixel row and column, and
the GSD is snapped to a multiple of 2^-12 m so that every pixel coordinate is an exact
binary fraction (a tile's pixel centres are bit-identical to the same pixels'
centres in any other window). A window rendered in one piece and as tiles is the
same array, byte for byte, and the same seed gives a byte-identical file.

Labels are in full-image pixel coordinates (origin at the top-left of the raster).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import rasterio
import rasterio.enums
from rasterio.transform import Affine
from rasterio.windows import Window

from earthvlm import __version__
from earthvlm.io import atomic_path
from earthvlm.synth.catalogue import CLASSES, PlacedObject
from earthvlm.synth.georef import UTM_CRS, utm_transform
from earthvlm.synth.labels import ObjectLabel, label_object
from earthvlm.synth.render import Canvas, optical_view
from earthvlm.synth.scene import Scene, Strip, generate_scene

#: UHR scene kinds (the background family; see :func:`make_uhr_scene`).
UHR_KINDS = ("farmland", "grassland", "water", "industrial")
#: Side of a render tile in pixels (a multiple of :data:`BLOCK_PX`).
TILE_PX = 1024
#: Side of a GeoTIFF block (internal tile) in pixels.
BLOCK_PX = 512
#: Overviews go down to about this many pixels a side.
OVERVIEW_MIN_PX = 256
#: Smallest and largest accepted scene sides.
MIN_SIZE_PX, MAX_SIZE_PX = 256, 32768
#: GSDs are snapped to multiples of this (metres): exact binary fractions, exact tiling.
GSD_QUANTUM_M = 2.0**-12
#: Sensor noise (reflectance sigma) and the period of its per-pixel table (a prime, so
#: it lines up with neither tiles nor blocks).
NOISE_SIGMA = 0.004
NOISE_PERIOD_PX = 1021


#: Target classes per kind: (class, weight, (min, max) length in metres). Lengths are
#: kept small on purpose (a 300 m ship would be visible in the global view).
_TARGETS: dict[str, tuple[tuple[str, float, tuple[float, float]], ...]] = {
    "farmland": (
        ("small vehicle", 4.0, (3.8, 5.2)),
        ("large vehicle", 3.0, (10.0, 16.5)),
        ("storage tank", 2.0, (10.0, 20.0)),
        ("plane", 1.0, (8.3, 12.0)),
    ),
    "grassland": (
        ("small vehicle", 4.0, (3.8, 5.2)),
        ("large vehicle", 2.0, (10.0, 16.5)),
        ("plane", 2.0, (8.3, 15.0)),
        ("storage tank", 1.0, (10.0, 16.0)),
    ),
    "water": (("ship", 1.0, (20.0, 60.0)),),
    "industrial": (
        ("storage tank", 3.0, (10.0, 30.0)),
        ("large vehicle", 3.0, (10.0, 16.5)),
        ("small vehicle", 3.0, (3.8, 5.2)),
    ),
}


def snap_gsd(gsd_m: float) -> float:
    """``gsd_m`` rounded to a multiple of :data:`GSD_QUANTUM_M` (at most 0.00012 m off)."""
    q = round(float(gsd_m) / GSD_QUANTUM_M)
    if q < 1:
        raise ValueError(f"gsd_m must be at least {GSD_QUANTUM_M} m, got {gsd_m}")
    return q * GSD_QUANTUM_M


def overview_factors(size_px: int) -> tuple[int, ...]:
    """Decimation factors 2, 4, 8, ... while the overview keeps >= 256 px a side."""
    factors, f = [], 2
    while size_px // f >= OVERVIEW_MIN_PX:
        factors.append(f)
        f *= 2
    return tuple(factors)


# -- layout -----------------------------------------------------------------------


def _far_enough(x: float, y: float, placed: list[tuple[float, float]], min_sep: float) -> bool:
    return all((x - px) ** 2 + (y - py) ** 2 >= min_sep**2 for px, py in placed)


def _meets_any(corners: np.ndarray, boxes: list[tuple[float, float, float, float]]) -> bool:
    (x0, y0), (x1, y1) = corners.min(axis=0) - 2.0, corners.max(axis=0) + 2.0
    return any(x0 < bx1 and bx0 < x1 and y0 < by1 and by0 < y1 for bx0, by0, bx1, by1 in boxes)


def make_uhr_scene(kind: str, size_px: int, gsd_m: float, seed: int) -> Scene:
    """Lay out a UHR scene in metres: background areas and strips, then sparse targets.

    Targets (6 to 12) are at least a sixth of the scene side (and two lengths) apart,
    fully inside it with a margin of 2 % of the side; the land backgrounds have no
    water and ships sit on open water. Lengths stay small (see ``_TARGETS``), and
    road vehicles sit on a road when there is one, more often than not.

    Args:
        kind: One of :data:`UHR_KINDS`.
        size_px: Scene side in pixels.
        gsd_m: Metres per pixel (already snapped, see :func:`snap_gsd`).
        seed: Seed of the layout and textures.

    Raises:
        ValueError: For an unknown kind.
    """
    if kind not in UHR_KINDS:
        raise ValueError(f"unknown UHR kind {kind!r}; known: {', '.join(UHR_KINDS)}")
    side = size_px * gsd_m
    rng = np.random.default_rng([int(seed), 0x0A4B])
    if kind == "farmland":
        base = generate_scene("farmland", side, side, gsd_m, seed)
        scene = Scene("farmland", side, side, gsd_m, int(seed), list(base.strips), list(base.areas))
    elif kind == "industrial":
        # outskirts: bare concrete / soil lots, a few roads and concrete pads
        scene = Scene("industrial", side, side, gsd_m, int(seed))
        for axis in (0, 1):
            for _ in range(int(rng.integers(1, 3))):
                pos, width = float(rng.uniform(0.1, 0.9)) * side, float(rng.uniform(8.0, 12.0))
                if axis == 0:
                    scene.strips.append(Strip(pos, side / 2, width, side, 0.0, "asphalt"))
                else:
                    scene.strips.append(Strip(side / 2, pos, side, width, 0.0, "asphalt"))
        for _ in range(int(rng.integers(2, 6))):
            w, h = (float(v) for v in rng.uniform(60.0, 200.0, 2))
            x, y = (float(v) for v in rng.uniform(0.1, 0.9, 2) * side)
            scene.areas.append(Strip(x, y, w, h, 0.0, "concrete"))
    elif kind == "grassland":
        scene = Scene("grassland", side, side, gsd_m, int(seed))
        y = float(rng.uniform(0.2, 0.8)) * side  # a dirt track
        scene.strips.append(Strip(side / 2, y, side, 4.0, float(rng.uniform(-5, 5)), "soil"))
    else:
        scene = Scene("water", side, side, gsd_m, int(seed))

    roads = [s for s in scene.strips if s.material == "asphalt"]
    road_boxes = [_bbox_of_strip(s) for s in scene.strips]
    scene.possible_classes = tuple(c for c, _, _ in _TARGETS[kind])
    classes, weights, lengths = zip(*_TARGETS[kind], strict=True)
    p = np.array(weights) / sum(weights)
    margin, min_sep = 0.02 * side, side / 6
    placed: list[tuple[float, float]] = []
    n_targets = int(rng.integers(6, 13))
    for _ in range(n_targets * 50):
        if len(scene.objects) >= n_targets:
            break
        k = int(rng.choice(len(classes), p=p))
        cls, (lo, hi) = classes[k], lengths[k]
        length = float(rng.uniform(lo, hi))
        heading = float(rng.uniform(0, 360))
        x, y = (float(v) for v in rng.uniform(margin, side - margin, 2))
        on_road = CLASSES[cls].context == "road" and bool(roads) and rng.random() < 0.6
        if on_road:
            road = roads[int(rng.integers(len(roads)))]
            if road.length > road.width:  # horizontal
                y, heading = road.cy, float(rng.choice([0.0, 180.0]))
            else:
                x, heading = road.cx, float(rng.choice([90.0, 270.0]))
        if not _far_enough(x, y, placed, max(min_sep, 2 * length)):
            continue
        c = CLASSES[cls]
        obj = PlacedObject(cls, x, y, length, length * c.aspect, heading, str(rng.choice(c.body)))
        corners = obj.corners_m()
        if corners.min() < margin or corners.max() > side - margin:
            continue
        if not on_road and _meets_any(corners, road_boxes):
            continue  # tanks, planes and parked vehicles stay off the roads
        placed.append((x, y))
        scene.objects.append(obj)
    return scene


# -- rendering --------------------------------------------------------------------


def _bbox_of_strip(s: Strip) -> tuple[float, float, float, float]:
    c, sn = math.cos(math.radians(s.heading)), math.sin(math.radians(s.heading))
    ex = abs(s.length / 2 * c) + abs(s.width / 2 * sn)
    ey = abs(s.length / 2 * sn) + abs(s.width / 2 * c)
    return s.cx - ex, s.cy - ey, s.cx + ex, s.cy + ey


def _bbox_of_object(o: PlacedObject, gsd_m: float) -> tuple[float, float, float, float]:
    corners = o.corners_m()
    (x0, y0), (x1, y1) = corners.min(axis=0), corners.max(axis=0)
    # parts stay within the oriented rectangle; buildings add a wall return of
    # max(gsd, 1 m); a generous margin keeps the filter conservative
    m = 0.1 * o.length_m + max(gsd_m, 1.0) + 2 * gsd_m
    return x0 - m, y0 - m, x1 + m, y1 + m


class TileRenderer:
    """Renders any pixel window of a laid-out scene, painting only what meets it.

    Args:
        scene: The layout (from :func:`make_uhr_scene`); its ``gsd_m`` is the pixel size.
        seed: Seed of the sensor-noise table.
    """

    def __init__(self, scene: Scene, seed: int) -> None:
        self.scene, self.seed, self.gsd_m = scene, int(seed), scene.gsd_m
        g = self.gsd_m
        self._areas = np.array([_bbox_of_strip(a) for a in scene.areas]).reshape(-1, 4)
        self._strips = np.array([_bbox_of_strip(s) for s in scene.strips]).reshape(-1, 4)
        self._objects = np.array([_bbox_of_object(o, g) for o in scene.objects]).reshape(-1, 4)

    @staticmethod
    def _meets(boxes: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
        return np.flatnonzero(
            (boxes[:, 0] < x1) & (boxes[:, 2] > x0) & (boxes[:, 1] < y1) & (boxes[:, 3] > y0)
        )

    def canvas(self, col0: int, row0: int, width: int, height: int) -> Canvas:
        """The rendered canvas of a pixel window (no halo)."""
        g = self.gsd_m
        x0, y0, x1, y1 = col0 * g, row0 * g, (col0 + width) * g, (row0 + height) * g
        s = self.scene
        sub = Scene(
            s.kind, s.width_m, s.height_m, s.gsd_m, s.seed,
            strips=[s.strips[i] for i in self._meets(self._strips, x0, y0, x1, y1)],
            areas=[s.areas[i] for i in self._meets(self._areas, x0, y0, x1, y1)],
            objects=[s.objects[i] for i in self._meets(self._objects, x0, y0, x1, y1)],
        )  # fmt: skip
        return sub.render(Canvas(height, width, g, (x0, y0)))

    def optical(self, col0: int, row0: int, width: int, height: int) -> np.ndarray:
        """The optical RGB view (uint8, (3, height, width)) of a pixel window.

        The canvas is rendered with a one-pixel halo so the PSF sees true neighbours,
        then cropped: any window gives the same pixels as any other covering them.
        """
        canvas = self.canvas(col0 - 1, row0 - 1, width + 2, height + 2)
        noise = _TableNoise(_noise_table(self.seed), col0 - 1, row0 - 1)
        view = optical_view(canvas, noise, noise=NOISE_SIGMA)  # type: ignore[arg-type]
        return view[:, 1:-1, 1:-1]


@lru_cache(maxsize=2)
def _noise_table(seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 0x0415E])
    table = rng.standard_normal((3, NOISE_PERIOD_PX, NOISE_PERIOD_PX), dtype=np.float32)
    table.flags.writeable = False
    return table


class _TableNoise:
    """Stands in for ``np.random.Generator`` in :func:`optical_view`: ``normal`` returns
    the scene's per-pixel noise at *global* pixel positions, so tiles agree."""

    def __init__(self, table: np.ndarray, col0: int, row0: int) -> None:
        self.table, self.col0, self.row0 = table, col0, row0

    def normal(self, loc: float, scale: float, size: tuple[int, int, int]) -> np.ndarray:
        bands, h, w = size
        p = self.table.shape[-1]
        rows = (self.row0 + np.arange(h)) % p
        cols = (self.col0 + np.arange(w)) % p
        return loc + scale * self.table[:bands][:, rows[:, None], cols[None, :]]


# -- writing ----------------------------------------------------------------------


@dataclass(frozen=True)
class PixelGrid:
    """The pixel geometry of a window without its pixels (a :class:`Canvas` of 8192 px
    would hold 3 GB): what :func:`~earthvlm.synth.labels.label_object` and the question
    helpers read from a canvas (``gsd_m``, ``origin_m``, ``width``, ``height``,
    :meth:`to_px`)."""

    width: int
    height: int
    gsd_m: float
    origin_m: tuple[float, float] = (0.0, 0.0)

    def to_px(self, x_m: float, y_m: float) -> tuple[float, float]:
        """World metres -> pixel coordinates (column, row), as :meth:`Canvas.to_px`."""
        return (x_m - self.origin_m[0]) / self.gsd_m, (y_m - self.origin_m[1]) / self.gsd_m


@dataclass(frozen=True)
class UHRScene:
    """A written UHR scene.

    Attributes:
        path: The GeoTIFF.
        kind: One of :data:`UHR_KINDS`.
        size_px: Side in pixels (the file is ``size_px x size_px``, 3 bands uint8 RGB).
        gsd_m: Metres per pixel (snapped, see :func:`snap_gsd`); the file's georef says so.
        seed: Its seed.
        scene: The layout in metres (origin at the raster's top-left corner).
        labels: The targets in full-image pixel coordinates, in scene order.
        overviews: Decimation factors of the internal overviews.
        transform: The UTM 33N geotransform.
        crs: The CRS string.
    """

    path: Path
    kind: str
    size_px: int
    gsd_m: float
    seed: int
    scene: Scene
    labels: list[ObjectLabel]
    overviews: tuple[int, ...]
    transform: Affine
    crs: str = UTM_CRS

    @property
    def grid(self) -> PixelGrid:
        """The full raster's pixel geometry (origin at its top-left corner)."""
        return PixelGrid(self.size_px, self.size_px, self.gsd_m)


def write_uhr_scene(
    path: str | Path,
    size_px: int = 8192,
    gsd_m: float = 0.3,
    kind: str = "farmland",
    seed: int = 0,
    *,
    tile_px: int = TILE_PX,
    northing_m: float | None = None,
) -> UHRScene:
    """Render a UHR scene tile by tile into a tiled, compressed GeoTIFF with overviews.

    Args:
        path: Destination (written under a temporary name, then renamed).
        size_px: Side in pixels (:data:`MIN_SIZE_PX` to :data:`MAX_SIZE_PX`).
        gsd_m: Metres per pixel; snapped to a multiple of 2^-12 m (:func:`snap_gsd`).
        kind: One of :data:`UHR_KINDS`.
        seed: Seed of the layout, textures and noise: same seed, byte-identical file.
        tile_px: Render tile side (a multiple of 512); memory grows with its square
            (11 float32 channels: ~46 MB at 1024).
        northing_m: UTM northing of the centre (default: drawn from the seed).

    Returns:
        The :class:`UHRScene` (path, layout, labels in full-image pixels).

    Raises:
        ValueError: For a bad size, tile size, GSD or kind.
    """
    if not MIN_SIZE_PX <= size_px <= MAX_SIZE_PX:
        raise ValueError(f"size_px must be in {MIN_SIZE_PX}..{MAX_SIZE_PX}, got {size_px}")
    if tile_px < BLOCK_PX or tile_px % BLOCK_PX:
        raise ValueError(f"tile_px must be a positive multiple of {BLOCK_PX}, got {tile_px}")
    if not 0.01 <= gsd_m <= 100.0:
        raise ValueError(f"gsd_m must be in 0.01..100, got {gsd_m}")
    g = snap_gsd(gsd_m)
    scene = make_uhr_scene(kind, size_px, g, seed)
    renderer = TileRenderer(scene, seed)
    if northing_m is None:
        northing_m = float(np.random.default_rng([int(seed), 0x0A4C]).uniform(4.0e6, 6.0e6))
    transform = utm_transform(g, size_px, size_px, northing_m)
    factors = overview_factors(size_px)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    profile: dict[str, object] = {
        "driver": "GTiff", "width": size_px, "height": size_px, "count": 3, "dtype": "uint8",
        "crs": UTM_CRS, "transform": transform, "tiled": True, "blockxsize": BLOCK_PX,
        "blockysize": BLOCK_PX, "compress": "deflate", "predictor": 2, "photometric": "RGB",
        "BIGTIFF": "IF_SAFER",
    }  # fmt: skip
    with atomic_path(target, suffix=".tif") as tmp, rasterio.open(tmp, "w", **profile) as dst:
        for row0 in range(0, size_px, tile_px):
            for col0 in range(0, size_px, tile_px):
                w, h = min(tile_px, size_px - col0), min(tile_px, size_px - row0)
                dst.write(renderer.optical(col0, row0, w, h), window=Window(col0, row0, w, h))
        dst.update_tags(
            EARTHVLM_GSD_M=repr(g), EARTHVLM_VERSION=__version__, EARTHVLM_SEED=str(seed),
            EARTHVLM_UHR_KIND=kind,
        )  # fmt: skip
        for i, name in enumerate(("red", "green", "blue"), start=1):
            dst.set_band_description(i, name)
        if factors:
            dst.build_overviews(list(factors), rasterio.enums.Resampling.average)
            dst.update_tags(ns="rio_overview", resampling="average")
    grid = PixelGrid(size_px, size_px, g)
    labels = [label_object(o, i, grid) for i, o in enumerate(scene.objects)]  # type: ignore[arg-type]
    return UHRScene(target, kind, size_px, g, int(seed), scene, labels, factors, transform)


__all__ = [
    "UHR_KINDS",
    "PixelGrid",
    "TileRenderer",
    "UHRScene",
    "make_uhr_scene",
    "overview_factors",
    "snap_gsd",
    "write_uhr_scene",
]
