"""``omniearth``: OmniEarth-Bench, multiple-choice VQA over the seven Earth spheres.

Reads the release's rows from a local folder (no download)::

    root/
      omniearth.jsonl      one row per line (or omniearth.json: a list of rows)
      images/...           the images the rows name, paths relative to root

Row fields (formats.md): ``index``, ``image`` (a list of paths; a string is read as a
list of one), ``question``, ``multi-choice options`` (strings ``"(A) ..."``; the last is
always "unable to decide"), ``answer`` (letters), ``question_type`` (Single Choice,
Multiple Choice, Chain-of-Thought) and ``L1-task`` ... ``L4-task`` (L1 = the sphere).

Prompt: the question, the options one per line, and the instruction to answer with the
letter(s) of the options present. Scoring: :func:`earthvlm.eval.metrics.score_omniearth`
(the release's extraction steps, set equality with the answer letters). The headline is
the accuracy over all items; ``unable_rate`` is how often the last option ("unable to
decide") was chosen, ``abstain_rate`` how often no letter could be read. Categories are
the L1 spheres. By default every option letter is searched (questions have up to eight
options); ``release_extraction=True`` searches A-E only, as the release does, so an
"unable to decide" at F..H can never be read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from earthvlm.data.record import Record
from earthvlm.eval.benchmarks.base import BadRow, BenchmarkError
from earthvlm.eval.benchmarks.xlrs import OPTIONS_FIELD, XLRSBenchLite, mcq_record
from earthvlm.eval.metrics import parse_answer_letters, score_omniearth
from earthvlm.eval.metrics.mcq import LETTERS, UNABLE_TO_DECIDE

#: Annotation files looked for under the root, in order.
ANNOTATION_FILES = ("omniearth.jsonl", "omniearth.json")
#: The task-level fields of a row, coarse to fine.
TASK_FIELDS = ("L1-task", "L2-task", "L3-task", "L4-task")


def omniearth_prompt(question: str, options: Sequence[str], multiple: bool) -> str:
    """The prompt of one row: question, options, and the letter instruction."""
    letters = ", ".join(LETTERS[: len(options)])
    if multiple:
        ask = "Select all correct answers. Only respond with the letters of the correct options"
    else:
        ask = "Select the best answer. Only respond with the letter of the correct option"
    return f"{question}\n" + "\n".join(options) + f"\n{ask} ({letters}).\nThe answer is:"


@dataclass(kw_only=True)
class OmniEarthBench(XLRSBenchLite):
    """OmniEarth-Bench MCQ: accuracy, per-sphere accuracy and the "unable to decide" rate.

    Attributes:
        annotation: The rows file under the root (default: the first of
            :data:`ANNOTATION_FILES` found).
        release_extraction: Search the letters A-E only, as the release does.
    """

    name: ClassVar[str] = "omniearth"
    version: ClassVar[str] = "1"
    metric: ClassVar[str] = "accuracy"
    max_new_tokens: ClassVar[int] = 64
    files: ClassVar[tuple[str, ...]] = ("omniearth.jsonl (or .json)", "images/")

    def category(self, record: Record) -> str:
        return str(record.meta.get("L1-task") or "unknown")

    def _annotation(self, root: Path) -> Path:
        names = (self.annotation,) if self.annotation else ANNOTATION_FILES
        for name in names:
            if (root / name).is_file():
                return root / name
        raise BenchmarkError(
            f"{root}: none of {', '.join(names)} found; put the OmniEarth-Bench rows there "
            "(see earthvlm.eval.benchmarks.omniearth for the layout)"
        )

    def _record(self, row: Any) -> Record:
        if isinstance(row, BadRow):
            raise row
        if not isinstance(row, dict):
            raise BadRow("not_an_object")
        for key in ("index", "image", "question", OPTIONS_FIELD, "answer"):
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
        if not 2 <= len(options) <= len(LETTERS) or UNABLE_TO_DECIDE not in options[-1].lower():
            raise BadRow("last_option_not_unable_to_decide")
        try:
            letters = parse_answer_letters(row["answer"])
        except ValueError:
            raise BadRow("no_answer_letters") from None
        if not letters <= set(LETTERS[: len(options)]):
            raise BadRow("answer_not_an_option")
        qtype = str(row.get("question_type") or "Single Choice")
        prompt = omniearth_prompt(str(row["question"]), options, qtype == "Multiple Choice")
        meta = {
            "index": row["index"],
            "question_type": qtype,
            "options": list(options),
            **{k: row.get(k) for k in TASK_FIELDS},
        }
        rid = f"omniearth-{row['index']}"
        return mcq_record(rid, "omniearth-bench", images, prompt, letters, meta)

    def _score(self, records: Sequence[Record], predictions: Sequence[str | None]) -> Any:
        return score_omniearth(
            predictions,
            [self.reference(x) for x in records],
            [x.meta["options"] for x in records],
            l1_tasks=[self.category(x) for x in records],
            release=self.release_extraction,
        )

    def _item(self, record: Record, prediction: str | None) -> float | None:
        return float(self._score([record], [prediction]).n_correct)

    def _summary(
        self,
        records: Sequence[Record],
        predictions: Sequence[str | None],
        item_scores: Sequence[float | None],
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        r = self._score(records, predictions)
        metrics = {
            "accuracy": r.micro,
            "sphere_average": r.macro,
            "unable_rate": r.unable_rate,
            "abstain_rate": r.abstain_rate,
        }
        return metrics, {"mcq": r.to_dict()}


__all__ = ["ANNOTATION_FILES", "OmniEarthBench", "omniearth_prompt"]
