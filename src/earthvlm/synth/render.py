"""Rasterising a scene laid out in metres at any GSD.

A :class:`Canvas` holds, per pixel, the 10 reflectance bands and the linear SAR
backscatter of what lies there. Shapes are painted with their exact area coverage
(supersampled inside their pixel bounding box), so an object smaller than a pixel
contributes only its share of the pixel's signal and blurs into its surroundings, as in
real imagery. The views (optical RGB, multispectral, SAR) are read off the same canvas,
so they are co-registered by construction.

Textures use hashed lattice value noise evaluated at world coordinates: any window of
the world renders identically whatever tile it falls in (UHR scenes are rendered tile
by tile without seams), and the same seed gives byte-identical images.
"""

from __future__ import annotations

import math

import numpy as np

from earthvlm.synth.catalogue import CLASSES, PlacedObject
from earthvlm.synth.materials import (
    MATERIAL_INDEX,
    MATERIAL_TABLE,
    N_CHANNELS,
    RGB_INDEX,
    SAR_CHANNEL,
)

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _hash01(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """Deterministic pseudo-random values in [0, 1) for integer lattice points."""
    with np.errstate(over="ignore"):
        h = (ix.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ (
            iy.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
        )
        h ^= np.uint64(seed & 0xFFFFFFFF) * np.uint64(0x165667B19E3779F9)
        h ^= h >> np.uint64(29)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(32)
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def value_noise(x: np.ndarray, y: np.ndarray, spacing: float, seed: int) -> np.ndarray:
    """Smooth noise in [0, 1) on the grid of column coordinates ``x`` and row coordinates ``y``.

    ``x`` is a row vector (1, W) and ``y`` a column vector (H, 1) (as
    :meth:`Canvas.pixel_centres_m` returns); the result is (H, W). The lattice has the
    given spacing in the coordinates' units; only lattice points are hashed, then
    gathered and interpolated, so the cost is a few passes over the image.
    """
    gx, gy = np.ravel(x) / spacing, np.ravel(y) / spacing
    x0, y0 = np.floor(gx), np.floor(gy)
    fx, fy = gx - x0, gy - y0
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)  # smoothstep
    ix, iy = x0.astype(np.int64), y0.astype(np.int64)
    bx, by = int(ix.min()), int(iy.min())
    span_x, span_y = int(ix.max()) - bx + 2, int(iy.max()) - by + 2
    if span_x > 2 * ix.size or span_y > 2 * iy.size:
        # lattice finer than the pixels (e.g. 2 m texture at 30 m GSD): hash only the
        # corners in use instead of the whole lattice between them (same values)
        ux, uy = np.unique(np.concatenate([ix, ix + 1])), np.unique(np.concatenate([iy, iy + 1]))
        lattice = _hash01(ux[None, :], uy[:, None], seed).astype(np.float32)
        cx0, cx1 = np.searchsorted(ux, ix), np.searchsorted(ux, ix + 1)
        cy0, cy1 = np.searchsorted(uy, iy), np.searchsorted(uy, iy + 1)
    else:
        lx = np.arange(bx, bx + span_x)
        ly = np.arange(by, by + span_y)
        lattice = _hash01(lx[None, :], ly[:, None], seed).astype(np.float32)
        cx0, cy0 = ix - bx, iy - by
        cx1, cy1 = cx0 + 1, cy0 + 1
    rows0, rows1 = lattice[cy0], lattice[cy1]
    top = rows0[:, cx0] + (rows0[:, cx1] - rows0[:, cx0]) * fx[None, :].astype(np.float32)
    bottom = rows1[:, cx0] + (rows1[:, cx1] - rows1[:, cx0]) * fx[None, :].astype(np.float32)
    return top + (bottom - top) * fy[:, None].astype(np.float32)


def fractal_noise(
    x: np.ndarray, y: np.ndarray, spacing: float, seed: int, octaves: int = 4
) -> np.ndarray:
    """Up to ``octaves`` value-noise layers, each half the spacing and amplitude; in [0, 1)."""
    total, amp, norm = 0.0, 1.0, 0.0
    # octaves finer than ~1 px would average out within a pixel: leave them out
    step = float(np.ravel(x)[1] - np.ravel(x)[0]) if np.size(x) > 1 else spacing
    octaves = max(1, min(octaves, int(math.log2(max(spacing / max(step, 1e-12), 1.0))) + 1))
    for k in range(octaves):
        total = total + amp * value_noise(x, y, spacing / 2**k, seed + 7919 * k)
        norm += amp
        amp *= 0.5
    return total / norm


class Canvas:
    """Per-pixel reflectance bands and SAR backscatter of a window of the world.

    Args:
        height: Rows.
        width: Columns.
        gsd_m: Metres per pixel.
        origin_m: World metres (x, y) of the top-left corner of pixel (0, 0); y grows
            downward (rows).
    """

    def __init__(
        self, height: int, width: int, gsd_m: float, origin_m: tuple[float, float] = (0.0, 0.0)
    ) -> None:
        self.height, self.width, self.gsd_m = height, width, float(gsd_m)
        self.origin_m = (float(origin_m[0]), float(origin_m[1]))
        self.data = np.zeros((N_CHANNELS, height, width), dtype=np.float32)

    # -- coordinates ------------------------------------------------------------------

    def pixel_centres_m(self) -> tuple[np.ndarray, np.ndarray]:
        """World x of each column centre (1, W) and y of each row centre (H, 1), metres."""
        g = self.gsd_m
        xs = self.origin_m[0] + (np.arange(self.width) + 0.5) * g
        ys = self.origin_m[1] + (np.arange(self.height) + 0.5) * g
        return xs[None, :], ys[:, None]

    def to_px(self, x_m: float, y_m: float) -> tuple[float, float]:
        """World metres -> pixel coordinates (column, row) of this canvas."""
        return (x_m - self.origin_m[0]) / self.gsd_m, (y_m - self.origin_m[1]) / self.gsd_m

    # -- painting ---------------------------------------------------------------------

    def fill(self, material: str) -> None:
        """Cover the whole canvas with one material."""
        self.data[:] = MATERIAL_TABLE[MATERIAL_INDEX[material]][:, None, None]

    def blend(self, material_a: str, material_b: str, weight_b: np.ndarray) -> None:
        """Cover the canvas with a per-pixel mix of two materials (``weight_b`` in [0, 1])."""
        a = MATERIAL_TABLE[MATERIAL_INDEX[material_a]]
        d = MATERIAL_TABLE[MATERIAL_INDEX[material_b]] - a
        w = weight_b.astype(np.float32)
        # channel by channel, in place: the same float32 operations as a + (b - a) * w
        # without two (channels, H, W) temporaries (large ones cost page faults)
        for k in range(self.data.shape[0]):
            np.multiply(w, d[k], out=self.data[k])
            self.data[k] += a[k]

    def modulate(self, factor: np.ndarray) -> None:
        """Multiply reflectances (not SAR) by a per-pixel factor (texture brightness)."""
        self.data[:SAR_CHANNEL] *= factor.astype(np.float32)[None]

    def paint_shape(
        self,
        shape: str,
        cx_m: float,
        cy_m: float,
        length_m: float,
        width_m: float,
        heading_deg: float,
        material: str | np.ndarray,
        *,
        sar_only: bool = False,
    ) -> float:
        """Paint an oriented rectangle or ellipse with exact-area coverage.

        Args:
            shape: ``rect`` or ``ellipse``.
            cx_m: Centre x in world metres.
            cy_m: Centre y in world metres (down).
            length_m: Extent along the heading.
            width_m: Extent across the heading.
            heading_deg: Counter-clockwise from the x axis.
            material: A material name or a canvas vector.
            sar_only: Change only the SAR channel (double-bounce returns).

        Returns:
            The painted area in pixels (sum of coverage).
        """
        g = self.gsd_m
        c, s = math.cos(math.radians(heading_deg)), math.sin(math.radians(heading_deg))
        hl, hw = length_m / 2, width_m / 2
        ext_x = abs(hl * c) + abs(hw * s)
        ext_y = abs(hl * s) + abs(hw * c)
        px0, py0 = self.to_px(cx_m - ext_x, cy_m - ext_y)
        px1, py1 = self.to_px(cx_m + ext_x, cy_m + ext_y)
        c0, r0 = max(0, math.floor(px0)), max(0, math.floor(py0))
        c1, r1 = min(self.width, math.ceil(px1)), min(self.height, math.ceil(py1))
        if c1 <= c0 or r1 <= r0:
            return 0.0
        # supersampling: enough samples across the shape's smallest side that its area is
        # right to a few percent, down to sub-pixel shapes (a 0.18 px wide car at 10 m)
        smallest = min(length_m, width_m) / g
        ss = min(32, max(1, math.ceil(16 / max(smallest, 1e-9))))
        if shape not in ("rect", "ellipse"):
            raise ValueError(f"unknown shape {shape!r}; use 'rect' or 'ellipse'")
        sub = (np.arange(ss) + 0.5) / ss
        xs = self.origin_m[0] + (np.arange(c0, c1)[:, None] + sub[None, :]).reshape(-1) * g - cx_m
        ys = self.origin_m[1] + (np.arange(r0, r1)[:, None] + sub[None, :]).reshape(-1) * g - cy_m
        h, w = r1 - r0, c1 - c0
        if shape == "rect" and c == 1.0 and s == 0.0:
            # axis-aligned (heading 0: roads, parcels, walls): u = x and v = y exactly, so
            # the samples inside are (inside along x) x (inside along y); count per axis
            nx = (np.abs(xs) <= hl).reshape(w, ss).sum(axis=1, dtype=np.int32)
            ny = (np.abs(ys) <= hw).reshape(h, ss).sum(axis=1, dtype=np.int32)
            alpha = (ny[:, None] * nx[None, :]).astype(np.float32)
        else:
            dx, dy = xs[None, :], ys[:, None]
            u = dx * c - dy * s
            v = dx * s + dy * c
            if shape == "rect":
                inside = (np.abs(u) <= hl) & (np.abs(v) <= hw)
            else:
                inside = (u / hl) ** 2 + (v / hw) ** 2 <= 1.0
            alpha = inside.reshape(h, ss, w, ss).sum(axis=(1, 3), dtype=np.float32)
        if ss > 1:  # the mean of the ss x ss samples (counts are exact), as np.mean divides
            np.true_divide(alpha, np.intp(ss * ss), out=alpha, casting="unsafe")
        vec = MATERIAL_TABLE[MATERIAL_INDEX[material]] if isinstance(material, str) else material
        if sar_only:
            region = self.data[SAR_CHANNEL, r0:r1, c0:c1]
            region += alpha * (vec[SAR_CHANNEL] - region)
        elif h * w <= 4096:
            region = self.data[:, r0:r1, c0:c1]
            region += alpha[None] * (vec[:, None, None] - region)
        else:  # the same, channel by channel: no large (channels, h, w) temporaries
            tmp = np.empty((h, w), dtype=np.float32)
            for k in range(self.data.shape[0]):
                region = self.data[k, r0:r1, c0:c1]
                np.subtract(vec[k], region, out=tmp)
                tmp *= alpha
                region += tmp
        return float(alpha.sum())

    def paint_object(self, obj: PlacedObject) -> float:
        """Paint every part of an object (and its double-bounce return); returns its area
        in pixels."""
        cls = CLASSES[obj.cls]
        c, s = math.cos(math.radians(obj.heading_deg)), math.sin(math.radians(obj.heading_deg))
        area = 0.0
        for k, part in enumerate(cls.parts):
            du, dv = part.dx * obj.length_m, part.dy * obj.width_m
            px = obj.x_m + du * c + dv * s
            py = obj.y_m - du * s + dv * c
            material = obj.body if part.material == "body" else part.material
            a = self.paint_shape(
                part.shape, px, py, part.length * obj.length_m, part.width * obj.width_m,
                obj.heading_deg + part.angle, material,
            )  # fmt: skip
            if k == 0:
                area = a
        if obj.cls == "building":
            # double bounce: the wall facing the sensor (looking from the west) and the
            # ground form a corner reflector: a bright SAR line along the west side
            ext_x = abs(obj.length_m / 2 * c) + abs(obj.width_m / 2 * s)
            ext_y = abs(obj.length_m / 2 * s) + abs(obj.width_m / 2 * c)
            wall = max(self.gsd_m, 1.0)
            self.paint_shape(
                "rect", obj.x_m - ext_x + wall / 2, obj.y_m, wall, 1.8 * ext_y, 0.0,
                _BRIGHT_SAR, sar_only=True,
            )  # fmt: skip
        return area


_BRIGHT_SAR = np.zeros(N_CHANNELS, dtype=np.float32)
_BRIGHT_SAR[SAR_CHANNEL] = 10 ** (12 / 10)  # +12 dB corner reflection

#: Gaussian point-spread function, sigma ~0.5 px (3 taps).
_PSF = np.array([0.1065, 0.787, 0.1065], dtype=np.float32)


def _blur(img: np.ndarray) -> np.ndarray:
    """Separable 3-tap PSF over the last two axes (edges replicated)."""
    p = np.pad(img, [(0, 0)] * (img.ndim - 2) + [(1, 1), (1, 1)], mode="edge")
    k = _PSF
    rows = k[0] * p[..., :-2, :] + k[1] * p[..., 1:-1, :] + k[2] * p[..., 2:, :]
    return k[0] * rows[..., :-2] + k[1] * rows[..., 1:-1] + k[2] * rows[..., 2:]


def cloud_alpha(canvas: Canvas, cover: float, seed: int) -> np.ndarray:
    """A cloud opacity map in [0, 1] covering about ``cover`` of the canvas.

    Departure from physics, on purpose: cloud features are sized relative to the
    canvas (a third of its extent), not in kilometres, so that partial cover, the
    interesting case for optical + SAR fusion, happens at every GSD.
    """
    if cover <= 0:
        return np.zeros((canvas.height, canvas.width), dtype=np.float32)
    xs, ys = canvas.pixel_centres_m()
    spacing = max(canvas.width, canvas.height) * canvas.gsd_m / 3
    n = fractal_noise(xs, ys, spacing, seed, octaves=4)
    threshold = np.quantile(n, 1 - cover) if cover < 1 else -1.0
    alpha = np.clip((n - threshold) / 0.08, 0, 1)
    return alpha.astype(np.float32)


def optical_view(
    canvas: Canvas,
    rng: np.random.Generator,
    clouds: np.ndarray | None = None,
    noise: float = 0.004,
) -> np.ndarray:
    """The optical RGB view as uint8 (3, H, W): PSF, optional clouds, sensor noise."""
    refl = _blur(canvas.data[list(RGB_INDEX)])
    if clouds is not None:
        cloud = MATERIAL_TABLE[MATERIAL_INDEX["cloud"]][list(RGB_INDEX)][:, None, None]
        refl = refl + (cloud - refl) * clouds[None]
    refl = refl + rng.normal(0.0, noise, refl.shape).astype(np.float32)
    # display scaling: reflectance 0-0.4 to 0-255 with a mild gamma, as true-colour products do
    out = np.clip(refl / 0.4, 0, 1) ** (1 / 1.4)
    return (out * 255 + 0.5).astype(np.uint8)


def multispectral_view(
    canvas: Canvas,
    rng: np.random.Generator,
    clouds: np.ndarray | None = None,
    noise: float = 0.003,
) -> np.ndarray:
    """The multispectral view as uint16 reflectance x 10000 (10, H, W), Sentinel-2 style."""
    refl = _blur(canvas.data[:SAR_CHANNEL])
    if clouds is not None:
        cloud = MATERIAL_TABLE[MATERIAL_INDEX["cloud"]][:SAR_CHANNEL][:, None, None]
        refl = refl + (cloud - refl) * clouds[None]
    refl = refl + rng.normal(0.0, noise, refl.shape).astype(np.float32)
    return (np.clip(refl, 0, 1) * 10000 + 0.5).astype(np.uint16)


#: SAR display scaling: uint8 value v <-> sigma0 dB = v / 255 * SAR_DB_SPAN + SAR_DB_MIN.
SAR_DB_MIN, SAR_DB_SPAN = -30.0, 40.0


def sar_view(canvas: Canvas, rng: np.random.Generator, looks: int = 4) -> np.ndarray:
    """The SAR view as uint8 (1, H, W) of sigma0 in dB, with multiplicative speckle.

    Speckle is Gamma(looks, 1/looks) on intensity (fully developed, ``looks``-look).
    Clouds are transparent to SAR, so this view never shows them.
    """
    sigma0 = _blur(canvas.data[SAR_CHANNEL][None])[0]
    speckle = rng.gamma(looks, 1.0 / looks, sigma0.shape).astype(np.float32)
    db = 10 * np.log10(np.maximum(sigma0 * speckle, 1e-6))
    v = np.clip((db - SAR_DB_MIN) / SAR_DB_SPAN, 0, 1)
    return (v * 255 + 0.5).astype(np.uint8)[None]
