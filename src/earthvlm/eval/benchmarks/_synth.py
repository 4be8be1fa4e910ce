"""Reading the synthetic world's records for its benchmarks (not public API).

A synthetic dataset (``earthvlm synth``, :func:`earthvlm.synth.dataset.generate_dataset`)
is one ``records.jsonl`` beside ``images/``; each benchmark takes the records of its
tasks, in file order, and counts the others as skipped (``other_task``). Questions on
ultra-high-resolution scenes are asked too: the direct arm reads the scene at the model's
pixel budget (reduced, never decoded whole past the decode budget), the zoom arm
(``earthvlm eval --zoom``, :mod:`earthvlm.eval.zoom`) through the zoom loop. The records
are asked as written: their prompts are those the models were trained on.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from earthvlm.data.record import Record
from earthvlm.eval.benchmarks.base import Benchmark, read_jsonl_records, records_file
from earthvlm.eval.metrics import score_open_ended


def image_hw(record: Record) -> tuple[int, int] | None:
    """``(height, width)`` of the record's first image, None when it has no known size."""
    image = record.images[0] if record.images else None
    if image is None or not image.width or not image.height:
        return None
    return image.height, image.width


def exact_match(
    prediction: str | None, reference: str, normalise: Mapping[str, bool]
) -> float | None:
    """One short answer scored by exact match after normalisation
    (:func:`~earthvlm.eval.metrics.score_open_ended`): 1.0 or 0.0, None when the
    reference cannot be scored."""
    table = score_open_ended([prediction], [reference], normalise=normalise).by_source.get("all")
    return None if table is None else float(table.n_correct)


@dataclass(kw_only=True)
class SynthBenchmark(Benchmark):
    """A benchmark over the records of a synthetic dataset with given tasks."""

    files: ClassVar[tuple[str, ...]] = ("records.jsonl", "images/")
    #: Record tasks this benchmark asks.
    tasks: ClassVar[tuple[str, ...]] = ()
    #: Record sources it asks (empty: any).
    sources: ClassVar[tuple[str, ...]] = ()

    def image_root(self, root: str | Path) -> Path:
        return records_file(root)[1]

    def skip_reason(self, record: Record) -> str | None:
        """Why the record is not this benchmark's (None when it is)."""
        if record.task not in self.tasks or (self.sources and record.source not in self.sources):
            return "other_task"
        return None

    def wants(self, record: Record) -> bool:
        """Whether the record belongs to this benchmark."""
        return self.skip_reason(record) is None

    def _read(self, root: Path) -> Iterator[Record]:
        path, images = records_file(root)
        records = read_jsonl_records(path, images, self.ledger)
        return self._keep(records)

    def _keep(self, records: list[Record]) -> Iterator[Record]:
        for rec in records:
            reason = self.skip_reason(rec)
            if reason is None:
                self.ledger.count_ok()
                yield rec
            else:
                self.ledger.count_skipped(reason)


__all__ = ["SynthBenchmark", "exact_match", "image_hw"]
