"""LRS-VQA (large remote-sensing images, open-ended) JSONL -> VQA records.

The release unpacks as ``LRS_VQA/LRS_VQA_merged.jsonl`` and ``LRS_VQA/image/*.tif``;
the root is the folder holding ``LRS_VQA/`` (``image`` paths are relative to it). One
row per line (formats.md)::

    {"question_id": "FAIR_12", "image": "LRS_VQA/image/15565.tif", "category": "color",
     "text": "What color is ...?\\n Answer the question using a single word or phrase.",
     "ground_truth": "white", "hbox": [x1, y1, x2, y2], "rbox": [8 floats],
     "abs_size": ..., "image_size": [w, h], "size_bin": ...}

The ``question_id`` prefix names the source (``FAIR_``, ``STAR_``, ``GLH_``): kept in
``meta["benchmark_source"]``, the grouping of the published per-source accuracy. The
1,199 ``count`` rows carry no box fields: no boxes. ``hbox`` (the region the question is
about) becomes a box labelled ``roi``; ``rbox`` is kept as ``meta["rbox_quad_px"]``.
``image_size`` must match the file's header (a mismatch is quarantined: boxes would be
in another frame). Images are large (averaging 7,099 x 6,329 px): sizes come from the
GeoTIFF header, never from decoding.

GSD: per file, from the GeoTIFF's georeferencing (``read_georef`` is on by default
here), else the dataset-level options, else unknown.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from earthvlm.data.record import Box, Record
from earthvlm.data.sources._base import Row, RowError, SourceReader
from earthvlm.geo.boxes import FixedBox, box_problem, normalise_box

_META_FIELDS = ("category", "abs_size", "size_bin")


def _numbers(v: Any, n: int) -> bool:
    return (
        isinstance(v, list)
        and len(v) == n
        and all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)
        and all(math.isfinite(x) for x in v)
    )


@dataclass(kw_only=True)
class LRSVQA(SourceReader):
    """LRS-VQA rows as VQA records (an evaluation set: split ``test`` by default).

    Attributes:
        annotations: The JSONL file, relative to the root.
        image_dir: A folder ``image`` paths are relative to (empty: the root).
    """

    name: ClassVar[str] = "lrs-vqa"
    task: ClassVar[str] = "vqa"
    files: ClassVar[tuple[str, ...]] = ("LRS_VQA/LRS_VQA_merged.jsonl", "LRS_VQA/image/<id>.tif")
    gsd_note: ClassVar[str] = "per file: the GeoTIFF's georeferencing, else the options"

    split: str = "test"
    read_georef: bool = True
    annotations: str = "LRS_VQA/LRS_VQA_merged.jsonl"
    image_dir: str = ""

    def _rows(self, root: Path) -> Iterator[Row]:
        yield from self._jsonl_rows(self.annotations, self._record)

    def _record(self, lineno: int, obj: dict[str, Any]) -> Record:
        qid, image_rel = obj.get("question_id"), obj.get("image")
        text, answer = obj.get("text"), obj.get("ground_truth")
        if not all(isinstance(v, str) and v.strip() for v in (qid, image_rel, text)):
            raise RowError(
                "bad_row",
                f"a row needs question_id, image and text strings; got {sorted(obj)}",
                "restore the row from the release",
            )
        if isinstance(answer, bool) or not isinstance(answer, str | int | float):
            raise RowError(
                "missing_answer", f"ground_truth {answer!r}", "restore the row's ground_truth"
            )
        rel = f"{self.image_dir}/{image_rel}" if self.image_dir else str(image_rel)
        image = self._image(rel)
        width, height = image.width or 0, image.height or 0  # always set by _image
        declared = obj.get("image_size")
        if declared is not None and declared != [width, height]:
            raise RowError(
                "image_size_mismatch",
                f"image_size {declared} but the file is {width} x {height}",
                "check that image_size is [width, height] of this file",
            )
        boxes: list[Box] = []
        meta: dict[str, Any] = {
            "question_id": qid,
            "benchmark_source": str(qid).partition("_")[0],
            **{k: obj[k] for k in _META_FIELDS if k in obj},
        }
        if obj.get("hbox") is not None:
            fixed = self._hbox(obj["hbox"], width, height)
            boxes.append(Box(label="roi", xyxy_px=fixed.values))  # type: ignore[arg-type]
            if fixed.repairs:
                meta["box_repairs"] = {r: 1 for r in fixed.repairs}
        if obj.get("rbox") is not None:
            rbox = obj["rbox"]
            problem = box_problem(rbox, "quad", width=width, height=height, tol_px=1.0)
            if not _numbers(rbox, 8) or problem:
                raise RowError(
                    problem or "box_wrong_length",
                    f"rbox {rbox!r} in a {width} x {height} image",
                    "correct rbox: 8 numbers, the corners in pixels",
                )
            meta["rbox_quad_px"] = [float(v) for v in rbox]
        return self._one_turn(
            str(qid), image, str(text), str(answer).strip(), boxes=boxes, meta=meta
        )

    def _hbox(self, hbox: Any, width: int, height: int) -> FixedBox:
        fix = "correct hbox: [x1, y1, x2, y2] in pixels of the image"
        if not _numbers(hbox, 4):
            raise RowError("box_wrong_length", f"hbox {hbox!r}", fix)
        fixed = normalise_box(hbox, "xyxy", width=width, height=height)
        if fixed.values is None or "swapped_corners" in fixed.repairs:
            raise RowError(
                fixed.problem or "box_inverted", f"hbox {hbox} in a {width} x {height} image", fix
            )
        return fixed
