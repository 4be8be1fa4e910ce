"""Sensor recognition in product names, the sensor/dataset tables and DOTA headers."""

from __future__ import annotations

import re

import pytest

from earthvlm.errors import GSDError
from earthvlm.scale.gsd import GSDKind, GSDSource
from earthvlm.scale.sensors import (
    DATASETS,
    SENSORS,
    dataset_gsd,
    lookup_sensor,
    parse_dota_header,
    parse_sensor_name,
)

S2_SAFE = "S2A_MSIL1C_20200601T100031_N0209_R122_T33UUP_20200601T120931.SAFE"

EXACT_NAMES = [
    # Sentinel-2 L1C band files (tile id + sensing time + band)
    ("T33UUP_20200601T100031_B04.jp2", "sentinel-2", 10.0),
    ("T33UUP_20200601T100031_B05.jp2", "sentinel-2", 20.0),
    ("T33UUP_20200601T100031_B01.jp2", "sentinel-2", 60.0),
    ("T33UUP_20200601T100031_B8A.jp2", "sentinel-2", 20.0),
    ("T33UUP_20200601T100031_TCI.jp2", "sentinel-2", 10.0),
    # Level-2A resampled band files: the _20m suffix wins over the band's native 10 m
    ("T32TQM_20210715T101031_B02_20m.jp2", "sentinel-2", 20.0),
    ("T32TQM_20210715T101031_B05_60m.jp2", "sentinel-2", 60.0),
    # a band file inside a product folder
    (f"{S2_SAFE}/GRANULE/L1C_T33UUP/IMG_DATA/T33UUP_20200601T100031_B11.jp2", "sentinel-2", 20.0),
    # BigEarthNet patches
    ("S2A_MSIL2A_20170613T101031_0_45_B8A.tif", "sentinel-2", 20.0),
    ("S2B_MSIL2A_20170613T101031_0_45_B03.tif", "sentinel-2", 10.0),
    # Landsat Collection 2: B8 is the 15 m pan band, surface reflectance at 30 m
    ("LC08_L1TP_026027_20200827_20200906_02_T1_B8.TIF", "landsat", 15.0),
    ("LC08_L2SP_026027_20200827_20200906_02_T1_SR_B4.TIF", "landsat", 30.0),
    ("LC08_L2SP_026027_20200827_20200906_02_T1_ST_B10.TIF", "landsat", 30.0),
    ("LC09_L1TP_026027_20220101_20220102_02_T1_B8.TIF", "landsat", 15.0),
    ("LE07_L1TP_026027_20200827_20200906_02_T1_B8.TIF", "landsat", 15.0),
    ("LT05_L1TP_026027_20100827_20200906_02_T1_B3.TIF", "landsat", 30.0),
    ("LM05_L1GS_026027_19900827_20200906_02_T2_B1.TIF", "landsat", 60.0),
    # pre-collection scene ids
    ("LC80260272014159LGN00_B4.TIF", "landsat", 30.0),
    ("LC80260272014159LGN00_B8.TIF", "landsat", 15.0),
    # NAIP: resolution field in cm (3 digits) or metres (1 digit)
    ("m_3807537_ne_18_060_20181104.tif", "naip", 0.6),
    ("m_3807537_ne_18_1_20130924.tif", "naip", 1.0),
    ("m_3807537_sw_18_030_20221104_20230105.tif", "naip", 0.3),
    # VHR products
    ("WV03_19OCT05163530-P1BS-500123456010_01_P001.tif", "vhr", 0.31),
    ("WV02_20120612_M1BS_103001001F1C2D00.tif", "vhr", 1.84),
    ("GE01_20100101_P1BS_1050410001A2B300.tif", "vhr", 0.41),
    ("IMG_PHR1A_PMS_201805141053468_ORT_3456789101-001_R1C1.JP2", "vhr", 0.5),
    ("IMG_PHR1A_MS_201805141053468_SEN_3456789101-001_R1C1.JP2", "vhr", 2.0),
    ("IMG_PHR1B_P_201805141053468_SEN_3456789101-001_R1C1.JP2", "vhr", 0.5),
    ("GF2_PMS2_E113.9_N22.6_20170127_L1A0002110390-PAN2.tiff", "vhr", 0.8),
    ("GF2_PMS2_E113.9_N22.6_20170127_L1A0002110390-MSS2.tiff", "vhr", 3.2),
    ("GF1_PMS1_E88.3_N43.6_20140626_L1A0000265630-PAN1.tiff", "vhr", 2.0),
    ("GF1_WFV1_E88.3_N43.6_20140626_L1A0000265630.tiff", "vhr", 16.0),
    # Harmonized Landsat Sentinel-2: every band on the 30 m grid, even S2's 10 m B04
    ("HLS.S30.T10SEG.2021001T185919.v2.0.B04.tif", "hls", 30.0),
    ("HLS.L30.T10SEG.2021001T185919.v2.0.B05.tif", "hls", 30.0),
]


@pytest.mark.parametrize(("name", "parser", "gsd_m"), EXACT_NAMES)
def test_names_with_band_give_exact_gsd(name: str, parser: str, gsd_m: float) -> None:
    m = parse_sensor_name(name)
    assert m is not None, name
    assert m.parser == parser
    assert m.gsd.kind is GSDKind.EXACT
    assert m.gsd.point_m == pytest.approx(gsd_m)
    assert m.gsd.source is GSDSource.SENSOR_TABLE
    assert name.rsplit("/", 1)[-1] in m.gsd.detail  # provenance names what was parsed


RANGE_NAMES = [
    # a product (folder) without a band: every S2 resolution is possible
    (S2_SAFE, "sentinel-2", 10.0, 60.0),
    # a file with no band inside the product folder: the folder decides
    (f"{S2_SAFE}/preview.png", "sentinel-2", 10.0, 60.0),
    # Landsat 7 product without band: pan 15 m or MS 30 m
    ("LE07_L1TP_026027_20200827_20200906_02_T1", "landsat", 15.0, 30.0),
    ("LE70260272003216EDC00", "landsat", 15.0, 30.0),
    # VHR products that do not say pan or MS
    ("WV02_20120612_103001001F1C2D00.tif", "vhr", 0.46, 1.84),
    ("GF2_PMS1_E116.5_N39.9_20160925_L1A0001234567.tiff", "vhr", 0.8, 3.2),
    ("JL1KF01A_PMS03_20220315101112_200078226_101_0021_001_L1.tif", "vhr", 0.5, 0.75),
]


@pytest.mark.parametrize(("name", "parser", "lo", "hi"), RANGE_NAMES)
def test_names_without_band_give_range(name: str, parser: str, lo: float, hi: float) -> None:
    m = parse_sensor_name(name)
    assert m is not None, name
    assert m.parser == parser
    assert m.gsd.kind is GSDKind.RANGE
    assert m.gsd.bounds_m == pytest.approx((lo, hi))


@pytest.mark.parametrize(
    "name",
    [
        "P0001.png",  # DOTA
        "cargo.tif",
        "landscape.tif",
        "twelve.tif",
        "airport_0_0_msrgb.jpg",  # fMoW
        "agricultural00.tif",  # UC Merced
        "00001.jpg",
        "images/train/P2805.png",
        "landsat/scene_01.tif",  # a folder merely named after a sensor
    ],
)
def test_ordinary_names_do_not_match(name: str) -> None:
    assert parse_sensor_name(name) is None


def test_file_name_wins_over_folder() -> None:
    # the band file says 60 m; the product folder alone would say 10-60 m
    m = parse_sensor_name(f"{S2_SAFE}/T33UUP_20200601T100031_B09.jp2")
    assert m is not None
    assert m.gsd.kind is GSDKind.EXACT
    assert m.gsd.point_m == 60.0


def test_lookup_sensor_normalises_key() -> None:
    assert lookup_sensor("Sentinel_2") is SENSORS["sentinel-2"]
    assert lookup_sensor(" WorldView 3 ") is SENSORS["worldview-3"]


def test_lookup_sensor_typo_suggests() -> None:
    with pytest.raises(GSDError, match="did you mean sentinel-2") as exc:
        lookup_sensor("sentinal-2")
    assert "'sentinal-2'" in str(exc.value)
    with pytest.raises(GSDError, match="did you mean worldview-3"):
        lookup_sensor("worldveiw-3")


def test_lookup_sensor_unknown_lists_known() -> None:
    with pytest.raises(GSDError, match="unknown sensor 'zz9'") as exc:
        lookup_sensor("zz9")
    assert "landsat-8" in str(exc.value)


def test_sensor_gsd_pan_ms_and_range() -> None:
    wv3 = lookup_sensor("worldview-3")
    assert wv3.gsd("pan", "x").point_m == 0.31
    assert wv3.gsd("ms", "x").point_m == 1.24
    both = wv3.gsd(None, "x")
    assert both.kind is GSDKind.RANGE
    assert both.bounds_m == (0.31, 1.24)
    # a sensor without a pan band is exact whatever is asked
    s2 = lookup_sensor("sentinel-2")
    assert s2.gsd(None, "x").kind is GSDKind.EXACT
    assert s2.gsd("pan", "x").point_m == 10.0


def test_sensor_table_is_valid() -> None:
    for key, sensor in SENSORS.items():
        assert key == key.lower()
        assert sensor.source
        if sensor.pan_m is not None:
            assert 0 < sensor.pan_m <= sensor.ms_m, key


def test_dataset_gsd_exact() -> None:
    g = dataset_gsd("rsvqa-hr")
    assert g.kind is GSDKind.EXACT
    assert g.point_m == 0.15
    assert g.source is GSDSource.DATASET
    assert "RSVQA" in g.detail
    assert dataset_gsd("RSVQA_HR") == g


def test_dataset_gsd_range() -> None:
    g = dataset_gsd("patternnet")
    assert g.kind is GSDKind.RANGE
    assert g.bounds_m == (0.062, 4.693)
    assert g.source is GSDSource.DATASET


def test_dataset_gsd_unknown_key() -> None:
    with pytest.raises(GSDError, match="no dataset-level GSD for 'dota'") as exc:
        dataset_gsd("dota")
    assert "rsvqa-hr" in str(exc.value)


def test_dataset_table_is_valid() -> None:
    for key in DATASETS:
        assert dataset_gsd(key).is_known


# -- DOTA headers ---------------------------------------------------------------------

LABEL_ROWS = "2753.0 2408.0 2861.0 2385.0 2888.0 2468.0 2805.0 2502.0 plane 0\n"


def test_dota_header_value() -> None:
    g = parse_dota_header("imagesource:GoogleEarth\ngsd:0.146\n" + LABEL_ROWS, where="P0001.txt")
    assert g is not None
    assert g.kind is GSDKind.EXACT
    assert g.point_m == pytest.approx(0.146)
    assert g.source is GSDSource.METADATA
    assert "P0001.txt" in g.detail


def test_dota_header_windows_line_endings_and_spaces() -> None:
    g = parse_dota_header("imagesource:GF2\r\nGSD: 0.8 \r\n" + LABEL_ROWS)
    assert g is not None
    assert g.point_m == pytest.approx(0.8)


@pytest.mark.parametrize(
    "text",
    [
        "imagesource:GoogleEarth\ngsd:null\n" + LABEL_ROWS,
        "imagesource:GoogleEarth\ngsd:\n" + LABEL_ROWS,
        LABEL_ROWS,  # no header
        "",
    ],
)
def test_dota_header_absent_or_null(text: str) -> None:
    assert parse_dota_header(text) is None


@pytest.mark.parametrize("value", ["abc", "0.1.2"])
def test_dota_header_not_a_number(value: str) -> None:
    with pytest.raises(GSDError, match=re.escape(f"gsd:{value}")) as exc:
        parse_dota_header(f"imagesource:GoogleEarth\ngsd:{value}\n", where="P0042.txt")
    assert "P0042.txt" in str(exc.value)


def test_dota_header_invalid_number() -> None:
    with pytest.raises(GSDError, match=r"-0\.5"):
        parse_dota_header("gsd:-0.5\n", where="P0042.txt")
