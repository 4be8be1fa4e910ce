"""``earthmind``: EarthMind-Bench, paired optical + SAR (multiple choice, open-ended, masks).

Reads the release with :class:`earthvlm.data.sources.earthmind.EarthMindBench` (layout,
task list and the assumptions made there are in that module's docstring). Each record
carries the images of one setting: ``optical`` (RGB only), ``sar`` (SAR only,
``modality="sar"``) or ``fused`` (optical then SAR); ``setting="all"`` reads every row once
per setting, which gives the per-setting table of the paper (Table 1).

Scoring (paper App. E "Evaluation Metrics", Table 1; the release's scripts):

* **Multiple choice**: strict string match, the prediction equal to the answer. Both are
  stripped of surrounding white space (the release compares the raw strings; generated
  text is stripped anyway). Accuracy per task; ``m_avg`` = mean of the per-task accuracies
  (Table 1: optical EarthMind (64.3 + 77.5 + 83.6 + 50.1 + 33.1) / 5 = 61.7).
* **Open-ended**: an LLM judge scores 1-5 (:func:`earthvlm.eval.judge.judge_open_ended`),
  through any OpenAI-compatible endpoint given as ``judge``. ``rubric="paper"`` (default)
  is Fig. B: accuracy and relevance as JSON, the accuracy being the score; the release's
  scorer asks for one number and reads the first digit: ``rubric="single",
  rule="first_digit"``. Mean per task; ``o_avg`` = mean of the task means (Table 1:
  (3.35 + 3.37 + 2.01 + 2.55) / 4 = 2.82). Without a judge these records are not scored
  (None) and ``o_avg`` is undefined. A missing prediction scores 1. The per-item score
  and the RL reward are ``(score - 1) / 4``.
* **Referring segmentation**: the predicted mask, read from the response
  (:func:`parse_mask`: JSON polygons in pixels or COCO RLE), against the reference.
  ``seg_miou`` is the paper's metric in its standard (foreground) form: the mean
  per-sample IoU of the referred object; ``seg_ciou`` (cumulative) and ``seg_giou`` beside
  it. The release's ``refrs_eval`` averages background and foreground IoU per sample
  (``seg_miou_fg_bg``), which rewards predicting nothing on small objects: reported for
  comparison with released numbers, never as the headline. An unreadable mask scores 0.

The headline is ``m_avg`` (the mean over settings when several are read). Metrics carry
``<setting>/<metric>`` for every setting; categories are ``<setting>/<task>`` with the
task's own measure (accuracy in [0, 1], judge mean on 1-5, or foreground mIoU), and
:func:`earthmind_table` renders them as the paper's table.

Simple use (what other experiments import)::

    records = read_earthmind("EarthMind-Bench", setting="all")
    result = score_earthmind(records, predictions, judge=client)
    print(earthmind_table(result))
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from earthvlm.data.record import Record
from earthvlm.data.sources._masks import MaskFormatError, decode_segmentation
from earthvlm.data.sources.earthmind import (
    MCQ_TASKS,
    OPEN_TASKS,
    SEG_TASK,
    SETTINGS,
    EarthMindBench,
    task_name,
)
from earthvlm.eval.benchmarks._judge import judge_client
from earthvlm.eval.benchmarks.base import Benchmark, BenchmarkError, BenchmarkResult, CategoryScore
from earthvlm.eval.judge import JudgeItem, Rubric, Rule, judge_open_ended
from earthvlm.eval.metrics.segmentation import mask_iou, score_segmentation
from earthvlm.teacher.client import ChatClient

_DECODER = json.JSONDecoder()


def _as_parts(value: Any) -> list[Any] | None:
    """JSON polygons / RLE -> COCO segmentation parts (flat polygons, RLE dicts)."""
    if isinstance(value, dict):
        return [value] if "counts" in value else None
    if not isinstance(value, list) or not value:
        return None
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        return [value]  # one flat polygon
    if all(isinstance(v, list) and len(v) == 2 for v in value) and all(
        isinstance(c, int | float) for v in value for c in v
    ):
        return [[c for v in value for c in v]]  # one polygon of points
    parts: list[Any] = []
    for v in value:
        sub = _as_parts(v)
        if sub is None:
            return None
        parts.extend(sub)
    return parts


def parse_mask(text: str | None, height: int, width: int) -> np.ndarray | None:
    """The mask in a response: the first JSON value that is polygons (``[[x, y], ...]``,
    a list of those, or flat ``[x1, y1, ...]``, in pixels) or COCO RLE of the image's size;
    never raises. A model with a mask head answers with its mask as RLE text:
    ``json.dumps(encode_rle(mask))`` (:func:`earthvlm.data.sources._masks.encode_rle`).

    Returns:
        A boolean ``(height, width)`` mask (an empty list is an empty mask), or None when
        no mask can be read.
    """
    if not text:
        return None
    for start, ch in enumerate(text):
        if ch not in "[{":
            continue
        try:
            value, _ = _DECODER.raw_decode(text, start)
        except json.JSONDecodeError:
            continue
        if value == []:
            return np.zeros((height, width), dtype=bool)
        parts = _as_parts(value)
        if parts is None:
            continue
        try:
            return decode_segmentation(parts, height, width)
        except (MaskFormatError, ValueError, TypeError):
            return None
    return None


def reference_mask(record: Record) -> np.ndarray:
    """The reference mask of a segmentation record (its first mask, COCO RLE).

    Raises:
        BenchmarkError: If the record has no RLE mask.
    """
    rle = record.masks[0].rle if record.masks else None
    if rle is None:
        raise BenchmarkError(f"record {record.id}: no reference mask (an RLE in record.masks)")
    h, w = (int(v) for v in rle["size"])
    return decode_segmentation(rle, h, w)


def _mean(values: Sequence[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return math.fsum(kept) / len(kept) if kept else math.nan


@dataclass(kw_only=True)
class EarthMindBenchmark(Benchmark):
    """EarthMind-Bench: MCQ accuracy (M-Avg), judge scores (O-Avg), segmentation mIoU.

    Attributes:
        setting: ``optical``, ``sar``, ``fused`` or ``all``.
        annotations: The folder of the per-task JSON files, relative to the root.
        image_dir: The folder holding ``sar/img/`` and ``rgb/img/`` (empty: the root).
        segmentation: The REFER folder of the segmentation task (read when it exists).
        tasks: Only these tasks (None: all).
        judge: The client of the open-ended judge (None: open-ended records unscored).
        judge_url: Or the judge's API root (any OpenAI-compatible server) ...
        judge_model: ... the model to ask ...
        judge_cache: ... a response-cache folder (a rerun sends nothing) ...
        judge_key_env: ... and the environment variable holding its key.
        rubric: ``paper`` (accuracy and relevance as JSON) or ``single`` (the release's).
        rule: How a judge reply is read: ``explicit`` or ``first_digit`` (the release's).
    """

    name: ClassVar[str] = "earthmind"
    version: ClassVar[str] = "1"
    metric: ClassVar[str] = "m_avg"
    max_new_tokens: ClassVar[int] = 256
    files: ClassVar[tuple[str, ...]] = EarthMindBench.files

    setting: str = "fused"
    annotations: str = "formal_data_test"
    image_dir: str = ""
    segmentation: str = "Refer_Segm/sarnew"
    tasks: tuple[str, ...] | None = None
    judge: ChatClient | None = field(default=None, repr=False, compare=False)
    judge_url: str | None = None
    judge_model: str | None = None
    judge_cache: str | None = None
    judge_key_env: str | None = "OPENAI_API_KEY"
    rubric: Rubric = "paper"
    rule: Rule = "explicit"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.setting not in (*SETTINGS, "all"):
            raise ValueError(f"setting={self.setting!r}: choose one of {', '.join(SETTINGS)}, all")
        if self.rubric not in ("paper", "single"):
            raise ValueError(f"rubric={self.rubric!r}: choose paper or single")
        if self.rule not in ("explicit", "first_digit"):
            raise ValueError(f"rule={self.rule!r}: choose explicit or first_digit")
        self.judge = judge_client(
            self.judge, self.judge_url, self.judge_model, self.judge_cache, self.judge_key_env
        )
        self._judged: dict[tuple[str, str, str], JudgeItem] = {}
        self._requests: list[dict[str, Any]] = []

    def options(self) -> dict[str, Any]:
        opts = super().options()
        opts["judge"] = None if self.judge is None else self.judge.config.model
        return opts

    # -- reading ---------------------------------------------------------------------

    def _read(self, root: Path) -> Iterator[Record]:
        if not (root / self.annotations).is_dir() and not (root / self.segmentation).is_dir():
            raise BenchmarkError(
                f"{root}: neither {self.annotations}/ nor {self.segmentation}/ is here; give "
                "the EarthMind-Bench folder (see earthvlm.data.sources.earthmind)"
            )
        return self._records(root)

    def _records(self, root: Path) -> Iterator[Record]:
        reader = EarthMindBench(
            setting=self.setting,
            annotations=self.annotations,
            image_dir=self.image_dir,
            segmentation=self.segmentation,
            tasks=self.tasks,
        )
        for rec in reader.read(root):
            self.ledger.count_ok()
            yield rec
        self.ledger.merge_left_out(reader.ledger)

    # -- what a record asks ----------------------------------------------------------

    @staticmethod
    def kind(record: Record) -> str:
        """``mcq``, ``open`` or ``seg``."""
        return str(record.meta.get("kind", "open"))

    def category(self, record: Record) -> str:
        """``<setting>/<task>``."""
        return f"{record.meta.get('setting', 'unknown')}/{record.meta.get('task', 'unknown')}"

    # -- the judge -------------------------------------------------------------------

    def _key(self, record: Record, prediction: str | None) -> tuple[str, str, str]:
        return (str(record.meta.get("question", "")), self.reference(record), prediction or "")

    def _judge(self, records: Sequence[Record], predictions: Sequence[str | None]) -> None:
        """Ask the judge about every open-ended item not judged yet (one batch)."""
        if self.judge is None:
            return
        todo: dict[tuple[str, str, str], str] = {}
        for rec, pred in zip(records, predictions, strict=True):
            if self.kind(rec) == "open" and self._key(rec, pred) not in self._judged:
                todo[self._key(rec, pred)] = str(rec.meta.get("task", "open"))
        if not todo:
            return
        keys = list(todo)
        result = judge_open_ended(
            self.judge,
            [k[0] for k in keys],
            [k[1] for k in keys],
            [k[2] or None for k in keys],
            groups=[todo[k] for k in keys],
            rubric=self.rubric,
            rule=self.rule,
            missing_score=1,
            stage=f"{self.name} judge",
        )
        self._judged.update(zip(keys, result.items, strict=True))
        if result.requests is not None:
            self._requests.append(dict(result.requests))

    def judge_score(self, record: Record, prediction: str | None) -> int | None:
        """The judge's 1-5 score of an open-ended answer (None: no judge or no score)."""
        self._judge([record], [prediction])
        item = self._judged.get(self._key(record, prediction))
        return None if item is None else item.score

    # -- scoring ---------------------------------------------------------------------

    def score(
        self, records: Sequence[Record], predictions: Sequence[str | None]
    ) -> BenchmarkResult:
        """Score raw outputs; the open-ended items go to the judge in one batch first."""
        records, predictions = list(records), list(predictions)
        if len(records) == len(predictions) and all(
            p is None or isinstance(p, str) for p in predictions
        ):
            self._judge(records, predictions)
        return super().score(records, predictions)

    def _seg_iou(self, record: Record, prediction: str | None) -> float:
        target = reference_mask(record)
        pred = parse_mask(prediction, *target.shape)
        return 0.0 if pred is None else mask_iou(pred, target)

    def _item(self, record: Record, prediction: str | None) -> float | None:
        kind = self.kind(record)
        if kind == "mcq":
            ok = prediction is not None and prediction.strip() == self.reference(record).strip()
            return float(ok)
        if kind == "seg":
            return self._seg_iou(record, prediction)
        s = self.judge_score(record, prediction)
        return None if s is None else (s - 1) / 4

    @staticmethod
    def _groups(records: Sequence[Record]) -> dict[tuple[str, str], list[int]]:
        """(setting, task) -> indices of its items."""
        groups: dict[tuple[str, str], list[int]] = {}
        for i, rec in enumerate(records):
            key = (str(rec.meta.get("setting")), str(rec.meta.get("task")))
            groups.setdefault(key, []).append(i)
        return groups

    def _task_value(
        self,
        idx: list[int],
        records: Sequence[Record],
        predictions: Sequence[str | None],
        item_scores: Sequence[float | None],
    ) -> tuple[int, float]:
        """A task's measure: MCQ accuracy, judge mean (1-5) or foreground mIoU."""
        kind = self.kind(records[idx[0]])
        if kind == "open":
            scores = [
                self._judged[k].score
                for k in (self._key(records[i], predictions[i]) for i in idx)
                if k in self._judged
            ]
            kept = [s for s in scores if s is not None]
            return len(kept), (math.fsum(kept) / len(kept) if kept else math.nan)
        vals = [item_scores[i] for i in idx if item_scores[i] is not None]
        return len(vals), (math.fsum(vals) / len(vals) if vals else math.nan)  # type: ignore[arg-type]

    def _categories(
        self,
        records: Sequence[Record],
        predictions: Sequence[str | None],
        item_scores: Sequence[float | None],
    ) -> dict[str, CategoryScore]:
        out = {}
        for (setting, task), idx in sorted(self._groups(records).items()):
            n, v = self._task_value(idx, records, predictions, item_scores)
            out[f"{setting}/{task}"] = CategoryScore(n, v)
        return out

    def _summary(
        self,
        records: Sequence[Record],
        predictions: Sequence[str | None],
        item_scores: Sequence[float | None],
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        groups = self._groups(records)
        metrics: dict[str, Any] = {}
        details: dict[str, Any] = {"settings": {}}
        per_setting: dict[str, dict[str, float]] = {}
        for setting in SETTINGS:
            keys = [k for k in groups if k[0] == setting]
            if not keys:
                continue
            by_kind: dict[str, list[float]] = {"mcq": [], "open": []}
            for key in keys:
                kind = self.kind(records[groups[key][0]])
                if kind in by_kind:
                    by_kind[kind].append(
                        self._task_value(groups[key], records, predictions, item_scores)[1]
                    )
            seg_idx = [i for k in keys if k[1] == SEG_TASK for i in groups[k]]
            vals = {"m_avg": _mean(by_kind["mcq"]), "o_avg": _mean(by_kind["open"])}
            if seg_idx:
                targets = [reference_mask(records[i]) for i in seg_idx]
                preds = [
                    parse_mask(predictions[i], *t.shape)
                    for i, t in zip(seg_idx, targets, strict=True)
                ]
                seg = score_segmentation(preds, targets)
                vals |= {
                    "seg_miou": seg.miou,
                    "seg_ciou": seg.ciou,
                    "seg_giou": seg.giou,
                    "seg_miou_fg_bg": seg.miou_fg_bg,
                    "seg_ciou_fg_bg": seg.ciou_fg_bg,
                }
                details["settings"][setting] = {"segmentation": seg.to_dict()}
            per_setting[setting] = vals
            metrics |= {f"{setting}/{k}": v for k, v in vals.items()}
        for k in ("m_avg", "o_avg", "seg_miou", "seg_ciou", "seg_giou", "seg_miou_fg_bg"):
            metrics[k] = _mean([v[k] for v in per_setting.values() if k in v])
        open_items = [
            self._judged[self._key(r, p)].to_dict()
            for r, p in zip(records, predictions, strict=True)
            if self.kind(r) == "open" and self._key(r, p) in self._judged
        ]
        metrics["judged"] = self.judge is not None
        details["judge"] = {
            "rubric": self.rubric,
            "rule": self.rule,
            "items": open_items,
            "requests": self._requests,
        }
        return metrics, details


def earthmind_table(result: BenchmarkResult) -> str:
    """The paper's Table 1 layout as Markdown: one row per setting; M-Avg, O-Avg, then
    the MCQ tasks (accuracy, %), segmentation (mIoU, %) and open-ended tasks (1-5; a task
    outside the paper's list is shown as is)."""
    settings = [s for s in SETTINGS if f"{s}/m_avg" in result.metrics]
    tasks = [*MCQ_TASKS, SEG_TASK, *OPEN_TASKS]
    extra = sorted({k.split("/", 1)[1] for k in result.categories} - set(tasks))
    cols = [t for t in [*tasks, *extra] if any(f"{s}/{t}" in result.categories for s in settings)]

    def pct(v: Any) -> str:
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"

    def raw(v: Any) -> str:
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"

    lines = [
        "| setting | M-Avg | O-Avg | " + " | ".join(cols) + " |",
        "|---" * (3 + len(cols)) + "|",
    ]
    for s in settings:
        cells = [pct(result.metrics.get(f"{s}/m_avg")), raw(result.metrics.get(f"{s}/o_avg"))]
        for t in cols:
            c = result.categories.get(f"{s}/{t}")
            fmt = pct if t in (*MCQ_TASKS, SEG_TASK) else raw
            cells.append("-" if c is None else fmt(c.score))
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def read_earthmind(root: str | Path, *, setting: str = "fused", **options: Any) -> list[Record]:
    """Every EarthMind-Bench record under ``root`` for ``setting`` (options as
    :class:`EarthMindBenchmark`'s)."""
    return list(EarthMindBenchmark(setting=setting, **options).examples(root))


def score_earthmind(
    records: Sequence[Record],
    predictions: Sequence[str | None],
    *,
    judge: ChatClient | None = None,
    **options: Any,
) -> BenchmarkResult:
    """Score outputs for EarthMind-Bench records (any mix of settings and tasks)."""
    return EarthMindBenchmark(judge=judge, **options).score(records, predictions)


__all__ = [
    "EarthMindBenchmark",
    "earthmind_table",
    "parse_mask",
    "read_earthmind",
    "reference_mask",
    "score_earthmind",
    "task_name",
]
