"""``synth_grounding``: locate one described object; Acc@0.5 of the first box in the answer.

The synthetic grounding records ask for ``[x1, y1, x2, y2]`` and answer in the frame named
by ``meta["box_format"]`` (``xyxy_norm1000``: 0-1000 along each axis, the Qwen3-VL
convention); the pixel box is kept in ``meta["answer_xyxy_px"]``. The first box of the
model's answer (:func:`~earthvlm.eval.metrics.parse_box`) is brought from that frame to
image pixels (:func:`earthvlm.geo.boxes.frame_to_px`) and scored against the pixel box
with :func:`~earthvlm.eval.metrics.score_grounding`: correct iff IoU > 0.5; an answer
without a usable box is a miss (IoU 0), counted with its reason. Categories are the
object classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from earthvlm.data.record import Record
from earthvlm.eval.benchmarks._synth import SynthBenchmark, image_hw
from earthvlm.eval.metrics import parse_box, score_grounding
from earthvlm.geo.boxes import frame_to_px

#: The record's ``box_format`` -> the frame of :func:`earthvlm.geo.boxes.frame_to_px`
#: (None: pixels of the image, no conversion).
FRAMES: dict[str, str | None] = {"xyxy_norm1000": "norm1000", "xyxy_px": None}
#: The IoU an answer must exceed.
IOU_THRESHOLD = 0.5


@dataclass(kw_only=True)
class SynthGrounding(SynthBenchmark):
    """Synthetic visual grounding (Acc@0.5, mean IoU)."""

    name: ClassVar[str] = "synth_grounding"
    version: ClassVar[str] = "2"  # 2: UHR scenes are asked too
    metric: ClassVar[str] = "acc@0.5"
    max_new_tokens: ClassVar[int] = 32
    tasks: ClassVar[tuple[str, ...]] = ("grounding",)
    sources: ClassVar[tuple[str, ...]] = ("synth",)

    def category(self, record: Record) -> str:
        classes = record.meta.get("classes") or []
        return str(classes[0]) if classes else "unknown"

    def _to_px(self, record: Record, box: Sequence[float]) -> list[float] | None:
        """A box in the record's answer frame -> image pixels (None: frame unusable)."""
        frame = FRAMES.get(str(record.meta.get("box_format", "xyxy_px")), "unknown")
        if frame is None:
            return [float(v) for v in box]
        hw = image_hw(record)
        if frame == "unknown" or hw is None:
            return None
        return [float(v) for v in frame_to_px(box, frame, source_hw=hw, resized_hw=hw)]

    def reference_px(self, record: Record) -> list[float] | None:
        """The reference box in image pixels (None when the record has none)."""
        px = record.meta.get("answer_xyxy_px")
        if isinstance(px, list | tuple) and len(px) == 4:
            return [float(v) for v in px]
        parsed = parse_box(self.reference(record))
        return None if parsed.box_xyxy is None else self._to_px(record, parsed.box_xyxy)

    def prediction_px(self, record: Record, prediction: str | None) -> str | list[float] | None:
        """The answer's first box in pixels, or the text itself when it holds no usable
        box (the scorer then records why it is a miss)."""
        parsed = parse_box(prediction)
        if parsed.box_xyxy is None:
            return prediction
        return self._to_px(record, parsed.box_xyxy)

    def _pairs(
        self, records: Sequence[Record], predictions: Sequence[str | None]
    ) -> tuple[list[Any], list[Any]]:
        preds = [self.prediction_px(r, p) for r, p in zip(records, predictions, strict=True)]
        refs = [self.reference_px(r) for r in records]
        return preds, refs

    def _item(self, record: Record, prediction: str | None) -> float | None:
        preds, refs = self._pairs([record], [prediction])
        r = score_grounding(preds, refs, thresholds=(IOU_THRESHOLD,))
        return r.accuracy_at(IOU_THRESHOLD) if r.n else None

    def _summary(
        self,
        records: Sequence[Record],
        predictions: Sequence[str | None],
        item_scores: Sequence[float | None],
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        r = score_grounding(*self._pairs(records, predictions))
        d = r.to_dict()
        metrics = {k: v for k, v in d.items() if k.startswith("acc@") or k == "mean_iou"}
        return metrics, {"grounding": d}


__all__ = ["SynthGrounding"]
