"""Safe raster opening (no URLs, no stray VRT sources) and budgeted pixel reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rasterio.transform import Affine
from rasterio.windows import Window

from earthvlm.errors import RasterError
from earthvlm.geo.raster import open_raster, read_pixels

# VRTs and PNGs here carry no geotransform on purpose
pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

UTM = {"crs": "EPSG:32633", "transform": Affine(1.0, 0.0, 500_000.0, 0.0, -1.0, 5_000_000.0)}


def vrt_xml(source: str, *, relative: bool, width: int = 4, height: int = 4) -> str:
    """A one-band simple-source VRT reading band 1 of ``source``."""
    return f"""<VRTDataset rasterXSize="{width}" rasterYSize="{height}">
  <VRTRasterBand dataType="Byte" band="1">
    <SimpleSource>
      <SourceFilename relativeToVRT="{int(relative)}">{source}</SourceFilename>
      <SourceBand>1</SourceBand>
    </SimpleSource>
  </VRTRasterBand>
</VRTDataset>
"""


def open_and_close(path, **kwargs) -> None:
    with open_raster(path, **kwargs):
        pass


def open_and_read(path, **kwargs) -> None:
    with open_raster(path, **kwargs) as ds:
        read_pixels(ds)


@pytest.fixture
def small_tif(tmp_path: Path, write_geotiff) -> tuple[Path, np.ndarray]:
    data = np.arange(3 * 6 * 8, dtype=np.uint16).reshape(3, 6, 8)
    path = write_geotiff(tmp_path / "small.tif", data=data, dtype="uint16", **UTM)
    return path, data


# -- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "http://x/a.tif",
        "https://example.com/scene.tif",
        "s3://bucket/key.tif",
        "/vsicurl/http://x/a.tif",
        "/vsizip//tmp/a.zip/a.tif",
        "vsis3/bucket/a.tif",
    ],
)
def test_urls_and_virtual_paths_are_refused(target: str) -> None:
    with pytest.raises(RasterError, match="URLs and GDAL virtual paths") as exc:
        open_and_close(target)
    assert target in str(exc.value)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nope.tif"
    with pytest.raises(RasterError, match="no such file") as exc:
        open_and_close(missing)
    assert "nope.tif" in str(exc.value)


def test_directory_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "scene.tif"
    folder.mkdir()
    with pytest.raises(RasterError, match="not a regular file"):
        open_and_close(folder)


def test_text_file_is_refused(tmp_path: Path) -> None:
    txt = tmp_path / "notes.tif"
    txt.write_text("imagesource:GoogleEarth\ngsd:0.146\n")
    with pytest.raises(RasterError, match="not a supported raster") as exc:
        open_and_close(txt)
    assert "notes.tif" in str(exc.value)


def test_truncated_tiff_header_is_refused_naming_file(tmp_path: Path) -> None:
    bad = tmp_path / "trunc.tif"
    bad.write_bytes(b"II*\x00" + b"\x00" * 4)
    with pytest.raises(RasterError, match="cannot be opened") as exc:
        open_and_close(bad)
    assert "trunc.tif" in str(exc.value)


def test_vrt_refused_without_allow_vrt(tmp_path: Path, write_geotiff) -> None:
    write_geotiff(tmp_path / "src.tif", **UTM)
    vrt = tmp_path / "mosaic.vrt"
    vrt.write_text(vrt_xml("src.tif", relative=True))
    with pytest.raises(RasterError, match="VRT"):
        open_and_close(vrt)


def test_vrt_disguised_as_tif_refused(tmp_path: Path, write_geotiff) -> None:
    write_geotiff(tmp_path / "src.tif", **UTM)
    fake = tmp_path / "innocent.tif"
    fake.write_text(vrt_xml("src.tif", relative=True))
    with pytest.raises(RasterError, match="VRT"):
        open_and_close(fake)


@pytest.mark.parametrize("relative", [True, False])
def test_vrt_source_outside_its_folder_refused(
    tmp_path: Path, write_geotiff, relative: bool
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    secret = write_geotiff(outside / "secret.tif", **UTM)
    vrt_dir = tmp_path / "dataset"
    vrt_dir.mkdir()
    vrt = vrt_dir / "tile.vrt"
    source = "../elsewhere/secret.tif" if relative else str(secret)
    vrt.write_text(vrt_xml(source, relative=relative))
    with pytest.raises(RasterError, match="outside") as exc:
        open_and_close(vrt, allow_vrt=True)
    assert "secret.tif" in str(exc.value)


@pytest.mark.parametrize("source", ["http://evil.example/a.tif", "/vsicurl/http://x/a.tif"])
def test_vrt_with_url_source_refused(tmp_path: Path, source: str) -> None:
    vrt = tmp_path / "remote.vrt"
    vrt.write_text(vrt_xml(source, relative=False))
    with pytest.raises(RasterError, match="URL"):
        open_and_close(vrt, allow_vrt=True)


def test_derived_vrt_refused(tmp_path: Path, write_geotiff) -> None:
    write_geotiff(tmp_path / "src.tif", **UTM)
    vrt = tmp_path / "derived.vrt"
    vrt.write_text(
        vrt_xml("src.tif", relative=True).replace(
            '<VRTRasterBand dataType="Byte" band="1">',
            '<VRTRasterBand dataType="Byte" band="1" subClass="VRTDerivedRasterBand">',
        )
    )
    with pytest.raises(RasterError, match="subClass"):
        open_and_close(vrt, allow_vrt=True)


def test_vrt_that_is_not_xml_refused(tmp_path: Path) -> None:
    vrt = tmp_path / "broken.vrt"
    vrt.write_text("<VRTDataset rasterXSize='4'><unclosed>")
    with pytest.raises(RasterError, match="not valid XML"):
        open_and_close(vrt, allow_vrt=True)


def test_nested_vrt_cannot_reach_outside(tmp_path: Path, write_geotiff) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    secret = write_geotiff(outside / "secret.tif", **UTM)
    ds_dir = tmp_path / "dataset"
    ds_dir.mkdir()
    # the inner VRT is disguised as a .tif; the outer one only names it
    (ds_dir / "inner.tif").write_text(vrt_xml(str(secret), relative=False))
    outer = ds_dir / "outer.vrt"
    outer.write_text(vrt_xml("inner.tif", relative=True))
    with pytest.raises(RasterError):
        open_and_read(outer, allow_vrt=True)


def test_vrt_connection_string_source_cannot_reach_outside(tmp_path: Path, write_geotiff) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    secret = write_geotiff(outside / "secret.tif", **UTM)
    ds_dir = tmp_path / "dataset"
    ds_dir.mkdir()
    vrt = ds_dir / "tile.vrt"
    vrt.write_text(vrt_xml(f"GTIFF_DIR:1:{secret}", relative=True))
    with pytest.raises(RasterError):
        open_and_read(vrt, allow_vrt=True)


def test_vrt_with_source_inside_folder_allowed(tmp_path: Path, write_geotiff) -> None:
    data = (np.arange(16, dtype=np.uint8) * 3).reshape(1, 4, 4)
    sub = tmp_path / "parts"
    sub.mkdir()
    write_geotiff(sub / "src.tif", data=data, **UTM)
    vrt = tmp_path / "mosaic.vrt"
    vrt.write_text(vrt_xml("parts/src.tif", relative=True))
    with open_raster(vrt, allow_vrt=True) as ds:
        assert ds.driver == "VRT"
        np.testing.assert_array_equal(read_pixels(ds), data)


# -- opening and reading --------------------------------------------------------------------


def test_open_geotiff_and_read_all(small_tif) -> None:
    path, data = small_tif
    with open_raster(path) as ds:
        assert ds.driver == "GTiff"
        assert (ds.count, ds.height, ds.width) == (3, 6, 8)
        arr = read_pixels(ds)
    assert arr.dtype == np.uint16
    np.testing.assert_array_equal(arr, data)


def test_open_accepts_str_path(small_tif) -> None:
    path, _ = small_tif
    with open_raster(str(path)) as ds:
        assert ds.width == 8


def test_dataset_closed_after_context(small_tif) -> None:
    path, _ = small_tif
    with open_raster(path) as ds:
        pass
    assert ds.closed


def test_read_window_and_bands(small_tif) -> None:
    path, data = small_tif
    with open_raster(path) as ds:
        win = read_pixels(ds, window=Window(col_off=1, row_off=2, width=3, height=2))
        band2 = read_pixels(ds, bands=[2])
    np.testing.assert_array_equal(win, data[:, 2:4, 1:4])
    np.testing.assert_array_equal(band2, data[1:2])


def test_read_over_budget_refused_naming_budget(small_tif) -> None:
    path, _ = small_tif
    with open_raster(path) as ds:
        with pytest.raises(RasterError, match="budget of 47 px") as exc:
            read_pixels(ds, max_pixels=47)  # 8 x 6 = 48
        assert "8 x 6" in str(exc.value)
        assert "small.tif" in str(exc.value)
        # exactly at the budget is fine, and a window within it is too
        assert read_pixels(ds, max_pixels=48).shape == (3, 6, 8)
        assert read_pixels(ds, window=Window(0, 0, 4, 4), max_pixels=16).shape == (3, 4, 4)


def test_budget_is_formatted_with_thousands_separator(tmp_path: Path, write_geotiff) -> None:
    path = write_geotiff(tmp_path / "wide.tif", data=np.zeros((1, 30, 40)), **UTM)
    with open_raster(path) as ds, pytest.raises(RasterError, match="1,000 px"):
        read_pixels(ds, max_pixels=1000)


def test_png_opens_by_magic_bytes(tmp_path: Path) -> None:
    from PIL import Image

    rgb = np.zeros((5, 7, 3), dtype=np.uint8)
    rgb[..., 1] = 200
    path = tmp_path / "photo.png"
    Image.fromarray(rgb).save(path)
    with open_raster(path) as ds:
        assert ds.driver == "PNG"
        arr = read_pixels(ds)
    assert arr.shape == (3, 5, 7)
    assert int(arr[1].min()) == 200
