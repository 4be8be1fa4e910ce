"""SAR and multispectral views as RGB-like frames: padding, grouping, scaling, GSD."""

from __future__ import annotations

import numpy as np
import pytest

from earthvlm.data.pixels import array_to_rgb
from earthvlm.data.sensors import (
    DbScale,
    FrameLayout,
    ReflectanceScale,
    SensorInputError,
    multispectral_frames,
    sar_frames,
)
from earthvlm.scale.gsd import GSD, GSDSource
from earthvlm.synth.materials import BANDS
from earthvlm.synth.render import SAR_DB_MIN, SAR_DB_SPAN

RNG = np.random.default_rng(0)
VV = RNG.integers(1, 256, (1, 5, 7), dtype=np.uint8)
VV_VH = RNG.integers(1, 256, (2, 5, 7), dtype=np.uint8)


# -- SAR -----------------------------------------------------------------------------------


def test_one_channel_sar_is_zero_padded_by_default() -> None:
    out = sar_frames(VV, bands=["VV"])
    assert out.frames.shape == (1, 5, 7, 3) and out.frames.dtype == np.uint8
    np.testing.assert_array_equal(out.frames[0, :, :, 0], VV[0])
    assert not out.frames[0, :, :, 1:].any()
    assert out.layout.frame_bands == (("VV", None, None),)
    assert out.layout.fill == "zero" and out.layout.bands == ("VV",)


def test_two_channel_sar_fills_only_the_blue_channel() -> None:
    out = sar_frames(VV_VH, bands=["VV", "VH"])
    np.testing.assert_array_equal(out.frames[0].transpose(2, 0, 1)[:2], VV_VH)
    assert not out.frames[0, :, :, 2].any()
    assert out.layout.frame_bands == (("VV", "VH", None),)


def test_replication_copies_channels_in_order() -> None:
    one = sar_frames(VV, bands=["VV"], fill="replicate").frames[0]
    for c in range(3):
        np.testing.assert_array_equal(one[:, :, c], VV[0])
    two = sar_frames(VV_VH, bands=["VV", "VH"], fill="replicate")
    np.testing.assert_array_equal(two.frames[0, :, :, 2], VV_VH[0])
    assert two.layout.frame_bands == (("VV", "VH", "VV"),)


def test_zero_padding_survives_the_image_processor_where_a_grey_band_would_not() -> None:
    # the processor repeats a grey (H, W) array over RGB: that is replication, silently
    grey = array_to_rgb(VV[0])
    np.testing.assert_array_equal(grey, sar_frames(VV, fill="replicate").frames[0])
    padded = sar_frames(VV).frames[0]
    np.testing.assert_array_equal(array_to_rgb(padded), padded)


def test_db_and_linear_power_inputs_agree_with_the_recorded_scale() -> None:
    db = np.array([[[-40.0, -30.0, -10.0, 10.0, 20.0]]])
    scale = DbScale()
    out = sar_frames(db, units="db")
    np.testing.assert_array_equal(out.frames[0, 0, :, 0], [0, 0, 128, 255, 255])
    back = scale.to_db(out.frames[0, 0, 1:4, 0])
    np.testing.assert_allclose(back, [-30.0, -9.92, 10.0], atol=0.1)
    linear = sar_frames(10 ** (db / 10), units="linear_power")
    np.testing.assert_array_equal(linear.frames, out.frames)
    assert out.layout.scaling == "dB = value / 255 * 40 + -30"
    assert out.layout.units == "db" and linear.layout.units == "linear_power"


def test_the_default_db_scale_is_the_synthetic_worlds() -> None:
    scale = DbScale()
    assert (scale.min_db, scale.span_db) == (SAR_DB_MIN, SAR_DB_SPAN)
    # the same text the synthetic dataset writes in each record's meta["sar_scaling"]
    assert scale.formula() == f"dB = value / 255 * {SAR_DB_SPAN:g} + {SAR_DB_MIN:g}"


def test_nodata_is_written_as_zero_and_counted() -> None:
    db = np.array([[[np.nan, 0.0], [np.inf, -5.0]]])
    out = sar_frames(db, units="db")
    assert out.nodata_px == 2 and out.frames[0, 0, 0, 0] == 0 and out.frames[0, 1, 0, 0] == 0
    neg = sar_frames(np.array([[[-1.0, 0.0, 1.0]]]), units="linear_power")
    assert neg.nodata_px == 1  # negative power; zero power is valid (very dark)
    assert list(neg.frames[0, 0, :, 0]) == [0, 0, 191]


def test_each_view_keeps_its_own_gsd() -> None:
    s1 = GSD.exact(10.0, GSDSource.SENSOR_TABLE, "Sentinel-1 IW GRD")
    s2 = GSD.exact(20.0, GSDSource.SENSOR_TABLE, "Sentinel-2 20 m bands")
    assert sar_frames(VV, gsd=s1).gsd == s1
    ms = RNG.integers(0, 10000, (4, 3, 3)).astype(np.uint16)
    assert multispectral_frames(ms, bands=BANDS[:4], gsd=s2).gsd == s2
    assert not sar_frames(VV).gsd.is_known


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"sar": np.zeros((3, 4, 4), np.uint8)}, "at most 2"),
        ({"sar": np.zeros((4, 4, 2), np.uint8)}, "channels-last"),
        ({"sar": np.zeros((1, 4, 4), np.float32)}, "units='db'"),
        ({"sar": VV, "bands": ["VV", "VH"]}, "2 band names"),
        ({"sar": VV_VH, "bands": ["VV", "VV"]}, "distinct"),
        ({"sar": VV, "fill": "mirror"}, "fill must be one of"),
        ({"sar": VV, "units": "amplitude"}, "units must be one of"),
        ({"sar": np.zeros(4, np.uint8)}, "(H, W)"),
    ],
)
def test_bad_sar_input_says_what_to_do(kwargs: dict, fragment: str) -> None:
    with pytest.raises(SensorInputError) as e:
        sar_frames(**kwargs)
    assert fragment in str(e.value)


# -- multispectral --------------------------------------------------------------------------

MS = RNG.integers(0, 6001, (len(BANDS), 4, 6)).astype(np.uint16)


def test_ten_bands_make_four_three_band_frames_the_last_zero_padded() -> None:
    out = multispectral_frames(MS, bands=BANDS)
    assert out.frames.shape == (4, 4, 6, 3) and len(out) == 4
    assert out.layout.frame_bands == (
        ("B02", "B03", "B04"),
        ("B05", "B06", "B07"),
        ("B08", "B8A", "B11"),
        ("B12", None, None),
    )
    assert not out.frames[3, :, :, 1:].any()
    scale = ReflectanceScale()
    for k in range(len(BANDS)):
        t, c = divmod(k, 3)
        np.testing.assert_array_equal(out.frames[t, :, :, c], scale.to_uint8(MS[k]))
    assert out.layout.bands == BANDS


def test_single_band_grouping_gives_one_frame_per_band() -> None:
    zero = multispectral_frames(MS, bands=BANDS, grouping="single_band")
    assert len(zero) == len(BANDS)
    assert zero.layout.frame_bands[4] == ("B06", None, None)
    rep = multispectral_frames(MS, bands=BANDS, grouping="single_band", fill="replicate")
    assert rep.layout.frame_bands[4] == ("B06", "B06", "B06")
    np.testing.assert_array_equal(rep.frames[4, :, :, 2], zero.frames[4, :, :, 0])


def test_order_selects_and_reorders_bands() -> None:
    out = multispectral_frames(MS, bands=BANDS, order=("B04", "B03", "B02", "B08"))
    assert out.layout.frame_bands == (("B04", "B03", "B02"), ("B08", None, None))
    rgb = multispectral_frames(MS[[2, 1, 0]], bands=["B04", "B03", "B02"])
    np.testing.assert_array_equal(out.frames[0], rgb.frames[0])


def test_reflectance_scale_with_offset_and_float_reflectance() -> None:
    dn = np.array([[[1000, 4000, 7000, 20000]]], dtype=np.uint16)
    new_baseline = ReflectanceScale(offset_dn=-1000)
    out = multispectral_frames(dn, bands=["B04"], scale=new_baseline)
    np.testing.assert_array_equal(out.frames[0, 0, :, 0], [0, 128, 255, 255])
    assert "(DN + -1000)" in out.layout.scaling
    refl = multispectral_frames(dn / 10000.0, bands=["B04"], scale=ReflectanceScale(1.0))
    np.testing.assert_array_equal(refl.frames, multispectral_frames(dn, bands=["B04"]).frames)


def test_bad_multispectral_input_says_what_to_do() -> None:
    with pytest.raises(SensorInputError, match="unknown"):
        multispectral_frames(MS, bands=BANDS, order=("B04", "B99"))
    with pytest.raises(SensorInputError, match="10 bands"):
        multispectral_frames(MS, bands=BANDS[:3])
    with pytest.raises(SensorInputError, match="grouping"):
        multispectral_frames(MS, bands=BANDS, grouping="pairs")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_reflectance"):
        ReflectanceScale(max_reflectance=0)


def test_layout_round_trips_through_a_dict() -> None:
    layout = multispectral_frames(MS, bands=BANDS).layout
    assert FrameLayout.from_dict(layout.to_dict()) == layout
    with pytest.raises(SensorInputError, match="unknown frame layout"):
        FrameLayout.from_dict({**layout.to_dict(), "gamma": 2.2})
