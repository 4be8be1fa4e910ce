"""SSE-U calibration (ScaleEarth Fig. 8e and sec. 3.3): is the predicted sigma honest?

All quantities are in log10-GSD units: the error is ``|mu - log10 g|`` and
``sigma = exp(logvar / 2)``.

* calibration ratio ``E|g_hat - g| / mean(sigma)``. For a calibrated Gaussian the
  expected absolute error is ``sqrt(2 / pi) sigma ~ 0.80 sigma``, so ~0.80 is ideal;
  above it SSE-U is over-confident, below it under-confident. (The paper plots the
  ratio but states no target; this reference is ours.)
* coverage: the share of errors within 1 and 2 sigma (Gaussian: 0.683 and 0.954);
* reliability: samples binned by predicted sigma (equal-count bins), mean |error| per
  bin;
* the resolver (Eq. 5, :func:`earthvlm.scale.inference.decide_gsd`): how often each
  branch fires (metadata / estimate / neutral), and the error of the GSD it resolves;
* sigma for images (scenes or chips) with and without scale cues (synthetic records carry
  ``meta.has_scale_cues``; a homogeneous scene should come out less certain).

Samples without a true GSD (``NaN`` in ``true_log10``) count for the resolver and the
cue comparison but not for error statistics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from earthvlm.eval.diagnostics.report import markdown_table, new_figure, save_figure
from earthvlm.scale.gsd import GSD
from earthvlm.scale.inference import NEUTRAL_GSD_M, SIGMA_TAU, Branch, decide_gsd

#: E|e| / sigma of a calibrated Gaussian.
GAUSSIAN_RATIO = math.sqrt(2.0 / math.pi)
BRANCHES: tuple[str, ...] = tuple(b.value for b in Branch)


@dataclass(frozen=True, eq=False)
class CalibrationStats:
    """SSE-U calibration numbers and the raw arrays behind them.

    Attributes:
        n: Samples.
        n_with_truth: Samples with a finite true log10 GSD (used for error statistics).
        mae_log10: Mean |mu - true|.
        rmse_log10: Root mean square error.
        mean_sigma: Mean predicted sigma over the samples with truth.
        ratio: ``mae_log10 / mean_sigma`` (ideal ~ :data:`GAUSSIAN_RATIO`).
        coverage_1sigma, coverage_2sigma: Share of |error| < sigma, < 2 sigma.
        nll: Mean Gaussian NLL ``0.5 e^2 / sigma^2 + 0.5 logvar`` (the training loss, Eq. 3).
        bins: Reliability bins: dicts with ``sigma_lo``, ``sigma_hi``, ``n``,
            ``mean_sigma``, ``mean_abs_err``, ``rmse``.
        branch_counts: Resolver branch -> count over all samples.
        branch_abs_err: Branch -> mean |log10 g* - true| of the GSD the resolver picked
            (samples with truth; None when the branch never fired on them).
        by_cues: ``"with cues"`` / ``"without cues"`` -> n, mean and median sigma, mean
            |error|, share resolved by the estimate (empty without ``has_cues``).
        sigma_tau: The resolver's confidence threshold.
        sigma, abs_err, has_cues, branches: Per-sample arrays (abs_err NaN without truth).
    """

    n: int
    n_with_truth: int
    mae_log10: float
    rmse_log10: float
    mean_sigma: float
    ratio: float
    coverage_1sigma: float
    coverage_2sigma: float
    nll: float
    bins: list[dict[str, float]]
    branch_counts: dict[str, int]
    branch_abs_err: dict[str, float | None]
    by_cues: dict[str, dict[str, float]]
    sigma_tau: float
    sigma: np.ndarray
    abs_err: np.ndarray
    has_cues: np.ndarray | None
    branches: np.ndarray

    @property
    def branch_shares(self) -> dict[str, float]:
        return {b: c / self.n for b, c in self.branch_counts.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "n_with_truth": self.n_with_truth,
            "mae_log10": self.mae_log10,
            "rmse_log10": self.rmse_log10,
            "mean_sigma": self.mean_sigma,
            "ratio": self.ratio,
            "ratio_gaussian_ideal": GAUSSIAN_RATIO,
            "coverage_1sigma": self.coverage_1sigma,
            "coverage_2sigma": self.coverage_2sigma,
            "nll": self.nll,
            "bins": self.bins,
            "branch_counts": self.branch_counts,
            "branch_shares": self.branch_shares,
            "branch_abs_err_log10": self.branch_abs_err,
            "by_cues": self.by_cues,
            "sigma_tau": self.sigma_tau,
        }

    def to_markdown(self) -> str:
        head = markdown_table(
            ["n (with truth)", "E abs err", "mean sigma", "ratio", "within 1 / 2 sigma", "NLL"],
            [
                [
                    f"{self.n} ({self.n_with_truth})",
                    f"{self.mae_log10:.4f}",
                    f"{self.mean_sigma:.4f}",
                    f"{self.ratio:.3f}",
                    f"{self.coverage_1sigma:.3f} / {self.coverage_2sigma:.3f}",
                    f"{self.nll:.3f}",
                ]
            ],
        )
        bins = markdown_table(
            ["sigma bin", "n", "mean sigma", "mean abs err", "RMSE", "abs err / sigma"],
            [
                [
                    f"{b['sigma_lo']:.3g}-{b['sigma_hi']:.3g}",
                    b["n"],
                    f"{b['mean_sigma']:.4f}",
                    f"{b['mean_abs_err']:.4f}",
                    f"{b['rmse']:.4f}",
                    f"{b['mean_abs_err'] / b['mean_sigma']:.3f}" if b["mean_sigma"] > 0 else "-",
                ]
                for b in self.bins
            ],
        )
        branches = markdown_table(
            ["resolver branch", "count", "share", "abs err of resolved log10 GSD"],
            [
                [
                    b,
                    self.branch_counts[b],
                    f"{self.branch_shares[b]:.3f}",
                    "-" if self.branch_abs_err[b] is None else f"{self.branch_abs_err[b]:.4f}",
                ]
                for b in BRANCHES
            ],
        )
        parts = [
            "Units: log10 GSD. ratio = E|mu - log10 g| / mean sigma; a calibrated Gaussian "
            f"gives {GAUSSIAN_RATIO:.3f} (above: over-confident, below: under-confident) "
            "and covers 0.683 / 0.954 within 1 / 2 sigma.",
            "",
            head,
            "",
            "Reliability (equal-count bins of predicted sigma):",
            "",
            bins,
            "",
            f"Resolver (Eq. 5, sigma_tau = {self.sigma_tau:g}):",
            "",
            branches,
        ]
        if self.by_cues:
            parts += [
                "",
                "Sigma with and without scale cues:",
                "",
                markdown_table(
                    ["images", "n", "mean sigma", "median sigma", "mean abs err", "share estimate"],
                    [
                        [
                            k,
                            v["n"],
                            _f(v["mean_sigma"]),
                            _f(v["median_sigma"]),
                            _f(v["mean_abs_err"]),
                            _f(v["share_estimate"]),
                        ]
                        for k, v in self.by_cues.items()
                    ],
                ),
            ]
        return "\n".join(parts)


def _f(v: float | None) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def _mean(a: np.ndarray) -> float | None:
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else None


def sseu_calibration(
    mu: Sequence[float] | np.ndarray,
    logvar: Sequence[float] | np.ndarray,
    true_log10: Sequence[float] | np.ndarray,
    has_cues: Sequence[bool] | np.ndarray | None = None,
    *,
    metadata: Sequence[GSD | None] | None = None,
    sigma_tau: float = SIGMA_TAU,
    neutral_m: float = NEUTRAL_GSD_M,
    n_bins: int = 8,
) -> CalibrationStats:
    """Calibration of SSE-U predictions against true GSDs.

    Args:
        mu: (N,) predicted log10 GSD.
        logvar: (N,) predicted log variance of log10 GSD.
        true_log10: (N,) true log10 GSD (NaN where unknown).
        has_cues: (N,) whether each scene has scale cues (optional).
        metadata: (N,) the GSD metadata the resolver would see (default: none, so the
            resolver picks between the estimate and the neutral fallback, the regime
            SSE-U exists for).
        sigma_tau: Eq. 5 threshold.
        neutral_m: Eq. 5 fallback GSD.
        n_bins: Reliability bins (equal-count; fewer when sigma has few distinct values).

    Raises:
        ValueError: For arrays of different lengths, no sample with a true GSD, or
            non-finite mu / logvar.
    """
    mu_a = np.asarray(mu, dtype=np.float64).ravel()
    lv = np.asarray(logvar, dtype=np.float64).ravel()
    true = np.asarray(true_log10, dtype=np.float64).ravel()
    n = mu_a.size
    if lv.size != n or true.size != n:
        raise ValueError(f"mu ({n}), logvar ({lv.size}) and true_log10 ({true.size}) differ")
    if not (np.isfinite(mu_a).all() and np.isfinite(lv).all()):
        raise ValueError("mu and logvar must be finite (is the SSE-U head producing NaN?)")
    cues = None if has_cues is None else np.asarray(has_cues, dtype=bool).ravel()
    if cues is not None and cues.size != n:
        raise ValueError(f"has_cues has {cues.size} entries for {n} samples")
    if metadata is not None and len(metadata) != n:
        raise ValueError(f"metadata has {len(metadata)} entries for {n} samples")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")

    sigma = np.exp(0.5 * lv)
    known = np.isfinite(true)
    if not known.any():
        raise ValueError("no sample has a true GSD: calibration needs ground truth")
    err = np.full(n, np.nan)
    err[known] = np.abs(mu_a[known] - true[known])
    e, s, v = err[known], sigma[known], lv[known]
    mae, mean_sigma = float(e.mean()), float(s.mean())

    # reliability: equal-count bins of sigma (ties kept together)
    order = np.argsort(s, kind="stable")
    bins = []
    for chunk in np.array_split(order, min(n_bins, e.size)):
        if chunk.size == 0:
            continue
        if bins and s[chunk[0]] == bins[-1]["sigma_hi"]:  # merge ties into the previous bin
            prev = bins.pop()
            chunk = np.concatenate([prev["_idx"], chunk])
        bins.append(
            {
                "_idx": chunk,
                "sigma_lo": float(s[chunk].min()),
                "sigma_hi": float(s[chunk].max()),
                "n": int(chunk.size),
                "mean_sigma": float(s[chunk].mean()),
                "mean_abs_err": float(e[chunk].mean()),
                "rmse": float(np.sqrt((e[chunk] ** 2).mean())),
            }
        )
    for b in bins:
        del b["_idx"]

    # the resolver
    meta = metadata if metadata is not None else [None] * n
    decisions = [
        decide_gsd(meta[i], float(mu_a[i]), float(lv[i]), sigma_tau=sigma_tau, neutral_m=neutral_m)
        for i in range(n)
    ]
    branches = np.asarray([d.branch.value for d in decisions], dtype=object)
    resolved = np.asarray([d.log10_gsd for d in decisions])
    counts = {b: int((branches == b).sum()) for b in BRANCHES}
    res_err = np.abs(resolved - true)
    branch_err = {b: _mean(res_err[(branches == b) & known]) for b in BRANCHES}

    by_cues: dict[str, dict[str, Any]] = {}
    if cues is not None:
        for name, m in (("with cues", cues), ("without cues", ~cues)):
            by_cues[name] = {
                "n": int(m.sum()),
                "mean_sigma": _mean(sigma[m]),
                "median_sigma": float(np.median(sigma[m])) if m.any() else None,
                "mean_abs_err": _mean(err[m]),
                "share_estimate": float((branches[m] == Branch.ESTIMATE.value).mean())
                if m.any()
                else None,
            }
    return CalibrationStats(
        n=n,
        n_with_truth=int(known.sum()),
        mae_log10=mae,
        rmse_log10=float(np.sqrt((e**2).mean())),
        mean_sigma=mean_sigma,
        ratio=mae / mean_sigma if mean_sigma > 0 else float("inf"),
        coverage_1sigma=float((e < s).mean()),
        coverage_2sigma=float((e < 2 * s).mean()),
        nll=float((0.5 * e**2 / np.exp(v) + 0.5 * v).mean()),
        bins=bins,
        branch_counts=counts,
        branch_abs_err=branch_err,
        by_cues=by_cues,
        sigma_tau=sigma_tau,
        sigma=sigma,
        abs_err=err,
        has_cues=cues,
        branches=branches,
    )


def plot_calibration(
    stats: CalibrationStats, path: str | Path, *, title: str = "SSE-U calibration"
) -> Path:
    """Three panels: reliability (binned sigma vs mean |error|, with the calibrated
    Gaussian line), sigma distributions with and without scale cues, resolver branches."""
    fig = new_figure((13.0, 4.2))
    ax_rel, ax_sig, ax_br = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.2, 1.2, 0.8]})
    fig.suptitle(
        f"{title}: ratio E|err| / mean sigma = {stats.ratio:.3f} (calibrated Gaussian "
        f"{GAUSSIAN_RATIO:.3f}), n = {stats.n_with_truth}"
    )

    ms = np.asarray([b["mean_sigma"] for b in stats.bins])
    me = np.asarray([b["mean_abs_err"] for b in stats.bins])
    top = float(max(ms.max(), me.max(), stats.sigma_tau) * 1.15)
    line = np.linspace(0.0, top, 2)
    known = np.isfinite(stats.abs_err)
    ax_rel.scatter(
        stats.sigma[known],
        stats.abs_err[known],
        s=6,
        color="0.65",
        alpha=0.35,
        lw=0,
        label="samples",
    )
    ax_rel.plot(line, GAUSSIAN_RATIO * line, "--", color="C2", label="calibrated: 0.80 sigma")
    ax_rel.plot(line, line, ":", color="0.4", lw=1, label="|err| = sigma")
    ax_rel.plot(ms, me, "o-", color="C0", lw=1.8, label="binned mean |err|")
    ax_rel.axvline(
        stats.sigma_tau, color="C3", lw=1, ls="-.", label=f"sigma_tau = {stats.sigma_tau:g}"
    )
    ax_rel.set_xlim(0, top)
    ax_rel.set_ylim(0, top)
    ax_rel.set_xlabel("predicted sigma (log10 GSD)")
    ax_rel.set_ylabel("observed |mu - log10 g|")
    ax_rel.set_title("reliability")
    ax_rel.grid(True, alpha=0.3)
    ax_rel.legend(fontsize=7, loc="upper left")

    edges = np.linspace(0.0, float(stats.sigma.max()) * 1.05 + 1e-9, 25)
    if stats.has_cues is not None:
        for m, name, col in (
            (stats.has_cues, "with cues", "C0"),
            (~stats.has_cues, "without cues", "C1"),
        ):
            if m.any():
                ax_sig.hist(
                    stats.sigma[m],
                    bins=edges,
                    alpha=0.55,
                    color=col,
                    label=f"{name} (n={int(m.sum())}, mean {stats.sigma[m].mean():.3f})",
                )
    else:
        ax_sig.hist(stats.sigma, bins=edges, alpha=0.6, color="C0", label="all images")
    ax_sig.axvline(stats.sigma_tau, color="C3", lw=1, ls="-.", label="sigma_tau")
    ax_sig.set_xlabel("predicted sigma (log10 GSD)")
    ax_sig.set_ylabel("images (scenes or chips)")
    ax_sig.set_title("sigma by scale cues")
    ax_sig.legend(fontsize=7)

    shares = stats.branch_shares
    bars = ax_br.bar(list(BRANCHES), [shares[b] for b in BRANCHES], color=["C4", "C0", "C7"])
    for bar, b in zip(bars, BRANCHES, strict=True):
        ax_br.annotate(
            str(stats.branch_counts[b]),
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax_br.set_ylim(0, 1.1)
    ax_br.set_ylabel("share of samples")
    ax_br.set_title("resolver branch (Eq. 5)")
    return save_figure(fig, path)
