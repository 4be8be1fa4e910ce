"""Fixtures shared by several test modules.

Keep this file small: only fixtures used by more than one module belong here.

* ``write_geotiff``: writes a tiny GeoTIFF with a chosen CRS, affine transform or GCPs
  (used by the georef, raster and resolver tests).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.errors import NotGeoreferencedWarning


@pytest.fixture
def write_geotiff() -> Callable[..., Path]:
    """A factory ``write_geotiff(path, *, crs=None, transform=None, gcps=None, ...)``.

    Writes ``data`` (default: ``arange`` over a ``(count, height, width)`` uint8 array)
    to a GeoTIFF at ``path`` and returns the path. ``crs`` is anything rasterio accepts
    (``"EPSG:32633"``, a PROJ string); ``transform`` an ``Affine`` (rasterio's identity
    when omitted); ``gcps`` a list of ``GroundControlPoint`` in ``crs``.
    """

    def _write(
        path: Path,
        *,
        crs: Any = None,
        transform: Any = None,
        gcps: Sequence[Any] | None = None,
        width: int = 4,
        height: int = 4,
        count: int = 1,
        dtype: str = "uint8",
        data: np.ndarray | None = None,
    ) -> Path:
        if data is None:
            data = (np.arange(count * height * width) % 251).reshape(count, height, width)
        data = np.asarray(data, dtype=dtype)
        count, height, width = data.shape
        profile: dict[str, Any] = {
            "driver": "GTiff",
            "width": width,
            "height": height,
            "count": count,
            "dtype": dtype,
            "crs": crs,
        }
        if gcps is not None:
            profile["gcps"] = list(gcps)
        elif transform is not None:
            profile["transform"] = transform
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(data)
        return Path(path)

    return _write
