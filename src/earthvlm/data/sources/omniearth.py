"""OmniEarth-Bench rows -> multiple-choice records: the one parser of the format.

Layout (no download)::

    root/
      omniearth.jsonl      one row per line (or omniearth.json: a list of rows)
      images/...           the images the rows name, paths relative to root

Row fields (formats.md): ``index``, ``image`` (a list of paths; a string is read as a
list of one), ``question``, ``multi-choice options`` (strings ``"(A) ..."``; the last is
always "unable to decide"), ``answer`` (letters), ``question_type`` (Single Choice,
Multiple Choice, Chain-of-Thought) and ``L1-task`` ... ``L4-task`` (L1 = the sphere).

:func:`parse_omniearth_row` checks a row (besides the common MCQ checks of
:mod:`earthvlm.data.sources.xlrs`: ``last_option_not_unable_to_decide``,
``answer_not_an_option``) and builds the prompt: the question, the options one per line,
and the instruction to answer with the letter(s) of the options present. The benchmark
``omniearth`` scores with it; :class:`OmniEarthBench` reads rows as training records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from earthvlm.data.letters import OPTION_LETTERS
from earthvlm.data.sources._base import RowError
from earthvlm.data.sources.xlrs import (
    OPTIONS_FIELD,
    MCQRow,
    MCQSource,
    mcq_fields,
    row_letters,
)

#: Annotation files looked for under the root, in order.
ANNOTATION_FILES = ("omniearth.jsonl", "omniearth.json")
#: The task-level fields of a row, coarse to fine.
TASK_FIELDS = ("L1-task", "L2-task", "L3-task", "L4-task")
#: The text of the last option of every row.
UNABLE_TO_DECIDE = "unable to decide"


def omniearth_prompt(question: str, options: Sequence[str], multiple: bool) -> str:
    """The prompt of one row: question, options, and the letter instruction."""
    letters = ", ".join(OPTION_LETTERS[: len(options)])
    if multiple:
        ask = "Select all correct answers. Only respond with the letters of the correct options"
    else:
        ask = "Select the best answer. Only respond with the letter of the correct option"
    return f"{question}\n" + "\n".join(options) + f"\n{ask} ({letters}).\nThe answer is:"


def parse_omniearth_row(row: Any) -> MCQRow:
    """A checked OmniEarth-Bench row with its prompt.

    Raises:
        RowError: With the reason the row cannot be used.
    """
    options, images = mcq_fields(row, ("index", "image", "question", OPTIONS_FIELD, "answer"))
    if not 2 <= len(options) <= len(OPTION_LETTERS) or UNABLE_TO_DECIDE not in options[-1].lower():
        raise RowError(
            "last_option_not_unable_to_decide",
            f"options {options!r}",
            "end the options with 'unable to decide' (at most ten options)",
        )
    letters = row_letters(row)
    if not letters <= set(OPTION_LETTERS[: len(options)]):
        raise RowError(
            "answer_not_an_option",
            f"answer {row['answer']!r} for {len(options)} options",
            "give letters of the row's own options",
        )
    qtype = str(row.get("question_type") or "Single Choice")
    prompt = omniearth_prompt(str(row["question"]), options, qtype == "Multiple Choice")
    meta = {
        "index": row["index"],
        "question_type": qtype,
        "options": options,
        **{k: row.get(k) for k in TASK_FIELDS},
    }
    return MCQRow(str(row["index"]), images, prompt, letters, meta)


@dataclass(kw_only=True)
class OmniEarthBench(MCQSource):
    """OmniEarth-Bench MCQ rows as records (split ``test`` by default)."""

    name: ClassVar[str] = "omniearth-bench"
    files: ClassVar[tuple[str, ...]] = ("omniearth.jsonl (or .json)", "images/")
    annotation_files: ClassVar[tuple[str, ...]] = ANNOTATION_FILES
    gsd_note: ClassVar[str] = "unknown unless the options give one (the rows record none)"

    def _parse(self, row: Any) -> MCQRow:
        return parse_omniearth_row(row)


__all__ = [
    "ANNOTATION_FILES",
    "TASK_FIELDS",
    "UNABLE_TO_DECIDE",
    "OmniEarthBench",
    "omniearth_prompt",
    "parse_omniearth_row",
]
