"""``vrsbench_vqa`` and ``vrsbench_grounding``: VRSBench VQA accuracy and visual grounding.

Reads the release with :class:`earthvlm.data.sources.vrsbench.VRSBench` (layout there).

**VQA** (the release's ``eval_vqa_gpt.ipynb``): lower-cased, an answer is correct when
the ground truth occurs in the prediction; otherwise, when the ground truth is ``yes``,
``no`` or a number 0-99, only an exact match counts; any other pair is decided by an LLM
("Answer 1 for match and 0 for not match ... Synonyms are also treated as a match",
:data:`JUDGE_PROMPT`) through ``judge``, an OpenAI-compatible client. Without a judge
those pairs fall back to exact match after normalisation (a lower bound; ``metrics
["judged"]`` says which). Departure: the release tests containment on raw strings, so
"no" is found in "north"; here the ground truth must occur as whole words
(``release_substring=True`` restores the raw test). Accuracy per question type, with
``image`` and ``rural or urban`` counted as ``scene type``; the headline ``average`` is
the mean of the per-type accuracies, the README's "Avg." (LLaVA-1.5: (62.8 + 89.2 + 50.4
+ 57.8 + 58.5 + 52.3 + 56.9 + 50.7 + 66.0 + 64.9) / 10 = 60.9); ``overall`` is over all
questions.

**Grounding** (``compute_metrics.ipynb``): boxes on the 0-100 grid of the reference
``{<x1><y1><x2><y2>}``; the prediction's box is its first ``{<..>}`` box, else its first
``[x1, y1, x2, y2]``. Acc@0.5 (headline) and Acc@0.7 over all referrals, and for unique
and non-unique ones (the published table's columns); a response without a box is a
miss. The IoU is the continuous one and a hit needs IoU > t (formats.md).
``release_iou=True`` scores as the notebook does: the first four integers of the
response, IoU of inclusive integer boxes (``+ 1`` on each side, which inflates small
boxes) and IoU >= t.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from earthvlm.data.record import Record
from earthvlm.data.sources.vrsbench import FILES, VQA_TYPES, VRSBench, parse_grid_box
from earthvlm.eval.benchmarks._judge import judge_client
from earthvlm.eval.benchmarks.base import Benchmark, BenchmarkError, mean_score
from earthvlm.eval.metrics.grounding import parse_box, score_grounding
from earthvlm.eval.metrics.text import normalise_answer
from earthvlm.teacher.client import ChatClient

#: The release's match prompt (``eval_vqa_gpt.ipynb``), asked of the judge.
JUDGE_PROMPT = (
    "Question: {question}\nGround Truth Answer: {reference}\nPredicted Answer: {prediction}\n"
    "Does the predicted answer match the ground truth? Answer 1 for match and 0 for not "
    "match. Use semantic meaning not exact match. Synonyms are also treated as a match, "
    "e.g., football and soccer, playground and ground track field, building and rooftop, "
    "pond and swimming pool. Do not explain the reason.\n"
)
_CLOSED = {"yes", "no", *(str(n) for n in range(100))}
#: Thresholds of the published grounding table.
THRESHOLDS = (0.5, 0.7)


def vqa_rule(
    prediction: str | None, reference: str, *, release_substring: bool = False
) -> bool | None:
    """The release's rule before the judge: True / False, or None when a judge must decide."""
    if prediction is None:
        return False
    p, g = prediction.lower().strip(), reference.lower().strip()
    if release_substring:
        found = g in p
    else:
        found = bool(g) and re.search(r"(?<!\w)" + re.escape(g) + r"(?!\w)", p) is not None
    if found:
        return True
    if g in _CLOSED:
        return p == g
    return None


def inclusive_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of integer boxes with inclusive corners (``computeIoU`` of the release)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    inter = iw * ih
    union = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter
    return inter / union if union > 0 else 0.0


def _source(root: Path, subset: str, bench: Benchmark) -> Iterator[Record]:
    reader = VRSBench(subset=subset)
    for rec in reader.read(root):
        bench.ledger.count_ok()
        yield rec
    bench.ledger.merge_left_out(reader.ledger)


def _check(root: Path, subset: str) -> None:
    if not (root / FILES[subset]).is_file():
        raise BenchmarkError(
            f"{root}: no {FILES[subset]}; give the VRSBench folder (with Images_val/)"
        )


@dataclass(kw_only=True)
class VRSBenchVQA(Benchmark):
    """VRSBench VQA: per-type accuracy and their mean.

    Attributes:
        judge: Decides the pairs the rule leaves open (None: exact match decides them).
        judge_url: Or the judge's API root (any OpenAI-compatible server) ...
        judge_model: ... the model to ask ...
        judge_cache: ... a response-cache folder (a rerun sends nothing) ...
        judge_key_env: ... and the environment variable holding its key.
        release_substring: Test containment on raw strings, as the release does.
    """

    name: ClassVar[str] = "vrsbench_vqa"
    version: ClassVar[str] = "1"
    metric: ClassVar[str] = "average"
    max_new_tokens: ClassVar[int] = 16
    files: ClassVar[tuple[str, ...]] = (FILES["vqa"], "Images_val/<image_id>")

    judge: ChatClient | None = field(default=None, repr=False, compare=False)
    judge_url: str | None = None
    judge_model: str | None = None
    judge_cache: str | None = None
    judge_key_env: str | None = "OPENAI_API_KEY"
    release_substring: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        self.judge = judge_client(
            self.judge, self.judge_url, self.judge_model, self.judge_cache, self.judge_key_env
        )
        self._verdicts: dict[tuple[str, str, str], bool | None] = {}

    def options(self) -> dict[str, Any]:
        opts = super().options()
        opts["judge"] = None if self.judge is None else self.judge.config.model
        return opts

    def category(self, record: Record) -> str:
        return str(record.meta.get("type_group", "unknown"))

    def _read(self, root: Path) -> Iterator[Record]:
        _check(root, "vqa")
        return _source(root, "vqa", self)

    def _key(self, record: Record, prediction: str | None) -> tuple[str, str, str]:
        return (str(record.meta.get("question", "")), self.reference(record), prediction or "")

    def _ask(self, records: Sequence[Record], predictions: Sequence[str | None]) -> None:
        """Send the open pairs not asked yet to the judge, in one batch."""
        if self.judge is None:
            return
        todo = []
        for r, p in zip(records, predictions, strict=True):
            k = self._key(r, p)
            if (
                p
                and k not in self._verdicts
                and todo.count(k) == 0
                and vqa_rule(p, k[1], release_substring=self.release_substring) is None
            ):
                todo.append(k)
        if not todo:
            return
        msgs = [
            [
                {
                    "role": "user",
                    "content": JUDGE_PROMPT.format(
                        question=q, reference=g.lower(), prediction=p.lower()
                    ),
                }
            ]
            for q, g, p in todo
        ]
        batch = self.judge.chat_many(msgs, stage=f"{self.name} judge")
        for k, res in zip(todo, batch.results, strict=True):
            digit = re.search(r"[01]", res.text or "") if res.ok else None
            self._verdicts[k] = None if digit is None else digit[0] == "1"

    def correct(self, record: Record, prediction: str | None) -> bool | None:
        """Whether an answer is right (None: the judge could not decide)."""
        ref = self.reference(record)
        ok = vqa_rule(prediction, ref, release_substring=self.release_substring)
        if ok is not None:
            return ok
        if self.judge is None:
            return normalise_answer(prediction or "") == normalise_answer(ref)
        self._ask([record], [prediction])
        return self._verdicts.get(self._key(record, prediction))

    def score(self, records: Sequence[Record], predictions: Sequence[str | None]) -> Any:
        """Score raw outputs; open pairs go to the judge in one batch first."""
        records, predictions = list(records), list(predictions)
        if len(records) == len(predictions) and all(
            p is None or isinstance(p, str) for p in predictions
        ):
            self._ask(records, predictions)
        return super().score(records, predictions)

    def _item(self, record: Record, prediction: str | None) -> float | None:
        ok = self.correct(record, prediction)
        return None if ok is None else float(ok)

    def _summary(
        self,
        records: Sequence[Record],
        predictions: Sequence[str | None],
        item_scores: Sequence[float | None],
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        cats = self._categories(records, predictions, item_scores)
        per_type = {k: v.score for k, v in cats.items()}
        known = [v for k, v in per_type.items() if k in VQA_TYPES]
        metrics: dict[str, Any] = {
            "average": mean_score(known),
            "overall": mean_score(item_scores),
            **{f"acc_{k.replace(' ', '_')}": v for k, v in per_type.items()},
            "judged": self.judge is not None,
        }
        undecided = sum(s is None for s in item_scores)
        unknown = sorted(k for k in per_type if k not in VQA_TYPES)
        return metrics, {"undecided": undecided, "types_outside_the_table": unknown}


@dataclass(kw_only=True)
class VRSBenchGrounding(Benchmark):
    """VRSBench visual grounding: Acc@0.5 / Acc@0.7, all and by uniqueness.

    Attributes:
        release_iou: Score as the release's notebook (integers, inclusive IoU, >=).
    """

    name: ClassVar[str] = "vrsbench_grounding"
    version: ClassVar[str] = "1"
    metric: ClassVar[str] = "acc@0.5"
    max_new_tokens: ClassVar[int] = 32
    files: ClassVar[tuple[str, ...]] = (FILES["referring"], "Images_val/<image_id>")

    release_iou: bool = False

    def category(self, record: Record) -> str:
        u = record.meta.get("unique")
        return "unknown" if u is None else ("unique" if u else "non_unique")

    def _read(self, root: Path) -> Iterator[Record]:
        _check(root, "referring")
        return _source(root, "referring", self)

    @staticmethod
    def reference_grid(record: Record) -> list[float]:
        """The reference box on the 0-100 grid."""
        return [float(v) for v in record.meta["box_grid"]]

    def predicted_grid(self, prediction: str | None) -> list[float] | None:
        """The response's box on the 0-100 grid (None: no box)."""
        if prediction is None:
            return None
        if self.release_iou:
            ints = [float(v) for v in re.findall(r"\d+", prediction)[:4]]
            return ints if len(ints) == 4 else None
        box = parse_grid_box(prediction) or parse_box(prediction).box_xyxy
        return None if box is None else list(box)

    def iou(self, record: Record, prediction: str | None) -> float:
        """IoU of the response's box with the reference (0 without a box)."""
        pred, ref = self.predicted_grid(prediction), self.reference_grid(record)
        if pred is None:
            return 0.0
        if self.release_iou:
            return inclusive_iou(pred, ref)
        r = score_grounding([pred], [ref], thresholds=THRESHOLDS)
        return float(r.ious[0]) if r.n else 0.0

    def _hit(self, iou: float, t: float) -> bool:
        return iou >= t if self.release_iou else iou > t

    def _item(self, record: Record, prediction: str | None) -> float | None:
        return float(self._hit(self.iou(record, prediction), THRESHOLDS[0]))

    def _summary(
        self,
        records: Sequence[Record],
        predictions: Sequence[str | None],
        item_scores: Sequence[float | None],
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        ious = np.array([self.iou(r, p) for r, p in zip(records, predictions, strict=True)])
        groups = {"": np.ones(len(records), dtype=bool)}
        cats = np.array([self.category(r) for r in records])
        for g in ("unique", "non_unique"):
            if (cats == g).any():
                groups[f"{g}_"] = cats == g
        metrics: dict[str, Any] = {}
        for prefix, sel in groups.items():
            for t in THRESHOLDS:
                hits = [self._hit(v, t) for v in ious[sel]]
                metrics[f"{prefix}acc@{t:g}"] = float(np.mean(hits))
        metrics["mean_iou"] = float(ious.mean())
        n_box = sum(self.predicted_grid(p) is not None for p in predictions)
        return metrics, {"n": len(records), "n_with_box": n_box, "release_iou": self.release_iou}


__all__ = [
    "JUDGE_PROMPT",
    "THRESHOLDS",
    "VRSBenchGrounding",
    "VRSBenchVQA",
    "inclusive_iou",
    "vqa_rule",
]
