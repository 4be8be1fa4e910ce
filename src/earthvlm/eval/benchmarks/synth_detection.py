"""``synth_detection``: oriented-object detection written as text; AP_nc (RSCoVLM sec. III-E).

The model lists every object as ``x1,y1,...,x4,y4 class`` in image pixels, or "There is
none." for an empty image. Its text is read back with
:func:`earthvlm.data.detection_parse.parse_detections` (repairs and drops counted, class
names matched to the synthetic catalogue) and scored against the record's boxes with
:func:`earthvlm.eval.metrics.evaluate_detections` with constant confidences (AP_nc: the
order the model wrote its objects ranks them), at IoU 0.5, 0.75 and 0.5:0.95; mF1 beside.

Per image (the item score and the RL reward): the mAP_nc at IoU 0.5 of that image alone
over the classes it shows; an image without objects scores 1 when the answer is an
explicit "no objects" ("There is none.", ``[]``) and 0 otherwise. Categories are the
classes, scored by their AP_nc at 0.5 over the whole run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from earthvlm.data.detection_parse import ParsedDetections, parse_detections
from earthvlm.data.record import Box, Record
from earthvlm.eval.benchmarks._synth import SynthBenchmark, image_hw
from earthvlm.eval.benchmarks.base import BenchmarkError, CategoryScore, mean_score
from earthvlm.eval.metrics import DetectionResult, Objects, evaluate_detections
from earthvlm.synth.catalogue import CLASSES


def box_geometry(box: Box) -> list[float]:
    """A record box as ``evaluate_detections`` reads it: 8 quad values or an ``xyxy``."""
    if box.quad_px is not None:
        return list(box.quad_px)
    if box.xyxy_px is not None:
        return list(box.xyxy_px)
    return [v for xy in box.corners_px() for v in xy]


@dataclass(kw_only=True)
class SynthDetection(SynthBenchmark):
    """Synthetic detection as text (AP_nc at 0.5, 0.75, 0.5:0.95; mF1)."""

    name: ClassVar[str] = "synth_detection"
    version: ClassVar[str] = "2"  # 2: UHR scenes are asked too
    metric: ClassVar[str] = "ap50_nc"
    max_new_tokens: ClassVar[int] = 256
    tasks: ClassVar[tuple[str, ...]] = ("detection",)
    sources: ClassVar[tuple[str, ...]] = ("synth",)
    #: Class names the parser maps labels onto.
    classes: ClassVar[tuple[str, ...]] = tuple(sorted(CLASSES))

    def category(self, record: Record) -> str:
        return "with objects" if record.boxes else "empty image"

    def parse(self, record: Record, prediction: str | None) -> ParsedDetections:
        """The objects of one answer, in pixels of the record's image.

        Raises:
            BenchmarkError: If the record's image has no size.
        """
        hw = image_hw(record)
        if hw is None:
            raise BenchmarkError(
                f"record {record.id}: detection needs the image size (width, height) to "
                "read boxes; add them to the record's image"
            )
        return parse_detections(prediction, width=hw[1], height=hw[0], classes=self.classes)

    def _objects(
        self, records: Sequence[Record], predictions: Sequence[str | None]
    ) -> tuple[Objects, Objects, list[ParsedDetections]]:
        ids, labels, geoms = [], [], []
        parsed = []
        for rec, p in zip(records, predictions, strict=True):
            got = self.parse(rec, p)
            parsed.append(got)
            for obj in got.objects:
                ids.append(rec.id)
                labels.append(obj.label)
                geoms.append(list(obj.coords))
        gt_ids = [r.id for r in records for _ in r.boxes]
        gt = Objects.from_arrays(
            gt_ids, [b.label for r in records for b in r.boxes],
            [box_geometry(b) for r in records for b in r.boxes],
        )  # fmt: skip
        return Objects.from_arrays(ids, labels, geoms), gt, parsed

    def _item(self, record: Record, prediction: str | None) -> float | None:
        pred, gt, (parsed,) = self._objects([record], [prediction])
        if not record.boxes:
            says_none = parsed.report.style in ("none", "json") and parsed.report.candidates == 0
            return 1.0 if says_none else 0.0
        result = evaluate_detections(pred, gt, iou_thresholds=(0.5,))
        v = result.map50
        return None if math.isnan(v) else float(v)

    def _evaluate(
        self, records: Sequence[Record], predictions: Sequence[str | None]
    ) -> tuple[DetectionResult, list[ParsedDetections]]:
        pred, gt, parsed = self._objects(records, predictions)
        return evaluate_detections(pred, gt), parsed

    def _summary(
        self,
        records: Sequence[Record],
        predictions: Sequence[str | None],
        item_scores: Sequence[float | None],
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        result, parsed = self._evaluate(records, predictions)
        empty = [s for r, s in zip(records, item_scores, strict=True) if not r.boxes]
        dropped: dict[str, int] = {}
        for p in parsed:
            for k, v in p.report.dropped.items():
                dropped[k] = dropped.get(k, 0) + v
        metrics = {
            "ap50_nc": result.map50,
            "ap75_nc": result.map75,
            "ap50_95_nc": result.map50_95,
            "mf1": result.mf1,
            "mean_image_score": mean_score(item_scores),
            "empty_image_accuracy": mean_score(empty),
            "objects_predicted": sum(len(p.objects) for p in parsed),
        }
        details = {
            "detection": result.to_dict(),
            "parse": {
                "objects_kept": sum(len(p.objects) for p in parsed),
                "repaired": sum(p.report.repaired for p in parsed),
                "dropped": dict(sorted(dropped.items())),
            },
        }
        return metrics, details

    def _categories(
        self,
        records: Sequence[Record],
        predictions: Sequence[str | None],
        item_scores: Sequence[float | None],
    ) -> dict[str, CategoryScore]:
        result = self._evaluate(records, predictions)[0]
        col = list(result.iou_thresholds).index(0.5)
        return {
            c: CategoryScore(int(result.n_pos[k]), float(result.ap[k, col]))
            for k, c in enumerate(result.classes)
        }


__all__ = ["SynthDetection", "box_geometry"]
