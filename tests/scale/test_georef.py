"""GSD from georeferencing, checked against ground truth computed analytically here.

Every expected value below comes from closed-form WGS84 geometry (meridian and
prime-vertical radii of curvature, the transverse Mercator scale factor on its central
meridian, the spherical Mercator inverse), never from pyproj or the code under test.
"""

from __future__ import annotations

import math
import warnings

import pytest
import rasterio
from pyproj import CRS
from rasterio.control import GroundControlPoint
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import Affine

from earthvlm.scale.georef import georef_gsd, gsd_from_raster
from earthvlm.scale.gsd import GSDKind, GSDSource

# WGS84 ellipsoid
A = 6378137.0
F = 1 / 298.257223563
E2 = F * (2 - F)
K0_UTM = 0.9996  # UTM scale factor on the central meridian
FT_US_M = 1200 / 3937  # one US survey foot in metres

#: Tolerance required by the spec (1 %), and a tight one where the truth is exact to
#: well below it (it still fails if, e.g., the UTM scale factor were ignored: 4e-4).
SPEC_REL = 0.01
TIGHT_REL = 1e-4


def n_radius(lat_deg: float) -> float:
    """Prime-vertical radius of curvature N (m)."""
    s = math.sin(math.radians(lat_deg))
    return A / math.sqrt(1 - E2 * s * s)


def m_radius(lat_deg: float) -> float:
    """Meridian radius of curvature M (m)."""
    s = math.sin(math.radians(lat_deg))
    return A * (1 - E2) / (1 - E2 * s * s) ** 1.5


def parallel_arc_m(lat_deg: float, dlon_deg: float) -> float:
    """Length along a parallel of ``dlon_deg`` degrees of longitude."""
    return n_radius(lat_deg) * math.cos(math.radians(lat_deg)) * math.radians(dlon_deg)


def meridian_arc_m(lat_deg: float, dlat_deg: float) -> float:
    """Length along a meridian of a short ``dlat_deg`` step centred on ``lat_deg``."""
    return m_radius(lat_deg) * math.radians(dlat_deg)


def centred(transform: Affine, width: int, height: int, x: float, y: float) -> Affine:
    """``transform`` translated so that the image centre lands on CRS point (x, y)."""
    cx, cy = transform @ (width / 2, height / 2)
    return Affine.translation(x - cx, y - cy) @ transform


# UTM zone 33N: central meridian 15E, false easting 500 000 m; 5 000 km north ~ 45N
UTM33_CM = (500_000.0, 5_000_000.0)


# -- (a) UTM metres ---------------------------------------------------------------------


def test_utm_half_metre_pixels_near_central_meridian(tmp_path, write_geotiff) -> None:
    path = write_geotiff(
        tmp_path / "utm.tif",
        crs="EPSG:32633",
        transform=centred(Affine.scale(0.5, -0.5), 4, 4, *UTM33_CM),
    )
    r = gsd_from_raster(path)
    truth = 0.5 / K0_UTM
    assert r.x_m == pytest.approx(truth, rel=TIGHT_REL)
    assert r.y_m == pytest.approx(truth, rel=TIGHT_REL)
    assert r.gsd.kind is GSDKind.EXACT
    assert r.gsd.source is GSDSource.GEOREF
    assert r.gsd.point_m == pytest.approx(truth, rel=TIGHT_REL)
    assert r.method == "affine"
    assert r.crs == "EPSG:32633"
    assert "utm.tif" in r.gsd.detail


# -- (b) US survey feet -----------------------------------------------------------------


def test_state_plane_us_survey_feet(tmp_path, write_geotiff) -> None:
    # NAD83 / New York Long Island (ftUS), Lambert conformal conic with standard
    # parallels 40d40' and 41d02'; (984250, 200000) ftUS is ~40.7N, between them, where
    # the scale factor is within ~1e-5 of 1.
    path = write_geotiff(
        tmp_path / "nyc_ftus.tif",
        crs="EPSG:2263",
        transform=centred(Affine.scale(1.0, -1.0), 4, 4, 984_250.0, 200_000.0),
    )
    r = gsd_from_raster(path)
    assert r.x_m == pytest.approx(FT_US_M, rel=SPEC_REL)
    assert r.y_m == pytest.approx(FT_US_M, rel=SPEC_REL)
    assert r.gsd.point_m == pytest.approx(FT_US_M, rel=TIGHT_REL)
    assert r.crs == "EPSG:2263"


# -- (c) kilometres ---------------------------------------------------------------------


def test_projected_crs_in_kilometres(tmp_path, write_geotiff) -> None:
    path = write_geotiff(
        tmp_path / "utm_km.tif",
        crs="+proj=utm +zone=33 +datum=WGS84 +units=km",
        transform=centred(Affine.scale(0.01, -0.01), 4, 4, 500.0, 5000.0),
    )
    with rasterio.open(path) as ds:  # the unit survives the GeoTIFF round trip
        assert ds.crs.linear_units_factor[1] == pytest.approx(1000.0)
    r = gsd_from_raster(path)
    truth = 10.0 / K0_UTM
    assert r.x_m == pytest.approx(truth, rel=TIGHT_REL)
    assert r.y_m == pytest.approx(truth, rel=TIGHT_REL)
    assert r.gsd.point_m == pytest.approx(10.0, rel=SPEC_REL)


# -- (d) Web Mercator -------------------------------------------------------------------


def test_web_mercator_at_60_north(tmp_path, write_geotiff) -> None:
    lat = 60.0
    # spherical Mercator forward (R = a): y = a ln tan(pi/4 + phi/2)
    y0 = A * math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))
    path = write_geotiff(
        tmp_path / "merc.tif",
        crs="EPSG:3857",
        transform=centred(Affine.scale(1.0, -1.0), 4, 4, 1_000_000.0, y0),
    )
    r = gsd_from_raster(path)
    # 1 m of easting is 1/a rad of longitude; 1 m of northing is cos(phi)/a rad of
    # latitude (d phi / d y = sech(y/a) / a); measured on the ellipsoid
    cos_phi = math.cos(math.radians(lat))
    truth_x = n_radius(lat) * cos_phi / A
    truth_y = m_radius(lat) * cos_phi / A
    assert r.x_m == pytest.approx(truth_x, rel=TIGHT_REL)
    assert r.y_m == pytest.approx(truth_y, rel=TIGHT_REL)
    assert r.gsd.point_m == pytest.approx(0.5, rel=SPEC_REL)  # not 1.0: "metres" lie here


# -- (e) geographic degrees -------------------------------------------------------------


def test_geographic_degrees_at_equator(tmp_path, write_geotiff) -> None:
    step = 0.001
    path = write_geotiff(
        tmp_path / "wgs84.tif",
        crs="EPSG:4326",
        transform=centred(Affine.scale(step, -step), 4, 4, 10.0, 0.0),
    )
    r = gsd_from_raster(path)
    truth_x = parallel_arc_m(0.0, step)  # a * dlambda
    truth_y = meridian_arc_m(0.0, step)  # a (1 - e^2) * dphi
    assert truth_x == pytest.approx(111.3, abs=0.05)
    assert truth_y == pytest.approx(110.6, abs=0.05)
    assert r.x_m == pytest.approx(truth_x, rel=TIGHT_REL)
    assert r.y_m == pytest.approx(truth_y, rel=TIGHT_REL)
    assert r.gsd.point_m == pytest.approx(math.sqrt(truth_x * truth_y), rel=TIGHT_REL)
    assert r.crs == "EPSG:4326"


def test_geographic_degrees_shrink_with_latitude(tmp_path, write_geotiff) -> None:
    step = 0.001
    path = write_geotiff(
        tmp_path / "wgs84_60n.tif",
        crs="EPSG:4326",
        transform=centred(Affine.scale(step, -step), 4, 4, 10.0, 60.0),
    )
    r = gsd_from_raster(path)
    assert r.x_m == pytest.approx(parallel_arc_m(60.0, step), rel=TIGHT_REL)
    assert r.y_m == pytest.approx(meridian_arc_m(60.0, step), rel=TIGHT_REL)


# -- (f) rotated affine -----------------------------------------------------------------


def test_rotated_affine_keeps_pixel_size(tmp_path, write_geotiff) -> None:
    base = Affine.rotation(30) @ Affine.scale(2.0, -2.0)
    path = write_geotiff(
        tmp_path / "rot30.tif",
        crs="EPSG:32633",
        transform=centred(base, 4, 4, *UTM33_CM),
    )
    with rasterio.open(path) as ds:  # the rotation terms were really written
        assert abs(ds.transform.b) > 0.5 and abs(ds.transform.d) > 0.5
    r = gsd_from_raster(path)
    truth = 2.0 / K0_UTM
    assert r.x_m == pytest.approx(truth, rel=TIGHT_REL)
    assert r.y_m == pytest.approx(truth, rel=TIGHT_REL)


# -- (g) anisotropic and sheared affine ---------------------------------------------------


def test_anisotropic_affine(tmp_path, write_geotiff) -> None:
    path = write_geotiff(
        tmp_path / "aniso.tif",
        crs="EPSG:32633",
        transform=centred(Affine(1.0, 0.0, 0.0, 0.0, -3.0, 0.0), 4, 4, *UTM33_CM),
    )
    r = gsd_from_raster(path)
    assert r.x_m == pytest.approx(1.0 / K0_UTM, rel=TIGHT_REL)
    assert r.y_m == pytest.approx(3.0 / K0_UTM, rel=TIGHT_REL)
    assert r.gsd.point_m == pytest.approx(math.sqrt(3.0) / K0_UTM, rel=TIGHT_REL)


def test_sheared_affine_uses_pixel_axes(tmp_path, write_geotiff) -> None:
    # columns step (1, 0) m, rows step (0.5, -3) m: the row axis is oblique
    path = write_geotiff(
        tmp_path / "shear.tif",
        crs="EPSG:32633",
        transform=centred(Affine(1.0, 0.5, 0.0, 0.0, -3.0, 0.0), 4, 4, *UTM33_CM),
    )
    r = gsd_from_raster(path)
    assert r.x_m == pytest.approx(1.0 / K0_UTM, rel=TIGHT_REL)
    assert r.y_m == pytest.approx(math.hypot(0.5, 3.0) / K0_UTM, rel=TIGHT_REL)


# -- (h) GCPs only ------------------------------------------------------------------------


def test_gcps_only_geographic(tmp_path, write_geotiff) -> None:
    # 100 x 100 px spanning lon 10.0..10.1, lat 1.0..0.9: 0.001 deg per pixel
    size = 100
    gcps = [
        GroundControlPoint(row=0, col=0, x=10.0, y=1.0),
        GroundControlPoint(row=0, col=size, x=10.1, y=1.0),
        GroundControlPoint(row=size, col=0, x=10.0, y=0.9),
        GroundControlPoint(row=size, col=size, x=10.1, y=0.9),
    ]
    path = write_geotiff(tmp_path / "gcps.tif", crs="EPSG:4326", gcps=gcps, width=size, height=size)
    with rasterio.open(path) as ds:  # GCP-only: no usable geotransform in the file
        assert ds.transform.is_identity
        assert len(ds.gcps[0]) == 4
    r = gsd_from_raster(path)
    lat_c = 0.95  # image centre
    assert r.method == "gcps"
    assert r.crs == "EPSG:4326"
    assert r.x_m == pytest.approx(parallel_arc_m(lat_c, 0.001), rel=TIGHT_REL)
    assert r.y_m == pytest.approx(meridian_arc_m(lat_c, 0.001), rel=TIGHT_REL)
    assert r.gsd.source is GSDSource.GEOREF


def test_gcps_only_projected(tmp_path, write_geotiff) -> None:
    # 50 x 50 px of 2 m in UTM 33N around the central meridian
    size, px = 50, 2.0
    x0, y0 = UTM33_CM[0] - size, UTM33_CM[1] + size
    gcps = [
        GroundControlPoint(row=r, col=c, x=x0 + c * px, y=y0 - r * px)
        for r in (0, size)
        for c in (0, size)
    ]
    path = write_geotiff(
        tmp_path / "gcps_utm.tif", crs="EPSG:32633", gcps=gcps, width=size, height=size
    )
    r = gsd_from_raster(path)
    assert r.method == "gcps"
    assert r.x_m == pytest.approx(px / K0_UTM, rel=TIGHT_REL)
    assert r.y_m == pytest.approx(px / K0_UTM, rel=TIGHT_REL)


# -- (i, j) not enough georeferencing ---------------------------------------------------


def test_no_crs_with_transform_is_unknown(tmp_path, write_geotiff) -> None:
    path = write_geotiff(
        tmp_path / "nocrs.tif", crs=None, transform=Affine(2.0, 0.0, 0.0, 0.0, -2.0, 8.0)
    )
    r = gsd_from_raster(path)
    assert not r.gsd.is_known
    assert r.gsd.source is GSDSource.NONE
    assert "no CRS" in r.gsd.detail
    assert "nocrs.tif" in r.gsd.detail
    assert r.x_m is None and r.y_m is None
    assert r.method == "none"


def test_crs_with_identity_transform_is_unknown(tmp_path, write_geotiff) -> None:
    path = write_geotiff(tmp_path / "ident.tif", crs="EPSG:32633", transform=Affine.identity())
    r = gsd_from_raster(path)
    assert not r.gsd.is_known
    assert "geotransform" in r.gsd.detail
    assert r.x_m is None


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_plain_tiff_without_any_georeferencing_is_unknown(tmp_path, write_geotiff) -> None:
    path = write_geotiff(tmp_path / "plain.tif")
    r = gsd_from_raster(path)
    assert not r.gsd.is_known
    assert "not georeferenced" in r.gsd.detail


def test_plain_tiff_emits_no_not_georeferenced_warning(tmp_path, write_geotiff) -> None:
    path = write_geotiff(tmp_path / "plain.tif")
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotGeoreferencedWarning)
        r = gsd_from_raster(path)
    assert not r.gsd.is_known


# -- georef_gsd called directly ---------------------------------------------------------


def test_georef_gsd_direct_utm() -> None:
    t = centred(Affine.scale(0.5, -0.5), 8, 6, *UTM33_CM)
    r = georef_gsd(width=8, height=6, crs=CRS.from_epsg(32633), transform=tuple(t)[:6])
    assert r.x_m == pytest.approx(0.5 / K0_UTM, rel=TIGHT_REL)
    assert r.y_m == pytest.approx(0.5 / K0_UTM, rel=TIGHT_REL)
    assert r.method == "affine"


def test_georef_gsd_direct_gcps_used_when_transform_is_identity() -> None:
    gcps = [
        GroundControlPoint(row=0, col=0, x=10.0, y=1.0),
        GroundControlPoint(row=0, col=100, x=10.1, y=1.0),
        GroundControlPoint(row=100, col=0, x=10.0, y=0.9),
        GroundControlPoint(row=100, col=100, x=10.1, y=0.9),
    ]
    r = georef_gsd(
        width=100,
        height=100,
        crs=None,
        transform=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
        gcps=gcps,
        gcps_crs=CRS.from_epsg(4326),
        name="scene.tif",
    )
    assert r.method == "gcps"
    assert r.x_m == pytest.approx(parallel_arc_m(0.95, 0.001), rel=TIGHT_REL)
    assert "scene.tif" in r.gsd.detail


def test_georef_gsd_direct_local_crs_in_feet() -> None:
    # an engineering CRS has no geodetic datum: distances are planar in its unit
    local = CRS.from_wkt(
        'LOCAL_CS["site grid",LOCAL_DATUM["site",0],UNIT["US survey foot",0.304800609601219],'
        'AXIS["X",EAST],AXIS["Y",NORTH]]'
    )
    r = georef_gsd(width=4, height=4, crs=local, transform=(2.0, 0.0, 0.0, 0.0, -2.0, 8.0))
    assert r.x_m == pytest.approx(2 * FT_US_M, rel=1e-9)
    assert r.y_m == pytest.approx(2 * FT_US_M, rel=1e-9)


def test_georef_gsd_direct_nothing_is_unknown() -> None:
    r = georef_gsd(width=4, height=4, crs=None, transform=None, name="x.png")
    assert not r.gsd.is_known
    assert "x.png" in r.gsd.detail


def test_georef_gsd_degenerate_transform_is_unknown_not_a_crash() -> None:
    r = georef_gsd(
        width=4, height=4, crs=CRS.from_epsg(32633), transform=(0.0, 0.0, 1.0, 0.0, 0.0, 1.0)
    )
    assert not r.gsd.is_known
    assert "degenerate" in r.gsd.detail


def test_georef_gsd_centre_off_the_earth_is_unknown() -> None:
    # a geostationary view whose image centre lies outside the Earth's disk
    geos = CRS.from_proj4("+proj=geos +h=35785831 +lon_0=0 +sweep=y +ellps=WGS84")
    r = georef_gsd(
        width=4,
        height=4,
        crs=geos,
        transform=(2000.0, 0.0, 6_000_000.0, 0.0, -2000.0, 6_000_000.0),
    )
    assert not r.gsd.is_known
    assert "unusable" in r.gsd.detail


def test_rpc_only_georeferencing(tmp_path) -> None:
    # an RPC model that maps normalised lon/lat linearly to samples/lines: 1e-5 deg pixels
    # at 45 N, i.e. ~0.788 m along a row and ~1.111 m along a column
    import numpy as np
    from rasterio.rpc import RPC

    w = h = 100
    d = 1e-5
    zeros = [0.0] * 20
    samp_num, line_num, den = zeros.copy(), zeros.copy(), zeros.copy()
    samp_num[1], line_num[2], den[0] = 1.0, -1.0, 1.0
    rpc = RPC(
        height_off=0, height_scale=100, lat_off=45.0, lat_scale=h / 2 * d,
        line_den_coeff=den, line_num_coeff=line_num, line_off=h / 2, line_scale=h / 2,
        long_off=10.0, long_scale=w / 2 * d, samp_den_coeff=den, samp_num_coeff=samp_num,
        samp_off=w / 2, samp_scale=w / 2,
    )  # fmt: skip
    path = tmp_path / "rpc.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(
            path, "w", driver="GTiff", width=w, height=h, count=1, dtype="uint8"
        ) as dst:
            dst.write(np.zeros((1, h, w), np.uint8))
            dst.rpcs = rpc
    res = gsd_from_raster(path)
    phi = math.radians(45.0)
    a, e2 = 6378137.0, 6.69437999014e-3
    x_truth = math.radians(d) * a / math.sqrt(1 - e2 * math.sin(phi) ** 2) * math.cos(phi)
    y_truth = math.radians(d) * a * (1 - e2) / (1 - e2 * math.sin(phi) ** 2) ** 1.5
    assert res.method == "rpcs"
    assert res.x_m == pytest.approx(x_truth, rel=1e-4)
    assert res.y_m == pytest.approx(y_truth, rel=1e-4)
