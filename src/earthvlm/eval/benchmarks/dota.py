"""``dota``: DOTA oriented-object detection written as text; AP_nc (formats.md).

The split is read by :class:`earthvlm.data.sources.dota.DOTA` (``images/`` and
``labelTxt/``: eight corner coordinates, the class and the difficult flag per line);
each label file is one record asking for every object as ``x1,y1,...,x4,y4 class`` in
pixels of the image, "There is none." for an empty one. Evaluate on the 512 px patches of
the DOTA split (formats.md: gap 100) rather than whole scenes of thousands of pixels.

Scoring is :class:`~earthvlm.eval.benchmarks.synth_detection.SynthDetection`'s: the text
is read back by :func:`earthvlm.data.detection_parse.parse_detections` (class names
matched to the version's list) and scored by
:func:`earthvlm.eval.metrics.evaluate_detections` with constant confidences (AP_nc), at
IoU 0.5 (headline), 0.75 and 0.5:0.95, with mF1 beside. Objects flagged difficult are
neither positives nor false positives (DOTA_devkit). Item score (and RL reward): the
image's own AP_nc at 0.5; an empty image scores 1 for an explicit "none".
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from earthvlm.data.detection_parse import ParsedDetections, parse_detections
from earthvlm.data.record import Record
from earthvlm.data.sources.dota import CLASSES, DOTA
from earthvlm.eval.benchmarks._synth import image_hw
from earthvlm.eval.benchmarks.base import Benchmark, BenchmarkError
from earthvlm.eval.benchmarks.synth_detection import SynthDetection, box_geometry
from earthvlm.eval.metrics import Objects


@dataclass(kw_only=True)
class DOTADetection(SynthDetection):
    """DOTA detection as text (AP_nc at 0.5, 0.75, 0.5:0.95; mF1).

    Attributes:
        version: ``"1.0"``, ``"1.5"`` or ``"2.0"`` (the class list).
        image_dir: The images folder, relative to the root.
        label_dir: The label folder, relative to the root.
        list_classes: Name the version's classes in the instruction.
    """

    name: ClassVar[str] = "dota"
    version: ClassVar[str] = "1"
    files: ClassVar[tuple[str, ...]] = DOTA.files
    sources: ClassVar[tuple[str, ...]] = ()

    dota_version: Literal["1.0", "1.5", "2.0"] = "1.0"
    image_dir: str = "images"
    label_dir: str = "labelTxt"
    list_classes: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dota_version not in CLASSES:
            raise ValueError(f"dota_version={self.dota_version!r}: give one of {list(CLASSES)}")

    def image_root(self, root: str | Path) -> Path:
        return Benchmark.image_root(self, root)

    def _read(self, root: Path) -> Iterator[Record]:
        if not (root / self.label_dir).is_dir():
            raise BenchmarkError(
                f"{root}: no {self.label_dir}/ folder; give the DOTA split folder, which "
                f"holds {self.image_dir}/ and {self.label_dir}/"
            )
        return self._records(root)

    def _records(self, root: Path) -> Iterator[Record]:
        reader = DOTA(
            split="test", version=self.dota_version, image_dir=self.image_dir,
            label_dir=self.label_dir, list_classes=self.list_classes,
        )  # fmt: skip
        for rec in reader.read(root):
            self.ledger.count_ok()
            yield rec
        self.ledger.merge_left_out(reader.ledger)

    def parse(self, record: Record, prediction: str | None) -> ParsedDetections:
        hw = image_hw(record)
        if hw is None:
            raise BenchmarkError(f"record {record.id}: the image has no size; re-read the split")
        classes = CLASSES[self.dota_version]
        return parse_detections(prediction, width=hw[1], height=hw[0], classes=classes)

    def _objects(
        self, records: Sequence[Record], predictions: Sequence[str | None]
    ) -> tuple[Objects, Objects, list[ParsedDetections]]:
        pred, _, parsed = super()._objects(records, predictions)
        ids, labels, geoms, difficult = [], [], [], []
        for rec in records:
            hard = set(rec.meta.get("difficult") or ())
            for k, box in enumerate(rec.boxes):
                ids.append(rec.id)
                labels.append(box.label)
                geoms.append(box_geometry(box))
                difficult.append(k in hard)
        gt = Objects.from_arrays(ids, labels, geoms, difficult=difficult)
        return pred, gt, parsed


__all__ = ["DOTADetection"]
