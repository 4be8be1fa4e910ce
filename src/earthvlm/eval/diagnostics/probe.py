"""The rank probe (ScaleEarth App. A.4, the "tau-decoupling probe").

For each rank dimension k of the CS-HLoRA bottleneck (N samples x r latents, e.g. from
:class:`~earthvlm.eval.diagnostics.gates.BottleneckRecorder`) and each visual factor,
fit a ridge regression from the scalar latent ``z_k`` to the factor and report its
held-out R^2: how much of the factor is linearly recoverable from that one dimension.
The paper's factors are texture (Gabor energy), geometry (Canny edge density) and
scene identity (:mod:`.factors` computes the first two); its figure shows a
block-diagonal rank-group x factor pattern.

Choices the paper leaves open, made here:

* held-out = K-fold cross-validation (default 5 folds, shuffled with the seed); R^2 is
  ``1 - SSE / SST`` over the pooled out-of-fold predictions (0: no better than the
  mean; it can be negative);
* ridge on the standardised scalar with penalty ``ridge_lambda`` (the slope is the
  covariance over ``1 + lambda``); a constant latent predicts the mean;
* a categorical factor (scene identity) is one-hot encoded; its cell is the pooled R^2
  over the one-hot columns, ``1 - sum SSE / sum SST`` (a variance-weighted mean of the
  per-class R^2, which :attr:`ProbeResult.per_class` keeps). Not an accuracy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from earthvlm.eval.diagnostics.report import markdown_table, new_figure, save_figure


@dataclass(frozen=True, eq=False)
class ProbeResult:
    """Held-out R^2 per rank and factor.

    Attributes:
        r2: (r, F) held-out R^2 of the scalar probe from rank k to factor f.
        factors: The F factor names, in column order.
        kinds: Factor -> ``"continuous"`` or ``"categorical"``.
        per_class: Categorical factor -> class -> (r,) held-out R^2 of its one-hot column.
        groups: Group name -> rank indices (rows of the heatmap, in order).
        n: Samples.
        n_folds, ridge_lambda, seed: The protocol.
    """

    r2: np.ndarray
    factors: tuple[str, ...]
    kinds: dict[str, str]
    per_class: dict[str, dict[str, np.ndarray]]
    groups: dict[str, np.ndarray]
    n: int
    n_folds: int
    ridge_lambda: float
    seed: int

    def group_means(self) -> np.ndarray:
        """(G, F) mean R^2 over each group's ranks (NaN cells ignored)."""
        return np.stack([np.nanmean(self.r2[idx], axis=0) for idx in self.groups.values()])

    def to_dict(self) -> dict[str, Any]:
        gm = self.group_means()
        return {
            "factors": list(self.factors),
            "kinds": self.kinds,
            "n": self.n,
            "n_folds": self.n_folds,
            "ridge_lambda": self.ridge_lambda,
            "seed": self.seed,
            "groups": {g: idx.tolist() for g, idx in self.groups.items()},
            "r2": _list(self.r2),
            "group_mean_r2": {
                g: dict(zip(self.factors, _list(gm[i]), strict=True))
                for i, g in enumerate(self.groups)
            },
            "per_class_r2": {
                f: {c: _list(v) for c, v in d.items()} for f, d in self.per_class.items()
            },
        }

    def to_markdown(self) -> str:
        gm = self.group_means()
        head = (
            f"N = {self.n}, {self.n_folds}-fold held-out R^2 of a ridge probe (lambda = "
            f"{self.ridge_lambda:g}) from each scalar rank latent to each factor; seed "
            f"{self.seed}. Categorical factors ("
            + (", ".join(f for f, k in self.kinds.items() if k == "categorical") or "none")
            + "): pooled R^2 over their one-hot columns."
        )
        summary = markdown_table(
            ["group (ranks)", *self.factors],
            [
                [f"{g} ({len(idx)})", *(_r2(v) for v in gm[i])]
                for i, (g, idx) in enumerate(self.groups.items())
            ],
        )
        rows = []
        for g, idx in self.groups.items():
            for k in idx:
                rows.append([int(k), g, *(_r2(v) for v in self.r2[k])])
        full = markdown_table(["rank", "group", *self.factors], rows)
        return "\n".join([head, "", "Mean R^2 per group:", "", summary, "", "Per rank:", "", full])


def _r2(v: float, digits: int = 3) -> str:
    """R^2 for tables: ``-`` for NaN, no ``-0.000``."""
    if np.isnan(v):
        return "-"
    text = f"{v:.{digits}f}"
    return text[1:] if float(text) == 0 and text.startswith("-") else text


def _list(a: np.ndarray) -> list:
    return [None if isinstance(v, float) and np.isnan(v) else v for v in a.tolist()]


def _encode(values: np.ndarray, categorical: bool) -> tuple[np.ndarray, list[str] | None]:
    if not categorical:
        y = values.astype(np.float64)
        if not np.isfinite(y).all():
            raise ValueError("a continuous factor has NaN or inf values")
        return y[:, None], None
    labels = [str(v) for v in values.tolist()]
    classes = sorted(set(labels))
    onehot = np.zeros((len(labels), len(classes)))
    onehot[np.arange(len(labels)), [classes.index(lab) for lab in labels]] = 1.0
    return onehot, classes


def _oof_sse(
    x: np.ndarray, y: np.ndarray, folds: list[np.ndarray], lam: float
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold SSE (r, m) of scalar ridge probes, and the SST (m,) around the mean."""
    n, r = x.shape
    sse = np.zeros((r, y.shape[1]))
    everything = np.arange(n)
    for test in folds:
        train = np.setdiff1d(everything, test, assume_unique=True)
        xm, xs = x[train].mean(0), x[train].std(0)
        scale = np.where(xs > 0, xs, 1.0)
        live = xs > 0  # a constant latent carries nothing: predict the mean
        ztr = (x[train] - xm) / scale * live
        zte = (x[test] - xm) / scale * live
        ym = y[train].mean(0)
        w = ztr.T @ (y[train] - ym) / len(train) / (1.0 + lam)  # (r, m)
        pred = ym[None, None, :] + zte[:, :, None] * w[None, :, :]  # (n_test, r, m)
        sse += ((y[test][:, None, :] - pred) ** 2).sum(0)
    sst = ((y - y.mean(0)) ** 2).sum(0)
    return sse, sst


def rank_probe(
    latents: np.ndarray,
    factors: Mapping[str, Sequence[Any] | np.ndarray],
    *,
    groups: Mapping[str, Sequence[int]] | None = None,
    categorical: Sequence[str] | None = None,
    n_folds: int = 5,
    ridge_lambda: float = 1e-3,
    seed: int = 0,
) -> ProbeResult:
    """Held-out R^2 of per-rank scalar ridge probes.

    Args:
        latents: (N, r) bottleneck latents.
        factors: Name -> (N,) values; numeric arrays are continuous, string or object
            arrays categorical (or name them in ``categorical``).
        groups: Group name -> rank indices, e.g.
            ``gates.rank_groups(config.tau_init())`` (default: one group ``all``).
        categorical: Factor names to one-hot encode even when numeric.
        n_folds: Cross-validation folds (>= 2).
        ridge_lambda: Ridge penalty on the standardised latent.
        seed: Shuffles the folds.

    Raises:
        ValueError: For mismatched lengths, too few samples for the folds, or groups that
            name ranks outside ``0..r-1``.
    """
    x = np.asarray(latents, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"latents must be (N, r), got shape {x.shape}")
    n, r = x.shape
    if not np.isfinite(x).all():
        raise ValueError("latents have NaN or inf values")
    if n_folds < 2 or n < 2 * n_folds:
        raise ValueError(
            f"need n_folds >= 2 and at least 2 samples per fold; got {n} samples, {n_folds} folds"
        )
    if ridge_lambda < 0:
        raise ValueError(f"ridge_lambda must be >= 0, got {ridge_lambda}")
    if not factors:
        raise ValueError("no factors to probe")
    cat = set(categorical or ())
    unknown = cat - set(factors)
    if unknown:
        raise ValueError(f"categorical names unknown factor(s) {sorted(unknown)}")
    if groups is None:
        groups = {"all": range(r)}
    gidx = {g: np.asarray(list(idx), dtype=int) for g, idx in groups.items()}
    for g, idx in gidx.items():
        if idx.size and (idx.min() < 0 or idx.max() >= r):
            raise ValueError(f"group {g!r} names ranks outside 0..{r - 1}")

    rng = np.random.default_rng([seed, 2])
    folds = np.array_split(rng.permutation(n), n_folds)
    names = tuple(factors)
    r2 = np.full((r, len(names)), np.nan)
    kinds: dict[str, str] = {}
    per_class: dict[str, dict[str, np.ndarray]] = {}
    for j, name in enumerate(names):
        vals = np.asarray(factors[name])
        if vals.shape != (n,):
            raise ValueError(f"factor {name!r} has shape {vals.shape}, expected ({n},)")
        is_cat = name in cat or vals.dtype.kind in "OUSb"
        kinds[name] = "categorical" if is_cat else "continuous"
        y, classes = _encode(vals, is_cat)
        sse, sst = _oof_sse(x, y, folds, ridge_lambda)
        total = sst.sum()
        if total > 0:
            r2[:, j] = 1.0 - sse.sum(1) / total
        if classes is not None:
            with np.errstate(invalid="ignore", divide="ignore"):
                per_class[name] = {
                    c: np.where(sst[i] > 0, 1.0 - sse[:, i] / sst[i], np.nan)
                    for i, c in enumerate(classes)
                }
    return ProbeResult(r2, names, kinds, per_class, gidx, n, n_folds, float(ridge_lambda), seed)


def plot_probe_heatmap(
    result: ProbeResult, path: str | Path, *, title: str = "Rank probe: held-out R^2"
) -> Path:
    """Ranks x factors heatmap grouped by tier (left) and the group means (right).
    Colours span R^2 in [0, 1]; negative values show as 0 (the numbers are in the
    report)."""
    order = np.concatenate(list(result.groups.values()))
    data = result.r2[order]
    n_rows = len(order)
    fig = new_figure((8.0, max(4.0, min(12.0, 1.5 + 0.1 * n_rows))))
    ax, axg = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.0, 1.0]})
    im = ax.imshow(
        np.clip(data, 0, 1), aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest"
    )
    ax.set_xticks(range(len(result.factors)), result.factors)
    pos = 0
    centres, labels = [], []
    for g, idx in result.groups.items():
        if pos:
            ax.axhline(pos - 0.5, color="white", lw=2)
        centres.append(pos + (len(idx) - 1) / 2)
        labels.append(f"{g}\n({len(idx)})")
        pos += len(idx)
    ax.set_yticks(centres, labels)
    ax.set_ylabel("rank dimension, by initial tier group")
    ax.set_title("per rank")
    if n_rows <= 24:
        for i in range(n_rows):
            for j in range(len(result.factors)):
                v = data[i, j]
                ax.text(
                    j,
                    i,
                    _r2(v, 2),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if np.nan_to_num(v) < 0.6 else "black",
                )

    gm = result.group_means()
    axg.imshow(np.clip(gm, 0, 1), aspect="auto", cmap="viridis", vmin=0, vmax=1)
    axg.set_xticks(range(len(result.factors)), result.factors)
    axg.set_yticks(range(len(result.groups)), list(result.groups))
    for i in range(gm.shape[0]):
        for j in range(gm.shape[1]):
            v = gm[i, j]
            axg.text(
                j,
                i,
                _r2(v),
                ha="center",
                va="center",
                fontsize=9,
                color="white" if np.nan_to_num(v) < 0.6 else "black",
            )
    axg.set_box_aspect(gm.shape[0] / gm.shape[1])  # square cells
    axg.set_title("group mean")
    fig.colorbar(im, ax=[ax, axg], shrink=0.8, label="held-out R^2 (clipped at 0)")
    fig.suptitle(f"{title} (N = {result.n}, {result.n_folds}-fold)")
    return save_figure(fig, path)
