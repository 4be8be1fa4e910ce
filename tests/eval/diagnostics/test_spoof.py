"""GSD spoofing with scorers whose behaviour is known."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from earthvlm.eval.diagnostics import (
    PAPER_SPOOF_GSDS_M,
    SpoofSample,
    balanced_subset,
    bootstrap_ci,
    plot_spoof_curves,
    spoof_curve,
)

CLASSES = ("building", "car", "plane")
TRUE_GSD = 0.15


def samples(n_per_class: int = 200, gsd_m: float | Sequence[float] = TRUE_GSD) -> list[SpoofSample]:
    """Classes interleaved; sample i keeps its index in ``item`` for the scorers."""
    gsds = [gsd_m] if isinstance(gsd_m, float) else list(gsd_m)
    return [
        SpoofSample(CLASSES[i % 3], gsds[i % len(gsds)], item=i) for i in range(3 * n_per_class)
    ]


def within(claimed: np.ndarray, true: np.ndarray, factor: float = 2.0) -> np.ndarray:
    return np.abs(np.log10(claimed / true)) <= math.log10(factor) + 1e-12


def guess(batch: Sequence[SpoofSample], salt: int) -> list[str]:
    """A uniform guess among the classes, fixed by (sample, salt)."""
    table = np.random.default_rng(salt).integers(3, size=1 + max(s.item for s in batch))
    return [CLASSES[table[s.item]] for s in batch]


def bell_scorer(batch: Sequence[SpoofSample], gsd_m: np.ndarray) -> list[str]:
    """Correct within 2x of the true GSD, a fresh guess elsewhere."""
    true = np.asarray([s.gsd_m for s in batch])
    ok = within(gsd_m, true)
    salt = 10_000 + round(1000 * math.log10(gsd_m[0]))
    return [s.answer if k else g for s, k, g in zip(batch, ok, guess(batch, salt), strict=True)]


def blind_scorer(batch: Sequence[SpoofSample], gsd_m: np.ndarray) -> list[str]:
    """Ignores the GSD: the same guess for a sample whatever the claim."""
    return guess(batch, salt=7)


PARTNER = {"car": "building", "building": "car"}


def flipping_scorer(batch: Sequence[SpoofSample], gsd_m: np.ndarray) -> list[str]:
    """Correct, except that a claimed GSD over 2x too coarse turns a pair member into the
    other one (the plane has no partner and stays right)."""
    true = np.asarray([s.gsd_m for s in batch])
    coarse = gsd_m > 2.0 * true
    return [
        PARTNER.get(s.answer, s.answer) if c else s.answer
        for s, c in zip(batch, coarse, strict=True)
    ]


def test_a_scale_aware_scorer_gives_a_bell_that_peaks_at_the_true_gsd() -> None:
    grid = np.geomspace(0.015, 15.0, 13)  # contains 0.15 m exactly (index 4)
    curve = spoof_curve(bell_scorer, samples(), grid, n_boot=500, seed=0)
    near = within(grid, np.full_like(grid, TRUE_GSD))
    assert near[4] and near.sum() == 3  # the true GSD and one step either side (x1.78)
    assert np.all(curve.accuracy[near] == 1.0)
    assert curve.accuracy[4] == curve.accuracy.max() == 1.0
    far = curve.accuracy[~near]
    assert np.all(np.abs(far - 1 / 3) < 0.08), far  # chance away from the truth
    assert np.all(curve.ci_low[~near] <= curve.chance + 0.08)
    # the bell: nothing outside the window reaches the plateau
    assert far.max() < 0.5
    assert curve.chance == pytest.approx(1 / 3)


def test_a_gsd_blind_scorer_gives_a_flat_curve_at_chance() -> None:
    curve = spoof_curve(blind_scorer, samples(), PAPER_SPOOF_GSDS_M, n_boot=500, seed=3)
    assert np.ptp(curve.accuracy) == 0.0
    assert np.all(curve.ci_low <= curve.chance) and np.all(curve.chance <= curve.ci_high)
    # a flat curve has no peak, and its report says so
    assert curve.is_flat and curve.peak is None
    assert "Flat: accuracy" in curve.to_markdown() and "Peak" not in curve.to_markdown()
    bell = spoof_curve(bell_scorer, samples(), PAPER_SPOOF_GSDS_M, n_boot=50, seed=3)
    assert bell.peak is not None and "Peak" in bell.to_markdown()


def test_flip_share_counts_answers_that_move_to_the_other_pair_member() -> None:
    deltas = [-1.0, -0.5, 0.0, 0.5, 1.0]
    s = samples(50, gsd_m=[0.3, 3.0])
    curve = spoof_curve(flipping_scorer, s, deltas=deltas, pairs=[("car", "building")], n_boot=200)
    assert curve.mode == "offset"
    assert curve.n_flip_eligible == 100  # cars and buildings, not planes
    np.testing.assert_array_equal(curve.flip_share, [0, 0, 0, 1, 1])
    np.testing.assert_allclose(curve.accuracy, [1, 1, 1, 1 / 3, 1 / 3])
    assert curve.flip_ci_low[3] == curve.flip_ci_high[3] == 1.0
    # no pairs: the flip share is undefined, not zero
    no_pairs = spoof_curve(flipping_scorer, s, deltas=deltas, n_boot=50)
    assert no_pairs.n_flip_eligible == 0 and np.isnan(no_pairs.flip_share).all()


def test_out_of_range_flags_mark_claims_outside_the_training_range() -> None:
    grid = [0.01, 0.05, 0.1, 1.0, 5.0, 30.0]
    curve = spoof_curve(blind_scorer, samples(5), grid, train_range_m=(0.1, 5.0), n_boot=10)
    assert curve.out_of_range.tolist() == [True, True, False, False, False, True]
    # offsets: each sample's claim differs; the share says how many left the range
    s = samples(4, gsd_m=[0.3, 3.0])
    off = spoof_curve(blind_scorer, s, deltas=[-1, 0, 0.5, 1], train_range_m=(0.1, 10), n_boot=10)
    np.testing.assert_allclose(off.out_of_range_share, [0.5, 0, 0, 0.5])
    no_range = spoof_curve(blind_scorer, samples(5), grid, n_boot=10)
    assert not no_range.out_of_range.any()


def test_bootstrap_ci_brackets_the_estimate_and_is_deterministic() -> None:
    values = (np.random.default_rng(0).random(300) < 0.7).astype(float)
    lo, hi = bootstrap_ci(values, n_boot=1000, seed=5)
    assert lo < values.mean() < hi and hi - lo < 0.15
    assert bootstrap_ci(values, n_boot=1000, seed=5) == (lo, hi)
    assert bootstrap_ci(values, n_boot=1000, seed=6) != (lo, hi)
    a = spoof_curve(bell_scorer, samples(40), PAPER_SPOOF_GSDS_M, n_boot=300, seed=11)
    b = spoof_curve(bell_scorer, samples(40), PAPER_SPOOF_GSDS_M, n_boot=300, seed=11)
    assert np.all(a.ci_low <= a.accuracy) and np.all(a.accuracy <= a.ci_high)
    np.testing.assert_array_equal(a.ci_low, b.ci_low)
    np.testing.assert_array_equal(a.ci_high, b.ci_high)


def test_the_subset_is_class_balanced_and_seeded() -> None:
    answers = ["car"] * 50 + ["plane"] * 20 + ["Building."] * 30
    idx = balanced_subset(answers, seed=1)
    picked = [answers[i].casefold().rstrip(".") for i in idx]
    assert {a: picked.count(a) for a in set(picked)} == {"car": 20, "plane": 20, "building": 20}
    np.testing.assert_array_equal(idx, balanced_subset(answers, seed=1))
    assert not np.array_equal(idx, balanced_subset(answers, seed=2))
    assert len(balanced_subset(answers, n_per_class=5, seed=0)) == 15
    with pytest.raises(ValueError, match="plane"):
        balanced_subset(answers, n_per_class=21)


def test_bad_inputs_are_refused_with_a_reason() -> None:
    s = samples(3)
    with pytest.raises(ValueError, match="exactly one"):
        spoof_curve(blind_scorer, s)
    with pytest.raises(ValueError, match="one answer string per sample"):
        spoof_curve(lambda b, g: ["car"], s, [1.0])
    with pytest.raises(ValueError, match="two ambiguous pairs"):
        spoof_curve(blind_scorer, s, [1.0], pairs=[("car", "building"), ("car", "plane")])


def test_batches_do_not_change_the_curve() -> None:
    whole = spoof_curve(bell_scorer, samples(20), PAPER_SPOOF_GSDS_M, n_boot=50)
    batched = spoof_curve(bell_scorer, samples(20), PAPER_SPOOF_GSDS_M, n_boot=50, batch_size=7)
    np.testing.assert_array_equal(whole.accuracy, batched.accuracy)


def test_plots_every_variant_on_one_png(tmp_path: Path) -> None:
    s = samples(60)
    curves = {
        "CS-HLoRA (bell)": spoof_curve(bell_scorer, s, PAPER_SPOOF_GSDS_M, train_range_m=(0.05, 10),
                                       pairs=[("car", "building")], n_boot=200),
        "LoRA (blind)": spoof_curve(blind_scorer, s, PAPER_SPOOF_GSDS_M, train_range_m=(0.05, 10),
                                    pairs=[("car", "building")], n_boot=200),
    }  # fmt: skip
    out = plot_spoof_curves(curves, tmp_path / "spoof.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    off = {"x": spoof_curve(flipping_scorer, samples(10, [0.3, 3.0]), deltas=[-1, 0, 1],
                            pairs=[("car", "building")], n_boot=20)}  # fmt: skip
    assert plot_spoof_curves(off, tmp_path / "offset.png").stat().st_size > 5_000
    with pytest.raises(ValueError, match="apart"):
        plot_spoof_curves({**curves, **off}, tmp_path / "mixed.png")
