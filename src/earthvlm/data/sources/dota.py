"""DOTA v1.0 / v1.5 / v2.0 label files -> detection records with the text target.

Layout (one split)::

    root/
      images/P0000.png ...
      labelTxt/P0000.txt ...

A label file may start with two header lines, then one object per line::

    imagesource:GoogleEarth
    gsd:0.146343590398
    2753 2408 2861 2385 2888 2468 2805 2502 plane 0

Eight coordinates (a quadrilateral in pixels, any vertex order), the class, and the
``difficult`` flag (0 or 1; some files omit it, read as 0). One label file is one row
and becomes one record: the image, the instruction, and the objects serialised as
RSCoVLM / LMMRotate text (:func:`~earthvlm.data.detection_text.serialise_detections`);
an image without objects keeps the target "There is none." (formats.md: keep empty
images in training). Images without a label file are counted as skipped.

GSD: the ``gsd:`` header (:func:`~earthvlm.scale.sensors.parse_dota_header`; often
``gsd:null``), else the ``imagesource:`` when it names a satellite in the sensor table
(DOTA v2's GF-2 and JL-1 scenes), else the dataset-level options, else unknown.

Boxes: repairable ones are repaired (vertex order, corners slightly outside the image:
clipped) and the repairs counted in ``meta["box_repairs"]``. A box that cannot be an
object (no area, nothing left inside the image) is dropped and the image kept: DOTA's
own labels hold such boxes, and one should not cost the image and its other objects.
Each dropped box is counted by reason in ``meta["boxes_dropped"]`` (with its lines in
``meta["dropped_lines"]``), which ``earthvlm data convert`` sums. A malformed line (wrong
field count, coordinates that are not numbers, an unknown class) still quarantines the
file: that is a broken file, and a target that silently misses an object teaches the
model that the object is not there.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from earthvlm.data.detection_text import serialise_detections
from earthvlm.data.record import Box, Record
from earthvlm.data.sources._base import Row, RowError, SourceReader, check_choice, skip
from earthvlm.data.sources._images import IMAGE_SUFFIXES
from earthvlm.data.sources._prompts import detection_prompt
from earthvlm.errors import GSDError
from earthvlm.geo.boxes import normalise_box
from earthvlm.scale.sensors import parse_dota_header

_V10 = (
    "plane", "ship", "storage-tank", "baseball-diamond", "tennis-court", "basketball-court",
    "ground-track-field", "harbor", "bridge", "large-vehicle", "small-vehicle", "helicopter",
    "roundabout", "soccer-ball-field", "swimming-pool",
)  # fmt: skip

#: The classes of each DOTA version (v1.5 adds container-crane, v2.0 airport and helipad).
CLASSES: dict[str, tuple[str, ...]] = {
    "1.0": _V10,
    "1.5": (*_V10, "container-crane"),
    "2.0": (*_V10, "container-crane", "airport", "helipad"),
}

#: ``imagesource:`` values (upper case, letters and digits only) that name a satellite of
#: the sensor table. Google Earth mosaics mix sources and give no GSD.
IMAGESOURCE_SENSORS: dict[str, str] = {
    "GF2": "gaofen-2",
    "GAOFEN2": "gaofen-2",
    "JL1": "jilin-1",
    "JILIN1": "jilin-1",
}

_HEADER_KEYS = ("imagesource", "gsd")


def imagesource_sensor(value: str | None) -> str | None:
    """The sensor key of a DOTA ``imagesource:`` value, or ``None`` (e.g. GoogleEarth)."""
    if not value:
        return None
    return IMAGESOURCE_SENSORS.get(re.sub(r"[^A-Z0-9]", "", value.upper()))


@dataclass(frozen=True)
class _Object:
    line: int
    text: str
    label: str
    coords: tuple[float, ...]
    difficult: bool


@dataclass(kw_only=True)
class DOTA(SourceReader):
    """DOTA v1.0 / v1.5 / v2.0 oriented boxes as detection records.

    Attributes:
        version: ``"1.0"``, ``"1.5"`` or ``"2.0"``: the class list labels are checked
            against (v1.5 adds ``container-crane``, v2.0 ``airport`` and ``helipad``).
        image_dir: The images folder, relative to the root.
        label_dir: The label folder (``labelTxt``; DOTA v1.5 ships e.g.
            ``DOTA-v1.5_train``), relative to the root.
        fmt: The target's geometry: ``quad`` (four corners) or ``hbox`` (x1,y1,x2,y2).
        style: The target's style: ``plain`` lines or ``json``.
        include_difficult: Keep objects flagged difficult in boxes and target (their
            indexes are listed in ``meta["difficult"]``); when False they are left out
            and counted in ``meta["difficult_omitted"]``.
        list_classes: Name the version's classes in the instruction.
    """

    name: ClassVar[str] = "dota"
    task: ClassVar[str] = "detection"
    files: ClassVar[tuple[str, ...]] = ("images/<name>.png", "labelTxt/<name>.txt")
    gsd_note: ClassVar[str] = (
        "per file: the gsd: header, else a satellite named by imagesource: (GF-2, JL-1), "
        "else the dataset-level options, else unknown"
    )

    version: Literal["1.0", "1.5", "2.0"] = "1.0"
    image_dir: str = "images"
    label_dir: str = "labelTxt"
    fmt: Literal["quad", "hbox"] = "quad"
    style: Literal["plain", "json"] = "plain"
    include_difficult: bool = True
    list_classes: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("version", self.version, tuple(CLASSES))
        check_choice("fmt", self.fmt, ("quad", "hbox"))
        check_choice("style", self.style, ("plain", "json"))

    def _rows(self, root: Path) -> Iterator[Row]:
        label_dir = self._dir(self.label_dir)
        image_dir = self._dir(self.image_dir)
        labelled: set[str] = set()
        for p in sorted(label_dir.iterdir()):
            rel = self._rel(p)
            if p.suffix.lower() != ".txt" or p.is_dir():
                yield Row(rel, 0, p.name, skip("not_a_label_file"))
                continue
            labelled.add(p.stem)
            yield Row(rel, 0, None, lambda rel=rel, stem=p.stem: self._record(rel, stem))
        for p in sorted(image_dir.iterdir()):
            if p.suffix.lower() in IMAGE_SUFFIXES and p.stem not in labelled:
                yield Row(self._rel(p), 0, p.name, skip("no_label_file"))

    def _record(self, rel_label: str, stem: str) -> Record:
        path = self._path(rel_label, what="label")
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise RowError("not_utf8", str(e), "re-encode the label file as UTF-8") from None
        try:
            header_gsd = parse_dota_header(text, where=rel_label)
        except GSDError as e:
            raise RowError(
                "bad_gsd_header",
                str(e),
                "write the header as gsd:<metres per pixel> or gsd:null",
                row=_header_line(text, "gsd"),
                raw=text.splitlines()[_header_line(text, "gsd") - 1],
            ) from None
        imagesource, objects = self._parse(text)
        image = self._image(
            self._image_path(stem),
            metadata_gsd=header_gsd,
            sensor=imagesource_sensor(imagesource),
        )
        classes = CLASSES[self.version]
        boxes: list[Box] = []
        targets: list[tuple[str, tuple[float, ...]]] = []
        difficult: list[int] = []
        omitted = 0
        repairs: Counter[str] = Counter()
        dropped: Counter[str] = Counter()
        dropped_lines: list[int] = []
        for obj in objects:
            fixed = normalise_box(obj.coords, "quad", width=image.width, height=image.height)
            if fixed.values is None:  # no object to learn: drop the box, keep the image
                dropped[fixed.problem or "bad_box"] += 1
                dropped_lines.append(obj.line)
                continue
            repairs.update(fixed.repairs)
            if obj.difficult and not self.include_difficult:
                omitted += 1
                continue
            if obj.difficult:
                difficult.append(len(boxes))
            boxes.append(Box(label=obj.label, quad_px=fixed.values))  # type: ignore[arg-type]
            targets.append((obj.label, fixed.values))
        meta: dict[str, Any] = {
            "label_file": rel_label,
            "dota_version": self.version,
            "imagesource": imagesource,
            "format": self.fmt,
            "style": self.style,
            "n_objects": len(boxes),
            "difficult": difficult,
        }
        if omitted:
            meta["difficult_omitted"] = omitted
        if repairs:
            meta["box_repairs"] = dict(sorted(repairs.items()))
        if dropped:
            meta["boxes_dropped"] = dict(sorted(dropped.items()))
            meta["dropped_lines"] = dropped_lines
        prompt = detection_prompt(self.fmt, self.style, classes if self.list_classes else None)
        answer = serialise_detections(targets, fmt=self.fmt, style=self.style)
        return self._one_turn(stem, image, prompt, answer, boxes=boxes, meta=meta)

    def _parse(self, text: str) -> tuple[str | None, list[_Object]]:
        classes = CLASSES[self.version]
        imagesource: str | None = None
        objects: list[_Object] = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            s = line.strip()
            if not s:
                continue
            key, sep, value = s.partition(":")
            if sep and key.strip().lower() in _HEADER_KEYS:
                if key.strip().lower() == "imagesource":
                    imagesource = value.strip() or None
                continue
            tokens = s.split()
            fix = f"correct or delete line {lineno}"
            if len(tokens) not in (9, 10):
                raise RowError(
                    "bad_object_line",
                    f"line {lineno} has {len(tokens)} fields; expected 8 coordinates, a "
                    "class and a difficult flag",
                    fix,
                    row=lineno,
                    raw=s,
                )
            try:
                coords = tuple(float(v) for v in tokens[:8])
            except ValueError:
                raise RowError(
                    "box_not_numeric",
                    f"line {lineno}: coordinates {tokens[:8]}",
                    fix,
                    row=lineno,
                    raw=s,
                ) from None
            label = tokens[8]
            if label not in classes:
                hint = next((v for v in ("1.5", "2.0") if label in CLASSES[v]), None)
                raise RowError(
                    "unknown_class",
                    f"line {lineno}: class {label!r} is not a DOTA v{self.version} class",
                    f"read the labels with version={hint}"
                    if hint and hint > self.version
                    else f"use one of {', '.join(classes)} on line {lineno}",
                    row=lineno,
                    raw=s,
                )
            flag = tokens[9] if len(tokens) == 10 else "0"
            if flag not in ("0", "1"):
                raise RowError(
                    "bad_difficult_flag",
                    f"line {lineno}: difficult flag {flag!r}",
                    f"write 0 or 1 as the last field of line {lineno}",
                    row=lineno,
                    raw=s,
                )
            objects.append(_Object(lineno, s, label, coords, flag == "1"))
        return imagesource, objects

    def _image_path(self, stem: str) -> str:
        for suffix in (".png", ".jpg", ".tif", ".bmp"):
            rel = f"{self.image_dir}/{stem}{suffix}" if self.image_dir else f"{stem}{suffix}"
            if (self._root / rel).is_file():
                return rel
        raise RowError(
            "missing_image",
            f"no image {stem}.png (or .jpg/.tif/.bmp) in {self.image_dir or 'the root'}",
            f"put the image at {self.image_dir}/{stem}.png or remove the label file",
        )


def _header_line(text: str, key: str) -> int:
    for i, line in enumerate(text.splitlines()[:4], start=1):
        if line.strip().lower().startswith(key + ":"):
            return i
    return 0
