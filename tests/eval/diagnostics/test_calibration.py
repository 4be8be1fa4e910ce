"""SSE-U calibration statistics on cases small enough to check by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from earthvlm.eval.diagnostics import GAUSSIAN_RATIO, plot_calibration, sseu_calibration
from earthvlm.scale.gsd import GSD

# errors 0.125, 0.25, 0, 0.5 (exact in binary); sigmas 0.25, 0.1, 0.5, 0.375
MU = [0.0, 1.0, 2.0, 3.0]
TRUE = [0.125, 0.75, 2.0, 3.5]
SIGMA = np.array([0.25, 0.1, 0.5, 0.375])
LOGVAR = 2 * np.log(SIGMA)


def test_ratio_and_coverage_by_hand() -> None:
    st = sseu_calibration(MU, LOGVAR, TRUE, has_cues=[True, True, False, False])
    assert st.mae_log10 == pytest.approx(0.875 / 4)
    assert st.mean_sigma == pytest.approx(1.225 / 4)
    assert st.ratio == pytest.approx((0.875 / 4) / (1.225 / 4))  # 0.714
    assert st.coverage_1sigma == 0.5  # 0.125 < 0.25 and 0 < 0.5
    assert st.coverage_2sigma == 0.75  # all but 0.25 vs 2 x 0.1
    assert st.rmse_log10 == pytest.approx(math.sqrt((0.125**2 + 0.25**2 + 0.5**2) / 4))
    # no metadata: sigma < 0.3 uses the estimate, else the neutral 1 m (log10 = 0)
    assert st.branch_counts == {"metadata": 0, "estimate": 2, "neutral": 2}
    assert st.branch_abs_err["estimate"] == pytest.approx((0.125 + 0.25) / 2)
    assert st.branch_abs_err["neutral"] == pytest.approx((2.0 + 3.5) / 2)
    assert st.by_cues["with cues"]["mean_sigma"] == pytest.approx(0.175)
    assert st.by_cues["without cues"]["mean_sigma"] == pytest.approx(0.4375)
    assert st.by_cues["with cues"]["share_estimate"] == 1.0
    assert sum(b["n"] for b in st.bins) == 4


def test_metadata_wins_and_unknown_truth_only_counts_for_the_resolver() -> None:
    meta = [None, None, None, GSD.exact(10**3.5)]
    st = sseu_calibration(MU, LOGVAR, [0.125, 0.75, float("nan"), 3.5], metadata=meta)
    assert st.branch_counts == {"metadata": 1, "estimate": 2, "neutral": 1}
    assert st.n == 4 and st.n_with_truth == 3
    assert st.mae_log10 == pytest.approx(0.875 / 3)
    assert st.branch_abs_err["neutral"] is None  # its only sample has no truth
    assert st.branch_abs_err["metadata"] == pytest.approx(0.0)


def test_a_calibrated_gaussian_gives_the_reference_ratio_and_overconfidence_shows() -> None:
    rng = np.random.default_rng(0)
    sigma = rng.uniform(0.05, 0.5, 4000)
    true = rng.uniform(-1.5, 1.5, 4000)
    mu = true + rng.normal(0, sigma)
    st = sseu_calibration(mu, 2 * np.log(sigma), true)
    assert st.ratio == pytest.approx(GAUSSIAN_RATIO, abs=0.03)
    assert st.coverage_1sigma == pytest.approx(0.683, abs=0.03)
    for b in st.bins:  # each bin calibrated too
        assert b["mean_abs_err"] / b["mean_sigma"] == pytest.approx(GAUSSIAN_RATIO, abs=0.08)
    over = sseu_calibration(true + 2 * (mu - true), 2 * np.log(sigma), true)
    assert over.ratio == pytest.approx(2 * GAUSSIAN_RATIO, abs=0.06)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="differ"):
        sseu_calibration([0.0], [0.0, 0.0], [0.0])
    with pytest.raises(ValueError, match="ground truth"):
        sseu_calibration([0.0], [0.0], [float("nan")])


def test_calibration_plot_is_written(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    cues = rng.random(300) < 0.6
    sigma = np.where(cues, rng.uniform(0.05, 0.25, 300), rng.uniform(0.2, 0.8, 300))
    true = rng.uniform(-1.5, 1.5, 300)
    st = sseu_calibration(true + rng.normal(0, sigma), 2 * np.log(sigma), true, cues)
    assert st.by_cues["with cues"]["mean_sigma"] < st.by_cues["without cues"]["mean_sigma"]
    out = plot_calibration(st, tmp_path / "calibration.png")
    assert out.read_bytes()[:4] == b"\x89PNG" and out.stat().st_size > 10_000
