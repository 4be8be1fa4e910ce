"""Counts and yes/no answers read from text, with hand-checked scores."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earthvlm.eval.metrics import extract_yes_no, parse_number, score_counts, score_yes_no


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("3", 3.0),
        ("3.", 3.0),  # a full stop, not a decimal point
        ("about 12", 12.0),
        ("three", 3.0),
        ("There are twenty-one planes.", 21.0),
        ("two hundred and five", 205.0),
        ("1,204 cars", 1204.0),
        ("2.5", 2.5),
        ("3 (three)", 3.0),  # the same number twice
        ("none", 0.0),
        ("12m", 12.0),
    ],
)
def test_parse_number(text: str, value: float) -> None:
    assert parse_number(text).value == value


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("between 3 and 5", "several numbers (3, 5)"),
        ("There are no planes", "no number"),  # "no" is not read as zero
        ("v2 image", "no number"),
        (None, "no response"),
    ],
)
def test_parse_number_abstains_with_a_reason(text: str | None, reason: str) -> None:
    got = parse_number(text)
    assert got.value is None and got.reason == reason


def test_counting_scores_by_hand() -> None:
    preds = ["3", "about 12", "ten", "many", None, "7"]
    refs = [3, "10", 10, 4, 2, "n/a"]
    res = score_counts(preds, refs, abs_tol=2)
    # scored: items 0-4 (item 5's reference has no number: skipped)
    # errors: |3-3| = 0, |12-10| = 2, |10-10| = 0; "many" and None fail (wrong)
    assert res.n == 5 and res.n_exact == 2 and res.n_within == 3
    assert res.exact == pytest.approx(2 / 5) and res.within_tolerance == pytest.approx(3 / 5)
    assert res.mae == pytest.approx((0 + 2 + 0) / 3)
    assert res.ledger.read == 6 and res.ledger.ok == 3 and res.ledger.n_failed == 2
    assert res.ledger.skipped["reference holds no single number"] == 1
    assert res.to_dict()["n_parsed"] == 3
    json.dumps(res.to_dict(), allow_nan=False)


def test_relative_tolerance() -> None:
    # |110 - 100| = 10 <= 0.1 * 100; |112 - 100| = 12 > 10
    res = score_counts(["110", "112"], [100, 100], rel_tol=0.1)
    assert res.n_within == 1 and res.n_exact == 0


def test_counting_input_checks() -> None:
    with pytest.raises(ValueError, match="abs_tol"):
        score_counts(["1"], [1], abs_tol=-1)
    with pytest.raises(ValueError, match="rel_tol"):
        score_counts(["1"], [1], rel_tol=math.nan)
    with pytest.raises(ValueError, match="predictions\\[0\\]"):
        score_counts([3], [3])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("Yes.", "yes"),
        ("no", "no"),
        ("True", "yes"),
        ("There is no airplane.", "no"),
        ("Yes, there is no damage", "yes"),  # the leading word decides
        ("There are planes", None),
        ("maybe yes, maybe no", None),
        ("", None),
    ],
)
def test_extract_yes_no(text: str, value: str | None) -> None:
    assert extract_yes_no(text).value == value


def test_yes_no_scores_by_hand() -> None:
    preds = ["yes", "Yes.", "no", "no", "unsure", "yes"]
    refs = ["yes", "no", "yes", "no", "yes", "maybe"]
    res = score_yes_no(preds, refs)
    # item 5 skipped (reference not yes/no); item 4 failed (wrong, counts as a missed yes)
    # correct: items 0 and 3 -> 2/5; tp = 1 (item 0), fp = 1 (item 1), fn = 2 (items 2, 4)
    assert res.n == 5 and res.accuracy == pytest.approx(2 / 5)
    assert (res.tp, res.fp, res.fn) == (1, 1, 2)
    assert res.precision == pytest.approx(1 / 2) and res.recall == pytest.approx(1 / 3)
    assert res.f1 == pytest.approx(2 * 1 / (2 * 1 + 1 + 2))  # 0.4
    assert res.yes_rate == pytest.approx(2 / 4)  # of the 4 parsed predictions
    assert res.ledger.n_failed == 1 and res.ledger.n_skipped == 1
    assert score_yes_no(["yes"], [True]).accuracy == 1.0


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_readers_never_raise(text: str) -> None:
    got = parse_number(text)
    assert (got.value is None) == (got.reason is not None)
    yn = extract_yes_no(text)
    assert yn.value in ("yes", "no", None) and (yn.value is None) == (yn.reason is not None)


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=10**6))
def test_digits_round_trip(k: int) -> None:
    assert parse_number(f"There are {k}.").value == k
    assert parse_number(f"{k:,} objects").value == k
