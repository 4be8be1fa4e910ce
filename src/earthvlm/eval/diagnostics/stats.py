"""Tests of whether a model's answers change with the claimed GSD (numpy only, no scipy).

A spoofing sweep asks the same n questions under k claimed GSDs: the outcomes are
paired, so the right test of "accuracy does not depend on the GSD" is Cochran's Q
(a k-condition generalisation of McNemar's test), not k independent proportions.
:func:`mcnemar_exact` compares two conditions (e.g. the true GSD against 10x off).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from earthvlm.eval.diagnostics.spoof import SpoofCurve


@dataclass(frozen=True)
class TestResult:
    """A test statistic and its p-value.

    Attributes:
        name: The test.
        statistic: Its value.
        dof: Degrees of freedom (chi-square tests), else 0.
        p_value: Probability of a statistic at least this extreme under H0.
        n: Samples that carried information (discordant ones for paired tests).
    """

    name: str
    statistic: float
    dof: int
    p_value: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "test": self.name,
            "statistic": self.statistic,
            "dof": self.dof,
            "p_value": self.p_value,
            "n": self.n,
        }


def _gammaincc(a: float, x: float) -> float:
    """Regularised upper incomplete gamma Q(a, x) (series below a + 1, else a Lentz
    continued fraction; 1e-14 relative accuracy is plenty for p-values)."""
    if x <= 0:
        return 1.0
    lg = math.lgamma(a)
    if x < a + 1.0:
        term = total = 1.0 / a
        ap = a
        for _ in range(10_000):
            ap += 1.0
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(-x + a * math.log(x) - lg))
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return min(1.0, math.exp(-x + a * math.log(x) - lg) * h)


def chi2_sf(x: float, dof: int) -> float:
    """Survival function of the chi-square distribution, ``P(X >= x)``."""
    if dof < 1:
        raise ValueError(f"dof must be >= 1, got {dof}")
    return _gammaincc(dof / 2.0, max(0.0, float(x)) / 2.0)


def cochran_q(correct: np.ndarray) -> TestResult:
    """Cochran's Q test that k paired conditions have the same success rate.

    Args:
        correct: ``(k, n)`` 0/1 outcomes: condition x sample.

    Returns:
        Q with ``k - 1`` degrees of freedom. When no sample's outcome changes across
        conditions Q is 0 and p is 1: the data carry no evidence of any difference.

    Raises:
        ValueError: If ``correct`` is not 2-D with k >= 2, or not 0/1.
    """
    x = np.asarray(correct)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 1:
        raise ValueError(f"correct must be (k >= 2 conditions, n >= 1 samples), got {x.shape}")
    if not np.isin(x, (0, 1)).all():
        raise ValueError("correct must hold 0/1 outcomes")
    x = x.astype(np.float64)
    k = x.shape[0]
    col = x.sum(axis=1)  # successes per condition
    row = x.sum(axis=0)  # successes per sample
    informative = int(((row > 0) & (row < k)).sum())
    denom = k * row.sum() - (row**2).sum()
    if denom <= 0:
        return TestResult("cochran_q", 0.0, k - 1, 1.0, informative)
    q = (k - 1) * (k * (col**2).sum() - col.sum() ** 2) / denom
    return TestResult("cochran_q", float(q), k - 1, chi2_sf(q, k - 1), informative)


def mcnemar_exact(a: np.ndarray, b: np.ndarray) -> TestResult:
    """Exact two-sided McNemar test on paired 0/1 outcomes of two conditions.

    The statistic is the number of samples right under ``a`` and wrong under ``b``;
    under H0 the discordant samples split as Binomial(n_discordant, 1/2).
    """
    a = np.asarray(a).astype(bool)
    b = np.asarray(b).astype(bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be 1-D of one length, got {a.shape} and {b.shape}")
    n01 = int((a & ~b).sum())
    n10 = int((~a & b).sum())
    n = n01 + n10
    if n == 0:
        return TestResult("mcnemar_exact", 0.0, 0, 1.0, 0)
    k = min(n01, n10)
    # exact integers: 2.0**n overflows a float past n = 1023 discordant samples
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return TestResult("mcnemar_exact", float(n01), 0, min(1.0, 2.0 * tail), n)


#: Below this a p-value is printed as a bound: a double cannot tell it from 0.
P_FLOOR = 1e-300


def fmt_p(p: float, *, digits: int = 3, eq: bool = False) -> str:
    """A p-value for people: ``0.0312``, ``4.1e-07``, or ``< 1e-300`` where it is below
    what a double holds (never ``0``). ``eq``: with its relation (``= 0.03``,
    ``< 1e-300``), for "p {fmt_p(p, eq=True)}"."""
    if p != p:  # NaN
        return "-"
    if p < P_FLOOR:
        return f"< {P_FLOOR:.0e}"
    text = f"{p:.{digits}g}"
    return f"= {text}" if eq else text


def correct_matrix(curve: SpoofCurve) -> np.ndarray:
    """(G, N) 0/1: sample n answered right at sweep point g."""
    return (curve.predictions == curve.answers[None, :]).astype(np.int8)


def point_index(curve: SpoofCurve, x: float) -> int:
    """Index of the sweep point at ``x`` (an offset delta or a GSD in metres)."""
    hits = np.flatnonzero(np.isclose(curve.x, x))
    if not hits.size:
        raise ValueError(f"the sweep has no point at {x}")
    return int(hits[0])


def spoof_tests(curve: SpoofCurve) -> dict[str, TestResult]:
    """Cochran's Q over the whole offset sweep, McNemar at 10x below / above the truth."""
    c = correct_matrix(curve)
    out = {"all GSDs (Cochran's Q)": cochran_q(c)}
    zero = point_index(curve, 0.0)
    for name, d in (("true vs 10x below (McNemar)", -1.0), ("true vs 10x above (McNemar)", 1.0)):
        if np.isclose(curve.x, d).any():
            out[name] = mcnemar_exact(c[zero], c[point_index(curve, d)])
    return out


__all__ = [
    "P_FLOOR",
    "TestResult",
    "chi2_sf",
    "cochran_q",
    "correct_matrix",
    "fmt_p",
    "mcnemar_exact",
    "point_index",
    "spoof_tests",
]
