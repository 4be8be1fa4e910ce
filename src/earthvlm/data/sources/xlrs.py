"""XLRS-Bench(-lite) rows -> multiple-choice records: the one parser of the format.

Layout (no download; the hub release stores images inside parquet files: write them out
as files under ``images/`` and their relative paths into ``image``)::

    root/
      xlrs_lite.jsonl      one row per line (or xlrs_lite.json: a list of rows)
      images/...           the images the rows name, paths relative to root

Row fields as released (formats.md): ``index``, ``image`` (a list of paths; two for the
change tasks; a single string is read as a list of one), ``question``, ``multi-choice
options`` (strings ``"(A) ..."``, or one string with one option per line), ``answer``
(letters; several for overall land-use classification), ``category`` ("L2/L3") and
``l2-category``.

:func:`parse_xlrs_row` checks one row and builds the release's prompt (lmms-eval's
``xlrs`` task, spacing kept); the benchmark ``xlrs_lite`` scores with it and the reader
:class:`XLRSBenchLite` turns rows into training records (answer: the sorted letters).
A malformed row raises :class:`~earthvlm.data.sources._base.RowError` with a stable
reason (``not_an_object``, ``missing_field:<key>``, ``bad_field_type``,
``no_answer_letters``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from earthvlm.data.letters import OPTION_LETTERS, answer_letters
from earthvlm.data.record import ImagePart, ImageRef, Message, Record, TextPart
from earthvlm.data.sources._base import Row, RowError, SourceReader

#: Annotation files looked for under the root, in order.
ANNOTATION_FILES = ("xlrs_lite.jsonl", "xlrs_lite.json")
OPTIONS_FIELD = "multi-choice options"
#: The option letters a row may use, in order.
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


@dataclass(frozen=True)
class MCQRow:
    """A checked multiple-choice row.

    Attributes:
        key: The row's id (its ``index``) as text.
        images: Image paths, relative to the root.
        prompt: The text the model is asked.
        letters: The correct option letters.
        meta: What the record keeps (index, category, options, ...).
    """

    key: str
    images: list[str]
    prompt: str
    letters: frozenset[str]
    meta: dict[str, Any]

    @property
    def answer(self) -> str:
        """The sorted letters, the reference text."""
        return "".join(sorted(self.letters))


def _bad(reason: str, detail: str, fix: str) -> RowError:
    return RowError(reason, detail, fix)


def mcq_fields(row: Any, required: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(options, images)`` of a release MCQ row after the common checks.

    Raises:
        RowError: ``not_an_object``, ``missing_field:<key>``, ``bad_field_type``.
    """
    if not isinstance(row, dict):
        raise _bad(
            "not_an_object",
            f"a row must be a JSON object, got {type(row).__name__}",
            "write each row as an object",
        )
    for key in required:
        if row.get(key) in (None, "", []):
            raise _bad(
                f"missing_field:{key}", f"{key} = {row.get(key)!r}", f"restore the row's {key}"
            )
    options = row[OPTIONS_FIELD]
    if isinstance(options, str):
        options = [o for o in options.splitlines() if o.strip()]
    images = row["image"] if isinstance(row["image"], list) else [row["image"]]
    if not all(isinstance(o, str) for o in options) or not all(isinstance(p, str) for p in images):
        raise _bad(
            "bad_field_type",
            f"options {options!r}, image {row['image']!r}",
            "give the options and image paths as strings",
        )
    return list(options), list(images)


def row_letters(row: dict[str, Any]) -> frozenset[str]:
    """The row's answer letters; :class:`RowError` ``no_answer_letters`` if none."""
    try:
        return answer_letters(row["answer"])
    except ValueError:
        raise _bad(
            "no_answer_letters",
            f"answer {row['answer']!r}",
            "give the answer as option letters, e.g. 'B' or 'AC'",
        ) from None


def parse_xlrs_row(row: Any) -> MCQRow:
    """A checked XLRS-Bench(-lite) row with the release's prompt.

    Raises:
        RowError: With the reason the row cannot be used.
    """
    required = ("index", "image", "question", OPTIONS_FIELD, "answer", "category")
    options, images = mcq_fields(row, required)
    letters = row_letters(row)
    category = str(row["category"])
    meta = {
        "index": row["index"],
        "category": category,
        "l2_category": row.get("l2-category"),
        "options": options,
    }
    prompt = xlrs_prompt(str(row["question"]), options, category)
    return MCQRow(str(row["index"]), images, prompt, letters, meta)


@dataclass(kw_only=True)
class MCQSource(SourceReader):
    """A release of multiple-choice rows (one file, JSON lines or a JSON list) as records.

    Attributes:
        annotation: The rows file under the root (default: the first of the reader's
            annotation files found).
    """

    task: ClassVar[str] = "mcq"
    #: Annotation files looked for under the root, in order.
    annotation_files: ClassVar[tuple[str, ...]] = ()

    split: str = "test"
    annotation: str | None = None

    def _parse(self, row: Any) -> MCQRow:
        raise NotImplementedError

    def _rows(self, root: Path) -> Iterator[Row]:
        names = (self.annotation,) if self.annotation else self.annotation_files
        return self._release_rows(names, self._record)

    def _record(self, row: Any) -> Record:
        parsed = self._parse(row)
        images = [self._image(p) for p in parsed.images]
        return mcq_record(
            f"{self.source_name}-{parsed.key}", self.source_name, self.split, images, parsed
        )


def mcq_record(rid: str, source: str, split: str, images: list[ImageRef], row: MCQRow) -> Record:
    """A record asking an MCQ row: every image, then the prompt; the answer is the sorted
    letters.

    Raises:
        ValidationError: If the record is invalid.
    """
    return Record(
        id=rid,
        task="mcq",
        source=source,
        split=split,
        images=images,
        messages=[
            Message(
                role="user",
                content=[
                    *(ImagePart(index=i) for i in range(len(images))),
                    TextPart(text=row.prompt),
                ],
            ),
            Message(role="assistant", content=row.answer),
        ],
        meta=row.meta,
    )


@dataclass(kw_only=True)
class XLRSBenchLite(MCQSource):
    """XLRS-Bench(-lite) MCQ rows as records (split ``test`` by default)."""

    name: ClassVar[str] = "xlrs-bench-lite"
    files: ClassVar[tuple[str, ...]] = ("xlrs_lite.jsonl (or .json)", "images/")
    annotation_files: ClassVar[tuple[str, ...]] = ANNOTATION_FILES
    gsd_note: ClassVar[str] = "unknown unless the options give one (the rows record none)"

    def _parse(self, row: Any) -> MCQRow:
        return parse_xlrs_row(row)


__all__ = [
    "ANNOTATION_FILES",
    "MULTI_ANSWER",
    "OPTIONS_FIELD",
    "OPTION_LETTERS",
    "MCQRow",
    "MCQSource",
    "XLRSBenchLite",
    "answer_letters",
    "mcq_fields",
    "mcq_record",
    "parse_xlrs_row",
    "row_letters",
    "xlrs_prompt",
]
