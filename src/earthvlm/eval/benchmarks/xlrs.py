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

A malformed row is counted as failed in :attr:`Benchmark.ledger` with its reason and left
out; an image that is missing on disk is not checked here: the run records the sample as
failed (``missing_image``) and scores it as wrong.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import ValidationError

from earthvlm.data.record import ImagePart, ImageRef, Message, Record, TextPart, primary_error
from earthvlm.eval.benchmarks.base import (
    BadRow,
    Benchmark,
    BenchmarkError,
    release_rows,
    unique_records,
)
from earthvlm.eval.metrics import parse_answer_letters, score_xlrs

#: Annotation files looked for under the root, in order.
ANNOTATION_FILES = ("xlrs_lite.jsonl", "xlrs_lite.json")
OPTIONS_FIELD = "multi-choice options"
#: The subtask whose questions may have several correct options.
MULTI_ANSWER = "Land use classification/Overall Land use classification"
_SINGLE = (
    "\nSelect the best answer for the multiple-choice question based on the image. Only "
    "respond with the letter corresponding to the correct answer (A, B, C, D).\nThe answer is:"
)
_MULTI = (
    "\nSelect the best answer(s) for the multiple-choice question based on the image. There "
    "may be more than one correct option. Only respond with the letter(s) corresponding to "
    "the correct answer(s) (A, B, C, D), with multiple choices separated by spaces.The "
    "answer(s) is(are):"
)


def xlrs_prompt(question: str, options: Sequence[str], category: str) -> str:
    """The release's prompt for one row (its spacing kept, run-on sentence included)."""
    listed = "The choices are listed below:\n" + "\n".join(options) + "\n"
    return question + listed + (_MULTI if category == MULTI_ANSWER else _SINGLE)


def mcq_record(
    rid: str,
    source: str,
    images: list[str],
    prompt: str,
    letters: set[str],
    meta: dict[str, Any],
) -> Record:
    """A test-split MCQ record: every image, then the prompt; the answer is the sorted
    letters.

    Raises:
        BadRow: If the record is invalid (the reason is the validation error's type).
    """
    try:
        return Record(
            id=rid,
            task="mcq",
            source=source,
            split="test",
            images=[ImageRef(path=p) for p in images],
            messages=[
                Message(
                    role="user",
                    content=[
                        *(ImagePart(index=i) for i in range(len(images))),
                        TextPart(text=prompt),
                    ],
                ),
                Message(role="assistant", content="".join(sorted(letters))),
            ],
            meta=meta,
        )
    except ValidationError as e:
        raise BadRow(str(primary_error(e)["type"])) from None


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
        if not isinstance(row, dict):
            raise BadRow("not_an_object")
        for key in ("index", "image", "question", OPTIONS_FIELD, "answer", "category"):
            if row.get(key) in (None, "", []):
                raise BadRow(f"missing_field:{key}")
        options = row[OPTIONS_FIELD]
        if isinstance(options, str):
            options = [o for o in options.splitlines() if o.strip()]
        images = row["image"] if isinstance(row["image"], list) else [row["image"]]
        if not all(isinstance(o, str) for o in options) or not all(
            isinstance(p, str) for p in images
        ):
            raise BadRow("bad_field_type")
        try:
            letters = parse_answer_letters(row["answer"])
        except ValueError:
            raise BadRow("no_answer_letters") from None
        category = str(row["category"])
        prompt = xlrs_prompt(str(row["question"]), options, category)
        meta = {
            "index": row["index"],
            "category": category,
            "l2_category": row.get("l2-category"),
            "options": list(options),
        }
        return mcq_record(f"xlrs-{row['index']}", "xlrs-bench-lite", images, prompt, letters, meta)

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


__all__ = ["ANNOTATION_FILES", "XLRSBenchLite", "xlrs_prompt"]
