"""Reading huge rasters as views: a global view from the best overview, crops by window.

An ultra-high-resolution (UHR) scene 20,000 px a side is 1.2 GB as RGB; decoding it
whole to show a 512 px global view is what the reference code does, and what
:class:`UHRReader` never does. Two paths, chosen by the file's format:

* **Windowed** (tiled GeoTIFF / COG, JPEG 2000, NITF): a view is read from the coarsest
  level (full resolution or an internal overview) that is still at least as fine as
  the view, only over the view's window, then resized with PIL's bicubic filter (the
  image processor's own) to the exact size the processor keeps. The global view comes
  from the best overview; a native crop reads its window at full resolution. Memory
  scales with the view, not the scene. A raster without overviews still works: a
  window up to ``max_decode_pixels`` is read and resized; a larger one goes through
  GDAL's decimated (average) read, which holds only the output but decodes every
  pixel, so past ``max_scan_pixels`` it is refused (build overviews with ``gdaladdo``).
* **Bounded** (JPEG, PNG): these cannot be read by window, so the image is decoded once,
  after its header's pixel count is checked against ``max_decode_pixels``: a
  decompression bomb is refused before a pixel is decoded, with the file and the budget
  named. Decoding goes through the collator's decoder
  (:func:`earthvlm.data.pixels.decode_image`: EXIF orientation, alpha onto white), so a
  JPEG seen here and in training gives the same pixels (a 16-bit PNG is converted as
  Pillow converts it there, not stretched). A legitimate large JPEG or PNG
  belongs on the windowed path: convert it (``gdal_translate -of COG in.jpg out.tif``).

Every file is opened by :func:`earthvlm.geo.raster.open_raster` (local files only, format
sniffed, VRTs refused unless allowed, header sizes checked).

Bands and sample types become RGB uint8, what the collator expects:

* bands: the red, green and blue bands when the file declares them (colour
  interpretation); else one or two bands are grey (band 1, repeated); else bands 1-3.
  :attr:`ReaderConfig.bands` overrides (``(3, 2, 1)`` for a B, G, R, NIR product). An
  alpha band is composited onto white and a palette is applied, as the processor does.
* sample types other than uint8 (uint16, int16, float32) get a *linear percentile
  stretch*: per band, the 2nd and 98th percentiles (:attr:`ReaderConfig.stretch_percentiles`)
  of the valid samples (nodata and NaN excluded) of a view of the whole raster about
  1024 px a side map to 0 and 255, clipped and rounded. The same bounds serve every view
  of the raster, so a crop and the global view show the same radiometry (a stretch per
  view would brighten dark crops and make the views disagree). A constant band maps to 0.

Each view carries the GSD of what it shows (:class:`~earthvlm.uhr.view.View`): the size
and GSD come from :meth:`earthvlm.data.resolution.Resolution.plan` of its window, so the
global view's GSD is the source GSD times the downsampling factor and a native crop
keeps the source GSD.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from earthvlm.data.pixels import BICUBIC, ImageDecodeError, array_to_rgb, decode_image
from earthvlm.data.resolution import Resolution
from earthvlm.errors import RasterError
from earthvlm.geo.raster import (
    DEFAULT_MAX_READ_PIXELS,
    open_overview,
    open_raster,
    read_pixels,
)
from earthvlm.scale.gsd import GSD
from earthvlm.uhr.view import View

#: Formats decoded whole (under the pixel budget); every other format is read by window.
BOUNDED_DRIVERS = ("JPEG", "PNG")
#: Side (px) of the whole-raster sample the percentile stretch is computed on.
STRETCH_SAMPLE_PX = 1024


@dataclass(frozen=True)
class ReaderConfig:
    """How a :class:`UHRReader` reads a raster. The defaults suit untrusted files."""

    max_decode_pixels: int = DEFAULT_MAX_READ_PIXELS
    """Most pixels decoded into memory by one read: a whole JPEG or PNG (checked on the
    header, before decoding) or one window of one raster level; also the largest block
    (internal tile or strip) accepted. Pillow's bomb threshold by default; Pillow's own
    limit (twice that) still applies to JPEG and PNG."""
    max_scan_pixels: int = 1 << 30
    """Most source pixels one decimated read may decode when no overview is coarse
    enough (about 32,768 px a side). Above, the read is refused: build overviews."""
    stretch_percentiles: tuple[float, float] = (2.0, 98.0)
    """Percentiles mapped to 0 and 255 for sample types other than uint8."""
    bands: tuple[int, ...] | None = None
    """1-based bands to show: one (grey) or three (red, green, blue); ``None`` decides
    from the file's colour interpretation (see the module docstring)."""
    allow_vrt: bool = False
    """Accept a GDAL VRT whose sources stay in its folder (paths a person typed only)."""

    def __post_init__(self) -> None:
        if self.max_decode_pixels < 1 or self.max_scan_pixels < self.max_decode_pixels:
            raise ValueError(
                f"max_decode_pixels={self.max_decode_pixels}, max_scan_pixels="
                f"{self.max_scan_pixels}: need 1 <= max_decode_pixels <= max_scan_pixels"
            )
        lo, hi = self.stretch_percentiles
        if not 0 <= lo < hi <= 100:
            raise ValueError(
                f"stretch_percentiles={self.stretch_percentiles}: need 0 <= lo < hi <= 100"
            )
        if self.bands is not None and (
            len(self.bands) not in (1, 3) or any(int(b) != b or b < 1 for b in self.bands)
        ):
            raise ValueError(
                f"bands={self.bands}: give one band (grey) or three (red, green, blue), 1-based"
            )


class UHRReader:
    """Views of one raster: the global view and windows, each with its own GSD.

    Use as a context manager (the file stays open between reads)::

        with UHRReader(path, Resolution(32, 32 * 32, 1024 * 1024)) as reader:
            overview = reader.global_view(max_pixels=512 * 512)
            crop = reader.read((8000, 8000, 9024, 9024))  # native: GSD of the source

    Args:
        path: A local raster file.
        resolution: The backbone's dynamic-resolution policy: a view is resized to
            exactly what its image processor keeps (sides multiples of ``factor``, area
            within ``[min_pixels, max_pixels]``), so the processor does not resize again.
        gsd: The source GSD; ``None`` measures it from the file's georeferencing (unknown
            when it has none). Pass the resolved value
            (:func:`earthvlm.scale.resolve.resolve_gsd`) for GSDs from metadata.
        config: Budgets, stretch and band choice.

    Raises:
        RasterError: If the file is refused, cannot be opened, is over a budget or has
            blocks larger than ``max_decode_pixels``. The message names the file.
    """

    def __init__(
        self,
        path: str | Path,
        resolution: Resolution,
        *,
        gsd: GSD | None = None,
        config: ReaderConfig | None = None,
    ) -> None:
        self.path = Path(path)
        self.resolution = resolution
        self.config = config or ReaderConfig()
        self._stack = ExitStack()
        self._levels: dict[int, Any] = {}  # decimation factor -> open dataset
        self._image: np.ndarray | None = None  # a decoded JPEG / PNG, (H, W, 3) uint8
        self._bounds: np.ndarray | None = None  # stretch (lo, hi) per colour band
        self._closed = False
        try:
            self._open()
            if gsd is None:
                # imported here: pyproj and the PROJ database add ~35 MB to a process
                # that is given its GSD (the usual case: records carry it)
                from earthvlm.scale.georef import gsd_from_raster

                gsd = gsd_from_raster(self.path, allow_vrt=self.config.allow_vrt).gsd
            self.gsd = gsd
        except BaseException:
            self._stack.close()
            raise

    # -- opening ----------------------------------------------------------------------

    def _open(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            ds = self._stack.enter_context(open_raster(self.path, allow_vrt=self.config.allow_vrt))
        self.driver: str = ds.driver
        budget = self.config.max_decode_pixels
        if self.driver in BOUNDED_DRIVERS:
            n = ds.width * ds.height
            if n > budget:
                raise RasterError(
                    f"{self.path}: a {ds.width} x {ds.height} px {self.driver} is {n:,} px, "
                    f"over the full-decode budget of {budget:,} px (max_decode_pixels); "
                    f"{self.driver} cannot be read by windows. Convert it to a tiled GeoTIFF "
                    "with overviews (gdal_translate -of COG) or, if the file is trusted, "
                    "raise max_decode_pixels."
                )
            self._stack.close()  # the header was all GDAL was needed for
            try:
                rgb = np.asarray(decode_image(self.path, max_pixels=budget))
            except ImageDecodeError as e:
                raise RasterError(str(e)) from None
            self._image = rgb
            self.source_hw: tuple[int, int] = (int(rgb.shape[0]), int(rgb.shape[1]))
            self.overviews: tuple[int, ...] = ()
            self.dtype = "uint8"
            self.bands: tuple[int, ...] = (1, 2, 3)
            self._alpha: int | None = None
            self._lut: np.ndarray | None = None
            return
        bh, bw = ds.block_shapes[0]
        if bh * bw > budget:
            raise RasterError(
                f"{self.path}: blocks of {bw} x {bh} px exceed max_decode_pixels={budget:,}; "
                "a window read would decode a whole block. Re-tile it "
                "(gdal_translate -co TILED=YES) or raise max_decode_pixels if trusted."
            )
        self.source_hw = (ds.height, ds.width)
        self.overviews = tuple(sorted(set(ds.overviews(1))))
        self.dtype = ds.dtypes[0]
        self.bands, self._alpha, self._lut = _pick_bands(ds, self.config.bands)
        self._nodata = ds.nodatavals
        self._levels[1] = ds

    def _level(self, factor: int) -> Any:
        """The open dataset of the level with decimation ``factor`` (1: full resolution)."""
        if factor not in self._levels:
            base = self._levels[1]
            # the same rules as the file itself (no sidecar files: an X.tif.ovr is never read)
            ds = open_overview(base, self.overviews.index(factor))
            self._levels[factor] = self._stack.enter_context(ds)
        return self._levels[factor]

    def close(self) -> None:
        """Close the file (and any overview opened); later reads raise."""
        self._stack.close()
        self._levels.clear()
        self._image = None
        self._closed = True

    def __enter__(self) -> UHRReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- views ------------------------------------------------------------------------

    @property
    def stretch_bounds(self) -> np.ndarray | None:
        """``(bands, 2)`` percentile bounds ``(lo, hi)`` of the stretch, one row per shown
        band; ``None`` for uint8 rasters (no stretch). Computed on first use."""
        if self.dtype == "uint8" or self._lut is not None:
            return None
        if self._bounds is None:
            self._bounds = self._compute_bounds()
        return self._bounds

    def global_view(self, *, max_pixels: int | None = None) -> View:
        """The whole raster, downsampled to the model's pixel budget.

        Args:
            max_pixels: The global view's budget; default ``resolution.max_pixels`` (the
                budget of every view). A smaller one gives a cheaper overview while crops
                keep the larger budget.
        """
        res = self.resolution
        if max_pixels is not None:
            res = replace(res, max_pixels=max_pixels, min_pixels=min(res.min_pixels, max_pixels))
        h, w = self.source_hw
        plan = res.plan(h, w, self.gsd)
        return self._view((0, 0, w, h), plan.resized_hw, plan.gsd)

    def read(self, window_xyxy_px: Sequence[int]) -> View:
        """A window of source pixels, natively when the model's budget allows.

        The view is resized only when the processor would resize it: a window whose
        sides are multiples of ``resolution.factor`` and whose area lies in
        ``[min_pixels, max_pixels]`` is native (its GSD is the source GSD); a larger one is
        downsampled (its GSD scaled up), a smaller one enlarged (scaled down).

        Args:
            window_xyxy_px: ``(x1, y1, x2, y2)`` integers inside the raster, ``x1 < x2``,
                ``y1 < y2``.

        Raises:
            ValueError: For a window that is not integers inside the raster.
            RasterError: If the pixels cannot be read (corrupt file) or a budget is exceeded.
        """
        x1, y1, x2, y2 = self._check_window(window_xyxy_px)
        plan = self.resolution.plan(y2 - y1, x2 - x1, self.gsd)
        return self._view((x1, y1, x2, y2), plan.resized_hw, plan.gsd)

    def _check_window(self, window: Sequence[int]) -> tuple[int, int, int, int]:
        h, w = self.source_hw
        try:
            values = [float(v) for v in window]
        except (TypeError, ValueError):
            values = []
        if len(values) != 4 or any(not math.isfinite(v) or v != int(v) for v in values):
            raise ValueError(f"window {window!r}: give four integers (x1, y1, x2, y2)")
        x1, y1, x2, y2 = (int(v) for v in values)
        if not (0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h):
            raise ValueError(
                f"window {(x1, y1, x2, y2)} is not inside the {w} x {h} px raster "
                f"{self.path.name} with x1 < x2, y1 < y2; clip it first "
                "(earthvlm.geo.boxes.clip_xyxy)"
            )
        return x1, y1, x2, y2

    def _view(self, window: tuple[int, int, int, int], out_hw: tuple[int, int], gsd: GSD) -> View:
        if self._closed:
            raise RasterError(f"{self.path}: the reader is closed")
        if self._image is not None:
            x1, y1, x2, y2 = window
            rgb, box, level = self._image[y1:y2, x1:x2].copy(), (0.0, 0.0, x2 - x1, y2 - y1), 1
        else:
            raw, box, level = self._read_raw(window, out_hw)
            rgb = self._to_rgb(raw)
            del raw  # before resizing: peak memory is about two copies of the window
        pixels = _resize(rgb, out_hw, box)
        pixels.flags.writeable = False
        return View(pixels, window, gsd, self.source_hw, level)

    # -- reading ----------------------------------------------------------------------

    def _read_raw(
        self, window: tuple[int, int, int, int], out_hw: tuple[int, int]
    ) -> tuple[np.ndarray, tuple[float, float, float, float], int]:
        """Raw bands ``(b, h, w)`` covering ``window``, the window's box inside them (to
        resample to ``out_hw``), and the level's decimation factor."""
        x1, y1, x2, y2 = window
        need = min((x2 - x1) / out_hw[1], (y2 - y1) / out_hw[0])  # the view's decimation
        factor = max((f for f in (1, *self.overviews) if f <= need), default=1)
        ds = self._level(factor)
        (h, w), cfg = self.source_hw, self.config
        sx, sy = ds.width / w, ds.height / h  # exact level size / source size
        fx1, fy1, fx2, fy2 = x1 * sx, y1 * sy, x2 * sx, y2 * sy
        lx1, ly1 = math.floor(fx1), math.floor(fy1)
        lx2, ly2 = min(math.ceil(fx2), ds.width), min(math.ceil(fy2), ds.height)
        n = (lx2 - lx1) * (ly2 - ly1)
        indexes = [*self.bands, *([self._alpha] if self._alpha else [])]
        if n <= cfg.max_decode_pixels:
            level_window = Window(lx1, ly1, lx2 - lx1, ly2 - ly1)
            budget = cfg.max_decode_pixels
            raw = read_pixels(ds, window=level_window, bands=indexes, max_pixels=budget)
            return raw, (fx1 - lx1, fy1 - ly1, fx2 - lx1, fy2 - ly1), factor
        if n > cfg.max_scan_pixels:
            raise RasterError(
                f"{self.path}: a {x2 - x1} x {y2 - y1} px view would decode {n:,} px "
                f"(level {factor}x), over max_scan_pixels={cfg.max_scan_pixels:,}; build "
                "overviews (gdaladdo -r average) so views read a coarser level."
            )
        # no overview coarse enough: GDAL decimates while reading, block by block
        resampling = Resampling.nearest if self._lut is not None else Resampling.average
        float_window = Window(fx1, fy1, fx2 - fx1, fy2 - fy1)
        raw = _read_resampled(ds, float_window, out_hw, indexes, resampling)
        return raw, (0.0, 0.0, float(out_hw[1]), float(out_hw[0])), factor

    def _to_rgb(self, raw: np.ndarray) -> np.ndarray:
        """Raw bands (colour bands, then alpha) -> ``(h, w, 3)`` uint8 RGB."""
        if self._lut is not None:
            lut = self._lut
            rgba = lut[np.clip(raw[0], 0, len(lut) - 1).astype(np.intp)]
            return array_to_rgb(rgba)
        n = len(self.bands)
        colour = raw[:n]
        if colour.dtype != np.uint8:
            colour = _stretch(colour, self.stretch_bounds)  # type: ignore[arg-type]
        planes = [colour[i] for i in range(n)] * (3 if n == 1 else 1)
        if self._alpha:
            planes.append(_alpha_u8(raw[n]))
        return array_to_rgb(np.ascontiguousarray(np.stack(planes, axis=-1)))

    def _compute_bounds(self) -> np.ndarray:
        h, w = self.source_hw
        s = min(1.0, STRETCH_SAMPLE_PX / max(h, w))
        out_hw = (max(1, round(h * s)), max(1, round(w * s)))
        raw, _, _ = self._read_raw((0, 0, w, h), out_hw)
        lo_p, hi_p = self.config.stretch_percentiles
        bounds = np.zeros((len(self.bands), 2))
        for i, band in enumerate(self.bands):
            values = raw[i].astype(np.float64).ravel()
            valid = np.isfinite(values)
            nodata = self._nodata[band - 1]
            if nodata is not None and not math.isnan(nodata):
                valid &= values != nodata
            values = values[valid]
            lo, hi = np.percentile(values, [lo_p, hi_p]) if values.size else (0.0, 1.0)
            bounds[i] = lo, (hi if hi > lo else lo + 1.0)
        return bounds


def _pick_bands(ds: Any, bands: tuple[int, ...] | None) -> tuple[tuple[int, ...], int | None, Any]:
    """``(colour bands, alpha band or None, palette lookup table or None)`` of a dataset."""
    count, ci = ds.count, list(ds.colorinterp)
    if bands is not None:
        if max(bands) > count:
            raise RasterError(f"{ds.name}: bands={bands} but the file has {count} band(s)")
        return tuple(int(b) for b in bands), None, None
    alpha = ci.index(ColorInterp.alpha) + 1 if ColorInterp.alpha in ci else None
    others = [b for b in range(1, count + 1) if b != alpha]
    if ci[0] == ColorInterp.palette:
        try:
            cmap = ds.colormap(1)
        except ValueError:  # no colour table after all: grey
            return (1,), alpha, None
        lut = np.zeros((max(cmap) + 1, 4), dtype=np.uint8)
        for k, rgba in cmap.items():
            lut[k] = rgba
        return (1,), None, lut
    rgb = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
    if all(c in ci for c in rgb):
        return tuple(ci.index(c) + 1 for c in rgb), alpha, None
    if len(others) <= 2:
        return (others[0],), alpha, None
    return tuple(others[:3]), alpha, None


def _stretch(colour: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Linear stretch of ``(b, h, w)`` samples: ``lo -> 0``, ``hi -> 255``; NaN -> 0."""
    out = np.empty(colour.shape, dtype=np.uint8)
    for i in range(colour.shape[0]):
        lo, hi = bounds[i]
        scaled = (colour[i].astype(np.float32) - lo) * np.float32(255.0 / (hi - lo))
        np.rint(np.clip(np.nan_to_num(scaled, nan=0.0), 0, 255), out=scaled)
        out[i] = scaled
    return out


def _alpha_u8(alpha: np.ndarray) -> np.ndarray:
    """An alpha band as uint8 (integers scaled from their type's range, floats from 0-1)."""
    if alpha.dtype == np.uint8:
        return alpha
    if np.issubdtype(alpha.dtype, np.integer):
        top = np.iinfo(alpha.dtype).max
        return np.rint(np.clip(alpha, 0, top) * (255.0 / top)).astype(np.uint8)
    return np.rint(np.clip(np.nan_to_num(alpha), 0, 1) * 255).astype(np.uint8)


def _read_resampled(
    ds: Any, window: Window, out_hw: tuple[int, int], indexes: list[int], resampling: Resampling
) -> np.ndarray:
    """GDAL's decimated read of a (fractional) window straight to ``out_hw``.
    (:func:`~earthvlm.geo.raster.read_pixels` reads at full resolution only.)"""
    try:
        return ds.read(indexes, window=window, out_shape=(len(indexes), *out_hw),
                       resampling=resampling)  # fmt: skip
    except RasterioError as e:
        raise RasterError(
            f"{ds.name}: pixel data cannot be read ({e}); the file is corrupt or truncated"
        ) from None


def _resize(
    rgb: np.ndarray, out_hw: tuple[int, int], box: tuple[float, float, float, float]
) -> np.ndarray:
    """``box`` of ``rgb`` (C-contiguous uint8) resized to ``out_hw`` with PIL's bicubic;
    ``rgb`` itself when that changes nothing."""
    h, w = rgb.shape[:2]
    if tuple(out_hw) == (h, w) and tuple(box) == (0, 0, w, h):
        return rgb
    image = Image.fromarray(rgb)
    return np.array(image.resize((out_hw[1], out_hw[0]), BICUBIC, box=box))


__all__ = ["BOUNDED_DRIVERS", "STRETCH_SAMPLE_PX", "ReaderConfig", "UHRReader"]
