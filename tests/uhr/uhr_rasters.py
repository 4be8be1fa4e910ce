"""Rasters for the UHR reader and zoom-tool tests, generated (never downloaded).

:func:`write_coded_tif`: a 3072 x 2048 px tiled GeoTIFF (512 px blocks, deflate) with 2x, 4x and
8x overviews, georeferenced at 0.5 m in UTM 33N, whose pixels encode their own position
(:func:`coded_pixels`), so a view's pixels say which source pixels it shows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rasterio.transform import Affine

from earthvlm.data.resolution import Resolution
from earthvlm.geo.raster import write_geotiff
from earthvlm.scale.gsd import GSD

WIDTH, HEIGHT = 3072, 2048
#: Qwen3-VL-like token side 32; views of at most 384 x 256 px (12 x 8 tokens).
RESOLUTION = Resolution(factor=32, min_pixels=32 * 32, max_pixels=384 * 256)
SOURCE_GSD = GSD.exact(0.5, "metadata", "test raster")
UTM = Affine(0.5, 0.0, 500_000.0, 0.0, -0.5, 5_000_000.0)


def coded_pixels(x1: int = 0, y1: int = 0, x2: int = WIDTH, y2: int = HEIGHT) -> np.ndarray:
    """``(h, w, 3)`` uint8 of the coded raster over a window: red = x mod 256, green =
    y mod 256, blue = the 256 px cell (x // 256 + 16 * (y // 256)); unique per pixel."""
    y, x = np.mgrid[y1:y2, x1:x2]
    return np.stack([x % 256, y % 256, (x // 256 + 16 * (y // 256)) % 256], axis=-1).astype(
        np.uint8
    )


def write_coded_tif(path: Path) -> Path:
    """Write the coded raster (see the module docstring) to ``path``."""
    data = np.ascontiguousarray(coded_pixels().transpose(2, 0, 1))
    return write_geotiff(
        path, data, crs="EPSG:32633", transform=UTM, tiled=True, overviews=(2, 4, 8)
    )
