"""Eq. 5: metadata, else a confident SSE-U estimate, else the neutral 1 m."""

from __future__ import annotations

import math

import pytest

from earthvlm.scale.gsd import GSD, GSDSource
from earthvlm.scale.inference import Branch, decide_gsd, spoofed


def test_metadata_wins_even_over_a_confident_estimate() -> None:
    d = decide_gsd(GSD.exact(0.3), mu=1.0, logvar=math.log(0.01))
    assert d.branch is Branch.METADATA and d.gsd.point_m == 0.3


def test_a_range_from_metadata_is_used_at_its_geometric_mean() -> None:
    d = decide_gsd(GSD.range(1.0, 4.0), mu=None, logvar=None)
    assert d.branch is Branch.METADATA and d.log10_gsd == pytest.approx(math.log10(2.0))


def test_confident_estimate_is_used() -> None:
    d = decide_gsd(None, mu=-0.5, logvar=2 * math.log(0.2))  # sigma 0.2 < 0.3
    assert d.branch is Branch.ESTIMATE
    assert d.gsd.point_m == pytest.approx(10**-0.5)
    assert d.gsd.source is GSDSource.ESTIMATE and d.sigma == pytest.approx(0.2)


@pytest.mark.parametrize("sigma", [0.3, 0.5, 7.0])
def test_unsure_estimate_falls_back_to_one_metre(sigma: float) -> None:
    d = decide_gsd(GSD.unknown(), mu=-0.5, logvar=2 * math.log(sigma))
    assert d.branch is Branch.NEUTRAL and d.gsd.point_m == 1.0
    assert d.gsd.source is GSDSource.DEFAULT and "unsure" in d.gsd.detail


def test_no_head_falls_back_to_one_metre() -> None:
    d = decide_gsd(None, None, None)
    assert d.branch is Branch.NEUTRAL and d.gsd.point_m == 1.0 and "no estimate" in d.gsd.detail


def test_threshold_and_anchor_are_configurable() -> None:
    d = decide_gsd(None, mu=0.0, logvar=2 * math.log(0.4), sigma_tau=0.5, neutral_m=2.0)
    assert d.branch is Branch.ESTIMATE
    d = decide_gsd(None, mu=0.0, logvar=2 * math.log(0.6), sigma_tau=0.5, neutral_m=2.0)
    assert d.gsd.point_m == 2.0


def test_absurd_estimates_are_clamped_to_valid_gsds() -> None:
    d = decide_gsd(None, mu=40.0, logvar=math.log(0.01))
    assert d.gsd.point_m == pytest.approx(1e5)


def test_spoofing_offsets() -> None:
    assert spoofed(0.15, [-1.0, 0.0, 1.0]) == pytest.approx([0.015, 0.15, 1.5])
