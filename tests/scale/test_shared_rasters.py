"""GSD of real rasters from ``../shared/data/rasters`` (rasterio's CC0 test data).

The files are read in place, never copied. The whole module is skipped when the folder
is absent (e.g. a checkout without ``shared/`` beside it).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import rasterio

from earthvlm.errors import RasterError
from earthvlm.geo.raster import open_raster, read_pixels
from earthvlm.scale.georef import gsd_from_raster

pytestmark = pytest.mark.shared_data

SHARED_RASTERS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "rasters"

REL = 0.02  # 2 %


@pytest.fixture(scope="module")
def rasters() -> Path:
    if not SHARED_RASTERS.is_dir():
        pytest.skip(f"shared rasters not found at {SHARED_RASTERS}")
    return SHARED_RASTERS


def test_world_byte_geographic_degrees(rasters: Path) -> None:
    # 0.125 degree pixels centred on the equator: a * 0.125 deg in radians = 13.9 km
    r = gsd_from_raster(rasters / "world.byte.tif")
    assert r.x_m == pytest.approx(13_900.0, rel=REL)
    assert r.x_m == pytest.approx(6378137.0 * math.radians(0.125), rel=1e-3)
    assert r.crs == "EPSG:4326"


def test_cogeo_web_mercator_is_not_its_nominal_pixel(rasters: Path) -> None:
    path = rasters / "cogeo.tif"
    with rasterio.open(path) as ds:  # the nominal (Mercator) pixel is 0.597 "m"
        nominal = ds.transform.a
        centre_y = (ds.transform @ (ds.width / 2, ds.height / 2))[1]
    assert nominal == pytest.approx(0.597, abs=1e-3)
    r = gsd_from_raster(path)
    assert r.gsd.point_m == pytest.approx(0.47, rel=REL)
    assert r.x_m == pytest.approx(0.47, rel=REL)
    assert r.y_m == pytest.approx(0.47, rel=REL)
    # ground size = nominal * cos(latitude) (spherical Mercator inverse for the latitude)
    lat = math.atan(math.sinh(centre_y / 6378137.0))
    assert r.x_m == pytest.approx(nominal * math.cos(lat), rel=REL)


def test_rgb_byte_utm(rasters: Path) -> None:
    r = gsd_from_raster(rasters / "RGB.byte.tif")
    assert r.gsd.point_m == pytest.approx(300.0, rel=REL)
    assert r.crs == "EPSG:32618"


@pytest.mark.parametrize("name", ["float32.tif", "rotated.tif"])
def test_no_crs_files_are_unknown(rasters: Path, name: str) -> None:
    r = gsd_from_raster(rasters / name)
    assert not r.gsd.is_known
    assert "no CRS" in r.gsd.detail
    assert name in r.gsd.detail


def test_corrupt_tif_header_still_gives_gsd(rasters: Path) -> None:
    r = gsd_from_raster(rasters / "corrupt.tif")
    assert r.gsd.point_m == pytest.approx(0.47, rel=REL)


def test_corrupt_tif_pixels_raise_naming_file(rasters: Path) -> None:
    with (
        open_raster(rasters / "corrupt.tif") as ds,
        pytest.raises(RasterError, match=r"corrupt\.tif") as exc,
    ):
        read_pixels(ds)
    assert "cannot be read" in str(exc.value)


def test_gcp_vrt_is_refused_unless_allowed(rasters: Path) -> None:
    # the VRT's sources stay in its folder, so it opens when a person asks for it
    with pytest.raises(RasterError, match="VRT"):
        gsd_from_raster(rasters / "RGB.byte.gcp.vrt")
    r = gsd_from_raster(rasters / "RGB.byte.gcp.vrt", allow_vrt=True)
    assert r.method == "gcps"
    assert r.crs == "EPSG:4326"
    # truth from its four corner GCPs (a lon/lat grid): mean degree steps per pixel and
    # per line, converted with the local radii of curvature at the GCPs' mean latitude
    with open_raster(rasters / "RGB.byte.gcp.vrt", allow_vrt=True) as ds:
        pts = sorted((g.row, g.col, g.x, g.y) for g in ds.gcps[0])
    assert len(pts) == 4
    (ra, ca, *tl), (_, cb, *tr), (rb, _, *bl), (_, _, *br) = pts  # rows, then columns
    lat = math.radians(sum(p[3] for p in pts) / 4)
    e2 = 6.69437999014e-3
    w = 1 - e2 * math.sin(lat) ** 2
    m_per_deg_lon = math.radians(1) * 6378137.0 / math.sqrt(w) * math.cos(lat)
    m_per_deg_lat = math.radians(1) * 6378137.0 * (1 - e2) / w**1.5

    def ground(p: list[float], q: list[float]) -> float:
        return math.hypot((q[0] - p[0]) * m_per_deg_lon, (q[1] - p[1]) * m_per_deg_lat)

    truth_x = (ground(tl, tr) + ground(bl, br)) / 2 / (cb - ca)
    truth_y = (ground(tl, bl) + ground(tr, br)) / 2 / (rb - ra)
    assert 5.0 < truth_y < truth_x < 8.0  # these GCPs describe ~7 m x ~5 m pixels
    assert r.x_m == pytest.approx(truth_x, rel=REL)
    assert r.y_m == pytest.approx(truth_y, rel=REL)
