"""``rsvqa_lr`` and ``rsvqa_hr``: RSVQA (Lobry et al. 2020), accuracy per question type.

The release's JSON files are read by the source readers of
:mod:`earthvlm.data.sources.rsvqa` (LR: ``LR_split_<split>_*.json`` and ``Images_LR/``;
HR: ``USGS_split_<split>_*.json`` and ``Data/``; the ``active`` flags select the split).
Each question is asked as written, followed on a new line by :attr:`RSVQALowRes.instruction`
("Answer the question using a single word or phrase.", the usual short-answer
instruction; set it to "" to ask the bare question). Scoring:
:func:`earthvlm.eval.metrics.score_rsvqa`: exact match after normalisation (number words
as digits) per question type (presence, comparison, rural_urban for LR, count, area
for HR); overall accuracy (all questions) and average accuracy (mean over types, the
headline). Categories are the question types.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from earthvlm.data.record import Message, Record, TextPart
from earthvlm.data.sources.rsvqa import RSVQAHR, RSVQALR
from earthvlm.eval.benchmarks.base import Benchmark, BenchmarkError
from earthvlm.eval.metrics import score_rsvqa

INSTRUCTION = "Answer the question using a single word or phrase."


def with_instruction(record: Record, instruction: str) -> Record:
    """The record with ``instruction`` on a new line after its (last) user text."""
    if not instruction:
        return record
    messages = list(record.messages)
    k = max(i for i, m in enumerate(messages) if m.role == "user")
    m = messages[k]
    if isinstance(m.content, str):
        content: Any = f"{m.content}\n{instruction}"
    else:
        parts = list(m.content)
        last = max((i for i, p in enumerate(parts) if isinstance(p, TextPart)), default=None)
        if last is None:
            parts.append(TextPart(text=instruction))
        else:
            parts[last] = TextPart(text=f"{parts[last].text}\n{instruction}")
        content = parts
    messages[k] = Message(role=m.role, content=content)
    return record.model_copy(update={"messages": messages})


@dataclass(kw_only=True)
class RSVQALowRes(Benchmark):
    """RSVQA low resolution (Sentinel-2, 10 m).

    Attributes:
        split: The release split to ask (``test`` by default).
        instruction: Appended to each question on a new line ("" for none).
    """

    name: ClassVar[str] = "rsvqa_lr"
    version: ClassVar[str] = "1"
    metric: ClassVar[str] = "average_accuracy"
    max_new_tokens: ClassVar[int] = 16
    files: ClassVar[tuple[str, ...]] = RSVQALR.files
    #: The source reader of the release's files.
    reader: ClassVar[type[RSVQALR]] = RSVQALR

    split: str = "test"
    instruction: str = INSTRUCTION

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.split not in self.reader.splits:
            raise ValueError(
                f"split={self.split!r}: {self.name} has {', '.join(self.reader.splits)}"
            )

    def category(self, record: Record) -> str:
        return str(record.meta.get("question_type", "unknown"))

    def _read(self, root: Path) -> Iterator[Record]:
        questions = root / f"{self.reader.prefix}_split_{self.split}_questions.json"
        if not questions.is_file():
            raise BenchmarkError(
                f"{root}: no {questions.name}; give the {self.name} root, which holds "
                + ", ".join(self.files)
            )
        return self._records(root)

    def _records(self, root: Path) -> Iterator[Record]:
        source = self.reader(split=self.split)
        for rec in source.read(root):
            self.ledger.count_ok()
            yield with_instruction(rec, self.instruction)
        # rows the reader left out: skipped (inactive: other splits) or failed (malformed)
        self.ledger.merge_left_out(source.ledger)

    def _item(self, record: Record, prediction: str | None) -> float | None:
        r = score_rsvqa([prediction], [self.reference(record)], [self.category(record)])
        return float(r.table.n_correct) if r.table.n else None

    def _summary(
        self,
        records: Sequence[Record],
        predictions: Sequence[str | None],
        item_scores: Sequence[float | None],
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        r = score_rsvqa(
            predictions, [self.reference(x) for x in records], [self.category(x) for x in records]
        )
        metrics = {"average_accuracy": r.average, "overall_accuracy": r.overall}
        return metrics, {"rsvqa": r.to_dict()}


@dataclass(kw_only=True)
class RSVQAHighRes(RSVQALowRes):
    """RSVQA high resolution (USGS HRO aerial, 0.15 m); ``split="test_phili"`` asks the
    second test set (Philadelphia)."""

    name: ClassVar[str] = "rsvqa_hr"
    files: ClassVar[tuple[str, ...]] = RSVQAHR.files
    reader: ClassVar[type[RSVQALR]] = RSVQAHR


__all__ = ["INSTRUCTION", "RSVQAHighRes", "RSVQALowRes", "with_instruction"]
