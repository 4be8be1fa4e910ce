"""``lrs_gro``: LRS-GRO (ZoomEarth), questions about large images with a region of interest.

Reads the rows from a local folder (no download)::

    root/
      lrs_gro.jsonl        one row per line (or lrs_gro.json: a list of rows)
      images/<image_name>  the images

Row (formats.md): ``question_id``, ``image_name``, ``category``, ``question``,
``higher_level``, ``ground_truth``, ``bbox`` ``[x1, y1, x2, y2]`` (``[]`` for global
questions), ``type`` (``global`` / ``region`` / ``object``) and ``split``. Boxes live on a
grid whose longer side is 1024 px.

The prompt asks for the region of interest as ``[x1, y1, x2, y2]`` on a grid whose longer
side is :attr:`LRSGROBench.box_grid_px` (1024, the annotation grid; 512 for ZoomEarth's
global view: the box is rescaled to 1024 before scoring), then for a short answer inside
``<answer></answer>``. Scoring:

* the answer: the text of the last ``<answer>`` tag, else the response without its
  ``<think>`` part and boxes (its last non-empty line); correct by the LRS-VQA rule
  (lower-case, trailing full stop stripped, equal or WordNet path similarity > 0.8; see
  :mod:`earthvlm.eval.benchmarks.lrs_vqa`). Accuracy overall (the headline) and by type.
  The per-item score and the RL reward are the answer's correctness.
* APO IoU: the mean IoU of the first box in the response against ``bbox`` over the rows
  that have one, a missing or invalid box scoring 0. There is no official script; this
  follows the paper's description.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
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
from earthvlm.eval.benchmarks.lrs_vqa import synonym_provider
from earthvlm.eval.metrics.grounding import parse_box, score_grounding
from earthvlm.eval.metrics.text import SynsetProvider, score_open_ended

#: Annotation files looked for under the root, in order.
ANNOTATION_FILES = ("lrs_gro.jsonl", "lrs_gro.json")
#: Question types, as the rows write them.
TYPES = ("global", "region", "object")
#: Longer side of the grid the release's boxes live on.
GRID_PX = 1024

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_BOXES = re.compile(r"\[[^\[\]]*\]|\{[^{}]*\}")


def lrs_gro_prompt(question: str, grid_px: int = GRID_PX) -> str:
    """The question, then the instruction to locate the region and answer briefly."""
    return (
        f"{question}\nFirst give the region of interest as [x1, y1, x2, y2] in pixels of "
        f"the image resized so that its longer side is {grid_px}, then answer the question "
        "using a single word or phrase inside <answer></answer>."
    )


def extract_answer(text: str | None) -> str | None:
    """The answer in a response: the last ``<answer>`` tag, else the last non-empty line
    once the ``<think>`` part and any box lists or JSON objects are removed."""
    if text is None:
        return None
    tags = _ANSWER.findall(text)
    if tags:
        return str(tags[-1]).strip()
    rest = _BOXES.sub(" ", _THINK.sub(" ", text))
    lines = [line.strip() for line in rest.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _box(v: Any) -> list[float] | None:
    """``[]`` -> None; four finite numbers with x1 < x2, y1 < y2 -> floats; else bad."""
    if isinstance(v, list) and not v:
        return None
    if (
        isinstance(v, list)
        and len(v) == 4
        and all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)
        and all(math.isfinite(x) for x in v)
        and v[0] < v[2]
        and v[1] < v[3]
    ):
        return [float(x) for x in v]
    raise BadRow("bad_bbox")


@dataclass(kw_only=True)
class LRSGROBench(Benchmark):
    """LRS-GRO: answer accuracy (overall and by type) and APO IoU of the region.

    Attributes:
        annotation: The rows file under the root (default: the first of
            :data:`ANNOTATION_FILES` found).
        image_dir: The folder under the root that ``image_name`` is relative to.
        split: Keep only rows whose ``split`` is this (None: every row).
        box_grid_px: Longer side of the grid the model gives its box on (the prompt says
            it); boxes are rescaled to the 1024 grid of the annotations.
        wordnet: Match with the LRS rule (exact or WordNet path similarity > 0.8);
            False scores by exact match only (said in ``metrics["match"]``).
        wordnet_dir: A folder holding ``corpora/wordnet/`` (default: ``$NLTK_DATA``).
        synsets: ``word -> synsets`` in place of nltk's WordNet (tests, other lexicons).
    """

    name: ClassVar[str] = "lrs_gro"
    version: ClassVar[str] = "1"
    metric: ClassVar[str] = "accuracy"
    max_new_tokens: ClassVar[int] = 128
    files: ClassVar[tuple[str, ...]] = ("lrs_gro.jsonl (or .json)", "images/<image_name>")

    annotation: str | None = None
    image_dir: str = "images"
    split: str | None = None
    box_grid_px: int = GRID_PX
    wordnet: bool = True
    wordnet_dir: str | None = None
    synsets: SynsetProvider | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.box_grid_px < 1:
            raise ValueError(f"box_grid_px={self.box_grid_px}: give the grid's longer side")
        # loaded now: a missing WordNet fails before the model runs
        self._provider = synonym_provider(self.wordnet, self.synsets, self.wordnet_dir)

    def options(self) -> dict[str, Any]:
        opts = super().options()
        opts["synsets"] = None if self.synsets is None else "custom"  # JSON-ready
        return opts

    def category(self, record: Record) -> str:
        """The question type: ``global``, ``region`` or ``object``."""
        return str(record.meta.get("type", "unknown"))

    def reference_box(self, record: Record) -> list[float] | None:
        """The region of interest on the 1024 grid (None for a global question)."""
        box = record.meta.get("bbox")
        return [float(v) for v in box] if box else None

    def predicted_box(self, prediction: str | None) -> list[float] | None:
        """The first box of a response, rescaled to the 1024 grid (None if none)."""
        box = parse_box(prediction).box_xyxy
        if box is None:
            return None
        k = GRID_PX / self.box_grid_px
        return [v * k for v in box]

    # -- reading ---------------------------------------------------------------------

    def _annotation(self, root: Path) -> Path:
        if root.is_file():
            return root
        names = (self.annotation,) if self.annotation else ANNOTATION_FILES
        for name in names:
            if (root / name).is_file():
                return root / name
        raise BenchmarkError(
            f"{root}: none of {', '.join(names)} found; put the LRS-GRO rows there "
            "(see earthvlm.eval.benchmarks.lrs_gro for the layout)"
        )

    def _read(self, root: Path) -> Iterator[Record]:
        return self._records(self._annotation(root))

    def _records(self, path: Path) -> Iterator[Record]:
        return unique_records(
            self._this_split(release_rows(path, self.ledger)),
            self._record,
            self.ledger,
            duplicate_reason="duplicate_question_id",
        )

    def _this_split(self, rows: Iterable[Any]) -> Iterator[Any]:
        for row in rows:
            if (
                self.split is not None
                and isinstance(row, dict)
                and row.get("split") not in (None, self.split)
            ):
                self.ledger.count_skipped("other_split")
                continue
            yield row

    def _record(self, row: Any) -> Record:
        if not isinstance(row, dict):
            raise BadRow("not_an_object")
        for key in ("question_id", "image_name", "question", "ground_truth", "type"):
            if row.get(key) in (None, ""):
                raise BadRow(f"missing_field:{key}")
        if row["type"] not in TYPES:
            raise BadRow("unknown_type")
        box = _box(row.get("bbox", []))
        rel = f"{self.image_dir}/{row['image_name']}" if self.image_dir else row["image_name"]
        try:
            return Record(
                id=f"lrs-gro-{row['question_id']}",
                task="vqa",
                source="lrs-gro",
                split=str(row.get("split") or "test"),
                images=[ImageRef(path=str(rel))],
                messages=[
                    Message(
                        role="user",
                        content=[
                            ImagePart(index=0),
                            TextPart(text=lrs_gro_prompt(str(row["question"]), self.box_grid_px)),
                        ],
                    ),
                    Message(role="assistant", content=str(row["ground_truth"]).strip()),
                ],
                meta={
                    "question_id": row["question_id"],
                    "category": row.get("category"),
                    "higher_level": row.get("higher_level"),
                    "type": row["type"],
                    "bbox": box,
                },
            )
        except ValidationError as e:
            raise BadRow(str(primary_error(e)["type"])) from None

    # -- scoring ---------------------------------------------------------------------

    def _answers(self, records: Sequence[Record], predictions: Sequence[str | None]) -> Any:
        return score_open_ended(
            [extract_answer(p) for p in predictions],
            [self.reference(r) for r in records],
            sources=[self.category(r) for r in records],
            match="lrs" if self._provider is not None else "exact",
            synsets=self._provider,
        )

    def _item(self, record: Record, prediction: str | None) -> float | None:
        r = self._answers([record], [prediction])
        if not r.n:
            return None
        return float(sum(t.n_correct for t in r.by_source.values()))

    def _summary(
        self,
        records: Sequence[Record],
        predictions: Sequence[str | None],
        item_scores: Sequence[float | None],
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        answers = self._answers(records, predictions)
        boxed = [i for i, r in enumerate(records) if self.reference_box(r) is not None]
        iou = score_grounding(
            [self.predicted_box(predictions[i]) for i in boxed],
            [self.reference_box(records[i]) for i in boxed],
        )
        metrics: dict[str, Any] = {
            "accuracy": answers.overall,
            **{f"acc_{t}": answers.by_source[t].overall for t in TYPES if t in answers.by_source},
            "apo_iou": iou.mean_iou,
            "match": answers.match,
        }
        return metrics, {"answers": answers.to_dict(), "apo_iou": iou.to_dict()}


__all__ = [
    "ANNOTATION_FILES",
    "GRID_PX",
    "TYPES",
    "LRSGROBench",
    "extract_answer",
    "lrs_gro_prompt",
]
