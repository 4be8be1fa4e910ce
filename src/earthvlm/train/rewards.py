"""Rewards for GRPO on the zoom loop (ZoomEarth sec. 3.3): ROI IoU, region guidance,
answer correctness and format, and their weighted sum.

Pure functions on plain values (boxes in source pixels, the model's turn texts): no
torch, so they run anywhere and are tested with worked numbers. Each returns a
:class:`Reward` (a value and, when it is 0 for a reason, that reason) and never raises on
what a model wrote: a garbage completion, a missing or degenerate box or a failing
scorer scores 0 with a reason code.

The paper's total is ``r_IoU + r_RG + r_answer + beta * r_pattern`` with ``beta = 0.05``;
:class:`RewardWeights` holds the four weights (defaults: the paper's).

Where this departs from the paper and its release (``../shared/notes/formats.md``):

* **Region guidance.** The paper: ``r_RG = sigmoid(alpha / (d + eps))``, ``d`` the
  distance between the predicted and true box centres, ``alpha`` tied to the image
  resolution (no value given). The release: ``tanh(200 / d)``, ``d`` in original pixels,
  on 4000-5000 px images. We use ``r_RG = tanh(alpha / d)`` with
  ``alpha = region_scale * max(H, W)`` of the *source* image, ``region_scale = 0.04``
  (200 px at 5000 px: the release's constant on its images, and resolution-tied as the
  paper says), and ``r_RG = 1`` at ``d = 0``. ``tanh`` rather than the paper's sigmoid:
  ``sigmoid(x) >= 0.5`` for ``x >= 0``, so a far box (or a box in the wrong image half)
  would still earn half the reward; ``tanh`` goes from 1 at the centre to 0 far away.
  Worked: a 5000 px image, ``d = 200`` px gives ``tanh(1) = 0.7616``; ``d = 2000`` gives
  ``tanh(0.1) = 0.0997``.
* **Which box.** The first zoom the model asked for (the decision taken on the global
  view, as in ZoomEarth's single global -> crop step), as requested (``ZoomResult.
  box_xyxy_px``), not the grown crop window: the release scores the crop windows, which
  rewards a small box for the padding the tool adds.
* **Answer.** Through an injected ``score_fn(record, prediction) -> float`` (a
  benchmark's ``reward``, say), clipped to ``[0, 1]``; the release's WordNet similarity
  is one such function.
* **Pattern.** Binary: every turn that calls ``zoom_in`` holds one call that parses
  without repairs, the final turn holds no call and a non-empty answer, and ``<think>``
  / ``<answer>`` tags, where used, are closed. (ZoomEarth's release checks its own
  ``<think>``/``<answer>`` structure; our loop's calls are Qwen tool calls.)
* **No ROI.** A question without a ground-truth ROI (a global question) gets 0 from both
  box rewards whatever the model does: within a GRPO group they are then constant and
  only the answer and pattern decide.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from earthvlm.uhr.chain import extract_answer
from earthvlm.uhr.tool import CALL_CLOSE, CALL_OPEN, NO_TOOL_CALL, ToolCallError, parse_tool_call

#: ``score_fn(record, prediction) -> float`` in ``[0, 1]``: answer correctness.
ScoreFn = Callable[[Any, str], float]

#: The release's 200 px on a 5000 px image side (see the module docstring).
DEFAULT_REGION_SCALE = 0.04

# reason codes (a reward is 0 for one of these)
NO_BOX = "no_box"
NO_GT_ROI = "no_gt_roi"
BAD_BOX = "bad_box"
BAD_GT_ROI = "bad_gt_roi"
BAD_IMAGE_HW = "bad_image_hw"
NO_OVERLAP = "no_overlap"
EMPTY_ANSWER = "empty_answer"
SCORE_ERROR = "score_error"
BAD_SCORE = "bad_score"
NO_TURNS = "no_turns"
BAD_CALL = "bad_call"
REPAIRED_CALL = "repaired_call"
CALL_IN_ANSWER = "call_in_answer"
UNCLOSED_TAG = "unclosed_tag"

Box = Sequence[float]


@dataclass(frozen=True)
class Reward:
    """One reward term.

    Attributes:
        value: The reward, in ``[0, 1]``.
        reason: Why it is 0 (a reason code), or ``None``.
    """

    value: float
    reason: str | None = None


def _box(value: Any) -> tuple[float, float, float, float] | None:
    """A finite ``xyxy`` box with positive area, or None."""
    try:
        x1, y1, x2, y2 = (float(v) for v in value)
    except (TypeError, ValueError, OverflowError):
        return None
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)) or x2 <= x1 or y2 <= y1:
        return None
    return x1, y1, x2, y2


def roi_iou_reward(pred_xyxy_px: Box | None, gt_xyxy_px: Box | None) -> Reward:
    """IoU of the requested ROI with the ground-truth ROI, both in source pixels.

    Worked: ``[0, 0, 100, 100]`` against ``[50, 0, 150, 100]`` overlap in 50 x 100 px of a
    15000 px union: 1/3.
    """
    if gt_xyxy_px is None:
        return Reward(0.0, NO_GT_ROI)
    gt = _box(gt_xyxy_px)
    if gt is None:
        return Reward(0.0, BAD_GT_ROI)
    if pred_xyxy_px is None:
        return Reward(0.0, NO_BOX)
    pred = _box(pred_xyxy_px)
    if pred is None:
        return Reward(0.0, BAD_BOX)
    iw = min(pred[2], gt[2]) - max(pred[0], gt[0])
    ih = min(pred[3], gt[3]) - max(pred[1], gt[1])
    if iw <= 0 or ih <= 0:
        return Reward(0.0, NO_OVERLAP)
    inter = iw * ih
    union = (pred[2] - pred[0]) * (pred[3] - pred[1]) + (gt[2] - gt[0]) * (gt[3] - gt[1]) - inter
    return Reward(min(1.0, inter / union))


def region_guided_reward(
    pred_xyxy_px: Box | None,
    gt_xyxy_px: Box | None,
    image_hw: tuple[int, int] | Sequence[int],
    *,
    region_scale: float = DEFAULT_REGION_SCALE,
) -> Reward:
    """``tanh(alpha / d)``: dense, 1 when the predicted box centre is on the true one,
    falling towards 0 with the centre distance ``d`` (source pixels);
    ``alpha = region_scale * max(H, W)``. See the module docstring for how this relates to
    the paper's sigmoid and the release's ``tanh(200 / d)``.

    Worked: ``image_hw = (5000, 5000)`` (``alpha = 200``), centres 200 px apart:
    ``tanh(1) = 0.7616``.
    """
    if gt_xyxy_px is None:
        return Reward(0.0, NO_GT_ROI)
    gt = _box(gt_xyxy_px)
    if gt is None:
        return Reward(0.0, BAD_GT_ROI)
    try:
        side = float(max(image_hw))
    except (TypeError, ValueError):
        return Reward(0.0, BAD_IMAGE_HW)
    if not math.isfinite(side) or side <= 0:
        return Reward(0.0, BAD_IMAGE_HW)
    if pred_xyxy_px is None:
        return Reward(0.0, NO_BOX)
    pred = _box(pred_xyxy_px)
    if pred is None:
        return Reward(0.0, BAD_BOX)
    d = math.hypot((pred[0] + pred[2] - gt[0] - gt[2]) / 2, (pred[1] + pred[3] - gt[1] - gt[3]) / 2)
    if d == 0:
        return Reward(1.0)
    return Reward(math.tanh(region_scale * side / d))


def answer_reward(record: Any, prediction: Any, score_fn: ScoreFn) -> Reward:
    """``score_fn(record, prediction)`` clipped to ``[0, 1]``; 0 with a reason for an empty
    answer, a scorer that raises, or one that returns a non-number or NaN."""
    if not isinstance(prediction, str) or not prediction.strip():
        return Reward(0.0, EMPTY_ANSWER)
    try:
        value = float(score_fn(record, prediction))
    except Exception:
        return Reward(0.0, SCORE_ERROR)
    if not math.isfinite(value):
        return Reward(0.0, BAD_SCORE)
    return Reward(min(1.0, max(0.0, value)))


def _tags_closed(text: str) -> bool:
    return all(text.count(f"<{t}>") == text.count(f"</{t}>") for t in ("think", "answer"))


def format_reward(turn_texts: Sequence[str]) -> Reward:
    """1 for a well-formed trajectory, else 0 with the first problem (ZoomEarth's
    ``r_pattern``).

    Well-formed: every turn but the last holds a ``zoom_in`` call that parses with no
    repairs; the last turn holds no call and a non-empty answer; ``<think>`` and
    ``<answer>`` tags are balanced in every turn.
    """
    if isinstance(turn_texts, str):
        turn_texts = [turn_texts]
    try:
        texts = [t if isinstance(t, str) else "" for t in turn_texts]
    except TypeError:
        return Reward(0.0, NO_TURNS)
    if not texts:
        return Reward(0.0, NO_TURNS)
    for text in texts[:-1]:
        call = parse_tool_call(text)
        if isinstance(call, ToolCallError):
            return Reward(0.0, BAD_CALL)
        if call.repairs or call.extra_calls:
            return Reward(0.0, REPAIRED_CALL)
        if not _tags_closed(text):
            return Reward(0.0, UNCLOSED_TAG)
    last = texts[-1]
    if CALL_OPEN in last or CALL_CLOSE in last:
        return Reward(0.0, CALL_IN_ANSWER)
    if not _tags_closed(last):
        return Reward(0.0, UNCLOSED_TAG)
    if not extract_answer(last).strip():
        return Reward(0.0, EMPTY_ANSWER)
    return Reward(1.0)


def first_call_parses(text: str) -> bool:
    """Whether ``text`` holds a ``zoom_in`` call (well-formed or not): an attempt."""
    call = parse_tool_call(text)
    return not (isinstance(call, ToolCallError) and call.reason == NO_TOOL_CALL)


@dataclass(frozen=True)
class RewardWeights:
    """Weights of the four terms (defaults: ZoomEarth's, ``beta = 0.05``)."""

    iou: float = 1.0
    """Weight of the ROI IoU."""
    region: float = 1.0
    """Weight of the region-guided reward."""
    answer: float = 1.0
    """Weight of answer correctness."""
    format: float = 0.05
    """Weight of the format (pattern) reward: the paper's beta."""
    region_scale: float = DEFAULT_REGION_SCALE
    """``alpha / max(H, W)`` of the region-guided reward."""

    def __post_init__(self) -> None:
        for name in ("iou", "region", "answer", "format", "region_scale"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ValueError(f"rewards.{name}={v!r}: give a finite number")
            if v < 0:
                raise ValueError(f"rewards.{name}={v}: give a number >= 0")
        if self.region_scale == 0:
            raise ValueError("rewards.region_scale=0: give a positive fraction (default 0.04)")


@dataclass(frozen=True)
class RewardBreakdown:
    """The weighted total and each term.

    Attributes:
        total: ``sum(weight * value)``.
        terms: Each term's :class:`Reward` by name (``iou``, ``region``, ``answer``,
            ``format``).
    """

    total: float
    terms: Mapping[str, Reward] = field(default_factory=dict)

    def values(self) -> dict[str, float]:
        return {k: r.value for k, r in self.terms.items()}

    def reasons(self) -> dict[str, str]:
        return {k: r.reason for k, r in self.terms.items() if r.reason is not None}


def combine(terms: Mapping[str, Reward], weights: RewardWeights) -> RewardBreakdown:
    """The weighted sum of the terms present (names as in :class:`RewardWeights`)."""
    total = sum(getattr(weights, name) * r.value for name, r in terms.items())
    return RewardBreakdown(float(total), dict(terms))


def zoom_reward(
    turn_texts: Sequence[str],
    requested_xyxy_px: Sequence[Box | None],
    gt_roi_xyxy_px: Box | None,
    image_hw: Sequence[int],
    *,
    record: Any = None,
    score_fn: ScoreFn | None = None,
    weights: RewardWeights | None = None,
    answer: str | None = None,
) -> RewardBreakdown:
    """All terms of one rollout of the zoom loop, and their weighted total.

    Args:
        turn_texts: The model's turns, in order (a :class:`~earthvlm.uhr.loop.ZoomTrace`'s
            ``[t.text for t in trace.turns]``).
        requested_xyxy_px: The boxes the model asked for, in source pixels, in order
            (``trace.requested_xyxy_px[1:]``); the first is scored.
        gt_roi_xyxy_px: The true ROI in source pixels; ``None`` for a global question.
        image_hw: ``(height, width)`` of the source.
        record: Passed to ``score_fn``.
        score_fn: Answer correctness; ``None`` leaves the answer term out.
        weights: Term weights (default: the paper's).
        answer: The final answer; default extracted from the last turn.
    """
    w = weights or RewardWeights()
    try:
        boxes = [b for b in requested_xyxy_px if b is not None]
    except TypeError:
        boxes = []
    first = boxes[0] if boxes else None
    terms: dict[str, Reward] = {
        "iou": roi_iou_reward(first, gt_roi_xyxy_px),
        "region": region_guided_reward(
            first, gt_roi_xyxy_px, image_hw, region_scale=w.region_scale
        ),
        "format": format_reward(turn_texts),
    }
    if score_fn is not None:
        if answer is None:
            texts = [turn_texts] if isinstance(turn_texts, str) else list(turn_texts or [])
            answer = extract_answer(texts[-1]) if texts and isinstance(texts[-1], str) else ""
        terms["answer"] = answer_reward(record, answer, score_fn)
    return combine(terms, w)


__all__ = [
    "DEFAULT_REGION_SCALE",
    "Reward",
    "RewardBreakdown",
    "RewardWeights",
    "ScoreFn",
    "answer_reward",
    "combine",
    "first_call_parses",
    "format_reward",
    "region_guided_reward",
    "roi_iou_reward",
    "zoom_reward",
]
