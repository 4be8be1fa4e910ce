"""``xlrs_lite``: XLRS-Bench-lite, multiple-choice VQA on ultra-high-resolution images.

Reads the release's rows from a local folder (no download)::

    root/
      xlrs_lite.jsonl      one row per line (or xlrs_lite.json: a list of rows)
      images/...           the images the rows name, paths relative to root

Row fields as the release writes them: ``index``, ``image`` (a list of paths; two images
for the change tasks; a single string is read as a list of one), ``question``,
``multi-choice options`` (strings ``"(A) ..."``), ``answer`` (letters; several for
overall land-use classification), ``category`` ("L2/L3", e.g. "Counting/Regional
counting") and ``l2-category``. The release on the hub stores images inside parquet
files: write them out as files under ``images/`` and their relative paths into ``image``.

Prompt: the release's (lmms-eval ``xlrs`` task) exactly: the question, then "The choices
are listed below:", the options one per line, and the instruction to answer with the
letter(s) (the multi-answer wording for overall land use). Greedy decoding, 64 new tokens.
Scoring: :func:`earthvlm.eval.metrics.score_xlrs` (XLRS-Bench's extraction rule, set
equality with the answer letters); micro = all items, macro = mean over the "L2/L3"
subtasks present (the paper's macro on a full run). Categories are the subtasks.

Rows are checked by :func:`earthvlm.data.sources.xlrs.parse_xlrs_row`, the parser the
training reader ``xlrs-bench-lite`` shares. A malformed row is counted as failed in
:attr:`Benchmark.ledger` with its reason and left out; an image that is missing on disk
is not checked here: the run records the sample as
failed (``missing_image``) and scores it as wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import ValidationError

from earthvlm.data.record import ImageRef, Record, primary_error
from earthvlm.data.sources._base import RowError
from earthvlm.data.sources.xlrs import (
    ANNOTATION_FILES,
    OPTIONS_FIELD,
    MCQRow,
    parse_xlrs_row,
    xlrs_prompt,
)
from earthvlm.data.sources.xlrs import mcq_record as _source_mcq_record
from earthvlm.eval.benchmarks.base import (
    BadRow,
    Benchmark,
    BenchmarkError,
    release_rows,
    unique_records,
)
from earthvlm.eval.metrics import score_xlrs


def mcq_record(rid: str, source: str, row: MCQRow) -> Record:
    """A test-split record of a checked MCQ row (images named, not opened).

    Raises:
        BadRow: If the record is invalid (the reason is the validation error's type).
    """
    try:
        return _source_mcq_record(rid, source, "test", [ImageRef(path=p) for p in row.images], row)
    except ValidationError as e:
        raise BadRow(str(primary_error(e)["type"])) from None


def checked(parse: Callable[[Any], MCQRow], row: Any) -> MCQRow:
    """``parse(row)``, its :class:`RowError` as a :class:`BadRow` with the same reason."""
    try:
        return parse(row)
    except RowError as e:
        raise BadRow(e.reason) from None


@dataclass(kw_only=True)
class XLRSBenchLite(Benchmark):
    """XLRS-Bench-lite MCQ (micro and macro accuracy).

    Attributes:
        annotation: The rows file under the root (default: the first of
            :data:`ANNOTATION_FILES` found).
        release_extraction: Use the release's letter regex, which matches every a-e letter
            (see :func:`earthvlm.eval.metrics.extract_xlrs`); default: the rule as described.
    """

    name: ClassVar[str] = "xlrs_lite"
    version: ClassVar[str] = "1"
    metric: ClassVar[str] = "micro"
    max_new_tokens: ClassVar[int] = 64
    files: ClassVar[tuple[str, ...]] = ("xlrs_lite.jsonl (or .json)", "images/")

    annotation: str | None = None
    release_extraction: bool = False

    def category(self, record: Record) -> str:
        return str(record.meta.get("category", "unknown"))

    def _annotation(self, root: Path) -> Path:
        names = (self.annotation,) if self.annotation else ANNOTATION_FILES
        for name in names:
            if (root / name).is_file():
                return root / name
        raise BenchmarkError(
            f"{root}: none of {', '.join(names)} found; put the XLRS-Bench-lite rows there "
            "(see earthvlm.eval.benchmarks.xlrs for the layout)"
        )

    def _read(self, root: Path) -> Iterator[Record]:
        return self._records(self._annotation(root))

    def _records(self, path: Path) -> Iterator[Record]:
        return unique_records(
            release_rows(path, self.ledger),
            self._record,
            self.ledger,
            duplicate_reason="duplicate_index",
        )

    def _record(self, row: Any) -> Record:
        parsed = checked(parse_xlrs_row, row)
        return mcq_record(f"xlrs-{parsed.key}", "xlrs-bench-lite", parsed)

    def _item(self, record: Record, prediction: str | None) -> float | None:
        r = score_xlrs(
            [prediction], [self.reference(record)], [self.category(record)],
            release=self.release_extraction,
        )  # fmt: skip
        return float(r.n_correct)

    def _summary(
        self,
        records: Sequence[Record],
        predictions: Sequence[str | None],
        item_scores: Sequence[float | None],
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        r = score_xlrs(
            predictions, [self.reference(x) for x in records],
            [self.category(x) for x in records], release=self.release_extraction,
        )  # fmt: skip
        metrics = {"micro": r.micro, "macro": r.macro, "abstain_rate": r.abstain_rate}
        return metrics, {"mcq": r.to_dict()}


__all__ = [
    "ANNOTATION_FILES",
    "OPTIONS_FIELD",
    "XLRSBenchLite",
    "checked",
    "mcq_record",
    "xlrs_prompt",
]
