"""Referring segmentation: mIoU, cIoU, gIoU, and EarthMind's release variants.

Definitions (foreground = the referred object; masks are boolean, or 0/1 numbers):

* per-sample IoU = |P & T| / |P | T|. When both masks are empty the union is empty and
  the sample scores ``empty_iou`` (default 1.0: predicting nothing for nothing is right).
* **mIoU** = mean of per-sample IoU.
* **gIoU** = mean of per-sample IoU with the GRES / ReLA convention for empty targets,
  fixed: an empty target scores 1 if the prediction is empty, else 0. (It equals mIoU
  under the default ``empty_iou=1``; the referring-segmentation literature reports both
  names for this mean.)
* **cIoU** = sum of intersections / sum of unions over the set (large objects weigh
  more); ``empty_iou`` if every union is empty.
* EarthMind release (``refrs_eval``, two classes background / foreground):
  ``miou_fg_bg`` = mean over samples of (IoU_fg + IoU_bg) / 2, a class IoU with an empty
  union counting 0; ``ciou_fg_bg`` = cumulative intersection / union summed over both
  classes. Reported for comparison with its published numbers.

A missing prediction (None) is a failed item: it scores 0 in every per-sample mean and
adds its target's area to the cumulative union. It is never dropped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from earthvlm.data.ledger import Ledger
from earthvlm.eval.metrics._common import check_lengths, json_float, new_ledger, ratio


def _as_mask(mask: Any, name: str) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind not in "iuf" or (arr.size and not np.isin(arr, (0, 1)).all()):
        raise ValueError(
            f"{name} must be a boolean mask or hold only 0 and 1 (dtype {arr.dtype}); "
            "threshold probabilities or map class ids to 0/1 first"
        )
    return arr.astype(bool)


def mask_iou(prediction: Any, target: Any, *, empty_iou: float = 1.0) -> float:
    """IoU of two masks of the same shape; ``empty_iou`` when both are empty.

    Raises:
        ValueError: On a shape mismatch or non-binary values.
    """
    p, t = _as_mask(prediction, "prediction"), _as_mask(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"mask shapes differ: prediction {p.shape}, target {t.shape}")
    union = int(np.count_nonzero(p | t))
    return int(np.count_nonzero(p & t)) / union if union else float(empty_iou)


@dataclass(frozen=True)
class SegmentationResult:
    """Referring-segmentation scores (see the module docstring for the definitions).

    Attributes:
        ious: (N,) per-sample foreground IoU (``empty_iou`` convention; 0 if failed).
        gious: (N,) per-sample IoU with the GRES empty-target convention (0 if failed).
        fg_bg_ious: (N,) per-sample mean of foreground and background IoU, as EarthMind's
            release computes it (0 if failed).
        intersection: Summed foreground intersection.
        union: Summed foreground union.
        intersection_fg_bg: Summed intersection over both classes.
        union_fg_bg: Summed union over both classes.
        empty_iou: The convention used for a sample whose masks are both empty.
        ledger: ``ok`` = a mask was given; ``failed`` = missing prediction.
    """

    ious: np.ndarray
    gious: np.ndarray
    fg_bg_ious: np.ndarray
    intersection: int
    union: int
    intersection_fg_bg: int
    union_fg_bg: int
    empty_iou: float
    ledger: Ledger

    @property
    def n(self) -> int:
        return int(self.ious.shape[0])

    @property
    def miou(self) -> float:
        """Mean per-sample IoU."""
        return float(self.ious.mean()) if self.n else math.nan

    @property
    def giou(self) -> float:
        """Mean per-sample IoU, GRES empty-target convention."""
        return float(self.gious.mean()) if self.n else math.nan

    @property
    def ciou(self) -> float:
        """Cumulative intersection over cumulative union."""
        if not self.n:
            return math.nan
        return ratio(self.intersection, self.union) if self.union else self.empty_iou

    @property
    def miou_fg_bg(self) -> float:
        """EarthMind release mIoU: mean over samples of the fg / bg IoU average."""
        return float(self.fg_bg_ious.mean()) if self.n else math.nan

    @property
    def ciou_fg_bg(self) -> float:
        """EarthMind release cIoU: cumulative over both classes."""
        return ratio(self.intersection_fg_bg, self.union_fg_bg)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "n": self.n,
            "miou": json_float(self.miou),
            "ciou": json_float(self.ciou),
            "giou": json_float(self.giou),
            "miou_fg_bg": json_float(self.miou_fg_bg),
            "ciou_fg_bg": json_float(self.ciou_fg_bg),
            "empty_iou": self.empty_iou,
            "ledger": self.ledger.to_dict(),
        }


def score_segmentation(
    predictions: Sequence[Any | None],
    targets: Sequence[Any],
    *,
    empty_iou: float = 1.0,
) -> SegmentationResult:
    """mIoU, cIoU, gIoU (and EarthMind's release variants) over a set of masks.

    Args:
        predictions: Per item a mask (bool, or 0/1 numbers), or None for a missing one.
        targets: Per item the reference mask, same shape as its prediction.
        empty_iou: Per-sample IoU when prediction and target are both empty (and cIoU
            when every union is empty).

    Returns:
        The :class:`SegmentationResult`.

    Raises:
        ValueError: On mismatched lengths, shapes, non-binary masks, or ``empty_iou``
            outside [0, 1].
    """
    n = check_lengths(predictions=predictions, targets=targets)
    if not 0.0 <= empty_iou <= 1.0:
        raise ValueError(f"empty_iou must be in [0, 1], got {empty_iou}")
    ledger = new_ledger("segmentation")
    ious = np.zeros(n)
    gious = np.zeros(n)
    fg_bg = np.zeros(n)
    inter_sum = union_sum = inter2_sum = union2_sum = 0
    for i in range(n):
        t = _as_mask(targets[i], f"targets[{i}]")
        if predictions[i] is None:
            ledger.count_failed("missing prediction")
            area = int(np.count_nonzero(t))
            union_sum += area
            union2_sum += area + t.size  # fg union = |T|, bg union = everything
            inter2_sum += t.size - area  # bg intersection = background of T
            continue
        p = _as_mask(predictions[i], f"predictions[{i}]")
        if p.shape != t.shape:
            raise ValueError(
                f"predictions[{i}] has shape {p.shape} but targets[{i}] has {t.shape}; "
                "resize the prediction to the target (nearest neighbour) first"
            )
        ledger.count_ok()
        inter = int(np.count_nonzero(p & t))
        union = int(np.count_nonzero(p | t))
        bg_inter = int(np.count_nonzero(~p & ~t))
        bg_union = int(np.count_nonzero(~p | ~t))
        ious[i] = inter / union if union else empty_iou
        gious[i] = inter / union if union else 1.0
        fg_bg[i] = (
            (inter / union if union else 0.0) + (bg_inter / bg_union if bg_union else 0.0)
        ) / 2
        inter_sum += inter
        union_sum += union
        inter2_sum += inter + bg_inter
        union2_sum += union + bg_union
    return SegmentationResult(
        ious, gious, fg_bg, inter_sum, union_sum, inter2_sum, union2_sum, float(empty_iou), ledger
    )
