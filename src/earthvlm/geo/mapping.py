"""From any view's pixels to map coordinates: boxes, polygons and masks on the ground.

A model writes boxes on a *view* (the global view, a zoom crop, a detection tile); every
view knows its source window, so its coordinates go to *source pixels* in one exact step
(:func:`view_to_source_px`), and source pixels go to the ground through the raster's own
georeferencing (:class:`Georef`), whichever kind it has:

* an affine geotransform with a CRS (UTM, Web Mercator, geographic degrees, rotated or
  sheared grids): exact, linear;
* ground control points (GCPs): GDAL's GCP transformer (the polynomial ``gdalwarp`` uses
  without ``-tps``; its order is chosen from the number of GCPs), in the GCPs' CRS;
* rational polynomial coefficients (RPCs): GDAL's RPC transformer at the RPC height
  offset (no DEM, so the position error grows with the terrain's height above that
  offset times the tangent of the view angle), in WGS84 lon/lat;
* none of these: coordinates stay in source pixels, and :attr:`Georef.note` says why.

The priority (RPCs, then an affine transform with a CRS, then GCPs) is the GSD code's
(:func:`earthvlm.scale.georef.georef_gsd`), so the ground a box is put on and the GSD a
view is given come from the same georeferencing.

Coordinates are continuous with pixel edges at integers (the raster spans
``[0, width] x [0, height]``; (0, 0) is the top-left corner of the top-left pixel), as
in :mod:`earthvlm.geo.boxes`; GDAL's RPC model counts from pixel centres, which its
transformer accounts for. Two targets: ``"crs"`` (the raster's own CRS: what a GeoPackage
keeps) and ``"lonlat"`` (WGS84 longitude, latitude: what GeoJSON requires, RFC 7946).

Polygons are mapped vertex by vertex. Under a non-linear mapping (any CRS change, GCPs of
order > 1, RPCs) a long straight pixel edge is a curve on the map: densify it first
(``densify_px``), as :meth:`Georef.footprint` does; a box a few hundred pixels a side
bends by far less than a pixel.

numpy, shapely and rasterio (its GDAL does the CRS arithmetic), pyproj for CRS names;
no torch.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import pyproj
import rasterio.features
import shapely
from rasterio._err import CPLE_BaseError  # GDAL's errors (rasterio does not re-export them)
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.errors import CRSError, NotGeoreferencedWarning, RasterioError
from rasterio.rpc import RPC
from rasterio.transform import Affine, GCPTransformer, RPCTransformer
from rasterio.warp import transform as warp_transform

from earthvlm.errors import EarthVLMError
from earthvlm.geo.boxes import BOX_FRAMES, frame_to_px
from earthvlm.geo.iou import as_quads
from earthvlm.geo.raster import open_raster

#: What coordinates are mapped to: the raster's own CRS, or WGS84 lon/lat.
MapTarget = Literal["crs", "lonlat"]
#: How a raster is georeferenced (the GSD code's ``GeorefGSD.method``).
GeorefMethod = Literal["affine", "gcps", "rpcs", "none"]
#: Frames a box on a view can be written in: pixels of the view's source window at
#: source resolution (``window_px``: detection as text, whose record image is the window),
#: or a backbone's frame (:data:`~earthvlm.geo.boxes.BOX_FRAMES`).
VIEW_FRAMES = ("window_px", *BOX_FRAMES)

WGS84 = CRS.from_epsg(4326)


class MappingError(EarthVLMError, ValueError):
    """Pixels cannot be put on the map (no georeferencing, or it fails at those pixels)."""


class ViewLike(Protocol):
    """What the mapping needs of a view: its source window and its size.
    :class:`earthvlm.uhr.view.View` is one; :class:`ViewWindow` builds one by hand."""

    @property
    def window_xyxy_px(self) -> tuple[int, int, int, int]: ...

    @property
    def hw(self) -> tuple[int, int]: ...


@dataclass(frozen=True)
class ViewWindow:
    """A view without pixels: the source window it shows and its ``(height, width)``
    (default: the window's own size, a native view)."""

    window_xyxy_px: tuple[int, int, int, int]
    view_hw: tuple[int, int] | None = None

    @property
    def hw(self) -> tuple[int, int]:
        if self.view_hw is not None:
            return int(self.view_hw[0]), int(self.view_hw[1])
        x1, y1, x2, y2 = self.window_xyxy_px
        return int(y2 - y1), int(x2 - x1)


# -- the raster's georeferencing ----------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Georef:
    """How a raster's source pixels map to coordinates.

    Build with :meth:`from_raster` (a file), :meth:`from_dataset` (an open one) or
    :meth:`from_parts`.

    Attributes:
        width: Raster width in pixels.
        height: Raster height in pixels.
        method: ``affine``, ``gcps``, ``rpcs`` or ``none``.
        crs: The CRS of :meth:`to_crs` (the GCPs' for ``gcps``, WGS84 for ``rpcs``);
            ``None`` for ``none``.
        transform: The affine geotransform (``affine`` only).
        gcps: The ground control points (``gcps`` only).
        rpcs: The rational polynomial coefficients (``rpcs`` only).
        note: Why there is no georeferencing, or what to know about it.
        name: The raster's file name (for messages).
    """

    width: int
    height: int
    method: GeorefMethod
    crs: CRS | None = None
    transform: Affine | None = None
    gcps: tuple[GroundControlPoint, ...] = ()
    rpcs: RPC | None = None
    note: str = ""
    name: str = "raster"

    @classmethod
    def from_parts(
        cls,
        *,
        width: int,
        height: int,
        crs: CRS | str | None = None,
        transform: Sequence[float] | None = None,
        gcps: Sequence[GroundControlPoint] | None = None,
        gcps_crs: CRS | str | None = None,
        rpcs: RPC | None = None,
        name: str = "raster",
    ) -> Georef:
        """The georeferencing given explicitly (priority: RPCs, affine with a CRS, GCPs).
        An identity geotransform is GDAL's "no geotransform" and is ignored."""
        crs_ = CRS.from_user_input(crs) if crs else None
        gcrs = CRS.from_user_input(gcps_crs) if gcps_crs else None
        affine = Affine(*tuple(float(v) for v in tuple(transform)[:6])) if transform else None
        if affine is not None and affine.is_identity:
            affine = None
        if rpcs is not None:
            return cls(
                width,
                height,
                "rpcs",
                WGS84,
                rpcs=rpcs,
                name=name,
                note="RPCs at their height offset (no DEM)",
            )
        if crs_ is not None and affine is not None:
            return cls(width, height, "affine", crs_, transform=affine, name=name)
        if gcps and gcrs is not None:
            return cls(width, height, "gcps", gcrs, gcps=tuple(gcps), name=name)
        if affine is not None:
            note = "a geotransform but no CRS, so its units are unknown"
        elif crs_ is not None:
            note = "a CRS but no geotransform, GCPs or RPCs"
        else:
            note = "no CRS, geotransform, GCPs or RPCs"
        return cls(width, height, "none", note=f"not georeferenced: {note}", name=name)

    @classmethod
    def from_dataset(cls, ds: rasterio.io.DatasetReader, name: str | None = None) -> Georef:
        """The georeferencing of an open dataset (header only)."""
        gcps, gcps_crs = ds.gcps
        return cls.from_parts(
            width=ds.width,
            height=ds.height,
            crs=ds.crs,
            transform=tuple(ds.transform)[:6],
            gcps=gcps,
            gcps_crs=gcps_crs,
            rpcs=ds.rpcs,
            name=name or Path(ds.name).name,
        )

    @classmethod
    def from_raster(cls, path: str | Path, *, allow_vrt: bool = False) -> Georef:
        """The georeferencing of a raster file, opened by the safe opener (no pixel read).

        Raises:
            RasterError: If the file is refused or cannot be opened.
        """
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with open_raster(path, allow_vrt=allow_vrt) as ds:
                return cls.from_dataset(ds, Path(path).name)

    @property
    def is_georeferenced(self) -> bool:
        return self.method != "none"

    @cached_property
    def crs_label(self) -> str | None:
        """``EPSG:32633`` when the CRS has an authority code, else its name or PROJ string
        (as :func:`earthvlm.scale.georef.crs_label` names it)."""
        if self.crs is None:
            return None
        crs = pyproj.CRS.from_wkt(self.crs.to_wkt())
        auth = crs.to_authority(min_confidence=90)
        if auth:
            return f"{auth[0]}:{auth[1]}"
        if crs.name and crs.name.lower() != "unknown":
            return str(crs.name)
        with warnings.catch_warnings():  # "may lose projection information": it is a label
            warnings.simplefilter("ignore", UserWarning)
            return crs.to_proj4() or "custom CRS"

    def to_crs(self, xy_px: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """Source-pixel points ``(N, 2)`` (x = column, y = row) -> ``(N, 2)`` in :attr:`crs`
        (x, y order: easting, northing or lon, lat); pixels stay pixels for ``none``.

        Raises:
            MappingError: If the transformer fails or gives non-finite coordinates.
        """
        xy = _points(xy_px)
        if self.method == "none" or len(xy) == 0:
            return xy.copy()
        cols, rows = xy[:, 0], xy[:, 1]
        try:
            if self.method == "affine":
                a, b, c, d, e, f = tuple(self.transform)[:6]  # type: ignore[arg-type]
                out = np.stack([a * cols + b * rows + c, d * cols + e * rows + f], axis=1)
            elif self.method == "gcps":
                xs, ys = GCPTransformer(list(self.gcps)).xy(rows, cols, offset="ul")
                out = np.stack([np.asarray(xs, float), np.asarray(ys, float)], axis=1)
            else:
                h0 = float(getattr(self.rpcs, "height_off", 0.0) or 0.0)
                zs = np.full(len(cols), h0)
                xs, ys = RPCTransformer(self.rpcs).xy(rows, cols, zs=zs, offset="ul")
                out = np.stack([np.asarray(xs, float), np.asarray(ys, float)], axis=1)
        except (RasterioError, CPLE_BaseError, ValueError) as e:
            raise MappingError(f"{self.name}: the {self.method} transformer failed ({e})") from None
        return _finite(out, self, "its CRS")

    def to_lonlat(self, xy_px: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """Source-pixel points ``(N, 2)`` -> WGS84 ``(N, 2)`` longitude, latitude (degrees).

        Raises:
            MappingError: If the raster is not georeferenced or a point does not map.
        """
        if self.method == "none":
            raise MappingError(f"{self.name}: {self.note}; it has no longitude / latitude")
        xy = self.to_crs(xy_px)
        if len(xy) == 0 or self.crs == WGS84:
            return xy
        try:
            lon, lat = warp_transform(self.crs, WGS84, xy[:, 0], xy[:, 1])
        except (RasterioError, CRSError, CPLE_BaseError) as e:
            raise MappingError(f"{self.name}: {self.crs_label} -> WGS84 failed ({e})") from None
        return _finite(np.stack([np.asarray(lon), np.asarray(lat)], axis=1), self, "WGS84")

    def mapper(self, to: MapTarget) -> Callable[[np.ndarray], np.ndarray]:
        """:meth:`to_crs` or :meth:`to_lonlat`."""
        if to not in ("crs", "lonlat"):
            raise ValueError(f"to={to!r}: choose 'crs' or 'lonlat'")
        return self.to_crs if to == "crs" else self.to_lonlat

    def map_geometry(
        self,
        geometry_px: shapely.Geometry,
        to: MapTarget = "lonlat",
        *,
        densify_px: float | None = None,
    ) -> shapely.Geometry:
        """A shapely geometry in source pixels -> the same geometry on the map.

        Args:
            geometry_px: Any geometry (or array of geometries) in source pixels.
            to: ``"crs"`` or ``"lonlat"``.
            densify_px: Insert vertices so no edge is longer than this (pixels) before
                mapping, for long edges under a non-linear mapping.
        """
        fn = self.mapper(to)
        g = shapely.segmentize(geometry_px, densify_px) if densify_px else geometry_px
        return shapely.transform(g, fn)

    def footprint(self, to: MapTarget = "lonlat", *, edge_points: int = 64) -> shapely.Polygon:
        """The raster's outline ``[0, width] x [0, height]`` on the map, each edge densified
        to ``edge_points`` segments."""
        step = max(self.width, self.height) / max(1, edge_points)
        box = shapely.box(0, 0, self.width, self.height)
        return self.map_geometry(box, to, densify_px=step)

    def summary(self) -> dict[str, object]:
        """A JSON-ready description: method, CRS label, note."""
        return {"method": self.method, "crs": self.crs_label, "note": self.note or None}


def _points(xy: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    a = np.asarray(xy, dtype=np.float64)
    if a.size == 0:
        return np.zeros((0, 2))
    if a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"points of shape {a.shape}: give (N, 2) x, y pairs")
    return a


def _finite(out: np.ndarray, georef: Georef, where: str) -> np.ndarray:
    if not np.all(np.isfinite(out)):
        bad = int(np.count_nonzero(~np.all(np.isfinite(out), axis=1)))
        raise MappingError(
            f"{georef.name}: {bad} point(s) do not map to {where} through its {georef.method} "
            "georeferencing (outside the projection's domain, or the transformer diverged)"
        )
    return out


# -- views -> source pixels -> the map ----------------------------------------------------


def view_to_source_px(
    coords: Sequence[float] | np.ndarray, frame: str, view: ViewLike
) -> np.ndarray:
    """Coordinates written on a view -> source pixels (a copy; any array whose last axis
    alternates x and y: an xyxy box, a flat quad, points, or stacks of them).

    Args:
        coords: The coordinates as the model (or a label) wrote them.
        frame: ``window_px`` (pixels of the view's window at source resolution),
            ``abs_px_resized`` (pixels of the view as shown: Qwen2.5-VL) or ``norm1000``
            (0-1000 of the view: Qwen3-VL).
        view: The view's window and size (a :class:`~earthvlm.uhr.view.View` or a
            :class:`ViewWindow`). For the backbone frames this is exactly
            :meth:`View.to_source_px <earthvlm.uhr.view.View.to_source_px>`.
    """
    if frame not in VIEW_FRAMES:
        raise ValueError(f"frame={frame!r}: choose one of {list(VIEW_FRAMES)}")
    x1, y1, x2, y2 = (int(v) for v in view.window_xyxy_px)
    if frame == "window_px":
        out = np.array(coords, dtype=np.float64)
        if out.ndim == 0 or out.shape[-1] % 2:
            raise ValueError(f"coordinates of shape {out.shape}: the last axis alternates x, y")
    else:
        out = frame_to_px(coords, frame, source_hw=(y2 - y1, x2 - x1), resized_hw=view.hw)
    out[..., 0::2] += x1
    out[..., 1::2] += y1
    return out


def boxes_to_map(
    boxes: Sequence[Sequence[float]] | np.ndarray,
    georef: Georef,
    *,
    view: ViewLike | None = None,
    frame: str = "window_px",
    to: MapTarget = "lonlat",
) -> np.ndarray:
    """Boxes written on any view -> their corners on the map, ``(N, 4, 2)``.

    Args:
        boxes: Horizontal boxes ``(N, 4)`` ``[x1, y1, x2, y2]`` or quads ``(N, 8)`` /
            ``(N, 4, 2)``.
        georef: The raster's georeferencing.
        view: The view the boxes were written on; default the whole raster, native.
        frame: The frame of ``boxes`` (see :func:`view_to_source_px`).
        to: ``"lonlat"`` (WGS84) or ``"crs"`` (the raster's CRS; source pixels when it
            has none).

    Raises:
        MappingError: For ``to="lonlat"`` on a raster without georeferencing, or a
            corner that does not map.
    """
    v = view if view is not None else ViewWindow((0, 0, georef.width, georef.height))
    quads_px = as_quads(view_to_source_px(np.asarray(boxes, dtype=np.float64), frame, v))
    flat = georef.mapper(to)(quads_px.reshape(-1, 2))
    return flat.reshape(-1, 4, 2)


def quads_to_polygons(quads: np.ndarray) -> np.ndarray:
    """``(N, 4, 2)`` quads -> an array of N shapely polygons (same coordinates)."""
    q = np.asarray(quads, dtype=np.float64).reshape(-1, 4, 2)
    return shapely.polygons(q) if len(q) else np.array([], dtype=object)


def mask_to_polygons_px(
    mask: np.ndarray, view: ViewLike, *, simplify_px: float | None = None
) -> shapely.Geometry:
    """A view's binary mask -> its outline in source pixels (a (Multi)Polygon, with holes).

    The mask covers the view: mask pixel ``(i, j)`` is the view pixel ``(i, j)`` scaled to
    the view's source window (the mask may be at the view's size or any other). Outlines
    come from :func:`rasterio.features.shapes` (4-connected), are merged and simplified
    with a tolerance of one mask pixel in source pixels by default: one pixel of the view
    on the ground is the view's GSD, so the outline is simplified at the view's GSD.

    Args:
        mask: ``(H, W)``; nonzero (or True) is inside (pass ``logits > 0``).
        view: The view the mask was decoded on.
        simplify_px: Tolerance in source pixels (0: none; default one mask pixel).
    """
    m = np.asarray(mask)
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"mask of shape {m.shape}: give a non-empty (H, W) array")
    inside = m.astype(bool)
    x1, y1, x2, y2 = (int(v) for v in view.window_xyxy_px)
    sx, sy = (x2 - x1) / m.shape[1], (y2 - y1) / m.shape[0]
    t = Affine(sx, 0.0, x1, 0.0, sy, y1)
    parts = [
        shapely.geometry.shape(g)
        for g, _ in rasterio.features.shapes(inside.astype(np.uint8), mask=inside, transform=t)
    ]
    if not parts:
        return shapely.MultiPolygon()
    geom = shapely.union_all(parts)
    tol = max(sx, sy) if simplify_px is None else float(simplify_px)
    if tol > 0:
        geom = shapely.simplify(geom, tol, preserve_topology=True)
    return geom


__all__ = [
    "VIEW_FRAMES",
    "WGS84",
    "Georef",
    "GeorefMethod",
    "MapTarget",
    "MappingError",
    "ViewLike",
    "ViewWindow",
    "boxes_to_map",
    "mask_to_polygons_px",
    "quads_to_polygons",
    "view_to_source_px",
]
