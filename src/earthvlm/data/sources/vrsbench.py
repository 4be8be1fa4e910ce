"""VRSBench evaluation files -> VQA, referring (grounding) and caption records.

The release (Hugging Face ``xiang709/VRSBench``; the files are built by
``prepare_eval_all.ipynb`` in the VRSBench repository) unpacks as::

    root/
      VRSBench_EVAL_vqa.json         [{"image_id", "question", "ground_truth", "dataset",
                                       "question_id", "type"}, ...]        37,409 questions
      VRSBench_EVAL_referring.json   [{"image_id", "question", "ground_truth":
                                       "{<x1><y1><x2><y2>}", "question_id", "type": "ref",
                                       "unique" (or "is_unique"), "obj_corner", "obj_cls",
                                       "size_group", ...}, ...]           16,159 referrals
      VRSBench_EVAL_Cap.json         [{"image_id", "ground_truth", "question", ...}, ...]
      Images_val/<image_id>          the 9,350 validation images (512 x 512 PNG)

Referring boxes are horizontal boxes on a 0-100 integer grid (percent of the image
width and height; the notebook clips the object's corners to [0, 1] and truncates
``x * 100`` to an integer). They are kept on the grid in ``meta["box_grid"]`` (what the
published Acc@0.5 compares) and converted to pixels of the image in the record's box.
VQA question types are kept as written (``meta["type"]``) and grouped as the release's
scorer groups them (``meta["type_group"]``: ``image`` and ``rural or urban`` count as
``scene type``). ``VRSBench_train.json`` is LLaVA-style conversations with ``[refer]`` /
``[vqa]`` / ``[caption]`` tags: read it with the ``geochat`` reader.

GSD: unknown (DOTA-v2 and DIOR patches, 0.1-4.5 m) unless the options give one.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from earthvlm.data.record import Box, Record
from earthvlm.data.sources._base import Row, RowError, SourceError, SourceReader, check_choice

#: Subset -> the release's file.
FILES = {
    "vqa": "VRSBench_EVAL_vqa.json",
    "referring": "VRSBench_EVAL_referring.json",
    "caption": "VRSBench_EVAL_Cap.json",
}
#: Record task per subset.
TASKS = {"vqa": "vqa", "referring": "grounding", "caption": "caption"}
#: The ten question types of the published table (README "Visual Question Answering").
VQA_TYPES = (
    "object category",
    "object existence",
    "object quantity",
    "object color",
    "object shape",
    "object size",
    "object position",
    "object direction",
    "scene type",
    "reasoning",
)
#: Types the release's scorer reports under another (``eval_vqa_gpt.ipynb``).
TYPE_GROUPS = {"image": "scene type", "rural or urban": "scene type"}
#: Longer side of the referring grid.
GRID = 100
VQA_SUFFIX = "\nAnswer the question using a single word or phrase."
REFER_SUFFIX = (
    "\nGive the box of the object as [x1, y1, x2, y2], each coordinate from 0 to 100 "
    "(percent of the image width and height)."
)
CAPTION_PROMPT = "Describe the image in detail."

_NUM = r"\s*(-?\d+(?:\.\d+)?)\s*"
_GRID_BOX = re.compile(r"\{\s*" + r"<" + _NUM + r">" + (r"\s*<" + _NUM + r">") * 3)


def parse_grid_box(text: str | None) -> tuple[float, float, float, float] | None:
    """The first ``{<x1><y1><x2><y2>}`` box in a text (an ``|<angle>`` tail is ignored)."""
    if not text:
        return None
    m = _GRID_BOX.search(text)
    return None if m is None else tuple(float(v) for v in m.groups())  # type: ignore[return-value]


def type_group(qtype: str) -> str:
    """The reported type of a VQA question type (lower-cased, the release's merges)."""
    t = " ".join(str(qtype).strip().lower().split())
    return TYPE_GROUPS.get(t, t)


@dataclass(kw_only=True)
class VRSBench(SourceReader):
    """VRSBench evaluation rows (split ``test``).

    Attributes:
        subset: ``vqa``, ``referring`` or ``caption``.
        annotations: The JSON file, relative to the root (default: the subset's release file).
        image_dir: The folder ``image_id`` is relative to.
    """

    name: ClassVar[str] = "vrsbench"
    task: ClassVar[str] = "vqa"
    files: ClassVar[tuple[str, ...]] = (*FILES.values(), "Images_val/<image_id>")

    split: str = "test"
    subset: str = "vqa"
    annotations: str | None = None
    image_dir: str = "Images_val"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("subset", self.subset, tuple(FILES))

    def _rows(self, root: Path) -> Iterator[Row]:
        rel = self.annotations or FILES[self.subset]
        rows = self._load_json(rel)
        if not isinstance(rows, list):
            raise SourceError(f"{self._root / rel}: expected a JSON list of rows")
        for i, row in enumerate(rows):
            yield Row(rel, i, row, functools.partial(self._record, i, row))

    def _record(self, i: int, row: Any) -> Record:
        if not isinstance(row, dict):
            raise RowError(
                "not_an_object",
                f"a row must be a JSON object, got {type(row).__name__}",
                "write each row as an object",
            )
        fields = ("image_id", "ground_truth") + (("question",) if self.subset != "caption" else ())
        for key in fields:
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise RowError(
                    f"missing_field:{key}",
                    f"{key} = {row.get(key)!r}",
                    f"give the row its {key} string",
                )
        qid = row.get("question_id", i)
        rel = f"{self.image_dir}/{row['image_id']}" if self.image_dir else row["image_id"]
        image = self._image(rel)
        meta: dict[str, Any] = {"question_id": qid, "image_id": row["image_id"]}
        gt = row["ground_truth"].strip()
        key = f"{self.subset}-{qid}"
        if self.subset == "caption":
            return self._one_turn(key, image, CAPTION_PROMPT, gt, meta=meta)
        question = row["question"].strip()
        if self.subset == "vqa":
            if not isinstance(row.get("type"), str) or not row["type"].strip():
                raise RowError(
                    "missing_field:type",
                    f"type = {row.get('type')!r}",
                    "give the question its type",
                )
            meta |= {
                "type": row["type"],
                "type_group": type_group(row["type"]),
                "question": question,
            }
            return self._one_turn(key, image, question + VQA_SUFFIX, gt, meta=meta)
        box = parse_grid_box(gt)
        if box is None or not (0 <= box[0] <= box[2] <= GRID and 0 <= box[1] <= box[3] <= GRID):
            raise RowError(
                "bad_box",
                f"ground_truth {gt!r}",
                "write the box as {<x1><y1><x2><y2>} with 0 <= x1 <= x2 <= 100",
            )
        unique = row.get("is_unique", row.get("unique"))
        w, h = image.width or 0, image.height or 0
        px = (box[0] * w / GRID, box[1] * h / GRID, box[2] * w / GRID, box[3] * h / GRID)
        label = str(row.get("obj_cls") or "object")
        meta |= {
            "box_grid": list(box),
            "unique": None if unique is None else bool(unique),
            "obj_cls": row.get("obj_cls"),
            "size_group": row.get("size_group"),
            "question": question,
        }
        answer = "[" + ", ".join(f"{v:g}" for v in box) + "]"
        return self._one_turn(
            key,
            image,
            question + REFER_SUFFIX,
            answer,
            boxes=[Box(label=label, xyxy_px=px)],
            meta=meta,
        )

    def _one_turn(self, key: str, image: Any, prompt: str, answer: str, **fields: Any) -> Record:
        rec = super()._one_turn(key, image, prompt, answer, **fields)
        return rec.model_copy(update={"task": TASKS[self.subset]})


__all__ = [
    "FILES",
    "GRID",
    "TYPE_GROUPS",
    "VQA_TYPES",
    "VRSBench",
    "parse_grid_box",
    "type_group",
]
