"""``synth_vqa``: the synthetic world's short-answer questions, scored per answer type.

The records of tasks ``vqa``, ``counting`` and ``roi`` (identification, scale-specific
and discriminative questions, counts over the image or a grid cell, comparison, existence,
cloud, colour, relation; LRS-GRO-style questions with a ``global``, ``region`` or
``object`` region of interest, whose ROI the zoom arm's summary scores the crops against),
on ordinary and ultra-high-resolution scenes, carry ``meta["answer_type"]``; each type has
its rule from :mod:`earthvlm.eval.metrics`:

* ``yes_no``: the yes/no read from the answer (:func:`~earthvlm.eval.metrics.score_yes_no`);
* ``count``: the one number in the answer, correct within
  ``max(count_abs_tol, count_rel_tol * truth)`` (:func:`~earthvlm.eval.metrics.score_counts`;
  exact-count accuracy and MAE are reported beside it);
* anything else (class, colour, land use, relation, ...): exact match after lower-casing
  and dropping articles and punctuation, number words as digits
  (:func:`~earthvlm.eval.metrics.score_open_ended`).

The headline is the accuracy over all questions; categories are the question kinds
(``meta["question_kind"]``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from earthvlm.data.record import Record
from earthvlm.eval.benchmarks._synth import SynthBenchmark, exact_match
from earthvlm.eval.benchmarks.base import mean_score
from earthvlm.eval.metrics import score_counts, score_open_ended, score_yes_no

#: How short answers are compared.
NORMALISE = {"articles": True, "punctuation": True, "number_words": True}


@dataclass(kw_only=True)
class SynthVQA(SynthBenchmark):
    """Synthetic VQA and counting.

    Attributes:
        count_abs_tol: A count within this absolute difference is correct.
        count_rel_tol: ... or within this share of the true count (0.1: 10 %).
    """

    name: ClassVar[str] = "synth_vqa"
    # 2: UHR scenes and the ROI questions are asked too
    version: ClassVar[str] = "2"
    metric: ClassVar[str] = "accuracy"
    max_new_tokens: ClassVar[int] = 12
    tasks: ClassVar[tuple[str, ...]] = ("vqa", "counting", "roi")
    sources: ClassVar[tuple[str, ...]] = ("synth",)

    count_abs_tol: float = 0.0
    count_rel_tol: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("count_abs_tol", "count_rel_tol"):
            v = getattr(self, name)
            if not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name}={v!r}: give a finite number >= 0")

    def category(self, record: Record) -> str:
        return str(record.meta.get("question_kind") or record.task)

    @staticmethod
    def answer_type(record: Record) -> str:
        """``yes_no``, ``count`` or the record's other answer type (``short`` if none)."""
        return str(record.meta.get("answer_type") or "short")

    def _item(self, record: Record, prediction: str | None) -> float | None:
        ref, kind = self.reference(record), self.answer_type(record)
        if kind == "yes_no":
            yn = score_yes_no([prediction], [ref])
            return float(yn.n_correct) if yn.n else None
        if kind == "count":
            c = score_counts(
                [prediction], [ref], abs_tol=self.count_abs_tol, rel_tol=self.count_rel_tol
            )
            return float(c.n_within) if c.n else None
        return exact_match(prediction, ref, NORMALISE)

    def _summary(
        self,
        records: Sequence[Record],
        predictions: Sequence[str | None],
        item_scores: Sequence[float | None],
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        groups: dict[str, tuple[list[str | None], list[str], list[str]]] = {}
        for rec, p in zip(records, predictions, strict=True):
            kind = self.answer_type(rec)
            key = kind if kind in ("yes_no", "count") else "short"
            preds, refs, cats = groups.setdefault(key, ([], [], []))
            preds.append(p)
            refs.append(self.reference(rec))
            cats.append(self.category(rec))
        metrics: dict[str, Any] = {"accuracy": mean_score(item_scores)}
        details: dict[str, Any] = {}
        if "yes_no" in groups:
            yn = score_yes_no(*groups["yes_no"][:2])
            metrics.update(yes_no_accuracy=yn.accuracy, yes_rate=yn.yes_rate)
            details["yes_no"] = yn.to_dict()
        if "count" in groups:
            c = score_counts(
                *groups["count"][:2], abs_tol=self.count_abs_tol, rel_tol=self.count_rel_tol
            )
            metrics.update(count_within_tolerance=c.within_tolerance, count_exact=c.exact,
                           count_mae=c.mae)  # fmt: skip
            details["counting"] = c.to_dict()
        if "short" in groups:
            preds, refs, cats = groups["short"]
            s = score_open_ended(preds, refs, categories=cats, normalise=NORMALISE)
            table = s.by_source.get("all")
            metrics["short_answer_accuracy"] = table.overall if table else float("nan")
            details["short_answers"] = s.to_dict()
        return metrics, details


__all__ = ["SynthVQA"]
