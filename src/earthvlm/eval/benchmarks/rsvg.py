"""``dior_rsvg`` and ``rsvg``: referring-expression grounding, Acc@0.5 (formats.md).

The test files are read in the refGeo layout (GeoGround, Zhou et al. 2024) by
:class:`earthvlm.data.sources.refgeo.RefGeo`::

    root/
      metainfo/dior_rsvg_test.jsonl   {"image_id": "09991.jpg", "question": "...",
                                       "bbox": [x1, y1, x2, y2]} per line
      images/dior_rsvg/09991.jpg ...   (rsvg: metainfo/rsvg_test.jsonl, images/rsvg/)

The prompt asks for ``x1,y1,x2,y2 object`` in pixels of the image. Scoring
(:func:`earthvlm.eval.metrics.score_grounding`): the first box in the answer; correct iff
its IoU with the reference exceeds 0.5; an answer without a readable box is a miss.
Acc@0.5 is the headline, Acc@0.3 / 0.7 / 0.9 and the mean IoU beside it. A line whose
reference holds several boxes (not in these two sets) is scored against the first;
a line with none is skipped.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from earthvlm.data.record import Record
from earthvlm.data.sources.refgeo import SUBSETS, RefGeo
from earthvlm.eval.benchmarks.base import Benchmark, BenchmarkError
from earthvlm.eval.metrics import score_grounding

#: The IoU an answer must exceed.
IOU_THRESHOLD = 0.5


@dataclass(kw_only=True)
class DIORRSVG(Benchmark):
    """DIOR-RSVG (Zhan et al. 2023) visual grounding (Acc@0.5, mean IoU).

    Attributes:
        split: ``test`` (default) or ``val``.
    """

    name: ClassVar[str] = "dior_rsvg"
    version: ClassVar[str] = "1"
    metric: ClassVar[str] = "acc@0.5"
    max_new_tokens: ClassVar[int] = 48
    files: ClassVar[tuple[str, ...]] = (
        "metainfo/dior_rsvg_<split>.jsonl",
        "images/dior_rsvg/<image_id>",
    )
    #: The refGeo subset prefix.
    subset_prefix: ClassVar[str] = "dior_rsvg"

    split: str = "test"

    def __post_init__(self) -> None:
        super().__post_init__()
        if f"{self.subset_prefix}_{self.split}" not in SUBSETS:
            raise ValueError(f"split={self.split!r}: {self.name} has test and val")

    @property
    def subset(self) -> str:
        """The refGeo subset read."""
        return f"{self.subset_prefix}_{self.split}"

    def _read(self, root: Path) -> Iterator[Record]:
        image_dir, annotations = SUBSETS[self.subset]
        if not (root / annotations).is_file():
            raise BenchmarkError(
                f"{root}: no {annotations}; give the refGeo root, which holds "
                f"{annotations} and {image_dir}/"
            )
        return self._records(root)

    def _records(self, root: Path) -> Iterator[Record]:
        reader = RefGeo(subset=self.subset)
        for rec in reader.read(root):
            self.ledger.count_ok()
            yield rec
        self.ledger.merge_left_out(reader.ledger)

    def reference_px(self, record: Record) -> list[float] | None:
        """The first reference box, ``xyxy`` in image pixels (None when there is none)."""
        for box in record.boxes:
            if box.xyxy_px is not None:
                return [float(v) for v in box.xyxy_px]
        return None

    def _item(self, record: Record, prediction: str | None) -> float | None:
        r = score_grounding([prediction], [self.reference_px(record)], thresholds=(IOU_THRESHOLD,))
        return r.accuracy_at(IOU_THRESHOLD) if r.n else None

    def _summary(
        self,
        records: Sequence[Record],
        predictions: Sequence[str | None],
        item_scores: Sequence[float | None],
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        r = score_grounding(list(predictions), [self.reference_px(x) for x in records])
        d = r.to_dict()
        metrics = {k: v for k, v in d.items() if k.startswith("acc@") or k == "mean_iou"}
        return metrics, {"grounding": d}


@dataclass(kw_only=True)
class RSVG(DIORRSVG):
    """RSVG (Sun et al. 2022) visual grounding (Acc@0.5, mean IoU)."""

    name: ClassVar[str] = "rsvg"
    files: ClassVar[tuple[str, ...]] = ("metainfo/rsvg_<split>.jsonl", "images/rsvg/<image_id>")
    subset_prefix: ClassVar[str] = "rsvg"


__all__ = ["DIORRSVG", "IOU_THRESHOLD", "RSVG"]
