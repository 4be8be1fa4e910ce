"""PROJ finds its database in every context: opening a GeoTIFF whose units need a lookup
(kilometres) prints no "Cannot find proj.db", with no PROJ setting or with one left
pointing at a folder without proj.db (another install's)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import sys, earthvlm, numpy, rasterio
from rasterio.crs import CRS
from rasterio.transform import Affine
km = CRS.from_proj4("+proj=utm +zone=33 +datum=WGS84 +units=km")
with rasterio.open(sys.argv[1], "w", driver="GTiff", width=4, height=4, count=1,
                   dtype="uint8", crs=km, transform=Affine(0.01, 0, 500, 0, -0.01, 5000)) as ds:
    ds.write(numpy.zeros((1, 4, 4), "uint8"))
with rasterio.open(sys.argv[1]) as ds:
    print(ds.crs.linear_units_factor[1], CRS.from_epsg(32633).to_epsg())
"""


@pytest.mark.parametrize("key", [None, "PROJ_DATA", "PROJ_LIB"])
def test_proj_finds_its_database(key: str | None, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PROJ_DATA", "PROJ_LIB")}
    if key is not None:
        env[key] = str(tmp_path)  # an empty folder: no proj.db
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "km.tif")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["1000.0", "32633"]
    assert "proj.db" not in proc.stderr, proc.stderr
