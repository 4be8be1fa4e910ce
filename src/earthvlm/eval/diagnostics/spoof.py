"""GSD spoofing (ScaleEarth sec. 3.3 and App. A.3): same image and question, another GSD.

A scale-conditioned model should answer best at the true GSD and worse as the claimed
GSD moves away (a bell on log GSD); a model that ignores the GSD gives a flat curve.
For questions whose answer is one of an *ambiguous pair* (two classes that look alike
and differ only in size, e.g. car vs building), a wrong claimed scale should flip the
answer to the other member; :attr:`SpoofCurve.flip_share` counts that.

The model enters only through a score function, so this module is numpy-only::

    def score(samples: Sequence[SpoofSample], gsd_m: np.ndarray) -> Sequence[str]:
        ...  # run the model on each sample's image and question, claiming gsd_m[i]

Two sweeps: *absolute* (``gsd_values``; the paper's 13 log-spaced values from 0.01 m
to 30 m, :data:`PAPER_SPOOF_GSDS_M`), where every sample claims the same GSD, and
*offset* (``deltas``; ``g* x 10**delta`` of each sample's true GSD g*), which suits a
test set whose true GSDs differ.

Statistics: accuracy on a class-balanced subset (equal counts per true answer, drawn
with the seed), with a percentile bootstrap CI that resamples samples with replacement
(one resample is shared by every GSD of the sweep, so the curves' CIs are paired).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from earthvlm.eval.diagnostics.report import (
    TIER_BOUNDARIES_M,
    fmt_ci,
    mark_gsd_axis,
    markdown_table,
    new_figure,
    save_figure,
)

#: ScaleEarth App. A.3: 13 log-spaced spoofed GSDs from 0.01 m to 30 m.
PAPER_SPOOF_GSDS_M: tuple[float, ...] = tuple(
    float(v) for v in np.logspace(-2.0, math.log10(30.0), 13)
)
#: ScaleEarth sec. 3.3: offsets delta in [-2, 2] (g* x 10**delta); 13 values as above.
PAPER_SPOOF_DELTAS: tuple[float, ...] = tuple(float(v) for v in np.linspace(-2.0, 2.0, 13))


@dataclass(frozen=True)
class SpoofSample:
    """One question to spoof.

    Attributes:
        answer: The correct answer.
        gsd_m: The true GSD of the image, metres per pixel.
        item: Whatever the score function needs (image, question, a record); opaque here.
    """

    answer: str
    gsd_m: float
    item: Any = None


#: ``score_fn(samples, gsd_m_per_sample) -> one predicted answer per sample``.
ScoreFn = Callable[[Sequence[SpoofSample], np.ndarray], Sequence[str]]


def normalise_answer(answer: str) -> str:
    """Case-folded, whitespace-collapsed, without a trailing full stop."""
    return " ".join(str(answer).casefold().split()).rstrip(".").strip()


def balanced_subset(
    answers: Sequence[str], *, n_per_class: int | None = None, seed: int = 0
) -> np.ndarray:
    """Indices of a class-balanced subset: ``n_per_class`` samples of every true answer.

    ``n_per_class=None`` takes as many as the rarest class has. Deterministic for a seed;
    the indices come back sorted.

    Raises:
        ValueError: If there are no samples, or a class has fewer than ``n_per_class``.
    """
    norm = [normalise_answer(a) for a in answers]
    if not norm:
        raise ValueError("no samples to spoof")
    classes = sorted(set(norm))
    by_class = {c: np.flatnonzero(np.asarray(norm, dtype=object) == c) for c in classes}
    smallest = min(len(v) for v in by_class.values())
    k = smallest if n_per_class is None else int(n_per_class)
    if k < 1 or k > smallest:
        rare = min(by_class, key=lambda c: len(by_class[c]))
        raise ValueError(
            f"n_per_class={n_per_class} but class {rare!r} has {smallest} sample(s); "
            f"ask for at most {smallest} per class or add samples"
        )
    rng = np.random.default_rng([seed, 0])
    picked = [rng.choice(by_class[c], size=k, replace=False) for c in classes]
    return np.sort(np.concatenate(picked))


def bootstrap_ci(
    values: np.ndarray, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``values`` (N,), resampling with replacement."""
    v = np.asarray(values, dtype=np.float64)[None, :]
    counts = _resample_counts(v.shape[1], n_boot, seed)
    lo, hi = _percentile_ci(_weighted_means(v, counts), level)
    return float(lo[0]), float(hi[0])


def _resample_counts(n: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n): how often each sample is drawn in each bootstrap resample."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng([seed, 1])
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot)


def _weighted_means(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(n_boot, G): the mean of each row of ``values`` (G, N) under each resample."""
    totals = counts.sum(axis=1, keepdims=True).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (counts @ values.T) / totals


def _percentile_ci(boot: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    tail = 100.0 * (1.0 - level) / 2.0
    with np.errstate(invalid="ignore"):
        lo, hi = np.nanpercentile(boot, [tail, 100.0 - tail], axis=0)
    return lo, hi


def _partners(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for a, b in pairs:
        a, b = normalise_answer(a), normalise_answer(b)
        if a == b:
            raise ValueError(f"ambiguous pair ({a!r}, {b!r}) names one answer twice")
        for x, y in ((a, b), (b, a)):
            if out.get(x, y) != y:
                raise ValueError(f"answer {x!r} is in two ambiguous pairs ({out[x]!r}, {y!r})")
            out[x] = y
    return out


@dataclass(frozen=True, eq=False)
class SpoofCurve:
    """Accuracy and flip share of one model over a spoofing sweep (G points, N samples).

    Attributes:
        x: The sweep: spoofed GSD in metres (``mode="absolute"``) or the offset delta
            (``mode="offset"``, claimed GSD = true GSD x 10**delta).
        mode: ``"absolute"`` or ``"offset"``.
        accuracy: (G,) share of correct answers.
        ci_low, ci_high: (G,) percentile bootstrap CI of the accuracy.
        flip_share: (G,) among samples whose true answer belongs to an ambiguous pair,
            the share answering the *other* member (NaN without such samples).
        flip_ci_low, flip_ci_high: (G,) its bootstrap CI.
        out_of_range_share: (G,) share of samples whose claimed GSD is outside
            ``train_range_m`` (0 without a range).
        predictions: (G, N) the normalised answers.
        answers: (N,) the normalised true answers.
        true_gsd_m: (N,) the true GSDs.
        classes: The answer classes of the balanced subset.
        n_per_class: Samples per class.
        n_flip_eligible: Samples whose true answer has a pair partner.
        train_range_m: (lo, hi) GSD range seen in training, or None.
        n_boot, seed, level: Bootstrap settings.
    """

    x: np.ndarray
    mode: str
    accuracy: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    flip_share: np.ndarray
    flip_ci_low: np.ndarray
    flip_ci_high: np.ndarray
    out_of_range_share: np.ndarray
    predictions: np.ndarray
    answers: np.ndarray
    true_gsd_m: np.ndarray
    classes: tuple[str, ...]
    n_per_class: int
    n_flip_eligible: int
    train_range_m: tuple[float, float] | None
    n_boot: int
    seed: int
    level: float = 0.95
    pairs: tuple[tuple[str, str], ...] = field(default=())

    @property
    def n(self) -> int:
        return int(self.answers.shape[0])

    @property
    def chance(self) -> float:
        """Accuracy of a constant answer on the balanced subset: 1 / number of classes."""
        return 1.0 / len(self.classes)

    @property
    def out_of_range(self) -> np.ndarray:
        """(G,) True where some sample's claimed GSD leaves the training range."""
        return self.out_of_range_share > 0

    @property
    def is_flat(self) -> bool:
        """True when the accuracy is the same at every point of the sweep (no peak)."""
        return bool(np.ptp(self.accuracy) == 0)

    @property
    def peak(self) -> tuple[float, float] | None:
        """(x, accuracy) at the best point of the sweep (the first, on ties); ``None``
        for a flat curve, which has no peak."""
        if self.is_flat:
            return None
        i = int(np.argmax(self.accuracy))
        return float(self.x[i]), float(self.accuracy[i])

    def _peak_text(self) -> str:
        if self.peak is None:
            return f"Flat: accuracy {self.accuracy[0]:.3f} at every claimed GSD (no peak). "
        from earthvlm.eval.diagnostics.stats import cochran_q, correct_matrix, fmt_p

        px, pacc = self.peak
        where = f"{'GSD' if self.mode == 'absolute' else 'delta'} {px:.3g}"
        q = cochran_q(correct_matrix(self))
        if q.p_value >= 0.05:
            return (
                f"Highest {pacc:.3f} at {where}, but the answers do not differ significantly "
                f"across the sweep (Cochran's Q p {fmt_p(q.p_value, eq=True)}). "
            )
        return f"Peak {pacc:.3f} at {where}. "

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "x": self.x.tolist(),
            "accuracy": self.accuracy.tolist(),
            "ci_low": self.ci_low.tolist(),
            "ci_high": self.ci_high.tolist(),
            "flip_share": _nan_to_none(self.flip_share),
            "flip_ci_low": _nan_to_none(self.flip_ci_low),
            "flip_ci_high": _nan_to_none(self.flip_ci_high),
            "out_of_range": self.out_of_range.tolist(),
            "out_of_range_share": self.out_of_range_share.tolist(),
            "n": self.n,
            "classes": list(self.classes),
            "n_per_class": self.n_per_class,
            "chance": self.chance,
            "n_flip_eligible": self.n_flip_eligible,
            "pairs": [list(p) for p in self.pairs],
            "train_range_m": list(self.train_range_m) if self.train_range_m else None,
            "true_gsd_m_range": [float(self.true_gsd_m.min()), float(self.true_gsd_m.max())],
            "n_boot": self.n_boot,
            "seed": self.seed,
            "level": self.level,
        }

    def to_markdown(self) -> str:
        head = "spoofed GSD (m)" if self.mode == "absolute" else "delta (x 10^delta)"
        pct = f"{round(100 * self.level)} % CI"
        rows = []
        for i, x in enumerate(self.x):
            flip = (
                "-"
                if math.isnan(self.flip_share[i])
                else f"{self.flip_share[i]:.3f} {fmt_ci(self.flip_ci_low[i], self.flip_ci_high[i])}"
            )
            if self.train_range_m is None:
                rng = "-"
            elif self.out_of_range_share[i] == 0:
                rng = "in"
            else:
                rng = f"OUT ({self.out_of_range_share[i]:.0%})"
            rows.append(
                [
                    f"{x:.3g}",
                    f"{self.accuracy[i]:.3f}",
                    fmt_ci(self.ci_low[i], self.ci_high[i]),
                    flip,
                    rng,
                ]
            )
        g = self.true_gsd_m
        true = f"{g.min():.3g} m" if g.min() == g.max() else f"{g.min():.3g}-{g.max():.3g} m"
        lines = [
            f"N = {self.n} ({len(self.classes)} classes x {self.n_per_class}; chance "
            f"{self.chance:.3f}), true GSD {true}, train range "
            + (
                f"{self.train_range_m[0]:.3g}-{self.train_range_m[1]:.3g} m"
                if self.train_range_m
                else "not given"
            )
            + f", bootstrap {self.n_boot} resamples (seed {self.seed}). "
            + self._peak_text()
            + f"Flip share over {self.n_flip_eligible} pair-member sample(s).",
            "",
            markdown_table([head, "accuracy", pct, f"flip share ({pct})", "train range"], rows),
        ]
        return "\n".join(lines)


def _nan_to_none(a: np.ndarray) -> list[float | None]:
    return [None if math.isnan(v) else float(v) for v in a]


def spoof_curve(
    score_fn: ScoreFn,
    samples: Sequence[SpoofSample],
    gsd_values: Sequence[float] | None = None,
    *,
    deltas: Sequence[float] | None = None,
    train_range_m: tuple[float, float] | None = None,
    pairs: Iterable[tuple[str, str]] = (),
    n_per_class: int | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    batch_size: int | None = None,
) -> SpoofCurve:
    """Run a spoofing sweep and score it.

    Args:
        score_fn: ``score_fn(samples, gsd_m) -> answers``; ``gsd_m`` is a float array
            with the claimed GSD of each sample (the caller wraps its model).
        samples: The questions, with true answers and GSDs.
        gsd_values: Absolute sweep, metres (e.g. :data:`PAPER_SPOOF_GSDS_M`).
        deltas: Offset sweep instead: claim ``true GSD x 10**delta``.
        train_range_m: (lo, hi) GSD range of the training data; claimed values outside
            it are flagged (the model never saw them; micro-ScaleEarth broke there).
        pairs: Ambiguous answer pairs, e.g. ``[("car", "building")]``.
        n_per_class: Balanced-subset size per class (default: the rarest class's count).
        n_boot: Bootstrap resamples.
        level: CI level.
        seed: Draws the balanced subset and the bootstrap resamples.
        batch_size: Call ``score_fn`` on at most this many samples at a time.

    Raises:
        ValueError: For both or neither of ``gsd_values`` and ``deltas``, a non-positive
            GSD, a bad range, or a score function that returns the wrong count.
    """
    if (gsd_values is None) == (deltas is None):
        raise ValueError("give exactly one of gsd_values (absolute sweep) or deltas (offsets)")
    if train_range_m is not None:
        lo, hi = (float(v) for v in train_range_m)
        if not 0 < lo <= hi:
            raise ValueError(
                f"train_range_m must be (lo, hi) with 0 < lo <= hi, got {train_range_m}"
            )
        train_range_m = (lo, hi)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    idx = balanced_subset([s.answer for s in samples], n_per_class=n_per_class, seed=seed)
    subset = [samples[i] for i in idx]
    answers = np.asarray([normalise_answer(s.answer) for s in subset], dtype=object)
    true_gsd = np.asarray([float(s.gsd_m) for s in subset])
    if not (np.isfinite(true_gsd) & (true_gsd > 0)).all():
        raise ValueError("every sample needs a finite true GSD > 0 (SpoofSample.gsd_m)")
    mode = "absolute" if gsd_values is not None else "offset"
    x = np.asarray(gsd_values if gsd_values is not None else deltas, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError("the sweep must be a non-empty 1-D sequence")
    if mode == "absolute" and not (x > 0).all():
        raise ValueError(f"spoofed GSDs must be > 0 m, got {x.tolist()}")

    partner = _partners(pairs)
    eligible = np.asarray([a in partner for a in answers])
    other = np.asarray([partner.get(a, "") for a in answers], dtype=object)
    n, g = len(subset), x.size
    preds = np.empty((g, n), dtype=object)
    oor = np.zeros(g)
    for i, v in enumerate(x):
        claimed = np.full(n, v) if mode == "absolute" else true_gsd * 10.0**v
        preds[i] = _score(score_fn, subset, claimed, batch_size)
        if train_range_m is not None:
            out = (claimed < train_range_m[0]) | (claimed > train_range_m[1])
            oor[i] = out.mean()
    correct = (preds == answers[None, :]).astype(np.float64)
    flipped = (preds == other[None, :]) & eligible[None, :]

    counts = _resample_counts(n, n_boot, seed)
    acc_lo, acc_hi = _percentile_ci(_weighted_means(correct, counts), level)
    if eligible.any():
        e = np.flatnonzero(eligible)
        flip = flipped[:, e].mean(axis=1)
        flip_lo, flip_hi = _percentile_ci(
            _weighted_means(flipped[:, e].astype(np.float64), counts[:, e]), level
        )
    else:
        flip = flip_lo = flip_hi = np.full(g, np.nan)
    return SpoofCurve(
        x=x,
        mode=mode,
        accuracy=correct.mean(axis=1),
        ci_low=acc_lo,
        ci_high=acc_hi,
        flip_share=flip,
        flip_ci_low=flip_lo,
        flip_ci_high=flip_hi,
        out_of_range_share=oor,
        predictions=preds,
        answers=answers,
        true_gsd_m=true_gsd,
        classes=tuple(sorted(set(answers.tolist()))),
        n_per_class=n // len(set(answers.tolist())),
        n_flip_eligible=int(eligible.sum()),
        train_range_m=train_range_m,
        n_boot=n_boot,
        seed=seed,
        level=level,
        pairs=tuple(sorted({tuple(sorted(p)) for p in partner.items()})),
    )


def _score(
    score_fn: ScoreFn, subset: list[SpoofSample], claimed: np.ndarray, batch_size: int | None
) -> np.ndarray:
    step = batch_size or len(subset)
    out: list[str] = []
    for start in range(0, len(subset), step):
        chunk = subset[start : start + step]
        got = list(score_fn(chunk, claimed[start : start + step].copy()))
        if len(got) != len(chunk):
            raise ValueError(
                f"score_fn returned {len(got)} answers for {len(chunk)} samples; it must "
                "return one answer string per sample, in order"
            )
        out += [normalise_answer(a) for a in got]
    return np.asarray(out, dtype=object)


def plot_spoof_curves(
    curves: Mapping[str, SpoofCurve],
    path: str | Path,
    *,
    true_gsd_m: float | tuple[float, float] | None = None,
    tier_boundaries_m: Sequence[float] = TIER_BOUNDARIES_M,
    title: str = "GSD spoofing",
) -> Path:
    """Every variant on one log axis: accuracy with its CI band (top) and flip share
    (bottom, when any variant has pair members).

    Marked: the true GSD (a line, or a band for a range of true GSDs; taken from the
    curves when not given), the tier boundaries, chance, and the training range (grey
    outside it; points whose claimed GSD leaves it are drawn hollow). An offset sweep is
    plotted over the factor claimed / true GSD, with tier boundaries only when one true
    GSD is given.

    Raises:
        ValueError: For no curves, or absolute and offset sweeps mixed.
    """
    if not curves:
        raise ValueError("no spoof curves to plot")
    modes = {c.mode for c in curves.values()}
    if len(modes) > 1:
        raise ValueError("cannot plot absolute and offset sweeps on one axis; plot them apart")
    mode = modes.pop()
    first = next(iter(curves.values()))
    if true_gsd_m is None:
        lo, hi = float(first.true_gsd_m.min()), float(first.true_gsd_m.max())
        true_gsd_m = lo if lo == hi else (lo, hi)
    show_flip = any(c.n_flip_eligible for c in curves.values())
    fig = new_figure(figsize=(10.0, 6.5 if show_flip else 4.5))
    if show_flip:
        ax, axf = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2.2, 1]})
        axes = [ax, axf]
    else:
        ax, axf = fig.subplots(1, 1), None
        axes = [ax]

    def xs(c: SpoofCurve) -> np.ndarray:
        return c.x if mode == "absolute" else 10.0**c.x

    colours = [f"C{i}" for i in range(10)]
    for i, (name, c) in enumerate(curves.items()):
        col = colours[i % len(colours)]
        x = xs(c)
        ax.fill_between(x, c.ci_low, c.ci_high, color=col, alpha=0.18, lw=0)
        ax.plot(x, c.accuracy, "-", color=col, lw=1.8, label=name)
        _markers(ax, x, c.accuracy, c.out_of_range, col)
        if axf is not None and c.n_flip_eligible:
            axf.fill_between(x, c.flip_ci_low, c.flip_ci_high, color=col, alpha=0.18, lw=0)
            axf.plot(x, c.flip_share, "-", color=col, lw=1.5)
            _markers(axf, x, c.flip_share, c.out_of_range, col)
    chances = {round(c.chance, 6) for c in curves.values()}
    for k, ch in enumerate(sorted(chances)):
        ax.axhline(ch, color="0.4", ls=":", lw=1.0, label="chance" if k == 0 else None)
    # one patch for every variant's band (each is drawn in its variant's colour)
    band = f"{round(100 * first.level)} % CI (in each variant's colour)"
    ax.fill_between([], [], [], color="C0", alpha=0.18, lw=0, label=band)
    if any(c.out_of_range.any() for c in curves.values()):
        ax.plot([], [], "o", mfc="white", mec="0.3", ms=5, label="claimed GSD outside train range")

    # the true GSD, the tier boundaries and the training range
    xmin = min(float(xs(c).min()) for c in curves.values())
    xmax = max(float(xs(c).max()) for c in curves.values())
    single = not isinstance(true_gsd_m, tuple)
    relative = None if mode == "absolute" else (float(true_gsd_m) if single else None)  # type: ignore[arg-type]
    for a in axes:
        top = a is ax
        a.set_xscale("log")
        if mode == "offset":
            a.axvline(1.0, color="black", lw=1.4, label="true GSD" if top else None)
        elif single:
            a.axvline(true_gsd_m, color="black", lw=1.4, label="true GSD" if top else None)
        else:  # edges and a hatch: it must not read as the grey "outside train range"
            lo, hi = true_gsd_m  # type: ignore[misc]
            label = "true GSD range" if top else None
            a.axvspan(lo, hi, facecolor="none", edgecolor="0.45", hatch="/", lw=0.6, label=label)
        if mode == "absolute" or relative:
            mark_gsd_axis(a, tier_boundaries_m, relative_to_m=relative, annotate=top, legend=top)
        rng = first.train_range_m if mode == "absolute" else None
        if rng is not None:
            label = "outside train range" if top else None
            a.axvspan(xmin / 2, rng[0], color="0.8", alpha=0.45, lw=0, label=label)
            a.axvspan(rng[1], xmax * 2, color="0.8", alpha=0.45, lw=0)
        a.set_xlim(xmin / 1.3, xmax * 1.3)
        a.grid(True, which="major", alpha=0.3)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel(f"accuracy ({round(100 * first.level)} % CI)")
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    xlabel = "claimed GSD (m)" if mode == "absolute" else "claimed / true GSD (10^delta)"
    if axf is not None:
        axf.set_ylim(-0.02, 1.02)
        axf.set_ylabel("flip share\n(other pair member)")
        axf.set_xlabel(xlabel)
    else:
        ax.set_xlabel(xlabel)
    return save_figure(fig, path)


def _markers(ax: Any, x: np.ndarray, y: np.ndarray, oor: np.ndarray, colour: str) -> None:
    ax.plot(x[~oor], y[~oor], "o", color=colour, ms=4.5)
    if oor.any():
        ax.plot(x[oor], y[oor], "o", mfc="white", mec=colour, ms=5.0)
