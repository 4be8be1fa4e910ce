"""refGeo (GeoGround, Zhou et al. 2024) grounding JSONL -> grounding records.

refGeo gathers remote-sensing visual grounding sets (DIOR-RSVG, RSVG, GeoChat, VRSBench
and the new AVVG) as one JSON object per line, the files under ``metainfo/`` and the
images under ``images/<subset>/``::

    {"image_id": "09991.jpg", "question": "the storage tank on the left",
     "bbox": [x1, y1, x2, y2]}

``bbox`` is in pixels of the original image; AVVG's generalised rows may hold several
boxes (a list of boxes) or none (``[]``: the expression matches nothing, the empty
case, target "There is none."). Each line is a row and becomes one record: the image,
the instruction to locate the expression, and one ``x1,y1,x2,y2 expression`` line per
box. Other fields of the line are kept in ``meta["fields"]``.

Quirk kept from the GeoGround evaluator: a GeoChat test image named ``.jpg`` in the
annotation may be stored as ``.png``; the reader falls back to it and says so in
``meta["image_suffix_fallback"]``.

GSD: none per sample; the dataset-level options apply, else unknown (the subsets mix
satellites and aerial platforms).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from earthvlm.data.detection_text import serialise_detections
from earthvlm.data.paths import resolve_within
from earthvlm.data.record import Box, Record
from earthvlm.data.sources._base import Row, RowError, SourceReader
from earthvlm.data.sources._prompts import grounding_prompt
from earthvlm.errors import PathEscapeError
from earthvlm.geo.boxes import BOX_NOT_NUMERIC, BOX_WRONG_LENGTH, FixedBox, normalise_box

#: GeoGround's evaluation files: subset -> (image folder, annotation file).
SUBSETS: dict[str, tuple[str, str]] = {
    "avvg_test": ("images/avvg", "metainfo/avvg_test.jsonl"),
    "dior_rsvg_val": ("images/dior_rsvg", "metainfo/dior_rsvg_val.jsonl"),
    "dior_rsvg_test": ("images/dior_rsvg", "metainfo/dior_rsvg_test.jsonl"),
    "rsvg_test": ("images/rsvg", "metainfo/rsvg_test.jsonl"),
    "rsvg_val": ("images/rsvg", "metainfo/rsvg_val.jsonl"),
    "geochat_test": ("images/geochat_test", "metainfo/geochat_test.jsonl"),
    "vrsbench_test": ("images/vrsbench", "metainfo/vrsbench_test.jsonl"),
}

_KNOWN_FIELDS = ("image_id", "question", "bbox")


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(kw_only=True)
class RefGeo(SourceReader):
    """refGeo grounding lines as grounding records.

    Attributes:
        subset: One of :data:`SUBSETS` (sets ``annotations`` and ``image_dir``).
        annotations: The JSONL file, relative to the root (for files not in
            :data:`SUBSETS`, e.g. a training file).
        image_dir: The folder ``image_id`` is relative to, relative to the root.
        split: Empty: taken from the subset's name (``*_test`` -> ``test``, ``*_val`` ->
            ``val``), else ``train``.
    """

    name: ClassVar[str] = "refgeo"
    task: ClassVar[str] = "grounding"
    files: ClassVar[tuple[str, ...]] = ("metainfo/<subset>.jsonl", "images/<subset>/<image_id>")

    split: str = ""
    subset: str | None = None
    annotations: str | None = None
    image_dir: str | None = None

    def __post_init__(self) -> None:
        if self.subset is not None:
            if self.subset not in SUBSETS:
                import difflib

                near = difflib.get_close_matches(self.subset, SUBSETS, n=2)
                hint = f"; did you mean {', '.join(near)}?" if near else ""
                raise ValueError(
                    f"subset={self.subset!r}{hint} Known: {', '.join(SUBSETS)}; or give "
                    "annotations and image_dir"
                )
            folder, ann = SUBSETS[self.subset]
            self.image_dir = self.image_dir or folder
            self.annotations = self.annotations or ann
        if not self.annotations or self.image_dir is None:
            raise ValueError(
                "annotations/image_dir: give subset (one of "
                f"{', '.join(SUBSETS)}), or both annotations and image_dir"
            )
        if not self.split:
            stem = PurePosixPath(self.annotations).stem
            self.split = next((s for s in ("test", "val") if stem.endswith(f"_{s}")), "train")
        super().__post_init__()

    def _rows(self, root: Path) -> Iterator[Row]:
        yield from self._jsonl_rows(self.annotations or "", self._record)

    def _record(self, lineno: int, obj: dict[str, Any]) -> Record:
        image_id, question = obj.get("image_id"), obj.get("question")
        if not isinstance(image_id, str) or not image_id or not isinstance(question, str):
            raise RowError(
                "bad_row",
                f"a line needs image_id and question strings; got {sorted(obj)}",
                "restore image_id (the image file name) and question (the expression)",
            )
        expression = " ".join(question.split())
        if not expression:
            raise RowError("empty_expression", "question is empty", "write the expression")
        rel, fallback = self._image_rel(image_id)
        image = self._image(rel)
        width, height = image.width or 0, image.height or 0  # always set by _image
        fixed = [self._box(values, width, height) for values in self._box_list(obj.get("bbox"))]
        boxes = [Box(label=expression, xyxy_px=f.values) for f in fixed]  # type: ignore[arg-type]
        meta: dict[str, Any] = {"annotation_file": self.annotations, "line": lineno}
        repairs = Counter(r for f in fixed for r in f.repairs)
        if repairs:
            meta["box_repairs"] = dict(sorted(repairs.items()))
        if self.subset:
            meta["subset"] = self.subset
        if fallback:
            meta["image_suffix_fallback"] = True
        extra = {k: v for k, v in obj.items() if k not in _KNOWN_FIELDS}
        if extra:
            meta["fields"] = extra
        target = serialise_detections([(b.label, b.xyxy_px) for b in boxes], fmt="hbox")
        stem = self.subset or PurePosixPath(self.annotations or "").stem
        prompt = grounding_prompt(expression)
        return self._one_turn(f"{stem}-{lineno}", image, prompt, target, boxes=boxes, meta=meta)

    def _image_rel(self, image_id: str) -> tuple[str, bool]:
        rel = f"{self.image_dir}/{image_id}" if self.image_dir else image_id
        if rel.lower().endswith(".jpg"):
            png = rel[:-4] + ".png"
            try:  # only paths inside the root are looked at
                missing = not resolve_within(self._root, rel).exists()
                if missing and resolve_within(self._root, png).is_file():
                    return png, True
            except PathEscapeError:
                pass  # refused with its reason by _image
        return rel, False

    def _box_list(self, bbox: Any) -> list[list[Any]]:
        fix = "write bbox as [x1, y1, x2, y2] in pixels, a list of such boxes, or []"
        if not isinstance(bbox, list):
            raise RowError(BOX_WRONG_LENGTH, f"bbox {bbox!r} is not a list", fix)
        if all(isinstance(v, list) for v in bbox):
            return bbox
        if len(bbox) != 4:
            raise RowError(BOX_WRONG_LENGTH, f"bbox {bbox!r} does not hold 4 values", fix)
        return [bbox]

    def _box(self, values: Any, width: int, height: int) -> FixedBox:
        fix = "correct the box: [x1, y1, x2, y2] in pixels of the image"
        if not isinstance(values, list) or len(values) != 4:
            raise RowError(BOX_WRONG_LENGTH, f"box {values!r} does not hold 4 values", fix)
        if not all(_is_number(v) for v in values):
            raise RowError(BOX_NOT_NUMERIC, f"box {values!r}", fix)
        fixed = normalise_box(values, "xyxy", width=width, height=height)
        if fixed.values is None:
            raise RowError(
                fixed.problem or "bad_box", f"box {values!r} in a {width} x {height} image", fix
            )
        return fixed
