"""Pixels to the map, checked against coordinates computed by hand.

Every expected coordinate here comes from closed-form geometry written in this file (the
affine arithmetic, the WGS84 meridian arc for UTM on its central meridian, the spherical
Mercator inverse, the GCPs' plane, the RPC's linear model), never from PROJ or GDAL or
the code under test. Then the writers: GeoJSON opens in GDAL's reader (pyogrio) in
WGS84 with its features inside the raster's footprint, a GeoPackage keeps the raster's
own CRS, and a raster without georeferencing is written in pixels and says so.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from rasterio.control import GroundControlPoint
from rasterio.rpc import RPC
from rasterio.transform import Affine

from earthvlm.geo.mapping import (
    Georef,
    MappingError,
    ViewWindow,
    boxes_to_map,
    mask_to_polygons_px,
    view_to_source_px,
)
from earthvlm.geo.vector import NOT_MAPPED, Feature, VectorError, write_features
from earthvlm.scale.examples import write_georef_examples
from earthvlm.scale.georef import gsd_from_raster

A = 6378137.0  # WGS84
F = 1 / 298.257223563
E2 = F * (2 - F)
K0 = 0.9996  # UTM scale on the central meridian
DEG = 1e-9  # degrees: ~0.1 mm


def meridian_arc_m(lat_deg: float) -> float:
    """Length of the WGS84 meridian from the equator (Helmert's series, sub-mm)."""
    n = F / (2 - F)
    phi = math.radians(lat_deg)
    a_ = A / (1 + n) * (1 + n**2 / 4 + n**4 / 64)
    return a_ * (
        phi
        - 1.5 * n * (1 - 3 * n**2 / 8) * math.sin(2 * phi)
        + 15 / 16 * n**2 * (1 - n**2 / 4) * math.sin(4 * phi)
        - 35 / 48 * n**3 * math.sin(6 * phi)
        + 315 / 512 * n**4 * math.sin(8 * phi)
    )


def utm_lat_on_central_meridian(northing_m: float) -> float:
    """The latitude of a point on a UTM zone's central meridian (northern hemisphere):
    there ``northing = k0 * meridian arc``, inverted by Newton's method."""
    target = northing_m / K0
    lat = math.degrees(target / A)
    for _ in range(20):
        s = math.sin(math.radians(lat))
        radius = A * (1 - E2) / (1 - E2 * s * s) ** 1.5  # meridian radius of curvature
        lat += math.degrees((target - meridian_arc_m(lat)) / radius)
    return lat


def write(path: Path, *, width: int = 64, height: int = 64, **profile: object) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        gcps, rpcs = profile.pop("gcps", None), profile.pop("rpcs", None)
        with rasterio.open(
            path, "w", driver="GTiff", width=width, height=height, count=1, dtype="uint8", **profile
        ) as dst:
            dst.write(np.zeros((1, height, width), np.uint8))
            if gcps is not None:
                dst.gcps = gcps
            if rpcs is not None:
                dst.rpcs = rpcs
    return path


def test_the_meridian_arc_is_right() -> None:
    # published values: 1 degree ~ 110.574 km at the equator; 45 N is 4,984,944.4 m
    assert meridian_arc_m(1.0) == pytest.approx(110_574.4, abs=0.1)
    assert meridian_arc_m(45.0) == pytest.approx(4_984_944.4, abs=0.1)


# -- each kind of georeferencing --------------------------------------------------------


def test_utm_pixels_to_crs_and_lonlat(tmp_path: Path) -> None:
    t = Affine(0.5, 0, 499_984.0, 0, -0.5, 5_000_016.0)  # x = 500000 at column 32
    g = Georef.from_raster(write(tmp_path / "utm.tif", crs="EPSG:32633", transform=t))
    assert (g.method, g.crs_label) == ("affine", "EPSG:32633")
    px = np.array([[0.0, 0.0], [32.0, 10.0], [64.0, 64.0], [12.25, 7.5]])
    crs = g.to_crs(px)
    np.testing.assert_allclose(crs[:, 0], 499_984.0 + 0.5 * px[:, 0], rtol=0, atol=1e-9)
    np.testing.assert_allclose(crs[:, 1], 5_000_016.0 - 0.5 * px[:, 1], rtol=0, atol=1e-9)
    lon, lat = g.to_lonlat(px[1:2])[0]
    assert lon == pytest.approx(15.0, abs=DEG)  # the central meridian
    assert lat == pytest.approx(utm_lat_on_central_meridian(5_000_011.0), abs=1e-8)
    # east and west of the meridian by the same distance: symmetric longitudes
    (lon_w, lat_w), (lon_e, lat_e) = g.to_lonlat([[0.0, 10.0], [64.0, 10.0]])
    assert lon_w - 15.0 == pytest.approx(15.0 - lon_e, abs=DEG)
    assert lat_w == pytest.approx(lat_e, abs=DEG)


def test_web_mercator_is_the_spherical_inverse(tmp_path: Path) -> None:
    y0 = A * math.log(math.tan(math.pi / 4 + math.radians(60.0) / 2))
    t = Affine(2.0, 0, 1_000_000.0, 0, -2.0, y0)
    g = Georef.from_raster(write(tmp_path / "merc.tif", crs="EPSG:3857", transform=t))
    px = np.array([[0.0, 0.0], [10.0, 20.0], [64.0, 64.0]])
    x, y = 1_000_000.0 + 2.0 * px[:, 0], y0 - 2.0 * px[:, 1]
    lonlat = g.to_lonlat(px)
    np.testing.assert_allclose(lonlat[:, 0], np.degrees(x / A), rtol=0, atol=DEG)
    lat = np.degrees(2 * np.arctan(np.exp(y / A)) - np.pi / 2)
    np.testing.assert_allclose(lonlat[:, 1], lat, rtol=0, atol=DEG)
    assert lonlat[0, 1] == pytest.approx(60.0, abs=DEG)


def test_geographic_degrees(tmp_path: Path) -> None:
    t = Affine(0.001, 0, 10.0, 0, -0.001, 1.0)
    g = Georef.from_raster(write(tmp_path / "geo.tif", crs="EPSG:4326", transform=t))
    got = boxes_to_map([[8, 16, 24, 32]], g)[0]
    want = [[10.008, 0.984], [10.024, 0.984], [10.024, 0.968], [10.008, 0.968]]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(boxes_to_map([[8, 16, 24, 32]], g, to="crs")[0], want, atol=1e-12)


def test_rotated_grid(tmp_path: Path) -> None:
    # 2 m pixels, rotated 30 degrees, the raster centre on (500000, 4984000)
    t = Affine.translation(500_000, 4_984_000) @ Affine.rotation(30) @ Affine.scale(2, -2)
    t = t @ Affine.translation(-32, -32)
    g = Georef.from_raster(write(tmp_path / "rot.tif", crs="EPSG:32633", transform=t))
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))

    def by_hand(col: float, row: float) -> tuple[float, float]:
        u, v = 2 * (col - 32), -2 * (row - 32)  # scaled about the centre, y up
        return 500_000 + u * c - v * s, 4_984_000 + u * s + v * c

    px = np.array([[0.0, 0.0], [64.0, 0.0], [10.5, 40.25]])
    np.testing.assert_allclose(g.to_crs(px), [by_hand(*p) for p in px], rtol=0, atol=1e-8)
    lon, lat = g.to_lonlat([[32.0, 32.0]])[0]
    assert lon == pytest.approx(15.0, abs=DEG)
    assert lat == pytest.approx(utm_lat_on_central_meridian(4_984_000.0), abs=1e-8)
    # a box's corners keep the grid's rotation on the map: its top edge points 30 deg up
    q = boxes_to_map([[0, 0, 10, 10]], g, to="crs")[0]
    dx, dy = q[1] - q[0]
    assert math.degrees(math.atan2(dy, dx)) == pytest.approx(30.0, abs=1e-9)


def test_gcps_only(tmp_path: Path) -> None:
    # four GCPs on the plane lon = 10 + col * 1e-4, lat = 1 - row * 1e-4: the first-order
    # polynomial GDAL fits through them is that plane, exactly
    gcps = [
        GroundControlPoint(row=r, col=c, x=10 + c * 1e-4, y=1 - r * 1e-4)
        for r in (0, 64)
        for c in (0, 64)
    ]
    path = write(tmp_path / "gcps.tif", gcps=(gcps, rasterio.crs.CRS.from_epsg(4326)))
    g = Georef.from_raster(path)
    assert (g.method, g.crs_label) == ("gcps", "EPSG:4326")
    px = np.array([[0.0, 0.0], [12.5, 40.0], [63.0, 1.0]])
    want = np.stack([10 + px[:, 0] * 1e-4, 1 - px[:, 1] * 1e-4], axis=1)
    np.testing.assert_allclose(g.to_lonlat(px), want, rtol=0, atol=1e-10)


def test_rpcs(tmp_path: Path) -> None:
    # a linear RPC: sample = L * 50 + 50, line = -P * 50 + 50, with L, P the normalised
    # lon, lat; RPC lines and samples count from pixel centres, so pixel edge x is
    # sample x - 0.5
    d, zeros = 1e-5, [0.0] * 20
    samp_num, line_num, den = zeros.copy(), zeros.copy(), zeros.copy()
    samp_num[1], line_num[2], den[0] = 1.0, -1.0, 1.0
    rpc = RPC(
        height_off=0,
        height_scale=100,
        lat_off=45.0,
        lat_scale=50 * d,
        line_den_coeff=den,
        line_num_coeff=line_num,
        line_off=50,
        line_scale=50,
        long_off=10.0,
        long_scale=50 * d,
        samp_den_coeff=den,
        samp_num_coeff=samp_num,
        samp_off=50,
        samp_scale=50,
    )
    t = Affine(0.5, 0, 500_000, 0, -0.5, 5e6)  # an affine too: RPCs come first, as for GSD
    path = write(
        tmp_path / "rpc.tif", width=100, height=100, rpcs=rpc, crs="EPSG:32633", transform=t
    )
    g = Georef.from_raster(path)
    assert g.method == "rpcs" == gsd_from_raster(path).method
    px = np.array([[0.0, 0.0], [50.0, 50.0], [80.5, 20.0]])
    want = np.stack([10 + (px[:, 0] - 0.5 - 50) * d, 45 - (px[:, 1] - 0.5 - 50) * d], axis=1)
    np.testing.assert_allclose(g.to_lonlat(px), want, rtol=0, atol=1e-10)


def test_the_priority_is_the_gsd_codes(tmp_path: Path) -> None:
    for ex in write_georef_examples(tmp_path):
        assert Georef.from_raster(ex.path).method == gsd_from_raster(ex.path).method, ex.name


def test_no_georeferencing_keeps_pixels_and_says_why(tmp_path: Path) -> None:
    g = Georef.from_raster(write(tmp_path / "plain.tif", transform=Affine(100, 0, 0, 0, -100, 0)))
    assert g.method == "none" and "no CRS" in g.note and not g.is_georeferenced
    np.testing.assert_array_equal(g.to_crs([[3.0, 4.0]]), [[3.0, 4.0]])
    np.testing.assert_array_equal(
        boxes_to_map([[1, 2, 3, 4]], g, to="crs")[0], [[1, 2], [3, 2], [3, 4], [1, 4]]
    )
    with pytest.raises(MappingError, match="not georeferenced"):
        g.to_lonlat([[0.0, 0.0]])


def test_a_point_off_the_projection_is_refused() -> None:
    ortho = "+proj=ortho +lat_0=0 +lon_0=0 +datum=WGS84"
    g = Georef.from_parts(width=200, height=200, crs=ortho, transform=Affine(1e5, 0, 0, 0, -1e5, 0))
    assert np.all(np.isfinite(g.to_lonlat([[10.0, 10.0]])))
    with pytest.raises(MappingError, match="ortho"):
        g.to_lonlat([[100.0, 10.0]])  # 10,000 km from the centre: off the Earth's disk


# -- views: the global view, a crop, a tile ---------------------------------------------


def test_boxes_from_any_view_in_any_frame() -> None:
    crop = ViewWindow((1000, 500, 2000, 1500), (250, 250))  # shown 4x downsampled
    box = [[10.0, 20.0, 30.0, 40.0]]
    np.testing.assert_allclose(view_to_source_px(box, "window_px", crop), [[1010, 520, 1030, 540]])
    np.testing.assert_allclose(
        view_to_source_px(box, "abs_px_resized", crop), [[1040, 580, 1120, 660]]
    )
    np.testing.assert_allclose(
        view_to_source_px([[0, 0, 500, 1000]], "norm1000", crop), [[1000, 500, 1500, 1500]]
    )
    whole = ViewWindow((0, 0, 4000, 2000), (256, 512))  # a global view, 7.8125x
    got = view_to_source_px([[256, 128, 512, 256]], "abs_px_resized", whole)
    np.testing.assert_allclose(got, [[2000, 1000, 4000, 2000]])
    with pytest.raises(ValueError, match="frame"):
        view_to_source_px(box, "pixels", crop)


def test_boxes_on_a_view_reach_the_map(tmp_path: Path) -> None:
    t = Affine(0.5, 0, 500_000.0, 0, -0.5, 5_000_000.0)
    g = Georef.from_parts(width=4000, height=2000, crs="EPSG:32633", transform=t)
    crop = ViewWindow((1000, 500, 2000, 1500), (250, 250))
    got = boxes_to_map([[0, 0, 500, 1000]], g, view=crop, frame="norm1000", to="crs")[0]
    want = [[500_500, 4_999_750], [500_750, 4_999_750], [500_750, 4_999_250], [500_500, 4_999_250]]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
    quad = [[10, 10, 20, 12, 18, 20, 8, 18]]  # a quad keeps its four corners
    got = boxes_to_map(quad, g, view=crop, frame="window_px", to="crs")[0]
    np.testing.assert_allclose(got[0], [500_000 + 0.5 * 1010, 5e6 - 0.5 * 510], atol=1e-9)


# -- masks ------------------------------------------------------------------------------


def test_a_mask_becomes_a_polygon_in_source_pixels() -> None:
    mask = np.zeros((100, 100), bool)
    mask[10:30, 40:80] = True
    mask[15:20, 50:60] = False  # a hole
    view = ViewWindow((1000, 2000, 1400, 2400), (100, 100))  # 4 source px per mask px
    poly = mask_to_polygons_px(mask, view, simplify_px=0)
    assert poly.geom_type == "Polygon" and len(poly.interiors) == 1
    assert poly.bounds == (1160.0, 2040.0, 1320.0, 2120.0)
    assert poly.area == pytest.approx((40 * 20 - 10 * 5) * 16)
    empty = mask_to_polygons_px(np.zeros((8, 8)), view)
    assert empty.is_empty


def test_mask_outlines_are_simplified_at_the_views_pixel() -> None:
    yy, xx = np.mgrid[:200, :200]
    disc = (xx - 100) ** 2 + (yy - 100) ** 2 < 80**2
    view = ViewWindow((0, 0, 800, 800), (200, 200))  # one mask pixel is 4 source px
    raw = mask_to_polygons_px(disc, view, simplify_px=0)
    simple = mask_to_polygons_px(disc, view)
    assert len(simple.exterior.coords) < len(raw.exterior.coords) / 3
    assert simple.hausdorff_distance(raw) <= 4.0 + 1e-9  # within one view pixel
    assert simple.area == pytest.approx(math.pi * 320**2, rel=0.02)


# -- the writers ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def utm(tmp_path_factory: pytest.TempPathFactory) -> Georef:
    t = Affine(0.5, 0, 499_984.0, 0, -0.5, 5_000_016.0)
    path = write(tmp_path_factory.mktemp("utm") / "utm.tif", crs="EPSG:32633", transform=t)
    return Georef.from_raster(path)


def _features() -> list[Feature]:
    disc = shapely.Point(40, 40).buffer(10)
    return [
        Feature(shapely.box(4, 8, 20, 16), {"class": "car", "score": None, "quad_px": [4, 8]}),
        Feature(disc, {"class": "tank", "score": 0.5, "n": np.int64(3)}),
        Feature(shapely.Polygon(), {"class": "nothing"}),
    ]


def test_geojson_opens_in_gdal_inside_the_footprint(utm: Georef, tmp_path: Path) -> None:
    pyogrio = pytest.importorskip("pyogrio")
    report = write_features(tmp_path / "f.geojson", _features(), utm, meta={"run": "test"})
    assert (report.written, report.skipped["empty_geometry"]) == (2, 1)
    info = pyogrio.read_info(report.path)
    assert info["crs"] == "EPSG:4326" and info["features"] == 2 and info["driver"] == "GeoJSON"
    _, _, wkb, fields = pyogrio.raw.read(report.path)
    geoms = shapely.from_wkb(wkb)
    footprint = utm.footprint()
    assert all(footprint.contains(g) for g in geoms)
    assert list(fields[list(info["fields"]).index("class")]) == ["car", "tank"]
    doc = json.loads(report.path.read_text())
    assert doc["earthvlm"]["run"] == "test" and doc["earthvlm"]["coordinates"].startswith("WGS84")
    ring = np.array(doc["features"][0]["geometry"]["coordinates"][0])
    signed = np.sum(ring[:-1, 0] * ring[1:, 1] - ring[1:, 0] * ring[:-1, 1])
    assert signed > 0  # RFC 7946: exterior rings counter-clockwise
    want = boxes_to_map([[4, 8, 20, 16]], utm)[0]
    assert {tuple(np.round(p, 9)) for p in ring[:4]} == {tuple(np.round(p, 9)) for p in want}


def test_geopackage_keeps_the_rasters_crs(utm: Georef, tmp_path: Path) -> None:
    pyogrio = pytest.importorskip("pyogrio")
    report = write_features(tmp_path / "f.gpkg", _features()[:2], utm, layer="objects")
    info = pyogrio.read_info(report.path, layer="objects")
    assert info["crs"] == "EPSG:32633" and info["features"] == 2
    _, _, wkb, _ = pyogrio.raw.read(report.path, layer="objects")
    box = shapely.from_wkb(wkb[0])
    assert box.bounds == pytest.approx((499_986.0, 5_000_008.0, 499_994.0, 5_000_012.0))


def test_without_georeferencing_pixels_are_written_and_said(tmp_path: Path) -> None:
    pyogrio = pytest.importorskip("pyogrio")
    g = Georef.from_raster(write(tmp_path / "plain.tif"))
    report = write_features(tmp_path / "px.geojson", _features()[:1], g)
    doc = json.loads(report.path.read_text())
    assert report.coordinates == "px" and "not georeferenced" in doc["earthvlm"]["coordinates"]
    assert doc["earthvlm"]["georef"]["method"] == "none"
    xs = {p[0] for p in doc["features"][0]["geometry"]["coordinates"][0]}
    assert xs == {4.0, 20.0}
    report = write_features(tmp_path / "px.gpkg", _features()[:1], g)
    assert pyogrio.read_info(report.path)["crs"] is None


def test_features_that_do_not_map_are_counted(tmp_path: Path) -> None:
    ortho = "+proj=ortho +lat_0=0 +lon_0=0 +datum=WGS84"
    g = Georef.from_parts(width=200, height=200, crs=ortho, transform=Affine(1e5, 0, 0, 0, -1e5, 0))
    feats = [Feature(shapely.box(1, 1, 2, 2)), Feature(shapely.box(100, 1, 101, 2))]
    report = write_features(tmp_path / "o.geojson", feats, g)
    assert report.written == 1 and report.skipped == {NOT_MAPPED: 1}
    with pytest.raises(VectorError, match="shp"):
        write_features(tmp_path / "o.shp", feats, g)
