"""The resolver chain: metadata > georef > filename > sensor > dataset > range > unknown."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from rasterio.transform import Affine

from earthvlm.errors import GSDError, RasterError
from earthvlm.scale.gsd import GSD, GSDKind, GSDSource
from earthvlm.scale.resolve import GSDConflictWarning, resolve_file, resolve_gsd

K0_UTM = 0.9996
GEOREF_M = 0.5 / K0_UTM  # 0.5 m UTM pixels on the central meridian, on the ground

# 4 x 4 px of 0.5 m centred on the UTM 33N central meridian
UTM_HALF_M = {
    "crs": "EPSG:32633",
    "transform": Affine(0.5, 0.0, 500_000.0 - 1.0, 0.0, -0.5, 5_000_000.0 + 1.0),
}
# a geotransform without a CRS: georef cannot decide
NO_CRS = {"crs": None, "transform": Affine(2.0, 0.0, 0.0, 0.0, -2.0, 8.0)}

S2_B01 = "T33UUP_20200601T100031_B01.tif"  # Sentinel-2 band 1: 60 m
L8_PAN = "LC08_L1TP_026027_20200827_20200906_02_T1_B8.TIF"  # Landsat 8 pan: 15 m


def outcome(res, step: str) -> str:
    """The outcome of one step in a resolution trace."""
    found = [s.outcome for s in res.trace if s.step == step]
    assert len(found) == 1, (step, res.trace)
    return found[0]


def step_detail(res, step: str) -> str:
    return next(s.detail for s in res.trace if s.step == step)


# -- order --------------------------------------------------------------------------------


def test_metadata_beats_georef(tmp_path: Path, write_geotiff) -> None:
    path = write_geotiff(tmp_path / "tile.tif", **UTM_HALF_M)
    res = resolve_gsd(path, metadata_m=0.6)
    assert res.gsd.point_m == 0.6
    assert res.gsd.source is GSDSource.METADATA
    assert res.decided_by == "metadata"
    # georef was measured and agrees within 2x: recorded, not a warning
    assert res.georef is not None
    assert res.georef.gsd.point_m == pytest.approx(GEOREF_M, rel=1e-4)
    assert outcome(res, "georef") == "skipped"


@pytest.mark.parametrize("meta", [5.0, 0.1])
def test_metadata_disagreeing_with_georef_by_over_2x_warns(
    tmp_path: Path, write_geotiff, meta: float
) -> None:
    path = write_geotiff(tmp_path / "tile.tif", **UTM_HALF_M)
    res = resolve_gsd(path, metadata_m=meta)
    assert res.gsd.point_m == meta  # the annotation still decides
    assert res.decided_by == "metadata"
    assert outcome(res, "georef") == "warning"
    detail = step_detail(res, "georef")
    assert "0.5 m" in detail  # what the file says
    assert str(GSD.exact(meta)) in detail  # and what the metadata says


def test_metadata_as_gsd_instance_and_unknown_metadata_ignored(
    tmp_path: Path, write_geotiff
) -> None:
    path = write_geotiff(tmp_path / "tile.tif", **UTM_HALF_M)
    res = resolve_gsd(path, metadata_m=GSD.range(0.4, 0.6, GSDSource.USER))
    assert res.gsd == GSD.range(0.4, 0.6, GSDSource.USER)
    # an unknown annotation does not block the chain
    res = resolve_gsd(path, metadata_m=GSD.unknown("label says null"))
    assert res.decided_by == "georef"


def test_georef_beats_filename_and_a_disagreement_is_flagged(tmp_path: Path, write_geotiff) -> None:
    path = write_geotiff(tmp_path / S2_B01, **UTM_HALF_M)  # name says 60 m, file 0.5 m
    with pytest.warns(GSDConflictWarning, match=r"file name says 60 m .* georeferencing says"):
        res = resolve_gsd(path, sensor="sentinel-2", dataset="rsvqa-lr")
    assert res.decided_by == "georef"
    assert res.gsd.source is GSDSource.GEOREF
    assert res.gsd.point_m == pytest.approx(GEOREF_M, rel=1e-4)
    assert outcome(res, "filename") == "warning"
    assert "60 m" in step_detail(res, "filename") and "0.5 m" in step_detail(res, "filename")
    assert "WARNING" in res.gsd.detail and "60 m" in res.gsd.detail  # what `gsd` shows
    assert outcome(res, "sensor") == "skipped"
    assert outcome(res, "dataset") == "skipped"


def test_a_filename_that_agrees_with_georef_is_quiet(tmp_path: Path, write_geotiff) -> None:
    utm_60m = {**UTM_HALF_M, "transform": Affine(60.0, 0.0, 500_000.0, 0.0, -60.0, 5e6)}
    path = write_geotiff(tmp_path / S2_B01, **utm_60m)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GSDConflictWarning)
        res = resolve_gsd(path)
    assert res.decided_by == "georef" and outcome(res, "filename") == "skipped"
    assert "WARNING" not in res.gsd.detail


def test_filename_beats_dataset_sensor(tmp_path: Path, write_geotiff) -> None:
    path = write_geotiff(tmp_path / L8_PAN, **NO_CRS)
    res = resolve_gsd(path, sensor="sentinel-2", dataset="rsvqa-hr")
    assert res.decided_by == "filename"
    assert res.gsd.point_m == 15.0
    assert res.gsd.source is GSDSource.SENSOR_TABLE
    assert outcome(res, "georef") == "none"
    assert "no CRS" in step_detail(res, "georef")
    assert outcome(res, "sensor") == "skipped"
    assert outcome(res, "dataset") == "skipped"


def test_dataset_sensor_used_when_name_says_nothing(tmp_path: Path, write_geotiff) -> None:
    path = write_geotiff(tmp_path / "patch_0001.tif", **NO_CRS)
    res = resolve_gsd(path, sensor="worldview-3")
    assert res.decided_by == "sensor"
    assert res.gsd.kind is GSDKind.RANGE
    assert res.gsd.bounds_m == (0.31, 1.24)
    assert outcome(res, "filename") == "none"


def test_dataset_key_exact(tmp_path: Path) -> None:
    # read_georef=False: the file need not exist (only its name is parsed)
    res = resolve_gsd(tmp_path / "img_42.png", dataset="rsvqa-hr", read_georef=False)
    assert res.decided_by == "dataset"
    assert res.gsd == GSD.exact(0.15, GSDSource.DATASET, res.gsd.detail)
    assert outcome(res, "georef") == "skipped"
    assert res.georef is None


def test_dataset_key_range_without_path() -> None:
    res = resolve_gsd(dataset="patternnet")
    assert res.decided_by == "dataset"
    assert res.gsd.kind is GSDKind.RANGE
    assert res.gsd.bounds_m == (0.062, 4.693)
    assert res.gsd.point_m == pytest.approx((0.062 * 4.693) ** 0.5)


def test_dataset_beats_range_and_range_is_last() -> None:
    res = resolve_gsd(dataset="rsvqa-lr", gsd_range_m=(0.3, 3.0))
    assert res.decided_by == "dataset"
    assert res.gsd.point_m == 10.0
    assert outcome(res, "range") == "skipped"
    res = resolve_gsd(gsd_range_m=(0.3, 3.0))
    assert res.decided_by == "range"
    assert res.gsd.bounds_m == (0.3, 3.0)
    assert res.gsd.source is GSDSource.DATASET


def test_nothing_resolves_to_unknown_with_reasons(tmp_path: Path, write_geotiff) -> None:
    path = write_geotiff(tmp_path / "tile_0001.tif", **NO_CRS)
    res = resolve_gsd(path)
    assert not res.gsd.is_known
    assert res.gsd.source is GSDSource.NONE
    assert res.decided_by == "unknown"
    detail = res.gsd.detail
    # it says why each source failed: the file's georeferencing and its name
    assert "nothing resolved" in detail
    assert "tile_0001.tif" in detail
    assert "no CRS" in detail
    assert "sensor" in detail
    with pytest.raises(GSDError, match="nothing resolved"):
        _ = res.gsd.point_m


def test_no_inputs_at_all_is_unknown() -> None:
    res = resolve_gsd()
    assert not res.gsd.is_known
    assert [s.step for s in res.trace] == ["metadata"]


def test_trace_order_follows_the_chain(tmp_path: Path, write_geotiff) -> None:
    path = write_geotiff(tmp_path / S2_B01, **UTM_HALF_M)
    res = resolve_gsd(
        path, metadata_m=0.5, sensor="sentinel-2", dataset="rsvqa-lr", gsd_range_m=(1.0, 2.0)
    )
    assert [s.step for s in res.trace] == [
        "metadata",
        "georef",
        "filename",
        "sensor",
        "dataset",
        "range",
    ]
    assert [s.outcome for s in res.trace].count("used") == 1


# -- resolve_file ---------------------------------------------------------------------


def test_resolve_file_dota_label_with_header(tmp_path: Path) -> None:
    label = tmp_path / "P0001.txt"
    label.write_text(
        "imagesource:GoogleEarth\ngsd:0.146\n"
        "2753.0 2408.0 2861.0 2385.0 2888.0 2468.0 2805.0 2502.0 plane 0\n"
    )
    res = resolve_file(label)
    assert res.decided_by == "metadata"
    assert res.gsd.point_m == pytest.approx(0.146)
    assert res.gsd.source is GSDSource.METADATA
    assert "P0001.txt" in res.gsd.detail
    assert res.georef is None  # a label file is not opened as a raster


def test_resolve_file_dota_label_null_header_is_unknown(tmp_path: Path) -> None:
    label = tmp_path / "P0002.txt"
    label.write_text("imagesource:GoogleEarth\ngsd:null\n")
    res = resolve_file(label)
    assert not res.gsd.is_known


def test_resolve_file_dota_label_bad_header(tmp_path: Path) -> None:
    label = tmp_path / "P0003.txt"
    label.write_text("imagesource:GoogleEarth\ngsd:abc\n")
    with pytest.raises(GSDError, match=r"P0003\.txt"):
        resolve_file(label)


def test_resolve_file_missing_label(tmp_path: Path) -> None:
    with pytest.raises(RasterError, match="no such file"):
        resolve_file(tmp_path / "P9999.txt")


def test_resolve_file_raster(tmp_path: Path, write_geotiff) -> None:
    path = write_geotiff(tmp_path / "scene.tif", **UTM_HALF_M)
    res = resolve_file(path)
    assert res.decided_by == "georef"
    assert res.gsd.point_m == pytest.approx(GEOREF_M, rel=1e-4)


def test_unreadable_raster_raises_raster_error(tmp_path: Path) -> None:
    bogus = tmp_path / "scene.tif"
    bogus.write_text("not an image")
    with pytest.raises(RasterError, match=r"scene\.tif"):
        resolve_gsd(bogus)


# -- configuration errors ---------------------------------------------------------------


def test_unknown_sensor_is_a_config_error_even_if_metadata_decides(tmp_path: Path) -> None:
    with pytest.raises(GSDError, match="did you mean sentinel-2"):
        resolve_gsd(tmp_path / "a.png", metadata_m=0.5, sensor="sentinal-2", read_georef=False)


def test_unknown_dataset_is_a_config_error() -> None:
    with pytest.raises(GSDError, match="'dotaa'"):
        resolve_gsd(metadata_m=0.5, dataset="dotaa")


def test_inverted_range_is_a_config_error() -> None:
    with pytest.raises(GSDError, match="lo > hi"):
        resolve_gsd(gsd_range_m=(3.0, 0.3))


@pytest.mark.parametrize("bad", [0, -1.0, float("nan")])
def test_invalid_metadata_value_raises(bad: float) -> None:
    with pytest.raises(GSDError, match="metadata"):
        resolve_gsd(metadata_m=bad)
