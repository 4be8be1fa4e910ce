"""Features on the map, written as GeoJSON or GeoPackage.

A :class:`Feature` keeps its geometry in *source pixels* until it is written: the writer
maps it through the raster's :class:`~earthvlm.geo.mapping.Georef` to what the format
needs, once.

* **GeoJSON** (``.geojson``, ``.json``; RFC 7946): WGS84 longitude / latitude, exterior
  rings counter-clockwise, written by hand (no dependency). Run-level facts (the source,
  the georeferencing, provenance, the tile ledger) go in the foreign member
  ``"earthvlm"``, which readers ignore. A raster without georeferencing is written in
  source pixels (x right, y down), and ``earthvlm.coordinates`` says so: a GIS will
  still open the file, but its coordinates are not longitudes and latitudes.
* **GeoPackage** (``.gpkg``): the raster's own CRS (the GCPs' for a GCP raster, WGS84 for
  RPCs), through pyogrio (GDAL's OGR, vectorised, with GDAL in its wheel; the optional
  ``geo`` extra). List and dict properties are stored as JSON text.

Features whose geometry does not map (a vertex outside the projection's domain) or is
empty are not written, and counted by reason in :attr:`VectorReport.skipped`.
"""

from __future__ import annotations

import json
import math
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry.polygon import orient

from earthvlm.errors import EarthVLMError
from earthvlm.geo.mapping import Georef, MappingError
from earthvlm.io import atomic_path, atomic_write_text
from earthvlm.provenance import provenance

#: File suffixes -> format.
FORMATS: dict[str, str] = {".geojson": "GeoJSON", ".json": "GeoJSON", ".gpkg": "GPKG"}
#: Decimals GeoJSON keeps: lon/lat degrees (1e-9 deg is about 0.1 mm), pixels.
LONLAT_DECIMALS, PX_DECIMALS = 9, 3

NOT_MAPPED = "not_mapped"
EMPTY_GEOMETRY = "empty_geometry"


class VectorError(EarthVLMError, ValueError):
    """Features cannot be written (unknown format, missing writer)."""


@dataclass(frozen=True)
class Feature:
    """One feature: a geometry in source pixels and its properties (JSON-ready values:
    numbers, strings, booleans, None, lists and dicts of them)."""

    geometry_px: shapely.Geometry
    properties: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class VectorReport:
    """What a writer wrote.

    Attributes:
        path: The file.
        driver: ``GeoJSON`` or ``GPKG``.
        coordinates: ``lonlat`` (WGS84), ``crs`` (the raster's own) or ``px`` (source
            pixels: the raster has no georeferencing).
        crs: The CRS label of the coordinates (``None`` for pixels).
        written: Features written.
        skipped: Reason -> features not written.
    """

    path: Path
    driver: str
    coordinates: str
    crs: str | None
    written: int = 0
    skipped: Counter[str] = field(default_factory=Counter)


def vector_format(path: str | Path) -> str:
    """``GeoJSON`` or ``GPKG`` from a file name.

    Raises:
        VectorError: For any other suffix.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise VectorError(
            f"{path}: unknown vector format {suffix or '(no suffix)'!r}; name the file "
            f"{' or '.join(sorted(FORMATS))}"
        )
    return FORMATS[suffix]


def write_features(
    path: str | Path,
    features: Sequence[Feature],
    georef: Georef,
    *,
    layer: str = "features",
    meta: Mapping[str, Any] | None = None,
) -> VectorReport:
    """Write features to ``path`` (atomically), the format chosen by its suffix.

    Args:
        path: ``.geojson`` / ``.json`` (WGS84 lon/lat) or ``.gpkg`` (the raster's CRS).
        features: Features with geometries in source pixels.
        georef: The raster's georeferencing.
        layer: The GeoPackage layer name (GeoJSON: the collection's ``name``).
        meta: Run-level facts: GeoJSON's ``earthvlm`` member; a GeoPackage layer's
            metadata (as JSON text under the key ``earthvlm``).

    Raises:
        VectorError: For an unknown suffix, or ``.gpkg`` without pyogrio.
    """
    fmt = vector_format(path)
    if fmt == "GeoJSON":
        return write_geojson(path, features, georef, name=layer, meta=meta)
    return write_gpkg(path, features, georef, layer=layer, meta=meta)


def _mapped(
    features: Iterable[Feature], georef: Georef, to: str, report: VectorReport
) -> tuple[list[shapely.Geometry], list[Mapping[str, Any]]]:
    """Each feature's geometry in the output coordinates, skipping (and counting) those
    that are empty or do not map."""
    geoms, props = [], []
    for f in features:
        g = f.geometry_px
        if g is None or shapely.is_empty(g):
            report.skipped[EMPTY_GEOMETRY] += 1
            continue
        if to != "px":
            try:
                g = georef.map_geometry(g, "lonlat" if to == "lonlat" else "crs")
            except MappingError:
                report.skipped[NOT_MAPPED] += 1
                continue
        geoms.append(g)
        props.append(f.properties)
    return geoms, props


#: What each kind of output coordinates is, in words (the files say it).
COORDINATES = {
    "lonlat": "WGS84 longitude, latitude (RFC 7946)",
    "crs": "the raster's own CRS",
    "px": "source pixels (x right, y down): the raster is not georeferenced",
}


def _info(georef: Georef, report: VectorReport, meta: Mapping[str, Any] | None) -> dict:
    """Run-level facts every file carries: its coordinates, the georeferencing, the
    features skipped, provenance, and the caller's ``meta``."""
    return {
        "coordinates": COORDINATES[report.coordinates],
        "crs": report.crs,
        "georef": georef.summary(),
        "raster_wh_px": [georef.width, georef.height],
        "skipped": dict(report.skipped),
        "provenance": provenance(packages=()),
        **{str(k): _json_value(v) for k, v in (meta or {}).items()},
    }


def _coordinates(georef: Georef, geojson: bool) -> str:
    if not georef.is_georeferenced:
        return "px"
    return "lonlat" if geojson else "crs"


# -- GeoJSON ---------------------------------------------------------------------------


def _json_value(v: Any) -> Any:
    """A property value as JSON allows it (numpy scalars unwrapped, NaN and inf -> None)."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, np.ndarray):
        return [_json_value(x) for x in v.tolist()]
    if isinstance(v, Mapping):
        return {str(k): _json_value(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_json_value(x) for x in v]
    return v


def _rings(coords: Any, decimals: int) -> list:
    return [[round(float(x), decimals), round(float(y), decimals)] for x, y, *_ in coords]


def geometry_json(geom: shapely.Geometry, decimals: int) -> dict[str, Any]:
    """A shapely Point, Polygon or their Multi- versions as a GeoJSON geometry object,
    polygon exteriors counter-clockwise (RFC 7946 sec. 3.1.6)."""
    kind = geom.geom_type
    if kind == "Point":
        return {"type": kind, "coordinates": _rings(geom.coords, decimals)[0]}
    if kind == "LineString":
        return {"type": kind, "coordinates": _rings(geom.coords, decimals)}
    if kind == "Polygon":
        geom = orient(geom, sign=1.0)  # counter-clockwise exterior, clockwise holes
        rings = [geom.exterior, *geom.interiors]
        return {"type": kind, "coordinates": [_rings(r.coords, decimals) for r in rings]}
    if kind.startswith("Multi") or kind == "GeometryCollection":
        parts = [geometry_json(g, decimals) for g in geom.geoms]
        if kind == "GeometryCollection":
            return {"type": kind, "geometries": parts}
        return {"type": kind, "coordinates": [p["coordinates"] for p in parts]}
    raise VectorError(f"geometry type {kind} cannot be written")


def geojson_collection(
    features: Sequence[Feature],
    georef: Georef,
    *,
    name: str = "features",
    meta: Mapping[str, Any] | None = None,
    report: VectorReport | None = None,
) -> dict[str, Any]:
    """The GeoJSON FeatureCollection of ``features`` (see the module docstring)."""
    to = _coordinates(georef, geojson=True)
    rep = report or VectorReport(Path(name), "GeoJSON", to, None)
    geoms, props = _mapped(features, georef, to, rep)
    decimals = LONLAT_DECIMALS if to == "lonlat" else PX_DECIMALS
    out_features = [
        {
            "type": "Feature",
            "geometry": geometry_json(g, decimals),
            "properties": {str(k): _json_value(v) for k, v in p.items()},
        }
        for g, p in zip(geoms, props, strict=True)
    ]
    rep.written = len(out_features)
    info = _info(georef, rep, meta)
    return {"type": "FeatureCollection", "name": name, "earthvlm": info, "features": out_features}


def write_geojson(
    path: str | Path,
    features: Sequence[Feature],
    georef: Georef,
    *,
    name: str = "features",
    meta: Mapping[str, Any] | None = None,
) -> VectorReport:
    """Write an RFC 7946 GeoJSON file (WGS84 lon/lat; pixels without georeferencing)."""
    to = _coordinates(georef, geojson=True)
    report = VectorReport(Path(path), "GeoJSON", to, "EPSG:4326" if to == "lonlat" else None)
    doc = geojson_collection(features, georef, name=name, meta=meta, report=report)
    atomic_write_text(path, json.dumps(doc, allow_nan=False, ensure_ascii=False) + "\n")
    return report


# -- GeoPackage ------------------------------------------------------------------------


def _column(values: list[Any]) -> tuple[np.ndarray, np.ndarray | None]:
    """One property column as pyogrio takes it: int64, float64, bool or text (JSON text
    for lists and dicts), and a null mask when some values are None."""
    present = [v for v in values if v is not None]
    null = np.array([v is None for v in values])
    mask = null if null.any() else None
    if present and all(isinstance(v, bool | np.bool_) for v in present):
        return np.array([bool(v) if v is not None else False for v in values]), mask
    if present and all(
        isinstance(v, int | np.integer) and not isinstance(v, bool) for v in present
    ):
        return np.array([int(v) if v is not None else 0 for v in values], np.int64), mask
    if present and all(isinstance(v, int | float | np.number) for v in present):
        col = np.array([float(v) if v is not None else np.nan for v in values], np.float64)
        return col, mask
    text = [
        None
        if v is None
        else v
        if isinstance(v, str)
        else json.dumps(_json_value(v), allow_nan=False)
        for v in values
    ]
    return np.array(text, dtype=object), mask


def write_gpkg(
    path: str | Path,
    features: Sequence[Feature],
    georef: Georef,
    *,
    layer: str = "features",
    meta: Mapping[str, Any] | None = None,
) -> VectorReport:
    """Write a GeoPackage layer in the raster's own CRS (pixels, no CRS, without one).

    Raises:
        VectorError: If pyogrio is not installed.
    """
    try:
        from pyogrio.raw import write as ogr_write
    except ImportError:
        raise VectorError(
            f"{path}: writing a GeoPackage needs pyogrio (pip install 'earthvlm[geo]'); "
            "or write GeoJSON (.geojson), which needs nothing"
        ) from None
    to = _coordinates(georef, geojson=False)
    report = VectorReport(Path(path), "GPKG", to, georef.crs_label)
    geoms, props = _mapped(features, georef, to, report)
    names = sorted({str(k) for p in props for k in p})
    columns = [_column([p.get(k) for p in props]) for k in names]
    kinds = {g.geom_type for g in geoms}
    geometry_type = kinds.pop() if len(kinds) == 1 else "Unknown"
    with atomic_path(Path(path), suffix=".gpkg") as tmp, warnings.catch_warnings():
        # without georeferencing there is no CRS to give: the layer metadata says so
        warnings.filterwarnings("ignore", "'crs' was not provided", UserWarning)
        tmp.unlink()  # GDAL creates the file; an empty one is not a GeoPackage
        ogr_write(
            str(tmp),
            geometry=np.asarray(shapely.to_wkb(np.array(geoms, dtype=object)), dtype=object)
            if geoms
            else np.array([], dtype=object),
            field_data=[c for c, _ in columns],
            fields=names,
            field_mask=[m for _, m in columns] if any(m is not None for _, m in columns) else None,
            layer=layer,
            driver="GPKG",
            geometry_type=geometry_type,
            crs=georef.crs.to_wkt() if to == "crs" and georef.crs is not None else None,
            promote_to_multi=False,
            layer_metadata={"earthvlm": json.dumps(_info(georef, report, meta))},
        )
    report.written = len(geoms)
    return report


__all__ = [
    "EMPTY_GEOMETRY",
    "FORMATS",
    "NOT_MAPPED",
    "Feature",
    "VectorError",
    "VectorReport",
    "geojson_collection",
    "geometry_json",
    "vector_format",
    "write_features",
    "write_geojson",
    "write_gpkg",
]
