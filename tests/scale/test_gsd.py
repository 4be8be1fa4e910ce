"""The GSD value type: construction, validation, point estimates, sampling, serialisation."""

from __future__ import annotations

import math
import random

import pytest
from pydantic import BaseModel, ValidationError

from earthvlm.errors import GSDError
from earthvlm.scale.gsd import GSD, MAX_GSD_M, MIN_GSD_M, GSDKind, GSDSource, check_gsd_m

# -- construction ---------------------------------------------------------------------


def test_exact_holds_value_and_provenance() -> None:
    g = GSD.exact(0.3, GSDSource.GEOREF, "a.tif")
    assert g.kind is GSDKind.EXACT
    assert g.bounds_m == (0.3, 0.3)
    assert g.point_m == pytest.approx(0.3)
    assert g.source is GSDSource.GEOREF
    assert g.detail == "a.tif"
    assert g.is_known
    assert str(g) == "0.3 m"


def test_exact_accepts_int_and_numeric_string() -> None:
    assert GSD.exact(30).point_m == 30.0
    assert isinstance(GSD.exact(30).lo_m, float)
    assert GSD.exact("0.5").point_m == 0.5


def test_range_holds_bounds() -> None:
    g = GSD.range(0.3, 3.0, "dataset", "mixed platforms")
    assert g.kind is GSDKind.RANGE
    assert g.bounds_m == (0.3, 3.0)
    assert g.source is GSDSource.DATASET
    assert g.is_known
    assert str(g) == "0.3 m-3 m"


def test_range_with_equal_bounds_is_allowed() -> None:
    g = GSD.range(2.0, 2.0)
    assert g.bounds_m == (2.0, 2.0)
    assert g.point_m == 2.0


def test_unknown_has_no_value_and_keeps_reason() -> None:
    g = GSD.unknown("no CRS in tile.tif")
    assert g.kind is GSDKind.UNKNOWN
    assert not g.is_known
    assert g.lo_m is None and g.hi_m is None
    assert g.source is GSDSource.NONE
    assert str(g) == "unknown"


def test_string_source_is_normalised_to_enum() -> None:
    assert GSD.exact(1.0, "sensor_table").source is GSDSource.SENSOR_TABLE


def test_instances_are_immutable_and_hashable() -> None:
    g = GSD.exact(1.0)
    with pytest.raises(AttributeError):
        g.lo_m = 2.0  # type: ignore[misc]
    assert len({GSD.exact(1.0), GSD.exact(1.0), GSD.exact(2.0)}) == 2


# -- validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0, "0"),
        (0.0, "0.0"),
        (-1.5, "-1.5"),
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        (float("-inf"), "-inf"),
        (100_001.0, "100001"),
        (1e9, "1000000000.0"),
        ("abc", "'abc'"),
        ("", "''"),
        (None, "None"),
        ([0.5], "[0.5]"),
    ],
)
def test_invalid_exact_values_are_rejected_naming_value_and_source(value, shown) -> None:
    with pytest.raises(GSDError) as exc:
        GSD.exact(value, GSDSource.METADATA, "labels/P0001.txt")
    msg = str(exc.value)
    assert shown in msg
    assert "metadata" in msg
    assert "labels/P0001.txt" in msg


def test_max_gsd_itself_is_accepted() -> None:
    assert GSD.exact(MAX_GSD_M).point_m == MAX_GSD_M


@pytest.mark.parametrize("value", [1e-300, 5e-324, 9e-6, "1e-300", MIN_GSD_M * 0.999])
def test_below_the_physical_floor_is_rejected_naming_units(value) -> None:
    # 9e-6: a 1 m pixel given in degrees; 5e-324: the smallest float
    with pytest.raises(GSDError, match=r"below 0\.0001 m per pixel.*units"):
        check_gsd_m(value, source="test")
    with pytest.raises(GSDError, match="below"):
        GSD.exact(value, GSDSource.METADATA, "labels/P0001.txt")
    with pytest.raises(GSDError, match="below"):
        GSD.range(value, 1.0, GSDSource.DATASET)
    with pytest.raises(GSDError, match="below"):
        GSD.from_dict({"kind": "exact", "m": value, "source": "metadata"})


def test_the_floor_itself_and_a_spoofing_sweep_under_1_cm_are_accepted() -> None:
    assert GSD.exact(MIN_GSD_M).point_m == MIN_GSD_M
    assert GSD.exact(0.01 * 10**-2).point_m == pytest.approx(1e-4)  # App. A.3's delta -2


def test_above_max_message_points_at_units() -> None:
    with pytest.raises(GSDError, match="units"):
        check_gsd_m(1e6, source="test")


@pytest.mark.parametrize("value", [True, False])
def test_bool_is_rejected_naming_the_value(value: bool) -> None:
    with pytest.raises(GSDError, match=repr(value)):
        GSD.exact(value, GSDSource.METADATA, "record 7")


def test_range_lo_above_hi_is_rejected() -> None:
    with pytest.raises(GSDError, match=r"lo > hi") as exc:
        GSD.range(3.0, 0.3, GSDSource.DATASET, "cfg.yaml")
    assert "dataset" in str(exc.value)
    assert "cfg.yaml" in str(exc.value)


@pytest.mark.parametrize(("lo", "hi"), [(0.0, 1.0), (0.5, float("inf")), (-1.0, 1.0)])
def test_range_invalid_bounds_rejected(lo: float, hi: float) -> None:
    with pytest.raises(GSDError):
        GSD.range(lo, hi)


def test_exact_kind_with_different_bounds_rejected() -> None:
    with pytest.raises(GSDError, match="range"):
        GSD(GSDKind.EXACT, 1.0, 2.0, GSDSource.USER)


def test_unknown_with_bounds_rejected() -> None:
    with pytest.raises(GSDError):
        GSD(GSDKind.UNKNOWN, 1.0, 1.0)


@pytest.mark.parametrize("sigma", [-0.1, float("nan"), float("inf")])
def test_invalid_sigma_rejected(sigma: float) -> None:
    with pytest.raises(GSDError, match="sigma"):
        GSD.exact(1.0, GSDSource.ESTIMATE, sigma_log10=sigma)


# -- values ---------------------------------------------------------------------------


def test_point_m_of_range_is_geometric_mean() -> None:
    g = GSD.range(0.1, 10.0)
    assert g.point_m == pytest.approx(1.0)  # arithmetic mean would be 5.05
    assert GSD.range(0.3, 3.0).point_m == pytest.approx(math.sqrt(0.9))


def test_log10_gsd() -> None:
    assert GSD.exact(100.0).log10_gsd == pytest.approx(2.0)
    assert GSD.exact(0.1).log10_gsd == pytest.approx(-1.0)
    assert GSD.range(0.01, 1.0).log10_gsd == pytest.approx(-1.0)
    assert GSD.range(0.01, 1.0).log10_bounds == pytest.approx((-2.0, 0.0))


@pytest.mark.parametrize("attr", ["point_m", "bounds_m", "log10_gsd", "log10_bounds"])
def test_unknown_values_raise_with_reason(attr: str) -> None:
    g = GSD.unknown("no CRS in tile.tif")
    with pytest.raises(GSDError, match=r"no CRS in tile\.tif"):
        getattr(g, attr)


def test_sample_log10_is_uniform_in_log_space_within_bounds() -> None:
    g = GSD.range(0.1, 10.0)
    rng = random.Random(1234)
    draws = [g.sample_log10(rng) for _ in range(4000)]
    assert all(-1.0 <= s <= 1.0 for s in draws)
    # uniform on [-1, 1] in log10: mean ~0 and half below 0 (uniform in metres would
    # put the mean of log10 near +0.7 and ~1% below 0)
    assert sum(draws) / len(draws) == pytest.approx(0.0, abs=0.05)
    below = sum(s < 0 for s in draws) / len(draws)
    assert below == pytest.approx(0.5, abs=0.04)
    # and it covers the range rather than sticking to a point
    assert min(draws) < -0.9 and max(draws) > 0.9


def test_sample_log10_is_deterministic_for_a_seed() -> None:
    g = GSD.range(0.3, 30.0)
    a = [g.sample_log10(random.Random(7)) for _ in range(3)]
    rng1, rng2 = random.Random(99), random.Random(99)
    s1 = [g.sample_log10(rng1) for _ in range(50)]
    s2 = [g.sample_log10(rng2) for _ in range(50)]
    assert s1 == s2
    assert len(set(s1)) == 50
    assert a[0] == a[1] == a[2]


def test_sample_log10_of_exact_is_its_log() -> None:
    assert GSD.exact(10.0).sample_log10(random.Random(0)) == pytest.approx(1.0)


def test_sample_log10_of_unknown_raises() -> None:
    with pytest.raises(GSDError):
        GSD.unknown().sample_log10(random.Random(0))


def test_scaled_multiplies_bounds_and_keeps_source() -> None:
    g = GSD.range(0.5, 2.0, GSDSource.SENSOR_TABLE, "WV03 product")
    s = g.scaled(8, "global view 8x")
    assert s.kind is GSDKind.RANGE
    assert s.bounds_m == pytest.approx((4.0, 16.0))
    assert s.source is GSDSource.SENSOR_TABLE
    assert s.detail == "WV03 product; global view 8x"
    # the original is untouched
    assert g.bounds_m == (0.5, 2.0)


def test_scaled_exact_keeps_sigma_and_handles_empty_detail() -> None:
    g = GSD.exact(0.3, GSDSource.ESTIMATE, sigma_log10=0.1)
    s = g.scaled(8, "downsampled")
    assert s.point_m == pytest.approx(2.4)
    assert s.kind is GSDKind.EXACT
    assert s.sigma_log10 == 0.1
    assert s.detail == "downsampled"


def test_scaled_unknown_stays_unknown() -> None:
    s = GSD.unknown("no georef").scaled(8, "view")
    assert not s.is_known
    assert s.detail == "no georef; view"


@pytest.mark.parametrize("factor", [0, -2, float("nan"), float("inf")])
def test_scaled_rejects_bad_factor(factor: float) -> None:
    with pytest.raises(GSDError, match="factor"):
        GSD.exact(1.0).scaled(factor, "x")


def test_scaled_past_max_is_rejected() -> None:
    with pytest.raises(GSDError):
        GSD.exact(50_000.0).scaled(8, "x")


# -- serialisation --------------------------------------------------------------------


@pytest.mark.parametrize(
    "gsd",
    [
        GSD.exact(0.15, GSDSource.DATASET, "RSVQA-HR"),
        GSD.exact(0.3),
        GSD.exact(2.5, GSDSource.ESTIMATE, "sse-u", sigma_log10=0.12),
        GSD.range(0.062, 4.693, GSDSource.DATASET, "PatternNet"),
        GSD.range(10.0, 60.0, GSDSource.SENSOR_TABLE),
        GSD.unknown(),
        GSD.unknown("no CRS", GSDSource.GEOREF),
    ],
    ids=["exact", "exact-bare", "exact-sigma", "range", "range-bare", "unknown", "unknown-det"],
)
def test_dict_round_trip(gsd: GSD) -> None:
    d = gsd.to_dict()
    assert d["kind"] == gsd.kind.value
    assert d["source"] == gsd.source.value
    assert GSD.from_dict(d) == gsd


def test_to_dict_forms() -> None:
    assert GSD.exact(0.5, GSDSource.GEOREF, "a.tif").to_dict() == {
        "kind": "exact",
        "m": 0.5,
        "source": "georef",
        "detail": "a.tif",
    }
    assert GSD.range(1.0, 4.0).to_dict() == {
        "kind": "range",
        "lo_m": 1.0,
        "hi_m": 4.0,
        "source": "dataset",
    }
    assert GSD.unknown().to_dict() == {"kind": "unknown", "source": "none"}


def test_dict_round_trip_range_with_sigma() -> None:
    g = GSD(GSDKind.RANGE, 0.5, 2.0, GSDSource.ESTIMATE, "", 0.2)
    assert GSD.from_dict(g.to_dict()) == g


def test_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(GSDError, match="gsd_m"):
        GSD.from_dict({"kind": "exact", "gsd_m": 0.5})


def test_from_dict_rejects_unknown_kind_and_source() -> None:
    with pytest.raises(GSDError, match="kind is one of"):
        GSD.from_dict({"kind": "approx", "m": 0.5})
    with pytest.raises(GSDError, match="source one of"):
        GSD.from_dict({"m": 0.5, "source": "guess"})


def test_from_dict_missing_fields() -> None:
    with pytest.raises(GSDError, match="'m'"):
        GSD.from_dict({"kind": "exact"})
    with pytest.raises(GSDError, match="lo_m"):
        GSD.from_dict({"kind": "range", "lo_m": 1.0})


def test_from_dict_validates_values() -> None:
    with pytest.raises(GSDError, match="-3"):
        GSD.from_dict({"kind": "exact", "m": -3})


def test_from_dict_defaults() -> None:
    assert GSD.from_dict({"m": 2}) == GSD.exact(2.0, GSDSource.METADATA)
    assert GSD.from_dict({}) == GSD.unknown()


def test_coerce() -> None:
    g = GSD.range(1.0, 2.0)
    assert GSD.coerce(g) is g
    assert GSD.coerce(0.5) == GSD.exact(0.5, GSDSource.METADATA)
    assert GSD.coerce(30) == GSD.exact(30.0, GSDSource.METADATA)
    assert GSD.coerce(None) == GSD.unknown()
    assert GSD.coerce({"kind": "range", "lo_m": 1, "hi_m": 2, "source": "dataset"}) == g
    with pytest.raises(GSDError):
        GSD.coerce(-1)
    with pytest.raises(GSDError):
        GSD.coerce("fast")


# -- pydantic -------------------------------------------------------------------------


class _Record(BaseModel):
    image: str
    gsd: GSD


def test_pydantic_field_validates_from_dict_and_dumps_dict() -> None:
    data = {"kind": "range", "lo_m": 0.3, "hi_m": 3.0, "source": "dataset", "detail": "cfg"}
    rec = _Record.model_validate({"image": "a.png", "gsd": data})
    assert isinstance(rec.gsd, GSD)
    assert rec.gsd == GSD.range(0.3, 3.0, GSDSource.DATASET, "cfg")
    assert rec.model_dump(mode="json") == {"image": "a.png", "gsd": data}
    # and back through JSON text
    assert _Record.model_validate_json(rec.model_dump_json()) == rec


def test_pydantic_field_accepts_number_none_and_instance() -> None:
    assert _Record(image="a", gsd=0.5).gsd == GSD.exact(0.5, GSDSource.METADATA)
    assert _Record(image="a", gsd=None).gsd == GSD.unknown()
    g = GSD.exact(1.0, GSDSource.USER)
    assert _Record(image="a", gsd=g).gsd is g
    assert _Record(image="a", gsd=None).model_dump(mode="json")["gsd"] == {
        "kind": "unknown",
        "source": "none",
    }


@pytest.mark.parametrize(
    ("bad", "shown"),
    [(-2.5, "-2.5"), ("fast", "fast"), ({"kind": "exact", "m": 0}, "0.0 m"), ({"km": 1}, "km")],
)
def test_pydantic_invalid_value_is_validation_error_naming_value(bad, shown) -> None:
    with pytest.raises(ValidationError) as exc:
        _Record(image="a", gsd=bad)
    msg = str(exc.value)
    assert "gsd" in msg
    assert shown in msg
