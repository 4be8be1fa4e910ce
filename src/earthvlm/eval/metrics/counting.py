"""Counts and yes/no answers read from free text, and their scores.

:func:`parse_number` reads digits (``"12"``, ``"3."``, ``"1,204"``, ``"2.5"``) and number
words (``"three"``, ``"twenty-one"``, ``"two hundred and five"``, ``"none"`` = 0) and
abstains (no value, with a reason) when a response gives two different numbers
(``"between 3 and 5"``). "no" is not read as zero (``"no, there are 3"`` would be
ambiguous). :func:`extract_yes_no` reads a leading yes/no, or a single yes or no word in
a longer answer, and abstains when both appear.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from earthvlm.data.ledger import Ledger
from earthvlm.eval.metrics._common import (
    check_lengths,
    check_text,
    json_float,
    mean,
    new_ledger,
    ratio,
)
from earthvlm.eval.metrics.text import number_word_runs

#: digits not glued to a preceding letter or point ("v2", ".5" are not counts)
_DIGITS = re.compile(r"(?<![\w.])\d+(?:\.\d+)?")
_ZERO_WORDS = frozenset({"none", "zero", "nil"})
_YES = frozenset({"yes", "yeah", "yep", "true", "correct"})
_NO = frozenset({"no", "nope", "false", "incorrect"})


@dataclass(frozen=True)
class NumberParse:
    """A number read from text.

    Attributes:
        value: The number, or None when none (or several) was found.
        reason: Why ``value`` is None.
    """

    value: float | None
    reason: str | None = None


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def parse_number(text: str | None) -> NumberParse:
    """The one number a response gives.

    Thousands separators are removed (``"1,204"``), a trailing full stop is not a
    decimal point (``"3."`` = 3), and a number written twice in one form and another
    (``"3 (three)"``) counts once. A unit glued to digits (``"12m"``) still reads 12.

    Args:
        text: The response (None for a missing one).

    Returns:
        The value, or None with a reason (no number, several different numbers).
    """
    if text is None:
        return NumberParse(None, "no response")
    s = text.lower()
    s = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", s)
    values = [float(m) for m in _DIGITS.findall(s)]
    words = re.findall(r"[a-z]+", s)
    values += [float(v) for _, _, v in number_word_runs(words)]
    values += [0.0 for w in words if w in _ZERO_WORDS]
    distinct = sorted(set(values))
    if not distinct:
        return NumberParse(None, "no number")
    if len(distinct) > 1:
        shown = ", ".join(_fmt(v) for v in distinct[:4])
        return NumberParse(None, f"several numbers ({shown})")
    return NumberParse(distinct[0])


@dataclass(frozen=True)
class YesNo:
    """A yes/no read from text.

    Attributes:
        value: ``"yes"``, ``"no"`` or None.
        reason: Why ``value`` is None.
    """

    value: str | None
    reason: str | None = None


def extract_yes_no(text: str | None) -> YesNo:
    """``"yes"`` / ``"no"`` from a response.

    A leading yes-word (yes, yeah, yep, true, correct) or no-word (no, nope, false,
    incorrect) decides; otherwise a lone "yes" or "no" anywhere (``"There is no
    airplane."`` -> no); both, or neither, abstain with a reason.

    Args:
        text: The response (None for a missing one).

    Returns:
        The :class:`YesNo`.
    """
    if text is None:
        return YesNo(None, "no response")
    words = re.findall(r"[a-z]+", text.lower())
    if not words:
        return YesNo(None, "empty response")
    if words[0] in _YES:
        return YesNo("yes")
    if words[0] in _NO:
        return YesNo("no")
    has_yes, has_no = "yes" in words, "no" in words
    if has_yes and has_no:
        return YesNo(None, "both yes and no")
    if has_yes or has_no:
        return YesNo("yes" if has_yes else "no")
    return YesNo(None, "no yes/no word")


@dataclass(frozen=True)
class CountingResult:
    """Scores of counting answers.

    Attributes:
        n: Items scored (references that parse).
        n_exact: Predictions equal to the reference.
        n_within: Predictions within the tolerance.
        abs_tol: Absolute tolerance used.
        rel_tol: Relative tolerance used (share of the reference).
        abs_errors: |prediction - reference| of the parsed predictions.
        ledger: ``ok`` = a number parsed; ``failed`` = none or several (scored wrong,
            left out of the errors); ``skipped`` = the reference has no single number.
    """

    n: int
    n_exact: int
    n_within: int
    abs_tol: float
    rel_tol: float
    abs_errors: tuple[float, ...]
    ledger: Ledger

    @property
    def exact(self) -> float:
        """Share of items counted exactly."""
        return ratio(self.n_exact, self.n)

    @property
    def within_tolerance(self) -> float:
        """Share of items within ``max(abs_tol, rel_tol * |reference|)``."""
        return ratio(self.n_within, self.n)

    @property
    def mae(self) -> float:
        """Mean absolute error over the parsed predictions (NaN if none parsed)."""
        return mean(self.abs_errors)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "n": self.n,
            "exact": json_float(self.exact),
            "within_tolerance": json_float(self.within_tolerance),
            "abs_tol": self.abs_tol,
            "rel_tol": self.rel_tol,
            "mae": json_float(self.mae),
            "n_parsed": len(self.abs_errors),
            "ledger": self.ledger.to_dict(),
        }


def _reference_number(ref: Any) -> float | None:
    if isinstance(ref, bool):
        return None
    if isinstance(ref, (int, float)):
        return float(ref) if math.isfinite(ref) else None
    if isinstance(ref, str):
        return parse_number(ref).value
    return None


def score_counts(
    predictions: Sequence[str | None],
    references: Sequence[int | float | str],
    *,
    abs_tol: float = 0.0,
    rel_tol: float = 0.0,
) -> CountingResult:
    """Exact and within-tolerance accuracy of counts read from responses.

    Args:
        predictions: Model responses (None for a missing one).
        references: True counts (numbers, or strings that hold one number).
        abs_tol: A prediction within this absolute difference is "within tolerance".
        rel_tol: ... or within this share of the reference (``0.1`` = 10 %).

    Returns:
        The :class:`CountingResult`.

    Raises:
        ValueError: On mismatched lengths or a negative / non-finite tolerance.
    """
    n = check_lengths(predictions=predictions, references=references)
    for name, tol in (("abs_tol", abs_tol), ("rel_tol", rel_tol)):
        if not math.isfinite(tol) or tol < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {tol}")
    ledger = new_ledger("counting")
    n_scored = n_exact = n_within = 0
    errors: list[float] = []
    for i in range(n):
        truth = _reference_number(references[i])
        if truth is None:
            ledger.count_skipped("reference holds no single number")
            continue
        n_scored += 1
        parsed = parse_number(check_text(predictions[i], "predictions", i))
        if parsed.value is None:
            ledger.count_failed(parsed.reason or "no number")
            continue
        ledger.count_ok()
        err = abs(parsed.value - truth)
        errors.append(err)
        n_exact += err == 0
        n_within += err <= max(abs_tol, rel_tol * abs(truth))
    return CountingResult(
        n_scored, n_exact, n_within, float(abs_tol), float(rel_tol), tuple(errors), ledger
    )


@dataclass(frozen=True)
class YesNoResult:
    """Scores of yes/no answers.

    Attributes:
        n: Items scored (references that read as yes or no).
        n_correct: Correct answers.
        n_yes: Parsed predictions that say yes.
        n_parsed: Predictions that parsed.
        tp, fp, fn: Counts with "yes" as the positive class.
        ledger: ``ok`` = parsed; ``failed`` = no usable yes/no (scored wrong);
            ``skipped`` = the reference is not yes/no.
    """

    n: int
    n_correct: int
    n_yes: int
    n_parsed: int
    tp: int
    fp: int
    fn: int
    ledger: Ledger

    @property
    def accuracy(self) -> float:
        return ratio(self.n_correct, self.n)

    @property
    def yes_rate(self) -> float:
        """Share of parsed predictions that say yes (a bias check)."""
        return ratio(self.n_yes, self.n_parsed)

    @property
    def precision(self) -> float:
        return ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        return ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "n": self.n,
            "accuracy": json_float(self.accuracy),
            "yes_rate": json_float(self.yes_rate),
            "precision": json_float(self.precision),
            "recall": json_float(self.recall),
            "f1": json_float(self.f1),
            "ledger": self.ledger.to_dict(),
        }


def score_yes_no(
    predictions: Sequence[str | None], references: Sequence[str | bool]
) -> YesNoResult:
    """Accuracy, yes-rate and precision / recall / F1 ("yes" positive) of yes/no answers.

    Args:
        predictions: Model responses (None for a missing one).
        references: ``"yes"`` / ``"no"`` (any case) or booleans.

    Returns:
        The :class:`YesNoResult`.
    """
    n = check_lengths(predictions=predictions, references=references)
    ledger = new_ledger("yes/no")
    n_scored = n_correct = n_yes = n_parsed = tp = fp = fn = 0
    for i in range(n):
        ref = references[i]
        truth = (
            ("yes" if ref else "no")
            if isinstance(ref, bool)
            else extract_yes_no(ref).value
            if isinstance(ref, str)
            else None
        )
        if truth is None:
            ledger.count_skipped("reference is not yes/no")
            continue
        n_scored += 1
        got = extract_yes_no(check_text(predictions[i], "predictions", i))
        if got.value is None:
            ledger.count_failed(got.reason or "no yes/no")
            fn += truth == "yes"
            continue
        ledger.count_ok()
        n_parsed += 1
        n_yes += got.value == "yes"
        n_correct += got.value == truth
        tp += got.value == "yes" and truth == "yes"
        fp += got.value == "yes" and truth == "no"
        fn += got.value == "no" and truth == "yes"
    return YesNoResult(n_scored, n_correct, n_yes, n_parsed, tp, fp, fn, ledger)
