"""Scene classification benchmarks: ``aid``, ``ucmerced``, ``nwpu_resisc45``, ``whu_rs19``,
``meter_ml``; overall accuracy (formats.md) with a closed-set answer rule.

Each dataset is read from its class folders (one folder per class, the images inside)
by :class:`earthvlm.data.sources.class_folders.ClassFolders`, the folder found among the
release's layouts (:attr:`SceneDataset.image_dirs`). The folder names are checked against
the release's class list (:data:`DATASETS`); a folder outside it is quarantined. The
public releases ship no test split: ``split_file`` names one (a text file under the
root, one image path per line relative to the class folder, e.g. ``Airport/airport_1.jpg``,
as an evaluation paper published it); without it every image is asked.

Prompt: the closed-set instruction of the classification records, listing every class by
its readable name (``BareLand`` -> "bare land", ``baseballdiamond`` -> "baseball
diamond"). Scoring (:meth:`SceneClassification.class_of`: a release folder name, e.g.
"CAFOs", else :func:`closed_set_answer`): the answer is read against the class list
(case, punctuation, underscores, and spaces inside a name ignored); a response naming no
class or several (other than one name inside another: "dense residential" holds
"residential") is a miss, counted in ``details["unreadable"]``. Headline: overall
accuracy; categories are the classes (per-class accuracy, whose mean is ``average_accuracy``).

GSD: the dataset-level values the papers publish (:attr:`SceneDataset.gsd_range_m`).

The published VLM numbers for METER-ML, NWPU-RESISC45 and WHU-RS19 (and one of the two
AID columns) use VHM's test splits (RSCoVLM sec. IV-E), released as VHM evaluation files
(``VHM_eval_dataset``; RSEvalKit's ``BENCH_DATASETS``): ``cls_METER_ML.json``,
``cls_NWPU_RESISC45.json``, ``cls_WHU_RS19.json``, ``cls_AID.json``, each a list of LLaVA
rows whose ``image_path`` names the image folder and whose answer is the class. Set
``vhm_json`` to such a file (:data:`VHM_FILES` lists the names) to ask exactly those
images: the rows are read by :class:`earthvlm.data.sources.llava.VHMConversations`, the
answer mapped to the release's class list (a folder name such as ``coal_mines`` or
``cafos``, or a readable name; a row naming no class is failed with
``unknown_class``), and the prompt is this module's closed-set prompt. RSEvalKit scores
a prediction as right when it occurs inside the answer (spaces removed), so an empty
or one-letter answer counts as right; the closed-set rule here does not. METER-ML itself
is distributed as georeferenced NAIP / Sentinel tiles with GeoJSON labels: without the
VHM file, export its NAIP RGB test tiles into class folders named as :data:`DATASETS`
lists.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from earthvlm.data.record import Message, Record, TextPart
from earthvlm.data.sources._base import SourceError
from earthvlm.data.sources._prompts import classification_prompt
from earthvlm.data.sources.class_folders import ClassFolders
from earthvlm.data.sources.llava import VHMConversations
from earthvlm.eval.benchmarks.base import Benchmark, BenchmarkError, mean_score


@dataclass(frozen=True)
class SceneDataset:
    """One scene classification release.

    Attributes:
        title: The dataset's name in messages.
        classes: The class folder names of the release.
        image_dirs: Where the class folders are looked for under the root, in order.
        gsd_range_m: Published ground sampling distance span, metres.
        gsd_note: Where the GSD comes from.
        names: Readable names for folder names that cannot be split mechanically.
    """

    title: str
    classes: tuple[str, ...]
    image_dirs: tuple[str, ...]
    gsd_range_m: tuple[float, float]
    gsd_note: str
    names: tuple[tuple[str, str], ...] = ()


_UCM_NAMES = (
    ("baseballdiamond", "baseball diamond"), ("denseresidential", "dense residential"),
    ("golfcourse", "golf course"), ("mediumresidential", "medium residential"),
    ("mobilehomepark", "mobile home park"), ("parkinglot", "parking lot"),
    ("sparseresidential", "sparse residential"), ("storagetanks", "storage tanks"),
    ("tenniscourt", "tennis court"),
)  # fmt: skip

#: Dataset key -> its release description.
DATASETS: dict[str, SceneDataset] = {
    "aid": SceneDataset(
        "AID",
        ("Airport", "BareLand", "BaseballField", "Beach", "Bridge", "Center", "Church",
         "Commercial", "DenseResidential", "Desert", "Farmland", "Forest", "Industrial",
         "Meadow", "MediumResidential", "Mountain", "Park", "Parking", "Playground", "Pond",
         "Port", "RailwayStation", "Resort", "River", "School", "SparseResidential",
         "Square", "Stadium", "StorageTanks", "Viaduct"),
        ("AID", "."), (0.5, 8.0), "AID: 0.5-8 m, Google Earth (Xia et al. 2017)",
    ),
    "ucmerced": SceneDataset(
        "UC Merced Land Use",
        ("agricultural", "airplane", "baseballdiamond", "beach", "buildings", "chaparral",
         "denseresidential", "forest", "freeway", "golfcourse", "harbor", "intersection",
         "mediumresidential", "mobilehomepark", "overpass", "parkinglot", "river", "runway",
         "sparseresidential", "storagetanks", "tenniscourt"),
        ("UCMerced_LandUse/Images", "Images", "."), (0.3048, 0.3048),
        "UC Merced: 1 ft (0.3048 m), USGS urban area imagery (Yang and Newsam 2010)",
        _UCM_NAMES,
    ),
    "nwpu_resisc45": SceneDataset(
        "NWPU-RESISC45",
        ("airplane", "airport", "baseball_diamond", "basketball_court", "beach", "bridge",
         "chaparral", "church", "circular_farmland", "cloud", "commercial_area",
         "dense_residential", "desert", "forest", "freeway", "golf_course",
         "ground_track_field", "harbor", "industrial_area", "intersection", "island", "lake",
         "meadow", "medium_residential", "mobile_home_park", "mountain", "overpass", "palace",
         "parking_lot", "railway", "railway_station", "rectangular_farmland", "river",
         "roundabout", "runway", "sea_ice", "ship", "snowberg", "sparse_residential",
         "stadium", "storage_tank", "tennis_court", "terrace", "thermal_power_station",
         "wetland"),
        ("NWPU-RESISC45", "."), (0.2, 30.0),
        "NWPU-RESISC45: 0.2-30 m, Google Earth (Cheng et al. 2017)",
    ),
    "whu_rs19": SceneDataset(
        "WHU-RS19",
        ("Airport", "Beach", "Bridge", "Commercial", "Desert", "Farmland", "footballField",
         "Forest", "Industrial", "Meadow", "Mountain", "Park", "Parking", "Pond", "Port",
         "railwayStation", "Residential", "River", "Viaduct"),
        ("WHU-RS19", "RSDataset", "."), (0.5, 0.5),
        "WHU-RS19: up to 0.5 m, Google Earth (Dai and Yang 2011)",
    ),
    "meter_ml": SceneDataset(
        "METER-ML",
        ("cafos", "coal_mines", "landfills", "natural_gas_processing_plants",
         "oil_refineries_and_petroleum_terminals", "wastewater_treatment_plants", "negative"),
        ("METER-ML", "."), (0.6, 1.0),
        "METER-ML: NAIP RGB, 0.6-1 m (physical-facts.md: NAIP 1 m, 0.6 m from about 2016)",
        (("cafos", "concentrated animal feeding operations"),),
    ),
}  # fmt: skip

#: Dataset key -> the VHM evaluation file of its test split (RSEvalKit's names).
VHM_FILES: dict[str, str] = {
    "aid": "cls_AID.json",
    "meter_ml": "cls_METER_ML.json",
    "nwpu_resisc45": "cls_NWPU_RESISC45.json",
    "whu_rs19": "cls_WHU_RS19.json",
}

_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")
_NON_WORD = re.compile(r"[^a-z0-9]+")


def readable(folder: str, names: dict[str, str] | None = None) -> str:
    """A class folder name as words: ``BareLand`` / ``bare_land`` -> ``bare land``."""
    if names and folder in names:
        return names[folder]
    return " ".join(_CAMEL.sub(" ", folder).replace("_", " ").replace("-", " ").lower().split())


def _key(text: str) -> str:
    return _NON_WORD.sub("", text.lower())


def closed_set_answer(prediction: str | None, classes: Sequence[str]) -> str | None:
    """The class a response names, from the closed set ``classes`` (readable names).

    A response equal to a class (ignoring case, punctuation and spaces) is that class;
    otherwise the classes whose words occur in it, less those inside a longer found
    class, must be exactly one. None when no class or several are named.
    """
    if prediction is None:
        return None
    text = " ".join(_NON_WORD.sub(" ", prediction.lower()).split())
    whole = {_key(c): c for c in classes}
    if _key(text) in whole:
        return whole[_key(text)]
    found = [c for c in classes if re.search(rf"\b{re.escape(readable(c))}\b", text)]
    kept = [c for c in found if not any(c != o and readable(c) in readable(o) for o in found)]
    return kept[0] if len(kept) == 1 else None


@dataclass(kw_only=True)
class SceneClassification(Benchmark):
    """Closed-set scene classification over class folders (overall accuracy).

    Attributes:
        split_file: A text file under the root listing the images to ask (one path per
            line, relative to the class folder); empty: every image.
        vhm_json: A VHM evaluation file under the root (e.g. ``cls_METER_ML.json``) whose
            rows are asked instead of the class folders; empty: the class folders.
    """

    metric: ClassVar[str] = "overall_accuracy"
    max_new_tokens: ClassVar[int] = 16
    files: ClassVar[tuple[str, ...]] = ("<class>/<image>",)
    #: The :data:`DATASETS` key.
    dataset_key: ClassVar[str] = ""

    split_file: str = ""
    vhm_json: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.split_file and self.vhm_json:
            raise ValueError("split_file and vhm_json both name a split; give one of them")

    @property
    def spec(self) -> SceneDataset:
        """The release description."""
        return DATASETS[self.dataset_key]

    def class_names(self) -> list[str]:
        """The readable class names, in release order (the prompt's list)."""
        names = dict(self.spec.names)
        return [readable(c, names) for c in self.spec.classes]

    def category(self, record: Record) -> str:
        return self.reference(record)

    def _reader(self) -> ClassFolders:
        spec = self.spec
        reader_cls = type(
            f"{spec.title}Folders",
            (ClassFolders,),
            {"name": self.name.replace("_", "-"), "classes": spec.classes,
             "image_dirs": spec.image_dirs, "gsd_note": spec.gsd_note},
        )  # fmt: skip
        return reader_cls(split="test", gsd_range_m=spec.gsd_range_m)

    def class_of(self, answer: str) -> str | None:
        """The readable class an answer names: a release folder name (``coal_mines``,
        ``CAFOs``) or a readable name; None when it names none or several."""
        names = dict(self.spec.names)
        folders = {_key(c): readable(c, names) for c in self.spec.classes}
        return folders.get(_key(answer)) or closed_set_answer(answer, self.class_names())

    def _read(self, root: Path) -> Iterator[Record]:
        if self.vhm_json:
            if not (root / self.vhm_json).is_file():
                raise BenchmarkError(
                    f"{root / self.vhm_json}: no such file; give the VHM evaluation file "
                    f"(e.g. {VHM_FILES.get(self.dataset_key, 'cls_<dataset>.json')}) and its "
                    "image folder under the root"
                )
            return self._vhm_records(root)
        keep: set[str] | None = None
        if self.split_file:
            path = root / self.split_file
            if not path.is_file():
                raise BenchmarkError(
                    f"{path}: no such split file; give a text file under the root with one "
                    "image path per line (relative to the class folder), or split_file=''"
                )
            lines = path.read_text(encoding="utf-8").splitlines()
            keep = {ln.strip().replace("\\", "/") for ln in lines if ln.strip()}
        reader = self._reader()
        try:
            reader._reset(root.resolve())
            reader._class_dir()
        except SourceError as e:
            raise BenchmarkError(f"{self.name}: {e}") from None
        return self._records(root, reader, keep)

    def _records(self, root: Path, reader: ClassFolders, keep: set[str] | None) -> Iterator[Record]:
        names = dict(self.spec.names)
        prompt = classification_prompt(self.class_names())
        for rec in reader.read(root):
            cls = str(rec.meta["class"])
            rel = "/".join(rec.images[0].path.split("/")[-2:])
            if keep is not None and rel not in keep:
                self.ledger.count_skipped("not_in_split")
                continue
            self.ledger.count_ok()
            messages = [
                Message(role="user", content=[rec.messages[0].content[0], TextPart(text=prompt)]),
                Message(role="assistant", content=readable(cls, names)),
            ]
            yield rec.model_copy(update={"messages": messages})
        self.ledger.merge_left_out(reader.ledger)

    def _vhm_records(self, root: Path) -> Iterator[Record]:
        reader = VHMConversations(annotations=self.vhm_json, split="test",
                                  gsd_range_m=self.spec.gsd_range_m)  # fmt: skip
        prompt = classification_prompt(self.class_names())
        for rec in reader.read(root):
            cls = self.class_of(rec.messages[-1].text())
            if cls is None or len(rec.images) != 1:
                self.ledger.count_failed("unknown_class" if cls is None else "not_one_image")
                continue
            self.ledger.count_ok()
            messages = [
                Message(role="user", content=[rec.messages[0].content[0], TextPart(text=prompt)]),
                Message(role="assistant", content=cls),
            ]
            yield rec.model_copy(update={"messages": messages, "task": "classification"})
        self.ledger.merge_left_out(reader.ledger)

    def _item(self, record: Record, prediction: str | None) -> float | None:
        got = None if prediction is None else self.class_of(prediction)
        return float(got is not None and got == self.reference(record))

    def _summary(
        self,
        records: Sequence[Record],
        predictions: Sequence[str | None],
        item_scores: Sequence[float | None],
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        classes = self.class_names()
        unreadable = sum(p is None or self.class_of(p) is None for p in predictions)
        per_class = self._categories(records, predictions, item_scores)
        metrics = {
            "overall_accuracy": mean_score(item_scores),
            "average_accuracy": mean_score([c.score for c in per_class.values()]),
            "unreadable_rate": unreadable / len(predictions),
        }
        return metrics, {"unreadable": unreadable, "classes": classes}


@dataclass(kw_only=True)
class AID(SceneClassification):
    """AID (Xia et al. 2017): 30 classes, 600 x 600 px, 0.5-8 m."""

    name: ClassVar[str] = "aid"
    dataset_key: ClassVar[str] = "aid"


@dataclass(kw_only=True)
class UCMerced(SceneClassification):
    """UC Merced Land Use (Yang and Newsam 2010): 21 classes, 256 x 256 px, 1 ft."""

    name: ClassVar[str] = "ucmerced"
    dataset_key: ClassVar[str] = "ucmerced"


@dataclass(kw_only=True)
class NWPURESISC45(SceneClassification):
    """NWPU-RESISC45 (Cheng et al. 2017): 45 classes, 256 x 256 px, 0.2-30 m."""

    name: ClassVar[str] = "nwpu_resisc45"
    dataset_key: ClassVar[str] = "nwpu_resisc45"


@dataclass(kw_only=True)
class WHURS19(SceneClassification):
    """WHU-RS19 (Dai and Yang 2011): 19 classes, 600 x 600 px, up to 0.5 m."""

    name: ClassVar[str] = "whu_rs19"
    dataset_key: ClassVar[str] = "whu_rs19"


@dataclass(kw_only=True)
class METERML(SceneClassification):
    """METER-ML (Zhu et al. 2022): six methane-emitting facility classes and negatives,
    NAIP RGB tiles exported to class folders."""

    name: ClassVar[str] = "meter_ml"
    dataset_key: ClassVar[str] = "meter_ml"


__all__ = [
    "AID",
    "DATASETS",
    "METERML",
    "NWPURESISC45",
    "VHM_FILES",
    "WHURS19",
    "SceneClassification",
    "SceneDataset",
    "UCMerced",
    "closed_set_answer",
    "readable",
]
