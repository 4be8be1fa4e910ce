"""Visual grounding: Acc@IoU of the first box in an answer, and mean IoU.

The first box in the answer is scored (formats.md, "Grounding Acc@0.5"); an item is
correct at threshold t iff IoU > t (strictly). A response with no readable box, or a
box with non-finite values or corners out of order, counts as a miss (IoU 0) and as a
failed item in the ledger; it is never dropped. A zero-area predicted box is valid and
scores IoU 0. Rows without a reference box (LRS-GRO's global rows, ``bbox: []``) are
skipped and counted. Mean IoU with misses as 0 is LRS-GRO's "APO IoU".

Boxes are ``xyxy`` in one frame for prediction and reference; bring a model's grid
(0-1000, a resized view) to the reference frame before scoring.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from earthvlm.data.ledger import Ledger
from earthvlm.eval.metrics._common import check_lengths, json_float, new_ledger, ratio
from earthvlm.geo.iou import xyxy_iou_pairs

#: The thresholds reported by default (Acc@0.5 is the usual headline).
DEFAULT_THRESHOLDS: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7)

_NUM = r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_BRACKET = re.compile(rf"\[\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*\]")
_POINTS = re.compile(
    rf"\(\s*({_NUM})\s*,\s*({_NUM})\s*\)\s*,?\s*(?:to\s*)?\(\s*({_NUM})\s*,\s*({_NUM})\s*\)"
)
_BARE = re.compile(rf"(?<![\w.])({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})(?![\w.])")


@dataclass(frozen=True)
class BoxParse:
    """A box read from an answer.

    Attributes:
        box_xyxy: ``(x1, y1, x2, y2)``, or None when no usable box was found.
        reason: Why ``box_xyxy`` is None.
    """

    box_xyxy: tuple[float, float, float, float] | None
    reason: str | None = None


def parse_box(text: str | None) -> BoxParse:
    """The first box in an answer.

    Reads ``[x1, y1, x2, y2]`` (plain or inside JSON such as ``{"bbox_2d": [...]}``),
    ``(x1,y1),(x2,y2)`` (Qwen2-VL's box tokens) and a bare ``x1, y1, x2, y2``, whichever
    comes first.

    Args:
        text: The response (None for a missing one).

    Returns:
        The box, or None with a reason (no box, non-finite, corners out of order).
    """
    if text is None:
        return BoxParse(None, "no response")
    hits = [m for m in (p.search(text) for p in (_BRACKET, _POINTS, _BARE)) if m is not None]
    if not hits:
        return BoxParse(None, "no box in the answer")
    first = min(hits, key=lambda m: m.start())
    return check_box(tuple(float(g) for g in first.groups()))


def check_box(values: Sequence[Any]) -> BoxParse:
    """A predicted box as given, if it is four finite numbers with x1 <= x2 and y1 <= y2."""
    try:
        box = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        return BoxParse(None, "box values are not numbers")
    if len(box) != 4:
        return BoxParse(None, f"box has {len(box)} values, not 4")
    if not all(math.isfinite(v) for v in box):
        return BoxParse(None, "box has a non-finite value")
    x1, y1, x2, y2 = box
    if x2 < x1 or y2 < y1:
        return BoxParse(None, "box corners out of order (x2 < x1 or y2 < y1)")
    return BoxParse((x1, y1, x2, y2))


#: Paired IoU of horizontal boxes; geometry lives in :mod:`earthvlm.geo.iou`.
paired_iou_xyxy = xyxy_iou_pairs


@dataclass(frozen=True)
class GroundingResult:
    """Grounding scores.

    Attributes:
        ious: (N,) IoU per scored item (0 for a miss).
        thresholds: The IoU thresholds reported.
        ledger: ``ok`` = a box was read; ``failed`` = none or invalid (IoU 0);
            ``skipped`` = no reference box.
    """

    ious: np.ndarray
    thresholds: tuple[float, ...]
    ledger: Ledger

    @property
    def n(self) -> int:
        return int(self.ious.shape[0])

    def accuracy_at(self, threshold: float) -> float:
        """Share of items with IoU > ``threshold``."""
        return ratio(int(np.count_nonzero(self.ious > threshold)), self.n)

    @property
    def accuracy(self) -> dict[float, float]:
        """Threshold -> accuracy."""
        return {t: self.accuracy_at(t) for t in self.thresholds}

    @property
    def mean_iou(self) -> float:
        """Mean IoU, misses counted as 0 (LRS-GRO's APO IoU)."""
        return float(self.ious.mean()) if self.n else math.nan

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``acc@0.5`` and friends)."""
        return {
            "n": self.n,
            **{f"acc@{t:g}": json_float(a) for t, a in self.accuracy.items()},
            "mean_iou": json_float(self.mean_iou),
            "ledger": self.ledger.to_dict(),
        }


def _reference_box(ref: Any, index: int) -> tuple[float, ...] | None:
    if ref is None or (isinstance(ref, Sequence) and not isinstance(ref, str) and not ref):
        return None
    if isinstance(ref, np.ndarray) and ref.size == 0:
        return None
    parsed = check_box(ref) if not isinstance(ref, str) else BoxParse(None, "a string")
    if parsed.box_xyxy is None:
        raise ValueError(
            f"references[{index}] = {ref!r} is not a box ({parsed.reason}); give "
            "[x1, y1, x2, y2] with x1 <= x2 and y1 <= y2, or [] for a row without a box"
        )
    return parsed.box_xyxy


def score_grounding(
    predictions: Sequence[str | Sequence[float] | None],
    references: Sequence[Sequence[float] | None],
    *,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
) -> GroundingResult:
    """Acc@IoU and mean IoU of predicted boxes.

    Args:
        predictions: Per item, the response text (its first box is read), a box as four
            numbers, or None (a miss).
        references: Per item, ``[x1, y1, x2, y2]`` in the prediction's frame, or ``[]`` /
            None for an item without a box (skipped and counted).
        thresholds: IoU thresholds in [0, 1).

    Returns:
        The :class:`GroundingResult`.

    Raises:
        ValueError: On mismatched lengths, a bad threshold, or a malformed reference.
    """
    n = check_lengths(predictions=predictions, references=references)
    ts = tuple(float(t) for t in thresholds)
    if not ts or any(not 0.0 <= t < 1.0 for t in ts):
        raise ValueError(f"thresholds must be numbers in [0, 1), got {list(thresholds)}")
    ledger = new_ledger("grounding")
    pred_boxes: list[tuple[float, ...]] = []
    ref_boxes: list[tuple[float, ...]] = []
    valid: list[bool] = []
    for i in range(n):
        ref = _reference_box(references[i], i)
        if ref is None:
            ledger.count_skipped("no reference box")
            continue
        if ref[2] == ref[0] or ref[3] == ref[1]:
            ledger.count_skipped("reference box has zero area")
            continue
        pred = predictions[i]
        parsed = parse_box(pred) if pred is None or isinstance(pred, str) else check_box(pred)
        if parsed.box_xyxy is None:
            ledger.count_failed(parsed.reason or "no box")
            pred_boxes.append((0.0, 0.0, 0.0, 0.0))
            valid.append(False)
        else:
            ledger.count_ok()
            pred_boxes.append(parsed.box_xyxy)
            valid.append(True)
        ref_boxes.append(ref)
    if ref_boxes:
        ious = paired_iou_xyxy(np.asarray(pred_boxes), np.asarray(ref_boxes))
        ious[~np.asarray(valid)] = 0.0
    else:
        ious = np.zeros(0)
    return GroundingResult(ious, ts, ledger)
