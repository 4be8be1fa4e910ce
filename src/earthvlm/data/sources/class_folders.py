"""Scene classification from class folders (PatternNet and its kind) -> classification records.

Layout: one folder per class, the images inside::

    root/images/airplane/airplane001.jpg
    root/images/beach/beach001.jpg ...

(PatternNet unpacks as ``PatternNet/images/<class>/``; both are found.) Each image
file is a row and becomes a record: the image, a closed-set instruction listing every
class, and the class name as the answer (underscores read as spaces:
``baseball_field`` -> "baseball field"). A class folder without images still names its
class in the instruction (the class set is the folders, or the release's list);
files that are not images are skipped (``not_an_image``), as are files directly under
the image folder (``outside_class_folder``).

:class:`PatternNet` checks the folders against the release's 38 classes. GSD: the
dataset-level range of :data:`~earthvlm.scale.sensors.DATASETS` (0.062-4.693 m, the
published span over classes; the per-class values of Zhou et al. 2018 are not in the
table yet), else unknown for :class:`ClassFolders` unless an option gives one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from earthvlm.data.record import Record
from earthvlm.data.sources._base import Row, RowError, SourceError, SourceReader, skip
from earthvlm.data.sources._images import IMAGE_SUFFIXES
from earthvlm.data.sources._prompts import classification_prompt


def class_text(folder: str) -> str:
    """A class folder name as the answer text: ``baseball_field`` -> ``baseball field``."""
    return " ".join(folder.replace("_", " ").split())


@dataclass(kw_only=True)
class ClassFolders(SourceReader):
    """Any dataset laid out as one folder per class (UC Merced, AID, NWPU-RESISC45, ...).

    Attributes:
        image_dir: The folder holding the class folders, relative to the root; empty
            means the first of :attr:`image_dirs` that exists.
    """

    name: ClassVar[str] = "class-folders"
    task: ClassVar[str] = "classification"
    files: ClassVar[tuple[str, ...]] = ("<class>/<image>",)
    #: Where the class folders are looked for when ``image_dir`` is empty.
    image_dirs: ClassVar[tuple[str, ...]] = (".",)
    #: The release's class folder names; empty: whatever folders exist.
    classes: ClassVar[tuple[str, ...]] = ()

    image_dir: str = ""

    def _class_dir(self) -> Path:
        if self.image_dir:
            return self._dir(self.image_dir)
        for rel in self.image_dirs:
            if (self._root / rel).is_dir():
                return self._dir(rel)
        raise SourceError(
            f"{self._root}: no class folders under {' or '.join(self.image_dirs)}; "
            "give image_dir, the folder that holds one folder per class"
        )

    def _rows(self, root: Path) -> Iterator[Row]:
        base = self._class_dir()
        folders = sorted(p for p in base.iterdir() if p.is_dir())
        known = self.classes or tuple(p.name for p in folders)
        prompt = classification_prompt([class_text(c) for c in known])
        for entry in sorted(p for p in base.iterdir() if not p.is_dir()):
            yield Row(self._rel(entry), 0, entry.name, skip("outside_class_folder"))
        for folder in folders:
            for p in sorted(folder.iterdir()):
                rel = self._rel(p)
                if p.is_dir() or p.suffix.lower() not in IMAGE_SUFFIXES:
                    yield Row(rel, 0, p.name, skip("not_an_image"))
                    continue
                yield Row(
                    rel,
                    0,
                    rel,
                    lambda rel=rel, cls=folder.name: self._record(rel, cls, known, prompt),
                )

    def _record(self, rel: str, cls: str, known: tuple[str, ...], prompt: str) -> Record:
        if cls not in known:
            raise RowError(
                "unknown_class",
                f"folder {cls!r} is not a {self.name} class",
                f"rename the folder to one of {', '.join(known)}, or read it with the "
                "class-folders source",
            )
        image = self._image(rel)
        stem = Path(rel).stem
        return self._one_turn(f"{cls}-{stem}", image, prompt, class_text(cls), meta={"class": cls})


@dataclass(kw_only=True)
class PatternNet(ClassFolders):
    """PatternNet (Zhou et al. 2018): 38 classes of 800 images, 256 x 256 px, US cities
    from Google Earth imagery and the Google Map API."""

    name: ClassVar[str] = "patternnet"
    files: ClassVar[tuple[str, ...]] = ("images/<class>/<class><nnn>.jpg",)
    gsd_dataset: ClassVar[str | None] = "patternnet"
    gsd_note: ClassVar[str] = "dataset level: 0.062-4.693 m (the span over classes)"
    image_dirs: ClassVar[tuple[str, ...]] = ("images", "PatternNet/images")
    classes: ClassVar[tuple[str, ...]] = (
        "airplane", "baseball_field", "basketball_court", "beach", "bridge", "cemetery",
        "chaparral", "christmas_tree_farm", "closed_road", "coastal_mansion", "crosswalk",
        "dense_residential", "ferry_terminal", "football_field", "forest", "freeway",
        "golf_course", "harbor", "intersection", "mobile_home_park", "nursing_home",
        "oil_gas_field", "oil_well", "overpass", "parking_lot", "parking_space", "railway",
        "river", "runway", "runway_marking", "shipping_yard", "solar_panel",
        "sparse_residential", "storage_tank", "swimming_pool", "tennis_court",
        "transformer_station", "wastewater_treatment_plant",
    )  # fmt: skip
