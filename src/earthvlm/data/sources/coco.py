"""COCO detection JSON -> detection records with the text target.

The COCO object-detection format (``instances_*.json``), used by many remote-sensing
releases (DIOR, NWPU VHR-10, xView and others exported to COCO)::

    {"images": [{"id": 1, "file_name": "00001.jpg", "width": 800, "height": 800}],
     "annotations": [{"id": 7, "image_id": 1, "category_id": 2,
                      "bbox": [x, y, w, h], "area": 600.0, "iscrowd": 0}],
     "categories": [{"id": 2, "name": "airplane", "supercategory": "vehicle"}]}

``bbox`` is ``[x, y, width, height]`` in pixels (top-left corner). Each image entry is
one row and becomes one record (all its objects, or "There is none."); an annotation
whose ``image_id`` names no image is a row of its own, quarantined as
``orphan_annotation``. A bad annotation quarantines its image's row (a target missing
an object teaches the model it is absent). Crowd regions (``iscrowd: 1``) are left out
of the target by default, as COCO evaluation ignores them, and counted in ``meta``.

GSD: COCO carries none; the dataset-level options (``sensor``, ``dataset``,
``gsd_range_m``) apply, else unknown.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from earthvlm.data.detection_text import serialise_detections
from earthvlm.data.record import Box, Record
from earthvlm.data.sources._base import Row, RowError, SourceError, SourceReader, check_choice
from earthvlm.data.sources._prompts import detection_prompt
from earthvlm.geo.boxes import BOX_DEGENERATE, BOX_NOT_NUMERIC, BOX_WRONG_LENGTH, normalise_box


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _key(v: Any) -> Any:
    """An id usable as a dict key (COCO ids are ints; strings occur in exports)."""
    return v if isinstance(v, int | str) and not isinstance(v, bool) else None


@dataclass(kw_only=True)
class COCODetection(SourceReader):
    """COCO detection annotations as detection records (horizontal boxes).

    Attributes:
        annotations: The annotation JSON, relative to the root.
        image_dir: The folder ``file_name`` is relative to, relative to the root.
        style: The target's style: ``plain`` lines (``x1,y1,x2,y2 class``) or ``json``.
        include_crowd: Keep ``iscrowd`` regions in boxes and target.
        list_classes: Name the categories in the instruction.
    """

    name: ClassVar[str] = "coco"
    task: ClassVar[str] = "detection"
    files: ClassVar[tuple[str, ...]] = ("annotations.json", "images/<file_name>")

    annotations: str = "annotations.json"
    image_dir: str = "images"
    style: Literal["plain", "json"] = "plain"
    include_crowd: bool = False
    list_classes: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("style", self.style, ("plain", "json"))

    def _rows(self, root: Path) -> Iterator[Row]:
        data = self._load_json(self.annotations)
        where = self.annotations
        if not isinstance(data, dict) or not isinstance(data.get("images"), list):
            raise SourceError(f"{where}: not COCO: expected an object with an 'images' list")
        if "annotations" not in data:
            raise SourceError(
                f"{where}: has no 'annotations' (an image-info file, e.g. a test split "
                "without labels); detection records need annotations"
            )
        anns, cats = data["annotations"], data.get("categories")
        if not isinstance(anns, list) or not isinstance(cats, list):
            raise SourceError(f"{where}: 'annotations' and 'categories' must be lists")
        names = self._categories(cats)
        images = data["images"]
        id_counts = Counter(_key(im.get("id")) for im in images if isinstance(im, dict))
        by_image: dict[Any, list[tuple[int, Any]]] = {}
        orphans: list[tuple[int, Any]] = []
        for j, ann in enumerate(anns):
            image_id = _key(ann.get("image_id")) if isinstance(ann, dict) else None
            if image_id is not None and id_counts.get(image_id, 0) == 1:
                by_image.setdefault(image_id, []).append((j, ann))
            else:
                orphans.append((j, ann))
        classes = sorted(set(names.values()))
        for i, entry in enumerate(images):
            own = by_image.get(_key(entry.get("id"))) if isinstance(entry, dict) else None

            def make(entry: Any = entry, own: list[tuple[int, Any]] = own or []) -> Record:
                return self._record(entry, own, id_counts, names, classes)

            yield Row(where, f"images[{i}]", entry, make)
        for j, ann in orphans:
            yield Row(where, f"annotations[{j}]", ann, lambda ann=ann: self._orphan(ann, id_counts))

    def _categories(self, cats: list[Any]) -> dict[Any, str]:
        names: dict[Any, str] = {}
        for k, cat in enumerate(cats):
            if not isinstance(cat, dict) or _key(cat.get("id")) is None:
                raise SourceError(f"{self.annotations}: categories[{k}] has no id")
            name = cat.get("name")
            if not isinstance(name, str) or not name.strip():
                raise SourceError(
                    f"{self.annotations}: categories[{k}] name {name!r}: give a non-empty name"
                )
            name = " ".join(name.split())  # one line, no padding: the target's class text
            if cat["id"] in names:
                raise SourceError(f"{self.annotations}: category id {cat['id']!r} repeats")
            names[cat["id"]] = name
        return names

    def _orphan(self, ann: Any, id_counts: Counter[Any]) -> Record:
        if not isinstance(ann, dict):
            raise RowError(
                "not_an_object", f"an annotation must be an object, got {type(ann).__name__}",
                "write each annotation as a JSON object",
            )  # fmt: skip
        image_id = ann.get("image_id")
        if id_counts.get(_key(image_id), 0) > 1:
            raise RowError(
                "duplicate_image_id",
                f"image_id {image_id!r} names several image entries",
                "give every image entry a unique id",
            )
        raise RowError(
            "orphan_annotation",
            f"image_id {image_id!r} names no entry of 'images'",
            "add the image entry or remove the annotation",
        )

    def _record(
        self,
        entry: Any,
        anns: list[tuple[int, Any]],
        id_counts: Counter[Any],
        names: dict[Any, str],
        classes: list[str],
    ) -> Record:
        if not isinstance(entry, dict):
            raise RowError(
                "not_an_object", f"an image entry must be an object, got {type(entry).__name__}",
                "write each image entry as a JSON object",
            )  # fmt: skip
        image_id, file_name = _key(entry.get("id")), entry.get("file_name")
        if image_id is None or not isinstance(file_name, str) or not file_name:
            raise RowError(
                "bad_image_entry",
                f"id {entry.get('id')!r}, file_name {file_name!r}",
                "give the image entry an integer id and a file_name",
            )
        if id_counts[image_id] > 1:
            raise RowError(
                "duplicate_image_id",
                f"image id {image_id!r} appears {id_counts[image_id]} times",
                "give every image entry a unique id",
            )
        rel = f"{self.image_dir}/{file_name}" if self.image_dir else file_name
        image = self._image(rel)
        declared = (entry.get("width"), entry.get("height"))
        if declared != (None, None) and declared != (image.width, image.height):
            raise RowError(
                "image_size_mismatch",
                f"entry says {declared[0]} x {declared[1]}, the file is "
                f"{image.width} x {image.height}",
                "correct width and height of the entry (boxes are in the file's pixels)",
            )
        width, height = image.width or 0, image.height or 0  # always set by _image
        boxes: list[Box] = []
        crowd = 0
        repairs: Counter[str] = Counter()
        for j, ann in anns:
            label, xyxy, fixes = self._box(j, ann, names, width, height)
            repairs.update(fixes)
            if ann.get("iscrowd") in (1, True) and not self.include_crowd:
                crowd += 1
                continue
            boxes.append(Box(label=label, xyxy_px=xyxy))
        targets = [(b.label, b.xyxy_px) for b in boxes]
        meta: dict[str, Any] = {
            "image_id": image_id,
            "annotation_file": self.annotations,
            "format": "hbox",
            "style": self.style,
            "n_objects": len(boxes),
        }
        if crowd:
            meta["crowd_omitted"] = crowd
        if repairs:
            meta["box_repairs"] = dict(sorted(repairs.items()))
        prompt = detection_prompt("hbox", self.style, classes if self.list_classes else None)
        answer = serialise_detections(targets, fmt="hbox", style=self.style)
        return self._one_turn(str(image_id), image, prompt, answer, boxes=boxes, meta=meta)

    def _box(
        self, j: int, ann: Any, names: dict[Any, str], width: int, height: int
    ) -> tuple[str, tuple[float, float, float, float], tuple[str, ...]]:
        at, fix = f"annotations[{j}]", f"correct or remove annotations[{j}]"
        if not isinstance(ann, dict):
            raise RowError("not_an_object", f"{at} is not an object", fix, row=at, raw=ann)
        label = names.get(ann.get("category_id"))
        if label is None:
            raise RowError(
                "unknown_category",
                f"{at}: category_id {ann.get('category_id')!r} is not in 'categories'",
                fix,
                row=at,
                raw=ann,
            )
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise RowError(
                BOX_WRONG_LENGTH, f"{at}: bbox {bbox!r} is not [x, y, w, h]", fix, row=at, raw=ann
            )
        if not all(_is_number(v) for v in bbox):
            raise RowError(BOX_NOT_NUMERIC, f"{at}: bbox {bbox!r}", fix, row=at, raw=ann)
        x, y, w, h = (float(v) for v in bbox)
        if w <= 0 or h <= 0:
            raise RowError(BOX_DEGENERATE, f"{at}: bbox {bbox!r} has no area", fix, row=at, raw=ann)
        fixed = normalise_box((x, y, x + w, y + h), "xyxy", width=width, height=height)
        if fixed.values is None:
            raise RowError(
                fixed.problem or "bad_box",
                f"{at}: bbox {bbox!r} in a {width} x {height} image",
                fix,
                row=at,
                raw=ann,
            )
        x1, y1, x2, y2 = fixed.values
        return label, (x1, y1, x2, y2), fixed.repairs
