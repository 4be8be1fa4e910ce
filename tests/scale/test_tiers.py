"""GSD tiers: ScaleEarth's high / mid / low boundaries and the configurable low-A/B split."""

from __future__ import annotations

import pytest

from earthvlm.errors import GSDError
from earthvlm.scale.gsd import GSD
from earthvlm.scale.tiers import DEFAULT_TIERS, Tier, TierScheme, tier_of


@pytest.mark.parametrize(
    ("gsd_m", "tier"),
    [
        (0.03, Tier.HIGH),
        (0.199, Tier.HIGH),
        (0.2, Tier.MID),
        (0.5, Tier.MID),
        (0.999, Tier.MID),
        (1.0, Tier.LOW_A),
        (4.99, Tier.LOW_A),
        (5.0, Tier.LOW_B),
        (10.0, Tier.LOW_B),
        (1000.0, Tier.LOW_B),
    ],
)
def test_default_boundaries(gsd_m: float, tier: Tier) -> None:
    assert tier_of(gsd_m) is tier
    assert tier_of(GSD.exact(gsd_m)) is tier
    assert DEFAULT_TIERS.tier_of_m(gsd_m) is tier


def test_default_scheme_values() -> None:
    assert (DEFAULT_TIERS.high_max_m, DEFAULT_TIERS.mid_max_m, DEFAULT_TIERS.low_split_m) == (
        0.2,
        1.0,
        5.0,
    )


def test_custom_low_split() -> None:
    scheme = TierScheme(low_split_m=10.0)
    assert tier_of(5.0, scheme) is Tier.LOW_A
    assert tier_of(9.99, scheme) is Tier.LOW_A
    assert tier_of(10.0, scheme) is Tier.LOW_B
    # the other boundaries are unchanged
    assert tier_of(0.2, scheme) is Tier.MID
    assert tier_of(1.0, scheme) is Tier.LOW_A


def test_custom_high_and_mid() -> None:
    scheme = TierScheme(high_max_m=0.3, mid_max_m=2.0, low_split_m=8.0)
    assert tier_of(0.25, scheme) is Tier.HIGH
    assert tier_of(1.5, scheme) is Tier.MID
    assert tier_of(5.0, scheme) is Tier.LOW_A
    assert tier_of(8.0, scheme) is Tier.LOW_B


@pytest.mark.parametrize(
    "kwargs",
    [
        {"high_max_m": 1.0, "mid_max_m": 0.5},  # decreasing
        {"high_max_m": 1.0, "mid_max_m": 1.0},  # equal
        {"low_split_m": 1.0},  # low split equal to mid max
        {"low_split_m": 0.5},  # low split inside mid
    ],
)
def test_non_increasing_schemes_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="increase"):
        TierScheme(**kwargs)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_invalid_boundary_values_rejected(bad: float) -> None:
    with pytest.raises(GSDError, match=r"TierScheme\.low_split_m"):
        TierScheme(low_split_m=bad)


def test_range_tiered_by_geometric_mean() -> None:
    # geomean sqrt(0.1 * 0.9) = 0.3 -> mid
    assert tier_of(GSD.range(0.1, 0.9)) is Tier.MID
    # geomean sqrt(0.1 * 3) ~ 0.55 -> mid, although the arithmetic mean (1.55) is low-A
    # and the bounds are high and low-A
    assert tier_of(GSD.range(0.1, 3.0)) is Tier.MID
    # geomean sqrt(2 * 50) = 10 -> low-B, although the lower bound is low-A
    assert tier_of(GSD.range(2.0, 50.0)) is Tier.LOW_B


def test_unknown_has_no_tier() -> None:
    assert tier_of(GSD.unknown("no georef")) is None
    assert DEFAULT_TIERS.tier_of(GSD.unknown()) is None


@pytest.mark.parametrize("bad", [0.0, -0.5, float("nan")])
def test_tier_of_invalid_number_raises(bad: float) -> None:
    with pytest.raises(GSDError):
        tier_of(bad)


def test_coarse_names() -> None:
    assert Tier.HIGH.coarse == "high"
    assert Tier.MID.coarse == "mid"
    assert Tier.LOW_A.coarse == "low"
    assert Tier.LOW_B.coarse == "low"
    assert {t.coarse for t in Tier} == {"high", "mid", "low"}


def test_tier_values_are_stable_strings() -> None:
    assert [t.value for t in Tier] == ["high", "mid", "low-a", "low-b"]
    assert Tier("low-b") is Tier.LOW_B
