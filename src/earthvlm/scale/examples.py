"""Generated GeoTIFFs whose GSD is known from first principles.

Each example is written with a known CRS and geotransform (or GCPs, or nothing), and
its expected ground pixel size is computed here analytically, independently of
:mod:`earthvlm.scale.georef` (meridian and parallel arc lengths of the WGS84 ellipsoid,
the transverse Mercator scale factor on its central meridian). The quickstart and the
tests use them to show the resolver is right where naive code is wrong.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import Affine

_A = 6378137.0  # WGS84 semi-major axis (m)
_E2 = 6.69437999014e-3  # WGS84 first eccentricity squared
_K0_UTM = 0.9996  # UTM scale factor on the central meridian


def parallel_m_per_deg(lat_deg: float) -> float:
    """Ground metres per degree of longitude at a latitude (WGS84)."""
    phi = math.radians(lat_deg)
    n = _A / math.sqrt(1 - _E2 * math.sin(phi) ** 2)
    return math.radians(1) * n * math.cos(phi)


def meridian_m_per_deg(lat_deg: float) -> float:
    """Ground metres per degree of latitude at a latitude (WGS84)."""
    phi = math.radians(lat_deg)
    m = _A * (1 - _E2) / (1 - _E2 * math.sin(phi) ** 2) ** 1.5
    return math.radians(1) * m


@dataclass(frozen=True)
class GeorefExample:
    """One generated file and the GSD it should resolve to.

    Attributes:
        name: A short case name.
        path: The written file.
        expected_x_m: Expected ground size along a row (``None``: unknown expected).
        expected_y_m: Expected ground size along a column.
        note: What the case shows.
    """

    name: str
    path: Path
    expected_x_m: float | None
    expected_y_m: float | None
    note: str

    @property
    def expected_m(self) -> float | None:
        """The expected GSD: geometric mean of the per-axis sizes."""
        if self.expected_x_m is None or self.expected_y_m is None:
            return None
        return math.sqrt(self.expected_x_m * self.expected_y_m)


def _write(
    path: Path,
    *,
    crs: CRS | None,
    transform: Affine | None,
    size: int = 64,
    gcps: list[GroundControlPoint] | None = None,
) -> Path:
    rng = np.random.default_rng(0)
    data = rng.integers(0, 255, (1, size, size), dtype=np.uint8)
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 1,
        "dtype": "uint8",
    }
    if crs is not None and gcps is None:
        profile["crs"] = crs
    if transform is not None:
        profile["transform"] = transform
    with warnings.catch_warnings():  # the no-georeference cases are deliberate
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)
            if gcps is not None:
                dst.gcps = (gcps, crs)
    return path


def write_georef_examples(out_dir: str | Path) -> list[GeorefExample]:
    """Write the example GeoTIFFs into ``out_dir`` and return them with their truths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = 64
    half = n / 2
    ex: list[GeorefExample] = []

    # UTM 33N, 0.3 m grid pixels centred on the central meridian (15 E) at ~45 N:
    # ground = grid / k0 there.
    t = Affine(0.3, 0, 500000 - half * 0.3, 0, -0.3, 4_984_000 + half * 0.3)
    p = _write(out / "utm33n_0.3m.tif", crs=CRS.from_epsg(32633), transform=t)
    ex.append(GeorefExample("UTM metres", p, 0.3 / _K0_UTM, 0.3 / _K0_UTM, "EPSG:32633, 0.3 m"))

    # UTM in kilometres: 0.01 km pixels are 10 m, not 0.01 m
    km = CRS.from_proj4("+proj=utm +zone=33 +datum=WGS84 +units=km +no_defs")
    t = Affine(0.01, 0, 500 - half * 0.01, 0, -0.01, 4984 + half * 0.01)
    p = _write(out / "utm33n_km_units.tif", crs=km, transform=t)
    ex.append(GeorefExample("UTM kilometres", p, 10 / _K0_UTM, 10 / _K0_UTM, "0.01 km pixels"))

    # US survey feet (NY Long Island, Lambert conformal; scale ~1 inside the zone):
    # 1 ftUS pixels are 0.3048006 m, not 1 m
    ft = 1200 / 3937
    t = Affine(1.0, 0, 1_000_000 - half, 0, -1.0, 200_000 + half)
    p = _write(out / "ny_longisland_ftUS.tif", crs=CRS.from_epsg(2263), transform=t)
    ex.append(GeorefExample("US survey feet", p, ft, ft, "EPSG:2263, 1 ftUS"))

    # Web Mercator at 60 N: a 1 "m" pixel is ~0.5 m on the ground (x = a * lon)
    lat = 60.0
    y0 = _A * math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))
    t = Affine(1.0, 0, -half, 0, -1.0, y0 + half)
    p = _write(out / "webmercator_60N.tif", crs=CRS.from_epsg(3857), transform=t)
    phi = math.radians(lat)
    wx = math.cos(phi) / math.sqrt(1 - _E2 * math.sin(phi) ** 2)
    wy = math.cos(phi) * (1 - _E2) / (1 - _E2 * math.sin(phi) ** 2) ** 1.5
    ex.append(GeorefExample("Web Mercator 60N", p, wx, wy, "EPSG:3857 1 m grid, ~cos(60)"))

    # Geographic degrees at the equator: 0.001 deg pixels are ~111 m, not 0.001 m
    d = 0.001
    t = Affine(d, 0, -half * d, 0, -d, half * d)
    p = _write(out / "wgs84_equator_0.001deg.tif", crs=CRS.from_epsg(4326), transform=t)
    ex.append(
        GeorefExample(
            "geographic degrees",
            p,
            parallel_m_per_deg(0) * d,
            meridian_m_per_deg(0) * d,
            "EPSG:4326, 0.001 deg",
        )
    )

    # A rotated (30 deg) UTM grid with 2 m pixels: rotation must not change the GSD
    t = Affine.translation(500000, 4_984_000) @ Affine.rotation(30) @ Affine.scale(2, -2)
    t = t @ Affine.translation(-half, -half)
    p = _write(out / "utm33n_rotated30_2m.tif", crs=CRS.from_epsg(32633), transform=t)
    ex.append(GeorefExample("rotated affine", p, 2 / _K0_UTM, 2 / _K0_UTM, "30 deg rotation"))

    # GCPs only (no geotransform): 64 px spanning 0.0064 deg at the equator
    gcps = [
        GroundControlPoint(row=r, col=c, x=c * 1e-4, y=-r * 1e-4, id=f"{r}-{c}")
        for r in (0, n)
        for c in (0, n)
    ]
    p = _write(out / "gcps_only.tif", crs=CRS.from_epsg(4326), transform=None, gcps=gcps)
    ex.append(
        GeorefExample(
            "GCPs only",
            p,
            parallel_m_per_deg(0) * 1e-4,
            meridian_m_per_deg(0) * 1e-4,
            "4 GCPs, EPSG:4326",
        )
    )

    # No CRS: a 100-unit pixel in unknown units must stay unknown
    p = _write(out / "no_crs.tif", crs=None, transform=Affine(100, 0, 0, 0, -100, 0))
    ex.append(GeorefExample("no CRS", p, None, None, "unknown, never 'metres'"))

    # No georeferencing at all, but a Sentinel-2 band name: the name resolves it (B05: 20 m)
    p = _write(out / "T32TQM_20200101T101021_B05.tif", crs=None, transform=None)
    ex.append(GeorefExample("S2 name only", p, 20.0, 20.0, "resolved from the band name"))
    return ex
