"""``omniearth``: OmniEarth-Bench, multiple-choice VQA over the seven Earth spheres.

Reads the release's rows from a local folder (no download): ``omniearth.jsonl`` (or
``omniearth.json``) and the images it names; the layout and row fields are described in
:mod:`earthvlm.data.sources.omniearth`.

Rows are checked by :func:`earthvlm.data.sources.omniearth.parse_omniearth_row`, the
parser the training reader ``omniearth-bench`` shares. Prompt: the question, the options
one per line, and the instruction to answer with the letter(s) of the options present.
Scoring: :func:`earthvlm.eval.metrics.score_omniearth`
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
from earthvlm.data.sources.omniearth import (
    ANNOTATION_FILES,
    TASK_FIELDS,
    omniearth_prompt,
    parse_omniearth_row,
)
from earthvlm.eval.benchmarks.base import BadRow, BenchmarkError
from earthvlm.eval.benchmarks.xlrs import XLRSBenchLite, checked, mcq_record
from earthvlm.eval.metrics import score_omniearth


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
        parsed = checked(parse_omniearth_row, row)
        return mcq_record(f"omniearth-{parsed.key}", "omniearth-bench", parsed)

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


__all__ = ["ANNOTATION_FILES", "TASK_FIELDS", "OmniEarthBench", "omniearth_prompt"]
