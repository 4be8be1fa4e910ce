"""Paired tests of whether answers depend on the claimed GSD."""

from __future__ import annotations

import math

import numpy as np
import pytest

from earthvlm.eval.diagnostics.spoof import SpoofSample, spoof_curve
from earthvlm.eval.diagnostics.stats import (
    chi2_sf,
    cochran_q,
    correct_matrix,
    fmt_p,
    mcnemar_exact,
    point_index,
    spoof_tests,
)


@pytest.mark.parametrize(
    ("x", "dof", "p"),
    [
        (3.841458820694124, 1, 0.05),  # the familiar critical values
        (5.991464547107979, 2, 0.05),
        (21.02606981748307, 12, 0.05),
        (26.21696730553585, 12, 0.01),
        (0.5, 3, 0.9188914116546758),
        (2.0, 2, math.exp(-1.0)),  # dof 2: sf = exp(-x / 2) exactly
    ],
)
def test_chi2_sf_matches_known_values(x: float, dof: int, p: float) -> None:
    assert chi2_sf(x, dof) == pytest.approx(p, rel=1e-9)


def test_chi2_sf_edges() -> None:
    assert chi2_sf(0.0, 4) == 1.0
    assert 0.0 <= chi2_sf(500.0, 12) < 1e-90
    with pytest.raises(ValueError, match="dof"):
        chi2_sf(1.0, 0)


def test_cochran_q_worked_example() -> None:
    # 3 conditions x 6 samples; column totals C = (4, 2, 2), row totals R = (2,1,0,3,1,1)
    x = np.array([[1, 1, 0, 1, 0, 1], [1, 0, 0, 1, 0, 0], [0, 0, 0, 1, 1, 0]])
    # Q = (k-1) (k sum C^2 - N^2) / (k N - sum R^2) = 2 (3*24 - 64) / (3*8 - 16) = 2
    res = cochran_q(x)
    assert res.statistic == pytest.approx(2.0)
    assert res.dof == 2
    assert res.p_value == pytest.approx(math.exp(-1.0))
    assert res.n == 4  # samples 2 (all wrong) and 3 (all right) carry no information


def test_cochran_q_without_any_change_is_p_one() -> None:
    # a model that ignores the GSD gives the same outcome at every claimed value
    row = np.array([1, 0, 1, 1, 0])
    res = cochran_q(np.tile(row, (13, 1)))
    assert res.statistic == 0.0 and res.p_value == 1.0 and res.n == 0


def test_cochran_q_detects_a_strong_effect() -> None:
    rng = np.random.default_rng(0)
    good = rng.random(200) < 0.95
    bad = rng.random(200) < 0.5
    res = cochran_q(np.stack([bad, good, bad]).astype(int))
    assert res.p_value < 1e-10


def test_cochran_q_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="k >= 2"):
        cochran_q(np.ones((1, 5)))
    with pytest.raises(ValueError, match="0/1"):
        cochran_q(np.full((2, 3), 2))


def test_mcnemar_exact() -> None:
    a = np.array([1, 1, 1, 1, 1, 0, 1])
    b = np.array([0, 0, 0, 0, 0, 0, 1])
    res = mcnemar_exact(a, b)
    # 5 discordant, all one way: p = 2 * 0.5**5
    assert res.n == 5 and res.statistic == 5
    assert res.p_value == pytest.approx(2 * 0.5**5)
    same = mcnemar_exact(a, a)
    assert same.p_value == 1.0 and same.n == 0
    balanced = mcnemar_exact(np.array([1, 0]), np.array([0, 1]))
    assert balanced.p_value == 1.0
    with pytest.raises(ValueError, match="one length"):
        mcnemar_exact(a, b[:3])


def _curve(scorer) -> object:
    samples = [SpoofSample(a, g) for a, g in [("car", 0.3), ("building", 2.0)] * 10]
    return spoof_curve(scorer, samples, deltas=(-1.0, 0.0, 1.0), n_boot=50)


def test_spoof_tests_on_a_scale_blind_and_a_scale_aware_scorer() -> None:
    def blind(chunk, gsd_m):
        return ["car"] * len(chunk)

    def aware(chunk, gsd_m):  # physical size from the claimed GSD decides
        return ["car" if g < 1.0 else "building" for g in gsd_m]

    flat = _curve(blind)
    tests = spoof_tests(flat)
    assert tests["all GSDs (Cochran's Q)"].p_value == 1.0
    assert correct_matrix(flat).shape == (3, 20)
    sharp = _curve(aware)
    assert point_index(sharp, 0.0) == 1
    t = spoof_tests(sharp)
    # C = (10, 20, 10), every sample right twice (R = 2, N = 40):
    # Q = 2 (3 * 600 - 1600) / (3 * 40 - 20 * 4) = 10, dof 2: p = exp(-5)
    q = t["all GSDs (Cochran's Q)"]
    assert q.statistic == pytest.approx(10.0)
    assert q.p_value == pytest.approx(math.exp(-5.0))
    # 10x below: buildings (2 m -> 0.2 m) turn into cars; cars stay cars
    assert t["true vs 10x below (McNemar)"].n == 10
    with pytest.raises(ValueError, match="no point"):
        point_index(sharp, 0.5)


def test_p_values_print_as_bounds_never_as_zero() -> None:
    assert fmt_p(0.0) == "< 1e-300" and fmt_p(0.0, eq=True) == "< 1e-300"
    assert fmt_p(chi2_sf(1763.0, 12)) == "< 1e-300"  # underflows a double
    assert fmt_p(0.0312, eq=True) == "= 0.0312" and fmt_p(4.1e-7) == "4.1e-07"
    assert fmt_p(float("nan")) == "-"


def test_mcnemar_on_thousands_of_discordant_samples_does_not_overflow() -> None:
    a = np.ones(3000, dtype=bool)
    res = mcnemar_exact(a, ~a)
    assert res.n == 3000 and 0.0 <= res.p_value < 1e-300
