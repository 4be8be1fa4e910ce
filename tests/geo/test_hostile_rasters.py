"""Hostile rasters: VRTs GDAL reads case-insensitively, and sidecar files GDAL opens on
its own (``X.tif.ovr``, ``X.tif.msk``, ``X.tif.aux.xml``). Each test plants a "secret"
raster outside the dataset folder (every pixel :data:`SECRET`) and checks that nothing
the dataset controls can make it readable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import Affine

from earthvlm.errors import RasterError
from earthvlm.geo.raster import open_raster, read_pixels, read_reduced

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

SECRET = 77
PIXEL = 5
UTM = {"crs": "EPSG:32633", "transform": Affine(1.0, 0.0, 500_000.0, 0.0, -1.0, 5_000_000.0)}


def vrt(source: str, *, size: int = 16, relative: bool = False, metadata: str = "") -> str:
    return (
        f'<VRTDataset rasterXSize="{size}" rasterYSize="{size}">{metadata}'
        '<VRTRasterBand dataType="Byte" band="1"><SimpleSource>'
        f'<SourceFilename relativeToVRT="{int(relative)}">{source}</SourceFilename>'
        "<SourceBand>1</SourceBand></SimpleSource></VRTRasterBand></VRTDataset>"
    )


@pytest.fixture
def secret(tmp_path: Path, write_geotiff) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    return write_geotiff(outside / "secret.tif", data=np.full((1, 16, 16), SECRET), width=16)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    folder = tmp_path / "dataset"
    folder.mkdir()
    return folder


def read_all(path: Path, **kwargs) -> np.ndarray:
    with open_raster(path, **kwargs) as ds:
        return read_pixels(ds)


# -- VRT names are compared as GDAL compares them: ignoring case ----------------------------


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("SourceFilename", "SOURCEFILENAME"),
        ("SourceFilename", "sourcefilename"),
        ("SourceFilename", "SourceFileName"),
        ("SimpleSource", "SIMPLESOURCE"),
        ("relativeToVRT", "RELATIVETOVRT"),
    ],
)
def test_vrt_names_in_any_case_cannot_reach_outside(
    dataset: Path, secret: Path, old: str, new: str
) -> None:
    path = dataset / "tile.vrt"
    text = vrt("../outside/secret.tif", relative=True)
    path.write_text(text.replace(old, new))
    with pytest.raises(RasterError, match=r"outside|relative to the working directory"):
        read_all(path, allow_vrt=True)
    # and the absolute spelling of the same source
    path.write_text(vrt(str(secret)).replace(old, new))
    with pytest.raises(RasterError, match="outside"):
        read_all(path, allow_vrt=True)


@pytest.mark.parametrize("spelling", ["subClass", "SUBCLASS", "subclass", "SubClass"])
def test_vrt_subclass_in_any_case_is_refused(dataset: Path, write_geotiff, spelling: str) -> None:
    write_geotiff(dataset / "src.tif", **UTM)
    path = dataset / "derived.vrt"
    path.write_text(
        vrt("src.tif", relative=True, size=4).replace(
            'band="1">', f'band="1" {spelling}="VRTDerivedRasterBand">'
        )
    )
    with pytest.raises(RasterError, match="subClass"):
        read_all(path, allow_vrt=True)


@pytest.mark.parametrize(
    ("replace", "match"),
    [
        # elements outside a simple-source VRT: refused whatever they do
        (("<SourceBand>", "<OpenOptions><OOI key='X'>1</OOI></OpenOptions><SourceBand>"), "Open"),
        (("SimpleSource", "KernelFilteredSource"), "KernelFilteredSource"),
        (("<SourceBand>", '<Evil xmlns="urn:x"/><SourceBand>'), "Evil"),
        (("<VRTDataset", '<?xml version="1.0"?><!DOCTYPE v [<!ENTITY e "x">]><VRTDataset'), "DOC"),
        # attributes outside the allow-list, and one name given twice in two cases
        (('band="1"', 'band="1" format="xml"'), "format"),
        (('relativeToVRT="1"', 'relativeToVRT="1" RELATIVETOVRT="0"'), "repeats"),
        (('relativeToVRT="1"', 'relativeToVRT="yes"'), "relativeToVRT"),
        (("src.tif<", " src.tif<"), "space"),
    ],
)
def test_vrt_outside_the_allow_list_is_refused(
    dataset: Path, write_geotiff, replace: tuple[str, str], match: str
) -> None:
    write_geotiff(dataset / "src.tif", **UTM)
    path = dataset / "tile.vrt"
    path.write_text(vrt("src.tif", relative=True, size=4).replace(*replace))
    with pytest.raises(RasterError, match=match):
        read_all(path, allow_vrt=True)


def test_simple_vrt_in_upper_case_inside_its_folder_still_reads(
    dataset: Path, write_geotiff
) -> None:
    data = np.arange(16, dtype=np.uint8).reshape(1, 4, 4)
    write_geotiff(dataset / "src.tif", data=data, **UTM)
    path = dataset / "tile.vrt"
    path.write_text(
        vrt("src.tif", relative=True, size=4)
        .replace("SourceFilename", "SOURCEFILENAME")
        .replace("relativeToVRT", "RELATIVETOVRT")
    )
    np.testing.assert_array_equal(read_all(path, allow_vrt=True), data)


# -- sidecar files: never consulted ---------------------------------------------------------


def write_main(dataset: Path, kind: str) -> Path:
    """A 16 x 16 raster of :data:`PIXEL` in ``dataset`` (GeoTIFF, PNG, or a VRT over one)."""
    data = np.full((1, 16, 16), PIXEL, dtype=np.uint8)
    if kind == "png":
        path = dataset / "scene.png"
        Image.fromarray(data[0]).save(path)
        return path
    tif = dataset / "scene.tif"
    with rasterio.open(
        tif, "w", driver="GTiff", width=16, height=16, count=1, dtype="uint8", **UTM
    ) as dst:
        dst.write(data)
    if kind == "tif":
        return tif
    path = dataset / "scene.vrt"
    path.write_text(vrt("scene.tif", relative=True))
    return path


def plant_sidecar(main: Path, secret: Path, name: str) -> None:
    if name.endswith((".ovr", ".OVR")):  # overviews: a VRT reading the secret
        (main.parent / name).write_text(vrt(str(secret), size=8))
    elif name.endswith(".msk"):  # a mask: the same, declared as a per-dataset mask
        mask_flags = '<Metadata><MDI key="INTERNAL_MASK_FLAGS_1">2</MDI></Metadata>'
        (main.parent / name).write_text(vrt(str(secret), metadata=mask_flags))
    else:  # PAM: rewrites the georeferencing (a GSD of 1 nm) and the metadata
        (main.parent / name).write_text(
            "<PAMDataset><SRS>EPSG:4326</SRS><GeoTransform>0, 1e-9, 0, 0, 0, -1e-9"
            '</GeoTransform><Metadata><MDI key="PLANTED">1</MDI></Metadata></PAMDataset>'
        )


@pytest.mark.parametrize("kind", ["tif", "png", "vrt"])
@pytest.mark.parametrize("suffix", [".ovr", ".OVR", ".msk", ".aux.xml"])
def test_sidecar_files_are_never_consulted(
    dataset: Path, secret: Path, kind: str, suffix: str
) -> None:
    main = write_main(dataset, kind)
    plant_sidecar(main, secret, main.name + suffix)
    with open_raster(main, allow_vrt=True) as ds:
        assert ds.overviews(1) == []
        assert ds.tags().get("PLANTED") is None
        assert ds.transform.a == 1.0  # not the planted 1e-9
        # reads happen after the open returned: GDAL must still find no sidecar
        assert int(read_reduced(ds, (8, 8)).max()) == PIXEL
        assert int(read_reduced(ds, (4, 4)).max()) == PIXEL
        assert int(ds.read_masks(1).min()) == 255
        assert int(read_pixels(ds).max()) == PIXEL


@pytest.mark.parametrize("name", ["scene.tif.ovr", "scene.ovr", "SCENE.TIF.MSK", "scene.aux"])
def test_vrt_source_with_a_sidecar_is_refused(dataset: Path, secret: Path, name: str) -> None:
    # GDAL opens a VRT's sources when pixels are read, after open_raster has returned
    main = write_main(dataset, "vrt")
    plant_sidecar(main, secret, name)
    with pytest.raises(RasterError, match="sidecar"):
        read_all(main, allow_vrt=True)


def test_internal_overviews_still_work_beside_a_hostile_ovr(dataset: Path, secret: Path) -> None:
    data = np.full((1, 64, 64), PIXEL, dtype=np.uint8)
    path = dataset / "tiled.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=64,
        height=64,
        count=1,
        dtype="uint8",
        tiled=True,
        blockxsize=16,
        blockysize=16,
        **UTM,
    ) as dst:
        dst.write(data)
        dst.build_overviews([2, 4], rasterio.enums.Resampling.average)
    plant_sidecar(path, secret, "tiled.tif.ovr")
    with open_raster(path) as ds:
        assert ds.overviews(1) == [2, 4]
        assert int(read_reduced(ds, (16, 16)).max()) == PIXEL
