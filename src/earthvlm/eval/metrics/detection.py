"""Detection metrics for rotated quads: AP (DOTA_devkit's rule), AP_nc and mF1.

Matching and AP follow DOTA_devkit's ``voc_eval`` (``use_07_metric=False``), vectorised:

* Per class, predictions are ranked by descending confidence; **ties go to the earlier
  row** (the order the predictions were given: image after image as the caller lists
  them, and within an image the order the model wrote them). DOTA_devkit sorts with
  ``np.argsort(-confidence)``, which is not stable, so its AP for tied confidences
  depends on numpy's sort; with distinct scores the two agree exactly
  (``benchmarks/bench_detection_ap.py`` checks it).
* Each prediction takes the ground-truth object of its image and class with the highest
  polygon IoU (ties: the earlier ground-truth row). It is a true positive when that IoU
  exceeds the threshold (``> t``; ``iou_rule="mmrotate"`` uses ``>= t`` as MMRotate's
  ``eval_rbbox_map``) and no earlier prediction took the object; a later one is a false
  positive even when another object is free (the VOC rule). A prediction whose best
  object is *difficult* is neither (ignored); difficult objects are not counted as
  positives.
* AP is the all-point interpolated area under precision-recall (VOC 2010+).

Confidence modes (AP_nc, RSCoVLM sec. III-E; models that write text give no scores):
``"constant"`` (one confidence for all: the ranking is the row order above, so the AP
depends on it), ``"random"`` (uniform confidences per seed, AP averaged over seeds, with
its standard deviation; the paper reports < 0.5 % over ten draws) and ``"given"`` (the
predictions' own scores). For scored detectors the paper picks a score threshold on
validation (:func:`choose_score_threshold`) and applies it on test.

mF1 (LMMRotate): per-class precision and recall at IoU >= 0.5 and
``mF1 = 2 * mean(P) * mean(R) / (mean(P) + mean(R))``. Where that description is silent,
this module chooses: the matching is the one-to-one greedy matching above in the same
ranking (not MMDetection's many-to-many confusion matrix); a class with ground truth but
no prediction has precision 0; the means run over the classes with at least one
non-difficult object; difficult objects are handled as for AP. The mean of the
per-class F1 is reported beside it as ``mean_class_f1``.

Everything read is counted (:class:`earthvlm.data.ledger.Ledger`): a prediction with
malformed geometry (missing, not numeric, wrong length, NaN or inf, zero area) is failed
with its reason *and* scored as a false positive of its class; a prediction of a label
that is no ground-truth class is failed (``unknown_class``) and can lower no class's AP.
Ground-truth objects with malformed geometry are failed too and stay positives that no
prediction can match (they count as misses).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter, methodcaller
from typing import Any, Literal

import numpy as np

from earthvlm.data.ledger import Ledger
from earthvlm.eval.metrics._common import json_float
from earthvlm.geo.iou import as_quads, quad_areas, sparse_quad_iou

#: IoU thresholds of AP50:95.
IOU_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
#: Score thresholds searched by :func:`choose_score_threshold` (RSCoVLM: 0.00 to 0.95).
SCORE_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(20))
#: Geometry with a smaller polygon area (square pixels) is malformed (``box_degenerate``).
MIN_AREA_PX2 = 1e-6

#: Per-prediction outcome codes in :attr:`DetectionResult.outcomes`.
TP, FP, IGNORED, NOT_SCORED = 1, 0, -1, -2

Confidence = Literal["constant", "random", "given"]
IoURule = Literal["devkit", "mmrotate"]

#: Why a geometry is malformed, by code (the strings of ``earthvlm.geo.boxes``' ``BOX_*``
#: quarantine reasons, plus ``box_missing``).
_REASONS = (
    "",
    "box_missing",
    "box_not_numeric",
    "box_wrong_length",
    "box_not_finite",
    "box_degenerate",
)


def _read_geometry(geometry: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 4, 2)`` quads (NaN where unreadable) and per-row reason codes (0 = fine)."""
    quads = np.full((n, 4, 2), np.nan)
    code = np.zeros(n, np.int8)
    fast = None
    if n and isinstance(geometry, list) and set(map(type, geometry)) == {list}:
        widths = set(map(len, geometry))  # equal lists of numbers: the quick way
        if len(widths) == 1 and widths <= {4, 8}:
            try:
                flat = np.fromiter(chain.from_iterable(geometry), np.float64)
                fast = as_quads(flat.reshape(n, -1))
            except (ValueError, TypeError):
                pass
    if fast is None:
        try:
            a = np.asarray(geometry, dtype=np.float64)
            if a.ndim > 1 and len(a) == n and a.shape[1:] in ((8,), (4,), (4, 2)):
                fast = as_quads(a)
        except (ValueError, TypeError):
            pass
    if fast is not None:
        quads = fast.copy()
    else:
        for i, g in enumerate(geometry):
            if g is None:
                code[i] = 1
                continue
            try:
                r = np.asarray(g, dtype=np.float64).reshape(-1)
            except (ValueError, TypeError):
                code[i] = 2
                continue
            if r.size not in (4, 8):
                code[i] = 3
                continue
            quads[i] = as_quads(r.reshape(1, -1))[0]
    unread = code == 0
    finite = np.isfinite(quads).all(axis=(1, 2))
    code[unread & ~finite] = 4
    with np.errstate(invalid="ignore"):
        small = quad_areas(quads) < MIN_AREA_PX2
    code[unread & finite & small] = 5
    return quads, code


def _strings(values: Sequence[Any]) -> np.ndarray:
    """A numpy str array (``str()`` of each value unless they are all strings already)."""
    a = np.asarray(values)
    if a.dtype.kind == "U" and a.ndim == 1:
        return a
    return np.array([str(v) for v in values], dtype=str).reshape(-1)


@dataclass(frozen=True, eq=False)
class Objects:
    """Objects of many images, one row each: predictions or ground truth (columnar).

    Build with :meth:`from_records` or :meth:`from_arrays`; the row order is kept (it is
    the tie-break of equal confidences).

    Attributes:
        image_ids: ``(N,)`` image names (str).
        labels: ``(N,)`` class names (str).
        quads_px: ``(N, 4, 2)`` vertices in pixels (NaN where the geometry was unreadable).
        scores: ``(N,)`` confidences, or None (a model that writes text).
        difficult: ``(N,)`` DOTA's difficult flag (ground truth; False for predictions).
        reason: ``(N,)`` why a row's geometry is malformed ("" when it is fine).
    """

    image_ids: np.ndarray
    labels: np.ndarray
    quads_px: np.ndarray
    scores: np.ndarray | None
    difficult: np.ndarray
    reason: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def from_arrays(
        cls,
        image_ids: Sequence[Any],
        labels: Sequence[str],
        geometry: Any,
        scores: Sequence[float] | np.ndarray | None = None,
        difficult: Sequence[bool] | np.ndarray | None = None,
    ) -> Objects:
        """Columns of equal length.

        Args:
            image_ids: Image name per row (anything ``str()`` turns into the name).
            labels: Class name per row.
            geometry: Per row a quad (8 values or 4 x 2) or a horizontal box
                ``[x1, y1, x2, y2]``, in pixels; an ``(N, 8)`` / ``(N, 4)`` array or a
                list, which may hold malformed rows (they are kept and flagged).
            scores: Confidence per row (finite), or None.
            difficult: Difficult flag per row (ground truth), default all False.

        Raises:
            ValueError: On columns of different lengths or non-finite scores.
        """
        n = len(labels)
        ids, labs = _strings(image_ids), _strings(labels)
        if len(ids) != n or len(geometry) != n:
            raise ValueError(
                f"one entry per object is needed: {len(ids)} image ids, {n} labels, "
                f"{len(geometry)} geometries"
            )
        quads, code = _read_geometry(geometry, n)
        sc = None
        if scores is not None:
            sc = np.asarray(scores, dtype=np.float64).reshape(-1)
            if len(sc) != n:
                raise ValueError(f"{len(sc)} scores for {n} objects; give one per object")
            if not np.isfinite(sc).all():
                bad = int(np.flatnonzero(~np.isfinite(sc))[0])
                raise ValueError(f"scores[{bad}] = {sc[bad]} is not finite; fix the detector")
        diff = np.zeros(n, bool) if difficult is None else np.asarray(difficult).astype(bool)
        if len(diff) != n:
            raise ValueError(f"{len(diff)} difficult flags for {n} objects; give one per object")
        reason = np.asarray(_REASONS, dtype=object)[code]
        return cls(ids, labs, quads, sc, diff, reason)

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]]) -> Objects:
        """From mappings with ``image_id``, ``label``, ``geometry`` and optionally ``score``
        and ``difficult`` (all rows or none carry ``score``).

        Raises:
            ValueError: When a row lacks ``image_id`` or ``label``, or only some rows
                carry a score.
        """
        rows = list(records)
        try:  # map with C-level getters: ~3x a list comprehension over 1e5 rows
            ids = list(map(itemgetter("image_id"), rows))
            labels = list(map(itemgetter("label"), rows))
        except KeyError as e:
            raise ValueError(f"every record needs 'image_id', 'label' and 'geometry'; {e}") from e
        geometry = list(map(methodcaller("get", "geometry"), rows))
        scores = list(map(methodcaller("get", "score"), rows))
        n_scored = len(rows) - scores.count(None)
        if n_scored not in (0, len(rows)):
            raise ValueError(f"{n_scored} of {len(rows)} records carry a 'score'; give all or none")
        difficult = list(map(methodcaller("get", "difficult", False), rows))
        return cls.from_arrays(ids, labels, geometry, scores if n_scored else None, difficult)


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point interpolated AP (DOTA_devkit ``voc_ap`` with ``use_07_metric=False``)."""
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def ranked_ap(outcomes: np.ndarray, n_pos: int) -> float:
    """AP of outcomes (TP / FP / IGNORED codes) in rank order, ``n_pos`` positives."""
    tp = np.cumsum(outcomes == TP, dtype=np.float64)
    fp = np.cumsum(outcomes == FP, dtype=np.float64)
    if n_pos == 0:
        return math.nan
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return voc_ap(tp / float(n_pos), prec)


def _codes(values: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Integer codes of strings in order of first appearance, and the distinct strings."""
    seq = values.tolist()
    distinct = list(dict.fromkeys(seq))
    index = {v: i for i, v in enumerate(distinct)}
    return np.fromiter(map(index.__getitem__, seq), np.int64, len(seq)), distinct


@dataclass(frozen=True, eq=False)
class _Prepared:
    """What does not depend on the ranking: class of each row, best object and its IoU."""

    classes: tuple[str, ...]
    pred_class: np.ndarray  # (N,) class index, -1 for a label outside ``classes``
    pred_known: np.ndarray  # (N,) the label is a ground-truth class (evaluated or not)
    best_gt: np.ndarray  # (N,) row of the best ground-truth object, -1 for none
    best_iou: np.ndarray  # (N,) its IoU, -inf for none
    gt_class: np.ndarray  # (K,) class index, -1 for a class not evaluated
    gt_difficult: np.ndarray  # (K,)
    ground_truth: Ledger


def _prepare(
    pred: Objects,
    gt: Objects,
    classes: Sequence[str] | None,
    min_iou: float,
    ignore_difficult: bool,
) -> _Prepared:
    inv, labels = _codes(np.concatenate([gt.labels, pred.labels]))
    gt_labels = labels[: int(inv[: len(gt)].max(initial=-1)) + 1]  # codes follow first use
    names = tuple(sorted(gt_labels) if classes is None else (str(c) for c in classes))
    if len(set(names)) != len(names):
        raise ValueError(f"classes holds duplicates: {list(names)}")
    index = {c: i for i, c in enumerate(names)}
    code = np.array([index.get(c, -1) for c in labels], np.int64)
    gt_class, pred_class = code[inv[: len(gt)]], code[inv[len(gt) :]]
    pred_known = inv[len(gt) :] < len(gt_labels)

    gt_ledger = Ledger(stage="ground truth", read=len(gt))
    gt_bad = (gt_class >= 0) & (gt.reason != "")
    gt_ledger.skipped.update(["class_not_evaluated"] * int((gt_class < 0).sum()))
    gt_ledger.failed.update(Counter(gt.reason[gt_bad].tolist()))
    gt_ledger.ok = len(gt) - gt_ledger.n_skipped - gt_ledger.n_failed

    # best object per prediction: sparse IoU within (image, class)
    image, _ = _codes(np.concatenate([pred.image_ids, gt.image_ids]))
    c = max(len(names), 1)
    group_p = image[: len(pred)] * c + pred_class
    group_g = image[len(pred) :] * c + gt_class
    use_p = np.flatnonzero((pred_class >= 0) & (pred.reason == ""))
    use_g = np.flatnonzero((gt_class >= 0) & (gt.reason == ""))
    ia, ib, iou = sparse_quad_iou(
        pred.quads_px[use_p], gt.quads_px[use_g], group_p[use_p], group_g[use_g], min_iou=min_iou
    )
    ia, ib = use_p[ia], use_g[ib]
    best_gt = np.full(len(pred), -1, np.int64)
    best_iou = np.full(len(pred), -np.inf)
    if len(ia):  # per prediction (pairs come grouped by it): highest IoU, then earliest row
        start = np.flatnonzero(np.r_[True, ia[1:] != ia[:-1]])
        top = np.maximum.reduceat(iou, start)
        run = np.repeat(np.arange(len(start)), np.diff(np.r_[start, len(ia)]))
        first = np.minimum.reduceat(np.where(iou == top[run], ib, len(gt)), start)
        best_gt[ia[start]] = first
        best_iou[ia[start]] = top
    difficult = gt.difficult & ignore_difficult
    return _Prepared(names, pred_class, pred_known, best_gt, best_iou, gt_class, difficult,
                     gt_ledger)  # fmt: skip


def _outcomes(prep: _Prepared, order: np.ndarray, threshold: float, inclusive: bool) -> np.ndarray:
    """TP / FP / IGNORED per row (NOT_SCORED outside ``order``), greedy in ``order``."""
    out = np.full(len(prep.pred_class), NOT_SCORED, np.int8)
    out[order] = FP
    iou = prep.best_iou[order]
    hit = iou >= threshold if inclusive else iou > threshold
    rows = order[hit]
    gts = prep.best_gt[rows]
    diff = prep.gt_difficult[gts]
    out[rows[diff]] = IGNORED
    rows, gts = rows[~diff], gts[~diff]
    _, first = np.unique(gts, return_index=True)  # the first taker of each object, in rank
    out[rows[first]] = TP
    return out


@dataclass(frozen=True)
class _Scores:
    ap: np.ndarray  # (C, T)
    tp: np.ndarray  # (C,) at the F1 threshold
    fp: np.ndarray
    outcomes: np.ndarray  # (N, T)


def _score(prep: _Prepared, order: np.ndarray, thresholds: Sequence[float], inclusive: bool,
           f1_iou: float, n_pos: np.ndarray) -> _Scores:  # fmt: skip
    n_cls = len(prep.classes)
    cls_in_order = prep.pred_class[order]
    by_class = np.argsort(cls_in_order, kind="stable")
    bounds = np.searchsorted(cls_in_order[by_class], np.arange(n_cls + 1))
    ranked = order[by_class]  # rows grouped by class, rank order within each class
    ap = np.full((n_cls, len(thresholds)), math.nan)
    outcomes = np.empty((len(prep.pred_class), len(thresholds)), np.int8)
    for t, thr in enumerate(thresholds):
        out = _outcomes(prep, order, thr, inclusive)
        outcomes[:, t] = out
        for k in range(n_cls):
            ap[k, t] = ranked_ap(out[ranked[bounds[k] : bounds[k + 1]]], int(n_pos[k]))
    out = _outcomes(prep, order, f1_iou, True)
    tp = np.bincount(prep.pred_class[order][out[order] == TP], minlength=n_cls)
    fp = np.bincount(prep.pred_class[order][out[order] == FP], minlength=n_cls)
    return _Scores(ap, tp[:n_cls], fp[:n_cls], outcomes)


@dataclass(frozen=True, eq=False)
class DetectionResult:
    """AP per class and IoU threshold, mAP, and precision / recall / F1 at IoU 0.5.

    Attributes:
        classes: Class names, in the order of the per-class arrays.
        iou_thresholds: IoU thresholds of :attr:`ap`'s columns.
        confidence: ``"constant"``, ``"random"`` or ``"given"``.
        seeds: Seeds of the random confidences (empty otherwise).
        iou_rule: ``"devkit"`` (IoU > t) or ``"mmrotate"`` (IoU >= t).
        score_threshold: Predictions scored below it were left out (None: none).
        ap: ``(C, T)`` AP (mean over seeds for random confidences); NaN for a class
            without non-difficult objects.
        ap_std: ``(C, T)`` standard deviation over seeds (zeros unless random).
        map_std: ``(T,)`` standard deviation over seeds of the mAP.
        n_pos: ``(C,)`` non-difficult ground-truth objects.
        n_pred: ``(C,)`` predictions scored (malformed ones included).
        tp, fp: ``(C,)`` true / false positives at IoU >= ``f1_iou`` (seed mean).
        f1_iou: IoU threshold of precision, recall and F1.
        predictions, ground_truth: What was read and what became of it.
        order: Rows of the predictions in rank order (the last seed's when random).
        outcomes: ``(N, T)`` TP / FP / IGNORED / NOT_SCORED per prediction row and
            threshold, in that ranking.
    """

    classes: tuple[str, ...]
    iou_thresholds: tuple[float, ...]
    confidence: str
    seeds: tuple[int, ...]
    iou_rule: str
    score_threshold: float | None
    ap: np.ndarray
    ap_std: np.ndarray
    map_std: np.ndarray
    n_pos: np.ndarray
    n_pred: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    f1_iou: float
    predictions: Ledger
    ground_truth: Ledger
    order: np.ndarray
    outcomes: np.ndarray

    @property
    def evaluated(self) -> np.ndarray:
        """Classes with at least one non-difficult object (those the means run over)."""
        return self.n_pos > 0

    @property
    def map(self) -> np.ndarray:
        """``(T,)`` mean AP over :attr:`evaluated` classes."""
        if not self.evaluated.any():
            return np.full(len(self.iou_thresholds), math.nan)
        return self.ap[self.evaluated].mean(axis=0)

    def map_at(self, iou: float) -> float:
        """mAP at one of :attr:`iou_thresholds`."""
        for t, v in zip(self.iou_thresholds, self.map, strict=True):
            if math.isclose(t, iou):
                return float(v)
        raise ValueError(f"IoU {iou} was not evaluated; thresholds: {list(self.iou_thresholds)}")

    @property
    def map50(self) -> float:
        return self.map_at(0.5)

    @property
    def map75(self) -> float:
        return self.map_at(0.75)

    @property
    def map50_95(self) -> float:
        """Mean of mAP over :attr:`iou_thresholds` (0.50:0.95 by default)."""
        return float(np.mean(self.map))

    @property
    def precision(self) -> np.ndarray:
        """``(C,)`` TP / (TP + FP) at :attr:`f1_iou`; 0 for a class without predictions."""
        den = self.tp + self.fp
        return np.where(den > 0, self.tp / np.where(den > 0, den, 1), 0.0)

    @property
    def recall(self) -> np.ndarray:
        """``(C,)`` TP / positives at :attr:`f1_iou` (NaN without positives)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n_pos > 0, self.tp / np.maximum(self.n_pos, 1), math.nan)

    @property
    def f1(self) -> np.ndarray:
        """``(C,)`` per-class F1."""
        p, r = self.precision, self.recall
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(p + r > 0, 2 * p * r / np.where(p + r > 0, p + r, 1), 0.0)

    @property
    def mp(self) -> float:
        """Mean precision over :attr:`evaluated` classes."""
        return float(self.precision[self.evaluated].mean()) if self.evaluated.any() else math.nan

    @property
    def mr(self) -> float:
        """Mean recall over :attr:`evaluated` classes."""
        return float(self.recall[self.evaluated].mean()) if self.evaluated.any() else math.nan

    @property
    def mf1(self) -> float:
        """LMMRotate's mF1: ``2 mP mR / (mP + mR)`` (0 when both are 0)."""
        p, r = self.mp, self.mr
        if math.isnan(p) or math.isnan(r):
            return math.nan
        return 2 * p * r / (p + r) if p + r > 0 else 0.0

    @property
    def mean_class_f1(self) -> float:
        """The mean of the per-class F1 (not LMMRotate's mF1; reported beside it)."""
        return float(self.f1[self.evaluated].mean()) if self.evaluated.any() else math.nan

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN becomes None)."""
        thr = [f"{t:.2f}" for t in self.iou_thresholds]
        per_class = {}
        for k, name in enumerate(self.classes):
            per_class[name] = {
                "ap": {t: json_float(v) for t, v in zip(thr, self.ap[k], strict=True)},
                "n_pos": int(self.n_pos[k]),
                "n_pred": int(self.n_pred[k]),
                "tp": float(self.tp[k]),
                "fp": float(self.fp[k]),
                "precision": json_float(self.precision[k]),
                "recall": json_float(self.recall[k]),
                "f1": json_float(self.f1[k]),
            }
            if self.seeds:
                per_class[name]["ap_std"] = {
                    t: json_float(v) for t, v in zip(thr, self.ap_std[k], strict=True)
                }
        has = [round(t, 2) for t in self.iou_thresholds]
        return {
            "confidence": self.confidence,
            "seeds": list(self.seeds),
            "iou_rule": self.iou_rule,
            "score_threshold": self.score_threshold,
            "map": {t: json_float(v) for t, v in zip(thr, self.map, strict=True)},
            "map_std": {t: json_float(v) for t, v in zip(thr, self.map_std, strict=True)},
            "map50": json_float(self.map50) if 0.5 in has else None,
            "map75": json_float(self.map75) if 0.75 in has else None,
            "map50_95": json_float(self.map50_95),
            "f1_iou": self.f1_iou,
            "mp": json_float(self.mp),
            "mr": json_float(self.mr),
            "mf1": json_float(self.mf1),
            "mean_class_f1": json_float(self.mean_class_f1),
            "classes": per_class,
            "predictions": self.predictions.to_dict(),
            "ground_truth": self.ground_truth.to_dict(),
        }


def _check_thresholds(
    iou_thresholds: Sequence[float], f1_iou: float, iou_rule: str
) -> tuple[float, ...]:
    if iou_rule not in ("devkit", "mmrotate"):
        raise ValueError(
            f"iou_rule must be 'devkit' (IoU > t) or 'mmrotate' (IoU >= t), got {iou_rule!r}"
        )
    thr = tuple(float(t) for t in iou_thresholds)
    if not thr or any(not 0.0 <= t < 1.0 for t in (*thr, f1_iou)):
        raise ValueError(f"IoU thresholds must lie in [0, 1), got {list(thr)} and {f1_iou}")
    return thr


def _evaluate(
    prep: _Prepared,
    pred: Objects,
    *,
    confidence: Confidence,
    seeds: Sequence[int],
    score_threshold: float | None,
    thresholds: tuple[float, ...],
    iou_rule: IoURule,
    f1_iou: float,
) -> DetectionResult:
    evaluated = prep.pred_class >= 0
    below = np.zeros(len(pred), bool)
    if score_threshold is not None:
        if pred.scores is None:
            raise ValueError("score_threshold needs predictions with scores")
        below = evaluated & (pred.scores < score_threshold)
    scored = evaluated & ~below
    ledger = Ledger(stage="predictions", read=len(pred))
    ledger.ok = int((scored & (pred.reason == "")).sum())
    ledger.skipped["class_not_evaluated"] = int((~evaluated & prep.pred_known).sum())
    ledger.skipped["below_score_threshold"] = int(below.sum())
    ledger.failed["unknown_class"] = int((~evaluated & ~prep.pred_known).sum())
    ledger.failed.update(Counter(pred.reason[scored & (pred.reason != "")].tolist()))
    ledger.skipped, ledger.failed = +ledger.skipped, +ledger.failed  # drop zero counts
    ledger.check()

    n_cls = len(prep.classes)
    positive = (prep.gt_class >= 0) & ~prep.gt_difficult
    n_pos = np.bincount(prep.gt_class[positive], minlength=n_cls)[:n_cls]
    n_pred = np.bincount(prep.pred_class[scored], minlength=n_cls)[:n_cls]
    rows = np.flatnonzero(scored)
    inclusive = iou_rule == "mmrotate"
    if confidence == "constant":
        orders = [rows]
    elif confidence == "given":
        if pred.scores is None:
            raise ValueError("confidence='given' needs predictions with scores")
        orders = [rows[np.argsort(-pred.scores[rows], kind="stable")]]
    elif confidence == "random":
        if not seeds:
            raise ValueError("confidence='random' needs at least one seed")
        orders = []
        for seed in seeds:
            draw = np.random.default_rng(seed).random(len(pred))[rows]
            orders.append(rows[np.argsort(-draw, kind="stable")])
    else:
        raise ValueError(f"confidence must be 'constant', 'random' or 'given', got {confidence!r}")
    runs = [_score(prep, o, thresholds, inclusive, f1_iou, n_pos) for o in orders]
    aps = np.stack([r.ap for r in runs])
    maps = np.stack([r.ap[n_pos > 0].mean(axis=0) for r in runs]) if (n_pos > 0).any() else None
    return DetectionResult(
        classes=prep.classes,
        iou_thresholds=thresholds,
        confidence=confidence,
        seeds=tuple(int(s) for s in seeds) if confidence == "random" else (),
        iou_rule=iou_rule,
        score_threshold=score_threshold,
        ap=aps.mean(axis=0),
        ap_std=aps.std(axis=0),
        map_std=maps.std(axis=0) if maps is not None else np.full(len(thresholds), math.nan),
        n_pos=n_pos,
        n_pred=n_pred,
        tp=np.mean([r.tp for r in runs], axis=0),
        fp=np.mean([r.fp for r in runs], axis=0),
        f1_iou=f1_iou,
        predictions=ledger,
        ground_truth=prep.ground_truth,
        order=orders[-1],
        outcomes=runs[-1].outcomes,
    )


def evaluate_detections(
    predictions: Objects,
    ground_truth: Objects,
    *,
    classes: Sequence[str] | None = None,
    confidence: Confidence = "constant",
    seeds: Sequence[int] = tuple(range(10)),
    score_threshold: float | None = None,
    iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
    iou_rule: IoURule = "devkit",
    f1_iou: float = 0.5,
    ignore_difficult: bool = True,
) -> DetectionResult:
    """AP per class at each IoU threshold, mAP and LMMRotate's mF1 (see the module doc).

    Args:
        predictions: Predicted objects (scores optional).
        ground_truth: Ground-truth objects with their difficult flags.
        classes: Classes to evaluate; default the ground truth's labels, sorted.
        confidence: ``"constant"`` (AP_nc: ties broken by row order), ``"random"``
            (AP_nc averaged over ``seeds``) or ``"given"`` (the predictions' scores).
        seeds: Seeds of the random confidences (RSCoVLM draws ten).
        score_threshold: Leave out predictions scored below it (needs scores); see
            :func:`choose_score_threshold`.
        iou_thresholds: IoU thresholds of the AP columns (default 0.50:0.95).
        iou_rule: ``"devkit"``: a match needs IoU > t (DOTA_devkit); ``"mmrotate"``:
            IoU >= t (MMRotate).
        f1_iou: IoU threshold (inclusive) of precision, recall and F1.
        ignore_difficult: Difficult objects are neither positives nor false positives
            (DOTA_devkit); False counts them as ordinary objects.

    Returns:
        The :class:`DetectionResult`.

    Raises:
        ValueError: For an unknown confidence mode, thresholds outside [0, 1), scores
            needed but absent, or duplicate class names.
    """
    thresholds = _check_thresholds(iou_thresholds, f1_iou, iou_rule)
    prep = _prepare(predictions, ground_truth, classes, min(*thresholds, f1_iou), ignore_difficult)
    return _evaluate(
        prep,
        predictions,
        confidence=confidence,
        seeds=seeds,
        score_threshold=score_threshold,
        thresholds=thresholds,
        iou_rule=iou_rule,
        f1_iou=f1_iou,
    )


@dataclass(frozen=True)
class ThresholdChoice:
    """The score threshold that maximised a criterion on a validation set.

    Attributes:
        threshold: The chosen score threshold (the lowest one among equal best values).
        criterion: ``"map_nc50"`` or ``"mf1"``.
        confidence: The confidence mode of the AP_nc (``"constant"`` or ``"random"``).
        values: ``(threshold, criterion value)`` for every threshold tried.
    """

    threshold: float
    criterion: str
    confidence: str
    values: tuple[tuple[float, float], ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "threshold": self.threshold,
            "criterion": self.criterion,
            "confidence": self.confidence,
            "values": {f"{t:.2f}": json_float(v) for t, v in self.values},
        }


def choose_score_threshold(
    predictions: Objects,
    ground_truth: Objects,
    *,
    criterion: Literal["map_nc50", "mf1"] = "map_nc50",
    thresholds: Sequence[float] = SCORE_THRESHOLDS,
    confidence: Literal["constant", "random"] = "constant",
    seeds: Sequence[int] = tuple(range(10)),
    classes: Sequence[str] | None = None,
    iou_rule: IoURule = "devkit",
) -> ThresholdChoice:
    """RSCoVLM's protocol for scored detectors: pick the score threshold on validation.

    Each threshold in 0.00..0.95 (step 0.05) drops the predictions scored below it; the
    rest are scored without their confidences (constant, or random over ``seeds``).
    The paper (its DOTA experiments) maximises mAP_nc at IoU 0.5; ``criterion="mf1"``
    maximises mF1 instead. Apply the choice on test with
    ``evaluate_detections(..., score_threshold=choice.threshold)``.

    Raises:
        ValueError: When the predictions carry no scores, no threshold is given, or the
            criterion or confidence mode is unknown.
    """
    if predictions.scores is None:
        raise ValueError("choosing a score threshold needs predictions with scores")
    if not thresholds:
        raise ValueError("give at least one score threshold")
    if criterion not in ("map_nc50", "mf1"):
        raise ValueError(f"criterion must be 'map_nc50' or 'mf1', got {criterion!r}")
    if confidence not in ("constant", "random"):
        raise ValueError(f"confidence must be 'constant' or 'random' (AP_nc), got {confidence!r}")
    _check_thresholds([0.5], 0.5, iou_rule)
    prep = _prepare(predictions, ground_truth, classes, 0.5, True)
    values = []
    for thr in thresholds:
        r = _evaluate(prep, predictions, confidence=confidence, seeds=seeds,
                      score_threshold=float(thr), thresholds=(0.5,), iou_rule=iou_rule,
                      f1_iou=0.5)  # fmt: skip
        values.append((float(thr), r.map50 if criterion == "map_nc50" else r.mf1))
    finite = [(t, v) for t, v in values if not math.isnan(v)]
    if not finite:
        raise ValueError("no ground-truth positives to choose a threshold with")
    best = max(v for _, v in finite)
    choice = min(t for t, v in finite if v == best)
    return ThresholdChoice(choice, criterion, confidence, tuple(values))


__all__ = [
    "FP",
    "IGNORED",
    "IOU_THRESHOLDS",
    "MIN_AREA_PX2",
    "NOT_SCORED",
    "SCORE_THRESHOLDS",
    "TP",
    "DetectionResult",
    "Objects",
    "ThresholdChoice",
    "choose_score_threshold",
    "evaluate_detections",
    "ranked_ap",
    "voc_ap",
]
