"""LRS-GRO (ZoomEarth) rows -> VQA records with a region of interest: the one parser.

The release (``earth-insights/ZoomEarth``: ``LRS-GRO.jsonl`` at the repository root,
``src/train/RL/dataset/LRS_GRO/rl.jsonl``; its inference reads images from
``./image/<image_name>``) lays out::

    root/
      LRS-GRO.jsonl        one row per line (also read: lrs_gro.jsonl, lrs_gro.json)
      image/<image_name>   the images (.png / .tif, about 5,000 px on the longer side)

Row (formats.md): ``question_id``, ``image_name``, ``category``, ``question``,
``higher_level`` (absent from the SFT rows), ``ground_truth``, ``bbox`` ``[x1, y1, x2,
y2]`` (``[]`` for global questions), ``type`` (``global`` / ``region`` / ``object``) and
``split`` (``sft``, ``RL``, ``test``); SFT rows also carry the teacher's reasoning
(``global``, ``stage_1_reasoning``, ``stage_2_reasoning``) and ``scale``, the factor from
the box grid to the image. Boxes live on a grid whose longer side is 1024 px; where a
row gives ``scale`` it must agree with the image's longer side / 1024 within 2 %
(``scale_mismatch`` otherwise: a resized copy of the image).

:func:`parse_lrs_gro_row` checks a row (reasons ``not_an_object``, ``missing_field:<key>``,
``unknown_type``, ``bad_bbox``, ``bad_reasoning``); the benchmark ``lrs_gro`` and the
reader :class:`LRSGRO` share it. The reader's records ask :func:`lrs_gro_prompt` and
answer with the box on the grid then ``<answer>...</answer>`` (the box line is left out
for global rows); the box also becomes a pixel box labelled ``roi`` (grid x longer side /
1024).

The same records carry what a Zoom-in Chain (:mod:`earthvlm.uhr.chain`) and the zoom arm
of ``earthvlm eval`` need, in ``meta``:

* ``roi_type`` (the row's ``type``) and, in the reader's records, ``roi_xyxy_px`` (the
  box in pixels, ``[]`` for a global row): a global row becomes a direct answer, the
  others a zoom on their box;
* ``zoom_question`` (:func:`lrs_gro_zoom_prompt`: the question and the answer format,
  without the box line, since the zoom call is the box) and ``zoom_answer``
  (``<answer>...</answer>``);
* ``reasoning`` (reader only, when the row has it): the teacher's ``global`` description
  and ``stage_1_reasoning`` (its JSON box block removed: the call carries the box) as
  ``locate``, and ``stage_2_reasoning`` as ``answer``, the reasoning on the crop
  (ZoomEarth's SFT order: locate, then reason on the crop).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from earthvlm.data.record import Box, Record
from earthvlm.data.sources._base import Row, RowError, SkipRow, SourceReader

#: Annotation files looked for under the root, in order.
ANNOTATION_FILES = ("LRS-GRO.jsonl", "lrs_gro.jsonl", "lrs_gro.json")
#: Question types, as the rows write them.
TYPES = ("global", "region", "object")
#: Longer side of the grid the release's boxes live on.
GRID_PX = 1024


def lrs_gro_prompt(question: str, grid_px: int = GRID_PX) -> str:
    """The question, then the instruction to locate the region and answer briefly."""
    return (
        f"{question}\nFirst give the region of interest as [x1, y1, x2, y2] in pixels of "
        f"the image resized so that its longer side is {grid_px}, then answer the question "
        "using a single word or phrase inside <answer></answer>."
    )


def lrs_gro_zoom_prompt(question: str) -> str:
    """The question as the zoom loop asks it: the box is the zoom call, so only the
    answer format is asked for (the loop adds its own zoom instruction)."""
    return (
        f"{question}\nAnswer the question using a single word or phrase inside <answer></answer>."
    )


#: Row fields holding the teacher's reasoning (SFT rows), in the order they are said.
REASONING_FIELDS = ("global", "stage_1_reasoning", "stage_2_reasoning")
# the fenced JSON box at the end of stage_1_reasoning (``` json [...] ```)
_FENCED_BOX = re.compile(r"```\s*json.*?(```|$)", re.DOTALL | re.IGNORECASE)


def _tidy(text: str) -> str:
    """Reasoning text with trailing spaces and runs of blank lines removed."""
    text = re.sub(r"[ \t]+\n", "\n", text.replace("\r\n", "\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def row_reasoning(row: dict[str, Any]) -> dict[str, str] | None:
    """The teacher's reasoning of an SFT row as ``{"global", "locate", "answer"}`` (empty
    strings for missing parts), or None when the row has none.

    ``locate`` is ``stage_1_reasoning`` without its fenced JSON box (the zoom call carries
    the box, on the grid of the view the model sees).

    Raises:
        RowError: ``bad_reasoning`` if a reasoning field is not a string.
    """
    parts: dict[str, str] = {}
    for key, name in zip(REASONING_FIELDS, ("global", "locate", "answer"), strict=True):
        value = row.get(key)
        if value is not None and not isinstance(value, str):
            raise RowError(
                "bad_reasoning", f"{key} is {type(value).__name__}", f"write {key} as text"
            )
        parts[name] = _tidy(value or "")
    parts["locate"] = _tidy(_FENCED_BOX.sub("", parts["locate"]))
    return parts if any(parts.values()) else None


@dataclass(frozen=True)
class GRORow:
    """A checked LRS-GRO row.

    Attributes:
        question_id: The row's id.
        image_name: The image file name (relative to the image folder).
        question: The question.
        answer: The ground truth, stripped.
        type: ``global``, ``region`` or ``object``.
        bbox: The region on the 1024 grid, or None for a global question.
        split: The row's ``split`` (None when absent).
        meta: What records keep (question_id, category, higher_level, type, bbox, and for
            zooming roi_type and zoom_question).
    """

    question_id: str
    image_name: str
    question: str
    answer: str
    type: str
    bbox: list[float] | None
    split: str | None
    meta: dict[str, Any]


def _bbox(v: Any) -> list[float] | None:
    if isinstance(v, list) and not v:
        return None
    ok = (
        isinstance(v, list)
        and len(v) == 4
        and all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)
        and all(math.isfinite(x) for x in v)
        and v[0] < v[2]
        and v[1] < v[3]
    )
    if not ok:
        raise RowError("bad_bbox", f"bbox {v!r}", "give [x1, y1, x2, y2] with x1 < x2, y1 < y2")
    return [float(x) for x in v]


def parse_lrs_gro_row(row: Any) -> GRORow:
    """A checked LRS-GRO row.

    Raises:
        RowError: With the reason the row cannot be used.
    """
    if not isinstance(row, dict):
        raise RowError(
            "not_an_object",
            f"a row must be a JSON object, got {type(row).__name__}",
            "write one JSON object per line",
        )
    for key in ("question_id", "image_name", "question", "ground_truth", "type"):
        if row.get(key) in (None, ""):
            raise RowError(f"missing_field:{key}", f"{key} = {row.get(key)!r}", f"restore {key}")
    if row["type"] not in TYPES:
        raise RowError("unknown_type", f"type {row['type']!r}", f"use one of {', '.join(TYPES)}")
    box = _bbox(row.get("bbox", []))
    meta = {
        "question_id": row["question_id"],
        "category": row.get("category"),
        "higher_level": row.get("higher_level"),
        "type": row["type"],
        "bbox": box,
        "roi_type": row["type"],
        "zoom_question": lrs_gro_zoom_prompt(str(row["question"])),
    }
    split = row.get("split")
    return GRORow(
        str(row["question_id"]),
        str(row["image_name"]),
        str(row["question"]),
        str(row["ground_truth"]).strip(),
        str(row["type"]),
        box,
        None if split is None else str(split),
        meta,
    )


@dataclass(kw_only=True)
class LRSGRO(SourceReader):
    """LRS-GRO rows of one split as VQA records with their region of interest.

    Attributes:
        split: The rows kept (their ``split``, case-insensitive: ``sft``, ``rl``, ``test``);
            the records' split.
        annotation: The rows file under the root (default: the first of
            :data:`ANNOTATION_FILES` found).
        image_dir: The folder ``image_name`` is relative to.
        box_grid_px: Longer side of the grid the target box is written on.
    """

    name: ClassVar[str] = "lrs-gro"
    task: ClassVar[str] = "vqa"
    files: ClassVar[tuple[str, ...]] = ("LRS-GRO.jsonl", "image/<image_name>")
    gsd_note: ClassVar[str] = "unknown unless the options give one (the rows record none)"

    split: str = "sft"
    annotation: str | None = None
    image_dir: str = "image"
    box_grid_px: int = GRID_PX

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.box_grid_px < 1:
            raise ValueError(f"box_grid_px={self.box_grid_px}: give the grid's longer side")

    def _rows(self, root: Path) -> Iterator[Row]:
        names = (self.annotation,) if self.annotation else ANNOTATION_FILES
        return self._release_rows(names, self._record)

    def _record(self, row: Any) -> Record:
        g = parse_lrs_gro_row(row)
        if g.split is not None and g.split.lower() != self.split.lower():
            raise SkipRow("other_split")
        rel = f"{self.image_dir}/{g.image_name}" if self.image_dir else g.image_name
        image = self._image(rel)
        boxes: list[Box] = []
        answer = f"<answer>{g.answer}</answer>"
        if g.bbox is not None:
            k_img = max(image.width or 0, image.height or 0) / GRID_PX
            scale = row.get("scale")
            if isinstance(scale, int | float) and abs(scale - k_img) > 0.02 * k_img:
                # the SFT rows' own grid-to-image factor must agree with the 1024 grid
                raise RowError(
                    "scale_mismatch",
                    f"scale {scale} but the image's longer side / 1024 is {k_img:.4f}",
                    "use the released image (not a resized copy) or correct the row",
                )
            px = tuple(v * k_img for v in g.bbox)
            boxes.append(Box(label="roi", xyxy_px=px))  # type: ignore[arg-type]
            k = self.box_grid_px / GRID_PX
            answer = "[" + ", ".join(f"{round(v * k):d}" for v in g.bbox) + "]\n" + answer
        prompt = lrs_gro_prompt(g.question, self.box_grid_px)
        meta: dict[str, Any] = {
            **g.meta,
            "roi_xyxy_px": [round(v, 3) for v in boxes[0].xyxy_px] if boxes else [],
            "zoom_answer": f"<answer>{g.answer}</answer>",
        }
        reasoning = row_reasoning(row)
        if reasoning is not None:
            meta["reasoning"] = reasoning
        return self._one_turn(g.question_id, image, prompt, answer, boxes=boxes, meta=meta)


__all__ = [
    "ANNOTATION_FILES",
    "GRID_PX",
    "LRSGRO",
    "REASONING_FIELDS",
    "TYPES",
    "GRORow",
    "lrs_gro_prompt",
    "lrs_gro_zoom_prompt",
    "parse_lrs_gro_row",
    "row_reasoning",
]
