"""``synth_chips``: closed-set classification of the synthetic world's object chips.

Each chip shows one object near its centre ("What is the object in the centre of this
image?"); the classes are those of :data:`earthvlm.synth.chips.CHIP_CLASSES`, two pairs of
which only the GSD tells apart. The model's text is compared with the class name by exact
match after normalisation (case, articles, punctuation:
:func:`earthvlm.eval.metrics.score_open_ended`); an answer that names no class of the set
is wrong and counted (``out_of_set_rate``). Reported per class, and for the ambiguous
pairs on their own (the scale experiment's number).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from earthvlm.data.record import Record
from earthvlm.eval.benchmarks._synth import SynthBenchmark, exact_match
from earthvlm.eval.benchmarks.base import mean_score
from earthvlm.eval.metrics import normalise_answer, score_open_ended
from earthvlm.synth.chips import CHIP_CLASSES

#: How a class name and an answer are compared.
NORMALISE = {"articles": True, "punctuation": True}


@dataclass(kw_only=True)
class SynthChips(SynthBenchmark):
    """Object-chip classification (closed set, exact match after normalisation)."""

    name: ClassVar[str] = "synth_chips"
    version: ClassVar[str] = "1"
    metric: ClassVar[str] = "accuracy"
    max_new_tokens: ClassVar[int] = 8
    tasks: ClassVar[tuple[str, ...]] = ("classification",)
    sources: ClassVar[tuple[str, ...]] = ("synth-chips",)
    #: The closed set of answers.
    classes: ClassVar[tuple[str, ...]] = tuple(sorted(CHIP_CLASSES))

    def category(self, record: Record) -> str:
        return self.reference(record)

    def _item(self, record: Record, prediction: str | None) -> float | None:
        return exact_match(prediction, self.reference(record), NORMALISE)

    def _summary(
        self,
        records: Sequence[Record],
        predictions: Sequence[str | None],
        item_scores: Sequence[float | None],
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        refs = [self.reference(r) for r in records]
        result = score_open_ended(predictions, refs, categories=refs, normalise=NORMALISE)
        table = result.by_source.get("all")
        known = {normalise_answer(c, **NORMALISE) for c in self.classes}
        out_of_set = sum(
            p is None or normalise_answer(p, **NORMALISE) not in known for p in predictions
        )
        paired = [
            s
            for r, s in zip(refs, item_scores, strict=True)
            if (c := CHIP_CLASSES.get(r)) is not None and c.pair
        ]
        metrics = {
            "accuracy": table.overall if table else float("nan"),
            "average_accuracy": table.average if table else float("nan"),
            "pair_accuracy": mean_score(paired),
            "out_of_set_rate": out_of_set / len(predictions),
        }
        return metrics, {"open_ended": result.to_dict()}


__all__ = ["SynthChips"]
