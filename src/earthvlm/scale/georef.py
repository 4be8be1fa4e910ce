"""GSD measured from a raster's georeferencing.

The GSD of a georeferenced raster is the ground distance between adjacent pixel centres
at the image centre, along the pixel column axis (x) and the row axis (y), measured on
the WGS84 ellipsoid. One mechanism covers every case that trips naive code:

* projected CRSs in any linear unit (metres, US survey feet, kilometres): the pixel's
  corners are unprojected, so units and the projection's scale factor drop out;
* Web Mercator: a 0.597 m "pixel" at 37.7 N is 0.47 m on the ground;
* geographic CRSs: a 0.125 degree pixel is ~13.9 km, not 0.125 m;
* rotated or sheared affine transforms: steps are taken along the pixel axes;
* ground control points (GCPs) or rational polynomial coefficients (RPCs) instead of
  a geotransform: GDAL's GCP / RPC transformers map pixels to coordinates.

A raster with no CRS has pixel sizes in unknown units: its GSD is unknown, never
silently "metres". The computation uses the projection's own geodetic CRS (no datum
shift, which could need grids unavailable offline); the distance is then taken on the
WGS84 ellipsoid, whose difference from other Earth ellipsoids is ~1e-5 relative.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from pyproj import CRS, Geod, Transformer
from pyproj.exceptions import CRSError, ProjError
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.transform import GCPTransformer, RPCTransformer

from earthvlm.errors import GSDError
from earthvlm.geo.raster import open_raster
from earthvlm.scale.gsd import GSD, GSDSource

_WGS84 = Geod(ellps="WGS84")

#: Maps pixel coordinates (columns, rows; (0, 0) is the top-left corner of the top-left
#: pixel) to coordinates in the georeferencing CRS.
PixelToCRS = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class GeorefGSD:
    """The GSD of a raster from its georeferencing.

    Attributes:
        gsd: Exact (geometric mean of ``x_m`` and ``y_m``) from source ``georef``, or
            unknown with the reason in ``gsd.detail``.
        x_m: Ground distance between adjacent pixel centres along a row, in metres.
        y_m: Ground distance between adjacent pixel centres along a column, in metres.
        method: ``affine``, ``gcps``, ``rpcs`` or ``none``.
        crs: The CRS the georeferencing is expressed in, as a short string.
    """

    gsd: GSD
    x_m: float | None = None
    y_m: float | None = None
    method: str = "none"
    crs: str | None = None


def crs_label(crs: CRS) -> str:
    """A short name for a CRS: ``EPSG:32618`` when it has an authority code, else its name."""
    return _crs_label(crs.to_wkt())


# CRS look-ups hit PROJ's database (~2 ms each); a dataset has few distinct CRSs.
@lru_cache(maxsize=256)
def _crs_from_wkt(wkt: str) -> CRS:
    return CRS.from_wkt(wkt)


@lru_cache(maxsize=256)
def _crs_label(wkt: str) -> str:
    crs = _crs_from_wkt(wkt)
    auth = crs.to_authority(min_confidence=90)
    if auth:
        return f"{auth[0]}:{auth[1]}"
    if crs.name and crs.name.lower() != "unknown":
        return crs.name
    with warnings.catch_warnings():  # "may lose projection information": it is a label
        warnings.simplefilter("ignore", UserWarning)
        return crs.to_proj4() or "custom CRS"


@lru_cache(maxsize=256)
def _to_geodetic(wkt: str) -> Transformer:
    crs = _crs_from_wkt(wkt)
    return Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)


def ground_pixel_size(
    crs: CRS, pixel_to_crs: PixelToCRS, width: int, height: int
) -> tuple[float, float]:
    """Ground distances (x, y) in metres between adjacent pixel centres at the image centre.

    Args:
        crs: The CRS of the coordinates ``pixel_to_crs`` returns.
        pixel_to_crs: Maps (columns, rows) to CRS coordinates.
        width: Raster width in pixels.
        height: Raster height in pixels.

    Raises:
        GSDError: If the coordinates cannot be mapped to the ground (e.g. a point off
            the Earth's disk in a geostationary view) or give a non-finite distance.
    """
    cx, cy = width / 2.0, height / 2.0
    cols = np.array([cx - 0.5, cx + 0.5, cx, cx])
    rows = np.array([cy, cy, cy - 0.5, cy + 0.5])
    xs, ys = pixel_to_crs(cols, rows)
    xs, ys = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    if crs.is_geographic:
        lon, lat = xs, ys  # always_xy order from the pixel transformers
        if crs.axis_info and crs.axis_info[0].unit_name not in ("degree", "degree minute second"):
            factor = crs.axis_info[0].unit_conversion_factor  # radians per unit
            lon, lat = np.degrees(xs * factor), np.degrees(ys * factor)
    else:
        try:
            lon, lat = _to_geodetic(crs.to_wkt()).transform(xs, ys, errcheck=True)
        except (ProjError, CRSError, TypeError) as e:
            if crs.geodetic_crs is None and crs.axis_info:
                # an engineering / local CRS: planar distances in its linear unit
                unit = crs.axis_info[0].unit_conversion_factor
                dx = math.hypot(xs[1] - xs[0], ys[1] - ys[0]) * unit
                dy = math.hypot(xs[3] - xs[2], ys[3] - ys[2]) * unit
                return _checked(dx, dy)
            raise GSDError(f"the image centre cannot be mapped to the ground ({e})") from None
    lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    if not (np.all(np.isfinite(lon)) and np.all(np.isfinite(lat))):
        raise GSDError("the image centre maps to no point on the ground (non-finite lon/lat)")
    _, _, dx = _WGS84.inv(lon[0], lat[0], lon[1], lat[1])
    _, _, dy = _WGS84.inv(lon[2], lat[2], lon[3], lat[3])
    return _checked(float(dx), float(dy))


def _checked(dx: float, dy: float) -> tuple[float, float]:
    if not (math.isfinite(dx) and math.isfinite(dy) and dx > 0 and dy > 0):
        raise GSDError(f"degenerate georeferencing: pixel steps of {dx!r} m and {dy!r} m")
    return dx, dy


def georef_gsd(
    *,
    width: int,
    height: int,
    crs: CRS | None,
    transform: Sequence[float] | None = None,
    gcps: Sequence[object] | None = None,
    gcps_crs: CRS | None = None,
    rpcs: object | None = None,
    name: str = "raster",
) -> GeorefGSD:
    """The GSD from georeferencing given explicitly (see :func:`gsd_from_raster`).

    Priority: RPCs, then an affine geotransform with a CRS, then GCPs. An identity
    geotransform is GDAL's "no geotransform" and is ignored.

    Args:
        width: Raster width in pixels.
        height: Raster height in pixels.
        crs: The raster's CRS (``None`` if absent).
        transform: Affine coefficients ``(a, b, c, d, e, f)`` as rasterio orders them.
        gcps: Ground control points (rasterio ``GroundControlPoint`` objects).
        gcps_crs: The CRS of the GCPs.
        rpcs: Rational polynomial coefficients (rasterio ``RPC``).
        name: Used in provenance and messages.

    Returns:
        The per-axis ground pixel sizes and the exact GSD, or an unknown GSD whose
        detail says why.
    """
    try:
        if rpcs is not None:
            rpc_t = RPCTransformer(rpcs)
            h0 = float(getattr(rpcs, "height_off", 0.0) or 0.0)

            def via_rpc(cols: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                xs, ys = rpc_t.xy(rows, cols, zs=np.full(len(cols), h0), offset="ul")
                return np.asarray(xs), np.asarray(ys)

            wgs84 = CRS.from_epsg(4326)
            x, y = ground_pixel_size(wgs84, via_rpc, width, height)
            return _result(x, y, "rpcs", "EPSG:4326", name)
        has_affine = transform is not None and not _is_identity(transform)
        if crs is not None and has_affine:
            a, b, c, d, e, f = (float(v) for v in tuple(transform)[:6])  # type: ignore[arg-type]

            def via_affine(cols: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                return a * cols + b * rows + c, d * cols + e * rows + f

            x, y = ground_pixel_size(crs, via_affine, width, height)
            return _result(x, y, "affine", crs_label(crs), name)
        if gcps and gcps_crs is not None:
            gcp_t = GCPTransformer(list(gcps))

            def via_gcps(cols: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                xs, ys = gcp_t.xy(rows, cols, offset="ul")
                return np.asarray(xs), np.asarray(ys)

            x, y = ground_pixel_size(gcps_crs, via_gcps, width, height)
            return _result(x, y, "gcps", crs_label(gcps_crs), name)
    except (GSDError, RasterioError, ProjError, ValueError) as e:
        return GeorefGSD(GSD.unknown(f"{name}: georeferencing unusable ({e})"))
    if crs is None and has_affine:
        px = math.hypot(float(transform[0]), float(transform[3]))  # type: ignore[index]
        return GeorefGSD(
            GSD.unknown(
                f"{name}: no CRS, so the geotransform's pixel size ({px:g}) has no known unit"
            )
        )
    if crs is not None:
        return GeorefGSD(
            GSD.unknown(f"{name}: has a CRS but no geotransform, GCPs or RPCs"),
            crs=crs_label(crs),
        )
    return GeorefGSD(GSD.unknown(f"{name}: not georeferenced (no CRS, GCPs or RPCs)"))


def _is_identity(transform: Sequence[float]) -> bool:
    return tuple(float(v) for v in tuple(transform)[:6]) == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def _result(x: float, y: float, method: str, crs: str, name: str) -> GeorefGSD:
    how = {"affine": "geotransform", "gcps": "GCPs", "rpcs": "RPCs"}[method]
    gsd = GSD.exact(math.sqrt(x * y), GSDSource.GEOREF, f"{name}: {crs} {how}")
    return GeorefGSD(gsd, x, y, method, crs)


def gsd_from_raster(path: str | Path, *, allow_vrt: bool = False) -> GeorefGSD:
    """The GSD of a raster file from its georeferencing (header only: no pixel is read).

    Args:
        path: A local raster file.
        allow_vrt: Accept a GDAL VRT whose sources stay in its folder (for paths a person
            typed; leave False for paths from datasets).

    Raises:
        RasterError: If the file is refused or cannot be opened.
    """
    with warnings.catch_warnings():
        # the warning fires on open; a missing georeference is reported in the result
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return _gsd_from_open(path, allow_vrt)


def _gsd_from_open(path: str | Path, allow_vrt: bool) -> GeorefGSD:
    with open_raster(path, allow_vrt=allow_vrt) as ds:
        gcps, gcps_crs = ds.gcps
        return georef_gsd(
            width=ds.width,
            height=ds.height,
            crs=_crs_from_wkt(ds.crs.to_wkt()) if ds.crs else None,
            transform=tuple(ds.transform)[:6],
            gcps=gcps,
            gcps_crs=_crs_from_wkt(gcps_crs.to_wkt()) if gcps_crs else None,
            rpcs=ds.rpcs,
            name=Path(path).name,
        )
