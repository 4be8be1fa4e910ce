"""Question generators over the synthetic world's labels.

Every generator takes a :class:`SceneFacts` (what the image shows, in pixels, and its
GSD) and a seeded generator, and returns :class:`QA` items; the dataset writer turns
them into records (:data:`GENERATORS`, run in order with one generator per scene).

GeoScale-VQA (ScaleEarth sec. 2.3) asks three questions per image, conditioned on the
GSD tier: identification, a scale-specific question (fine objects and textures at the
high tier, layout and structure at the mid tier, land cover at the low tiers), and a
discriminative "is this A or B?" with B a hard negative from a confusion table. Around
them: counting (whole image and 3 x 3 grid cells), comparison, existence, cloud cover,
colour, spatial relation, grounding, detection as text, region-of-interest questions
(LRS-GRO style, :func:`roi_questions`) and multiple-choice versions of categorical
questions (:func:`to_mcq`). Every image gets at least one item: detection ("There is
none." for an empty image) or, when clouds may hide everything, the cloud question.

What the GSD lets the image show (rules every generator follows):

* An **object-level** question (its class, colour, box, position) is only about an
  *identifiable* object (:data:`~earthvlm.synth.labels.IDENTIFIABLE_PX` along its
  length) that no cloud covers.
* A **population** question (how many X, are there more X than Y, is there no X) needs
  every X the image could hold to be *detectable*: the catalogue's smallest X must be
  at least :data:`~earthvlm.synth.labels.DETECTABLE_PX` long and a pixel wide at this
  GSD (:func:`class_resolvable`), no X in the labels may be below that, and no cloud
  may cover the area asked about. Otherwise an X could hide below the resolution and
  the answer would be a guess. "Is there an X?" with answer *yes* needs one visible X
  and no undetectable one.
* A scene-level question (land use, land cover) needs the image to cover enough ground
  (:data:`LAND_USE_MIN_EXTENT_M`) for the land use to show.

Boxes in question and answer text follow the Qwen3-VL convention: ``[x1, y1, x2, y2]``
as integers normalised to 0-1000 over the image (:func:`norm1000`); the record keeps
the pixel geometry (``QA.boxes``, ``meta["roi_xyxy_px"]``). Detection targets are in
integer pixels (:mod:`earthvlm.data.detection_text`).

Categorical QAs carry ``meta["answer_type"]`` (``class``, ``count``, ``colour``,
``land_use``, ``relation``, ``cell``, ``quadrant``, ``yes_no``, ...) and
``meta["classes"]``, the classes the question asks about.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from earthvlm.data.detection_text import serialise_detections
from earthvlm.scale.tiers import DEFAULT_TIERS, Tier
from earthvlm.synth.catalogue import CLASSES, CONFUSION
from earthvlm.synth.labels import DETECTABLE_PX, ObjectLabel
from earthvlm.synth.materials import COLOUR_NAMES
from earthvlm.synth.render import Canvas
from earthvlm.synth.scene import HOMOGENEOUS_KINDS, LAND_USE, Scene, Strip

# -- facts ------------------------------------------------------------------------------

MODALITIES = ("optical", "sar", "multispectral")


@dataclass(frozen=True)
class SceneFacts:
    """What a generator may look at.

    Attributes:
        kind: The scene kind.
        land_use: Its land-use class name.
        gsd_m: Metres per pixel of the image.
        width: Image width in pixels.
        height: Image height in pixels.
        labels: The objects (pixel geometry, visibility).
        has_scale_cues: False for homogeneous scenes.
        cloud_cover: Share of the optical image under cloud (0 if none).
        modality: The modality of the image the questions are about (``optical``,
            ``sar``, ``multispectral``). SAR shows no colours and no clouds.
        clouds: The cloud opacity map (H, W) in [0, 1] of an optical/multispectral
            image. When ``cloud_cover > 0`` and this is missing, no generator asks
            about objects (any of them could be under a cloud).
        roads: Whether a paved road crosses the image (``None``: unknown).
        lane_marks: Whether painted lane marks show on those roads (``None``: unknown
            or too thin to see at this GSD).
        possible_classes: Classes the scene's generator may place: a class absent from
            the labels is a true "no" only if it is listed here and would be visible.
    """

    kind: str
    land_use: str
    gsd_m: float
    width: int
    height: int
    labels: list[ObjectLabel]
    has_scale_cues: bool = True
    cloud_cover: float = 0.0
    modality: str = "optical"
    clouds: np.ndarray | None = field(default=None, compare=False, repr=False)
    roads: bool | None = None
    lane_marks: bool | None = None
    possible_classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {self.modality!r}")
        if self.clouds is not None and np.shape(self.clouds) != (self.height, self.width):
            raise ValueError(
                f"clouds must be (height, width) = ({self.height}, {self.width}), "
                f"got {np.shape(self.clouds)}"
            )

    @property
    def tier(self) -> Tier:
        return DEFAULT_TIERS.tier_of_m(self.gsd_m)


@dataclass(frozen=True)
class QA:
    """One question and its answer.

    Attributes:
        task: Record task name (``vqa``, ``counting``, ``grounding``, ``mcq``, ...).
        kind: Question family (``identification``, ``count``, ...), kept in metadata.
        question: The user text.
        answer: The assistant text.
        boxes: Objects the answer refers to, as labels (for grounding/detection).
        meta: Extra fields for the record's metadata (JSON-safe values only).
    """

    task: str
    kind: str
    question: str
    answer: str
    boxes: tuple[ObjectLabel, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)


#: Classes each scene kind places (see :func:`earthvlm.synth.scene.generate_scene`):
#: the plausible subjects of "how many" questions whose answer may be 0.

#: Ground extent (shorter image side, metres) below which a scene's land use does not
#: show (a 10 m crop of a city is a roof or a road). Homogeneous kinds show at any size.
LAND_USE_MIN_EXTENT_M: dict[str, float] = {"farmland": 600.0, "airport": 300.0}
_LAND_USE_DEFAULT_EXTENT_M = 150.0

#: Cloud opacity at or below which a pixel counts as clear; an object whose box is on
#: average at least :data:`OCCLUDED_ALPHA` under cloud is hidden.
CLEAR_ALPHA = 0.05
OCCLUDED_ALPHA = 0.5

GRID = 3
CELL_NAMES: tuple[tuple[str, ...], ...] = (
    ("top-left", "top-centre", "top-right"),
    ("middle-left", "centre", "middle-right"),
    ("bottom-left", "bottom-centre", "bottom-right"),
)
QUADRANTS: tuple[tuple[str, ...], ...] = (
    ("top-left", "top-right"),
    ("bottom-left", "bottom-right"),
)
RELATIONS = ("left", "right", "above", "below")
COLOURS: tuple[str, ...] = tuple(sorted(set(COLOUR_NAMES.values())))
#: ``meta["box_format"]`` of boxes written in question or answer text.
BOX_FORMAT = "xyxy_norm1000"
#: Smallest side, in 0-1000 units, of a box written in text (smaller ones collapse).
MIN_NORM_BOX = 3
_VEHICLES = ("small vehicle", "large vehicle")


def _plural(cls: str) -> str:
    return (
        cls[:-1] + "ies" if cls.endswith("y") else (cls + "es" if cls.endswith("s") else cls + "s")
    )


def _round(v: float) -> int:
    return math.floor(float(v) + 0.5)


def norm1000(xyxy: Sequence[float] | np.ndarray, width: int, height: int) -> list[int]:
    """A pixel box ``[x1, y1, x2, y2]`` as integers normalised to 0-1000 (Qwen3-VL)."""
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    return [
        min(1000, max(0, _round(v / s * 1000)))
        for v, s in ((x1, width), (y1, height), (x2, width), (y2, height))
    ]


def _box_text(facts: SceneFacts, xyxy: Sequence[float] | np.ndarray) -> str:
    return "[{}, {}, {}, {}]".format(*norm1000(xyxy, facts.width, facts.height))


def _px(xyxy: Sequence[float] | np.ndarray) -> list[float]:
    return [round(float(v), 3) for v in xyxy]


# -- what the image shows ---------------------------------------------------------------


def class_resolvable(cls: str, gsd_m: float) -> bool:
    """Whether every object of ``cls`` is detectable at ``gsd_m``: the catalogue's
    smallest one is at least :data:`DETECTABLE_PX` long and a pixel wide. Classes
    outside the catalogue count as resolvable (only their labels can tell)."""
    c = CLASSES.get(cls)
    if c is None:
        return True
    lo = c.length_m[0]
    return lo / gsd_m >= DETECTABLE_PX and lo * c.aspect / gsd_m >= 1.0


def clouds_unknown(facts: SceneFacts) -> bool:
    """Cloudy optical image without its cloud map: any object could be hidden."""
    return facts.modality != "sar" and facts.cloud_cover > 0 and facts.clouds is None


def _cloud_window(facts: SceneFacts, xyxy: Sequence[float] | np.ndarray) -> np.ndarray | None:
    """The cloud opacities under a pixel box (``None`` when the image has no clouds)."""
    if facts.modality == "sar" or facts.clouds is None:
        return None
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    c0, r0 = max(0, math.floor(x1)), max(0, math.floor(y1))
    c1, r1 = min(facts.width, math.ceil(x2)), min(facts.height, math.ceil(y2))
    if c1 <= c0 or r1 <= r0:
        return None
    return np.asarray(facts.clouds)[r0:r1, c0:c1]


def is_clear(facts: SceneFacts, xyxy: Sequence[float] | np.ndarray | None = None) -> bool:
    """No cloud over the box (the whole image by default)."""
    if clouds_unknown(facts):
        return False
    box = (0.0, 0.0, float(facts.width), float(facts.height)) if xyxy is None else xyxy
    a = _cloud_window(facts, box)
    return a is None or float(a.max()) <= CLEAR_ALPHA


def is_visible(facts: SceneFacts, lb: ObjectLabel) -> bool:
    """Detectable and not hidden under a cloud (what a detection target lists)."""
    if not lb.detectable or clouds_unknown(facts):
        return False
    a = _cloud_window(facts, lb.xyxy_px)
    return a is None or float(a.mean()) < OCCLUDED_ALPHA


def is_seen_clearly(facts: SceneFacts, lb: ObjectLabel) -> bool:
    """Identifiable and cloud-free: object-level questions may ask about it."""
    return lb.identifiable and lb.detectable and is_clear(facts, lb.xyxy_px)


def _by_class(labels: Sequence[ObjectLabel]) -> dict[str, list[ObjectLabel]]:
    out: dict[str, list[ObjectLabel]] = {}
    for lb in labels:
        out.setdefault(lb.cls, []).append(lb)
    return out


def countable(
    facts: SceneFacts, cls: str, region: Sequence[float] | np.ndarray | None = None
) -> bool:
    """Whether "how many ``cls``" has a visible answer over ``region`` (default: the
    whole image): the class is resolvable at the GSD, every labelled one is
    detectable, and no cloud covers the region."""
    return (
        class_resolvable(cls, facts.gsd_m)
        and all(lb.detectable for lb in facts.labels if lb.cls == cls)
        and is_clear(facts, region)
    )


def _countable_classes(facts: SceneFacts, *, clear: bool = True) -> list[str]:
    """Present countable classes and the scene kind's plausible ones (count 0); with
    ``clear=False`` the cloud check is left to the caller (per region)."""
    cands = {lb.cls for lb in facts.labels} | set(facts.possible_classes)
    if not clear and clouds_unknown(facts):
        return []
    region = None if clear else (0.0, 0.0, 0.0, 0.0)  # an empty box is always clear
    return sorted(c for c in cands if countable(facts, c, region))


def _land_use_shows(facts: SceneFacts) -> bool:
    if not facts.land_use:
        return False
    if facts.kind in HOMOGENEOUS_KINDS:
        return True
    extent = min(facts.width, facts.height) * facts.gsd_m
    return extent >= LAND_USE_MIN_EXTENT_M.get(facts.kind, _LAND_USE_DEFAULT_EXTENT_M)


def referents(facts: SceneFacts) -> list[tuple[ObjectLabel, str]]:
    """Objects a phrase picks out uniquely, with the phrase: "the tennis court" (the
    only one), "the red small vehicle" (the only red one), "the largest building"
    (at least 1.3 times longer than the next). Only identifiable objects of countable
    classes (no other one could hide), in a deterministic order."""
    out: list[tuple[ObjectLabel, str]] = []
    for cls, group in sorted(_by_class(facts.labels).items()):
        if not countable(facts, cls):
            continue
        if len(group) == 1:
            if is_seen_clearly(facts, group[0]):
                out.append((group[0], f"the {cls}"))
            continue
        if facts.modality != "sar" and all(is_seen_clearly(facts, lb) for lb in group):
            colours = Counter(lb.colour for lb in group)
            out += [
                (lb, f"the {lb.colour} {cls}")
                for lb in group
                if lb.colour and colours[lb.colour] == 1
            ]
        ranked = sorted(group, key=lambda lb: (-lb.length_px, lb.index))
        if is_seen_clearly(facts, ranked[0]) and ranked[0].length_px >= 1.3 * ranked[1].length_px:
            out.append((ranked[0], f"the largest {cls}"))
    return out


def scene_features(scene: Scene, canvas: Canvas) -> dict[str, bool | None]:
    """``roads`` and ``lane_marks`` of :class:`SceneFacts` for ``canvas``'s window.

    A road is an asphalt strip 3-30 m wide (runways are wider) at least 2 px across,
    showing over at least 4 px both ways. Lane marks (0.15 m wide) count as visible
    from 0.5 px wide; a mark that only grazes the window makes the answer unknown.
    """
    g = canvas.gsd_m
    wx0, wy0 = canvas.origin_m
    wx1, wy1 = wx0 + canvas.width * g, wy0 + canvas.height * g

    def overlap_px(s: Strip) -> tuple[float, float]:
        c, si = math.cos(math.radians(s.heading)), math.sin(math.radians(s.heading))
        ex = abs(s.length / 2 * c) + abs(s.width / 2 * si)
        ey = abs(s.length / 2 * si) + abs(s.width / 2 * c)
        ow = min(wx1, s.cx + ex) - max(wx0, s.cx - ex)
        oh = min(wy1, s.cy + ey) - max(wy0, s.cy - ey)
        return max(0.0, ow / g), max(0.0, oh / g)

    roads: bool | None = False
    for s in scene.strips:
        short = min(s.length, s.width)
        if s.material != "asphalt" or not 3.0 <= short <= 30.0 or short / g < 2.0:
            continue
        ow, oh = overlap_px(s)
        if min(ow, oh) >= min(4.0, short / g):
            roads = True
            break
        if ow > 0 and oh > 0:
            roads = None
    marks: bool | None = None
    if roads and 0.15 / g >= 0.5:
        marks = False
        for s in scene.strips:
            if s.material != "lane_mark":
                continue
            ow, oh = overlap_px(s)
            if ow <= 0 or oh <= 0:
                continue
            along, across = max(ow, oh), min(ow, oh)
            if along >= 3.0 and across >= 0.5 * min(s.length, s.width) / g:
                marks = True
                break
            marks = None
    return {"roads": roads, "lane_marks": marks}


def scene_facts(
    scene: Scene,
    canvas: Canvas,
    labels: list[ObjectLabel],
    *,
    modality: str = "optical",
    clouds: np.ndarray | None = None,
) -> SceneFacts:
    """The facts of ``scene`` rendered on ``canvas`` (``labels`` from ``label_scene``),
    with its road features and, for a cloudy optical image, the cloud map."""
    cover = float((np.asarray(clouds) > OCCLUDED_ALPHA).mean()) if clouds is not None else 0.0
    return SceneFacts(
        scene.kind, LAND_USE[scene.kind], canvas.gsd_m, canvas.width, canvas.height, labels,
        scene.has_scale_cues, cover, modality, clouds, **scene_features(scene, canvas),
        possible_classes=scene.possible_classes,
    )  # fmt: skip


# -- grid -------------------------------------------------------------------------------


def _cell_box(facts: SceneFacts, row: int, col: int, n: int = GRID) -> tuple[float, ...]:
    w, h = facts.width / n, facts.height / n
    return (col * w, row * h, (col + 1) * w, (row + 1) * h)


def cell_of(facts: SceneFacts, x: float, y: float, n: int = GRID) -> tuple[int, int]:
    """(row, col) of the n x n grid cell holding pixel point (x, y)."""
    col = min(n - 1, max(0, math.floor(x * n / facts.width)))
    row = min(n - 1, max(0, math.floor(y * n / facts.height)))
    return row, col


def _overlap_frac(xyxy: Sequence[float] | np.ndarray, box: Sequence[float]) -> float:
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    ow = max(0.0, min(x2, box[2]) - max(x1, box[0]))
    oh = max(0.0, min(y2, box[3]) - max(y1, box[1]))
    area = max((x2 - x1) * (y2 - y1), 1e-9)
    return ow * oh / area


def _unambiguous(objs: Sequence[ObjectLabel], box: Sequence[float]) -> bool:
    """Every object lies clearly inside (>= 80 % of its box) or outside (<= 20 %)."""
    return all(not 0.2 < _overlap_frac(lb.xyxy_px, box) < 0.8 for lb in objs)


def _in_cell(
    facts: SceneFacts, objs: Sequence[ObjectLabel], row: int, col: int, n: int = GRID
) -> list[ObjectLabel]:
    return [lb for lb in objs if cell_of(facts, *lb.centre_px, n) == (row, col)]


# -- shared question builders -----------------------------------------------------------


def _land_use_qa(facts: SceneFacts, task: str, kind: str, question: str) -> QA | None:
    if not _land_use_shows(facts):
        return None
    return QA(task, kind, question, facts.land_use, (), {"answer_type": "land_use", "classes": []})


def _box_shows(facts: SceneFacts, lb: ObjectLabel) -> bool:
    """Whether the object's 0-1000 box is at least :data:`MIN_NORM_BOX` wide and high
    (a car in an 8192 px image is a degenerate ``[81, 912, 81, 914]``)."""
    x1, y1, x2, y2 = norm1000(lb.xyxy_px, facts.width, facts.height)
    return x2 - x1 >= MIN_NORM_BOX and y2 - y1 >= MIN_NORM_BOX


def _clear_objects(facts: SceneFacts) -> list[ObjectLabel]:
    """Objects a question may point at by their box in the text."""
    return [lb for lb in facts.labels if is_seen_clearly(facts, lb) and _box_shows(facts, lb)]


def _colour_qa(facts: SceneFacts, lb: ObjectLabel, kind: str = "colour") -> QA:
    box = _box_text(facts, lb.xyxy_px)
    return QA(
        "vqa", kind, f"What colour is the {lb.cls} in the region {box}?", str(lb.colour), (lb,),
        {"answer_type": "colour", "classes": [lb.cls], "box_format": BOX_FORMAT},
    )  # fmt: skip


def _colourful(facts: SceneFacts) -> list[ObjectLabel]:
    if facts.modality == "sar":
        return []
    return [lb for lb in _clear_objects(facts) if lb.colour]


def _pick(rng: np.random.Generator, items: Sequence[Any]) -> Any:
    return items[int(rng.integers(len(items)))]


# -- GeoScale-VQA: identification, scale-specific, discriminative ------------------------


def identification(facts: SceneFacts, rng: np.random.Generator) -> list[QA]:
    """The class of an identifiable object (by its box), or the land use when none is."""
    objs = _clear_objects(facts)
    if not objs:
        qa = _land_use_qa(facts, "vqa", "identification", "What type of area does this image show?")
        return [qa] if qa else []
    lb = _pick(rng, objs)
    box = _box_text(facts, lb.xyxy_px)
    return [
        QA(
            "vqa", "identification", f"What is the object in the region {box}?", lb.cls, (lb,),
            {"answer_type": "class", "classes": [lb.cls], "box_format": BOX_FORMAT},
        )
    ]  # fmt: skip


def _high_tier(facts: SceneFacts) -> list[QA]:
    """Fine detail: colours of vehicles (else of other objects), painted lane marks."""
    out: list[QA] = []
    colourful = _colourful(facts)
    vehicles = [lb for lb in colourful if lb.cls in _VEHICLES]
    out += [_colour_qa(facts, lb, "scale_specific") for lb in (vehicles or colourful)]
    if facts.modality != "sar" and facts.roads and facts.lane_marks is not None and is_clear(facts):
        out.append(
            QA(
                "vqa", "scale_specific",
                "Are there painted lane markings on the road in this image?",
                "yes" if facts.lane_marks else "no", (),
                {"answer_type": "yes_no", "classes": [], "feature": "lane_marks"},
            )
        )  # fmt: skip
    return out


def _orientation(lb: ObjectLabel) -> str | None:
    a = lb.obb_px[4] % 180.0
    if a <= 20 or a >= 160:
        return "horizontally"
    if 70 <= a <= 110:
        return "vertically"
    return None


def _mid_tier(facts: SceneFacts) -> list[QA]:
    """Layout and structure: vehicles in total, their alignment, where a class gathers."""
    out: list[QA] = []
    vehicles = [lb for lb in facts.labels if lb.cls in _VEHICLES]
    if all(countable(facts, c) for c in _VEHICLES) and vehicles:
        out.append(
            QA(
                "vqa", "scale_specific",
                "How many vehicles (cars, buses and lorries) are in this image?",
                str(len(vehicles)), tuple(vehicles),
                {"answer_type": "count", "classes": list(_VEHICLES)},
            )
        )  # fmt: skip
        dirs = Counter(_orientation(lb) for lb in vehicles)
        top, n = dirs.most_common(1)[0]
        if top is not None and len(vehicles) >= 3 and n >= 0.8 * len(vehicles):
            out.append(
                QA(
                    "vqa", "scale_specific",
                    "Are most vehicles in this image aligned horizontally or vertically?",
                    top, tuple(vehicles),
                    {"answer_type": "orientation", "classes": list(_VEHICLES)},
                )
            )  # fmt: skip
    for cls, group in sorted(_by_class(facts.labels).items()):
        if len(group) < 4 or not countable(facts, cls):
            continue
        quads = [_cell_box(facts, r, c, 2) for r in range(2) for c in range(2)]
        if not all(_unambiguous(group, q) for q in quads):
            continue
        per = Counter(cell_of(facts, *lb.centre_px, 2) for lb in group)
        ranked = sorted(((per[(r, c)], r, c) for r in range(2) for c in range(2)), reverse=True)
        if ranked[0][0] - ranked[1][0] >= 2:
            _, r, c = ranked[0]
            most = tuple(lb for lb in group if cell_of(facts, *lb.centre_px, 2) == (r, c))
            out.append(
                QA(
                    "vqa", "scale_specific",
                    f"Which quadrant of the image holds the most {_plural(cls)}: top-left, "
                    "top-right, bottom-left or bottom-right?",
                    QUADRANTS[r][c], most,
                    {"answer_type": "quadrant", "classes": [cls]},
                )
            )  # fmt: skip
    return out


_URBAN_RURAL = {
    "urban": "urban", "suburban": "urban", "industrial": "urban", "harbour": "urban",
    "farmland": "rural", "forest": "rural", "grassland": "rural", "desert": "rural",
}  # fmt: skip
_VEGETATED = {
    "forest": "yes", "grassland": "yes", "desert": "no", "water": "no",
    "urban": "no", "industrial": "no", "harbour": "no",
}  # fmt: skip


def _low_tier(facts: SceneFacts) -> list[QA]:
    """Land cover of the whole scene (water, vegetation, urban or rural), else its land
    use."""
    if not _land_use_shows(facts):
        return []
    out: list[QA] = []
    meta = {"answer_type": "yes_no", "classes": []}
    if facts.kind in ("water", "harbour"):
        water = "yes"
    elif not any(lb.cls == "swimming pool" for lb in facts.labels):
        water = "no"
    else:
        water = ""  # a pool is water too: ambiguous
    if water:
        out.append(
            QA("vqa", "scale_specific", "Is there open water in this image?", water, (), meta)
        )
    if facts.kind in _URBAN_RURAL:
        out.append(
            QA(
                "vqa", "scale_specific", "Is this an urban or a rural area?",
                _URBAN_RURAL[facts.kind], (), {"answer_type": "urban_rural", "classes": []},
            )
        )  # fmt: skip
    if facts.kind in _VEGETATED:
        out.append(
            QA("vqa", "scale_specific", "Is most of this area covered by vegetation?",
               _VEGETATED[facts.kind], (), meta)
        )  # fmt: skip
    # the land use itself only when no land-cover question fits (identification and
    # the ROI global question ask it already)
    lu = _land_use_qa(facts, "vqa", "scale_specific", "What is the land use of this area?")
    return out or ([lu] if lu else [])


def scale_specific(facts: SceneFacts, rng: np.random.Generator) -> list[QA]:
    """One question about what this GSD tier resolves: fine object detail at the high
    tier (< 0.2 m), layout and structure at the mid tier (0.2-1 m), land cover and land
    use at the low tiers; the land use when the tier offers nothing else."""
    tier = facts.tier.coarse
    cands = _high_tier(facts) if tier == "high" else _mid_tier(facts) if tier == "mid" else []
    cands = cands or _low_tier(facts)
    if not cands:
        return []
    qa = _pick(rng, cands)
    return [
        QA(qa.task, qa.kind, qa.question, qa.answer, qa.boxes, {**qa.meta, "question_tier": tier})
    ]


def discriminative(facts: SceneFacts, rng: np.random.Generator) -> list[QA]:
    """ "Is this A or B?" about an identifiable object, B its hard negative."""
    ident = [lb for lb in _clear_objects(facts) if lb.cls in CONFUSION]
    if not ident:
        return []
    lb = _pick(rng, ident)
    a, b = lb.cls, CONFUSION[lb.cls]
    first, second = (a, b) if rng.random() < 0.5 else (b, a)
    box = _box_text(facts, lb.xyxy_px)
    meta: dict[str, Any] = {
        "answer_type": "class", "classes": [a], "hard_negative": b, "box_format": BOX_FORMAT,
        "stem": f"What is the object in the region {box}?",
    }  # fmt: skip
    length_m = lb.length_px * facts.gsd_m
    lo, hi = CLASSES[b].length_m if b in CLASSES else (0.0, math.inf)
    if length_m > 1.1 * hi:
        meta["rationale"] = f"about {length_m:.0f} m long; a {b} is at most {hi:g} m"
    elif length_m < lo / 1.1:
        meta["rationale"] = f"about {length_m:.0f} m long; a {b} is at least {lo:g} m"
    return [
        QA(
            "vqa", "discriminative",
            f"Is the object in the region {box} a {first} or a {second}?", a, (lb,), meta,
        )
    ]  # fmt: skip


# -- counting, comparison, existence -----------------------------------------------------


def count(facts: SceneFacts, rng: np.random.Generator) -> list[QA]:
    """How many objects of a countable class the whole image shows (0 only for a class
    the scene kind places, when no class is present)."""
    present = {lb.cls for lb in facts.labels}
    options = [c for c in _countable_classes(facts) if c in present] or _countable_classes(facts)
    if not options:
        return []
    cls = str(_pick(rng, options))
    objs = tuple(lb for lb in facts.labels if lb.cls == cls)
    return [
        QA(
            "counting", "count", f"How many {_plural(cls)} are there in this image?",
            str(len(objs)), objs, {"answer_type": "count", "classes": [cls]},
        )
    ]  # fmt: skip


def grid_count(facts: SceneFacts, rng: np.random.Generator) -> list[QA]:
    """How many objects of a class lie (by centre) in one cell of a 3 x 3 grid; only
    cells that no object of the class straddles and no cloud covers."""
    classes = _countable_classes(facts, clear=False)
    if not classes:
        return []
    present = [c for c in classes if any(lb.cls == c for lb in facts.labels)]
    cls = str(_pick(rng, present or classes))
    group = [lb for lb in facts.labels if lb.cls == cls]
    cells = []
    for r in range(GRID):
        for c in range(GRID):
            box = _cell_box(facts, r, c)
            if _unambiguous(group, box) and is_clear(facts, box):
                cells.append((r, c, _in_cell(facts, group, r, c)))
    if not cells:
        return []
    nonzero = [cell for cell in cells if cell[2]]
    r, c, objs = _pick(rng, nonzero if nonzero and rng.random() < 0.7 else cells)
    box = _cell_box(facts, r, c)
    name = CELL_NAMES[r][c]
    return [
        QA(
            "counting", "grid_count",
            f"How many {_plural(cls)} are in the {name} cell of a 3 x 3 grid over this image?",
            str(len(objs)), tuple(objs),
            {"answer_type": "count", "classes": [cls], "cell": name, "cell_xyxy_px": _px(box)},
        )
    ]  # fmt: skip


def comparison(facts: SceneFacts, rng: np.random.Generator) -> list[QA]:
    """ "Are there more X than Y?" over two countable classes with different counts."""
    classes = _countable_classes(facts)
    n = Counter(lb.cls for lb in facts.labels)
    pairs = [(x, y) for x in classes for y in classes if x != y and n[x] != n[y] and n[x] + n[y]]
    if not pairs:
        return []
    x, y = _pick(rng, pairs)
    return [
        QA(
            "vqa", "comparison", f"Are there more {_plural(x)} than {_plural(y)} in this image?",
            "yes" if n[x] > n[y] else "no", tuple(lb for lb in facts.labels if lb.cls in (x, y)),
            {"answer_type": "yes_no", "classes": [x, y], "counts": {x: n[x], y: n[y]}},
        )
    ]  # fmt: skip


def existence(facts: SceneFacts, rng: np.random.Generator) -> list[QA]:
    """ "Are there any X?" Yes: a visible X and no undetectable one. No: only for a
    class whose smallest member would be detectable here, with no cloud to hide it."""
    groups = _by_class(facts.labels)
    yes = sorted(
        c for c, g in groups.items()
        if all(lb.detectable for lb in g) and any(is_visible(facts, lb) for lb in g)
    )  # fmt: skip
    no = sorted(
        c for c in CLASSES if c not in groups and class_resolvable(c, facts.gsd_m)
    ) if is_clear(facts) else []  # fmt: skip
    if not yes and not no:
        return []
    answer = "yes" if yes and (not no or rng.random() < 0.5) else "no"
    cls = str(_pick(rng, yes if answer == "yes" else no))
    return [
        QA(
            "vqa", "existence", f"Are there any {_plural(cls)} in this image?", answer,
            tuple(lb for lb in groups.get(cls, []) if is_visible(facts, lb)),
            {"answer_type": "yes_no", "classes": [cls]},
        )
    ]  # fmt: skip


def cloud(facts: SceneFacts, rng: np.random.Generator) -> list[QA]:
    """ "Is any part of this image under cloud?": always asked of a cloudy optical image
    (the one question that stays safe when clouds may hide every object), of a clear
    one a quarter of the time (SAR never shows clouds). A thin haze is not asked about."""
    if facts.modality != "sar" and facts.clouds is not None:
        a = np.asarray(facts.clouds)
        cloudy = True if float((a > OCCLUDED_ALPHA).mean()) >= 0.02 else None
        if float(a.max()) <= CLEAR_ALPHA:
            cloudy = False
    else:
        cloudy = facts.modality != "sar" and facts.cloud_cover > 0
    if cloudy is None or (not cloudy and rng.random() >= 0.25):
        return []
    return [
        QA(
            "vqa", "cloud", "Is any part of this image covered by cloud?",
            "yes" if cloudy else "no", (), {"answer_type": "yes_no", "classes": []},
        )
    ]  # fmt: skip


# -- object-level: colour, relation, grounding -------------------------------------------


def colour(facts: SceneFacts, rng: np.random.Generator) -> list[QA]:
    """The colour of an identifiable object (optical and multispectral images only)."""
    objs = _colourful(facts)
    return [_colour_qa(facts, _pick(rng, objs))] if objs else []


def _relation(facts: SceneFacts, a: ObjectLabel, b: ObjectLabel) -> str | None:
    """Where ``a`` is relative to ``b`` when clearly separated along one dominant axis."""
    m = max(2.0, 0.02 * max(facts.width, facts.height))
    ax1, ay1, ax2, ay2 = (float(v) for v in a.xyxy_px)
    bx1, by1, bx2, by2 = (float(v) for v in b.xyxy_px)
    dx = a.centre_px[0] - b.centre_px[0]
    dy = a.centre_px[1] - b.centre_px[1]
    if abs(dy) <= 0.5 * abs(dx):
        if ax2 + m < bx1:
            return "left"
        if bx2 + m < ax1:
            return "right"
    if abs(dx) <= 0.5 * abs(dy):
        if ay2 + m < by1:
            return "above"
        if by2 + m < ay1:
            return "below"
    return None


def relation(facts: SceneFacts, rng: np.random.Generator) -> list[QA]:
    """Left/right/above/below between two uniquely described identifiable objects of
    different classes that are clearly apart along one axis."""
    refs = referents(facts)
    pairs = []
    for a, pa in refs:
        for b, pb in refs:
            if a.cls != b.cls:
                rel = _relation(facts, a, b)
                if rel:
                    pairs.append((a, pa, b, pb, rel))
    if not pairs:
        return []
    a, pa, b, pb, rel = _pick(rng, pairs)
    return [
        QA(
            "vqa", "relation",
            f"Where is {pa} relative to {pb}: left, right, above or below?", rel, (a, b),
            {"answer_type": "relation", "classes": [a.cls, b.cls]},
        )
    ]  # fmt: skip


def grounding(facts: SceneFacts, rng: np.random.Generator) -> list[QA]:
    """The box of a uniquely described identifiable object, normalised to 0-1000 in the
    answer text (Qwen3-VL); the pixel box stays in ``QA.boxes``."""
    refs = [(lb, p) for lb, p in referents(facts) if _box_shows(facts, lb)]
    if not refs:
        return []
    lb, phrase = _pick(rng, refs)
    return [
        QA(
            "grounding", "grounding",
            f"Locate {phrase} in this image and give its bounding box as [x1, y1, x2, y2].",
            _box_text(facts, lb.xyxy_px), (lb,),
            {"classes": [lb.cls], "box_format": BOX_FORMAT, "answer_xyxy_px": _px(lb.xyxy_px)},
        )
    ]  # fmt: skip


# -- detection as text -------------------------------------------------------------------

DETECTION_PROMPT = (
    "Detect all objects in this image. Give one object per line as "
    "x1,y1,x2,y2,x3,y3,x4,y4 class, with the corners of its oriented box in pixels."
)


def _detection_key(lb: ObjectLabel) -> tuple[str, tuple[int, ...]]:
    line = serialise_detections([(lb.cls, lb.quad_px)])
    coords = tuple(int(v) for v in line.split(" ", 1)[0].split(","))
    return lb.cls, (coords[1], coords[0], *coords)


def detection(facts: SceneFacts, rng: np.random.Generator) -> list[QA]:
    """Every visible (detectable, not under cloud) object as plain text, one per line,
    or "There is none." for an image without any; ``QA.boxes`` in the same order."""
    if clouds_unknown(facts):
        return []
    objs = sorted((lb for lb in facts.labels if is_visible(facts, lb)), key=_detection_key)
    return [
        QA(
            "detection", "detection", DETECTION_PROMPT,
            serialise_detections([(lb.cls, lb.quad_px) for lb in objs], fmt="quad"), tuple(objs),
            {"format": "quad", "n_objects": len(objs)},
        )
    ]  # fmt: skip


# -- regions of interest (LRS-GRO) -------------------------------------------------------


def _roi(qa: QA, roi_type: str, roi: Sequence[float] | None) -> QA:
    meta = {
        **qa.meta, "roi_type": roi_type, "roi_xyxy_px": _px(roi) if roi is not None else [],
        "roi_question": qa.kind,
    }  # fmt: skip
    return QA("roi", f"roi_{roi_type}", qa.question, qa.answer, qa.boxes, meta)


def _roi_region(facts: SceneFacts, rng: np.random.Generator) -> QA | None:
    visible = [lb for lb in facts.labels if is_visible(facts, lb)]
    # "most common" needs every kind of object the scene could hold to be visible
    kinds = set(facts.possible_classes) | {lb.cls for lb in facts.labels}
    nothing_hides = all(class_resolvable(k, facts.gsd_m) for k in kinds)
    cands: list[tuple[QA, tuple[float, ...]]] = []
    for r in range(GRID):
        for c in range(GRID):
            box = _cell_box(facts, r, c)
            inside = _in_cell(facts, visible, r, c)
            if len(inside) < 2 or not is_clear(facts, box):
                continue
            name = CELL_NAMES[r][c]
            where = f"in the {name} cell of a 3 x 3 grid over this image"
            for cls in sorted({lb.cls for lb in inside}):
                group = [lb for lb in facts.labels if lb.cls == cls]
                if countable(facts, cls, box) and _unambiguous(group, box):
                    objs = _in_cell(facts, group, r, c)
                    q = QA(
                        "roi", "count", f"How many {_plural(cls)} are {where}?", str(len(objs)),
                        tuple(objs), {"answer_type": "count", "classes": [cls], "cell": name},
                    )  # fmt: skip
                    cands.append((q, box))
            every = _in_cell(facts, facts.labels, r, c)
            if (
                nothing_hides
                and _unambiguous(facts.labels, box)
                and all(is_seen_clearly(facts, lb) for lb in every)
            ):
                ranked = Counter(lb.cls for lb in every).most_common()
                if len(ranked) == 1 or ranked[0][1] > ranked[1][1]:
                    q = QA(
                        "roi", "majority", f"Which kind of object is most common {where}?",
                        ranked[0][0], tuple(every),
                        {"answer_type": "class", "classes": [ranked[0][0]], "cell": name},
                    )  # fmt: skip
                    cands.append((q, box))
    if not cands:
        return None
    qa, box = _pick(rng, cands)
    return _roi(qa, "region", box)


def _roi_object(facts: SceneFacts, rng: np.random.Generator) -> QA | None:
    cands: list[QA] = []
    for lb, phrase in referents(facts):
        if lb.colour and facts.modality != "sar" and lb.colour not in phrase:
            cands.append(
                QA("roi", "colour", f"What colour is {phrase}?", lb.colour, (lb,),
                   {"answer_type": "colour", "classes": [lb.cls]})
            )  # fmt: skip
        r, c = cell_of(facts, *lb.centre_px)
        if _unambiguous([lb], _cell_box(facts, r, c)):
            cands.append(
                QA("roi", "cell", f"In which cell of a 3 x 3 grid over this image is {phrase}?",
                   CELL_NAMES[r][c], (lb,), {"answer_type": "cell", "classes": [lb.cls]})
            )  # fmt: skip
    if not cands:
        return None
    qa = _pick(rng, cands)
    return _roi(qa, "object", qa.boxes[0].xyxy_px)


def roi_questions(facts: SceneFacts, rng: np.random.Generator) -> list[QA]:
    """Region-of-interest questions as in LRS-GRO (ZoomEarth), for UHR scenes and any
    other: up to one ``global`` (the land use; ``roi_xyxy_px`` is ``[]``), one
    ``region`` (a 3 x 3 cell with several objects: a count or the commonest class; the
    ROI is the cell) and one ``object`` (a uniquely described object: its colour or
    grid cell; the ROI is its box). ``meta["roi_type"]`` and ``meta["roi_xyxy_px"]``
    (pixels) carry the ROI."""
    out: list[QA] = []
    lu = _land_use_qa(facts, "roi", "land_use", "What is the land use of this scene?")
    if lu:
        out.append(_roi(lu, "global", None))
    for qa in (_roi_region(facts, rng), _roi_object(facts, rng)):
        if qa:
            out.append(qa)
    return out


# -- multiple choice ---------------------------------------------------------------------

LETTERS = "ABCDE"
_POOLS: dict[str, tuple[str, ...]] = {
    "class": tuple(sorted(CLASSES)),
    "land_use": tuple(sorted(set(LAND_USE.values()))),
    "colour": COLOURS,
    "relation": RELATIONS,
    "cell": tuple(n for row in CELL_NAMES for n in row),
    "quadrant": tuple(n for row in QUADRANTS for n in row),
    "yes_no": ("yes", "no"),
    "orientation": ("horizontally", "vertically"),
    "urban_rural": ("urban", "rural"),
}
MCQ_INSTRUCTION = "Answer with the letter of the correct option."


def _answer_type(value: str) -> str:
    if re.fullmatch(r"\d+", value):
        return "count"
    for name, pool in _POOLS.items():
        if value in pool:
            return name
    raise ValueError(f"answer {value!r} is not categorical: cannot make a multiple choice")


def _count_distractors(n: int, k: int, rng: np.random.Generator) -> list[str]:
    near: list[int] = []
    step = 1
    while len(near) < k + 2:
        near += [v for v in (n - step, n + step) if v >= 0]
        step += 1
    picked = rng.choice(len(near), size=k, replace=False)
    return [str(near[i]) for i in sorted(picked)]


def to_mcq(
    qa: QA, rng: np.random.Generator, options: int = 4, pool: Sequence[str] | None = None
) -> QA:
    """A multiple-choice version of a QA with a categorical answer.

    The options, labelled (A), (B), ..., are the correct value and ``options - 1``
    distractors, shuffled; the answer is the correct letter. Distractors come from the
    answer type (``meta["answer_type"]``, else inferred from the value): nearby numbers
    for counts (never negative), the hard negative (``meta["hard_negative"]`` or the
    confusion table) first and then other catalogue classes for classes, the other
    colours, land uses, relations, grid cells, ... Everything random comes from
    ``rng``: the same seed gives the same question.

    Args:
        qa: The question; ``meta["stem"]`` replaces its text when the plain question
            reads badly with options ("is this A or B?").
        rng: The random generator.
        options: Number of options, 2-5.
        pool: Candidate distractors to use instead of the answer type's.

    Raises:
        ValueError: For a non-categorical answer, or too few distinct distractors.
    """
    if not 2 <= options <= len(LETTERS):
        raise ValueError(f"options must be in 2..{len(LETTERS)}, got {options}")
    value = str(qa.meta.get("answer_value", qa.answer))
    atype = qa.meta.get("answer_type")
    if not atype:
        try:
            atype = _answer_type(value)
        except ValueError:
            if pool is None:
                raise
            atype = "custom"
    atype = str(atype)
    k = options - 1
    if pool is None and atype == "count":
        if not re.fullmatch(r"\d+", value):
            raise ValueError(f"count answer {value!r} is not a non-negative integer")
        distractors = _count_distractors(int(value), k, rng)
    else:
        if pool is None:
            if atype not in _POOLS:
                raise ValueError(f"answer type {atype!r} has no option pool; pass pool=")
            pool = _POOLS[atype]
        cands = list(dict.fromkeys(str(p) for p in pool if str(p) != value))
        first: list[str] = []
        if atype == "class":
            hard = qa.meta.get("hard_negative") or CONFUSION.get(value)
            if hard in cands:
                first = [hard]
                cands.remove(hard)
        if len(first) + len(cands) < k:
            raise ValueError(
                f"{options} options need {k} distractors; {atype!r} offers "
                f"{len(first) + len(cands)} besides {value!r}"
            )
        order = rng.permutation(len(cands))
        distractors = first + [cands[i] for i in order[: k - len(first)]]
    choices = [value, *distractors]
    perm = rng.permutation(options)
    shown = [choices[i] for i in perm]
    letter = LETTERS[int(np.flatnonzero(perm == 0)[0])]
    lines = [f"({LETTERS[i]}) {c}" for i, c in enumerate(shown)]
    stem = str(qa.meta.get("stem", qa.question))
    question = "\n".join([stem, "The choices are listed below:", *lines, MCQ_INSTRUCTION])
    meta = {k2: v for k2, v in qa.meta.items() if k2 != "stem"}
    meta.update(
        answer_type=atype, answer_value=value, options=lines, choices=shown,
        source_task=qa.task, source_kind=qa.kind,
    )  # fmt: skip
    return QA("mcq", "mcq", question, letter, qa.boxes, meta)


#: Generators whose categorical questions :func:`mcq` turns into multiple choice.
_MCQ_SOURCES = (
    "identification", "scale_specific", "discriminative", "count", "grid_count", "colour",
    "relation",
)  # fmt: skip


def mcq(facts: SceneFacts, rng: np.random.Generator) -> list[QA]:
    """One four-option multiple-choice question made from another generator's
    categorical question (identification, land use, counting, colour, relation, ...)."""
    sub = np.random.default_rng(int(rng.integers(1 << 62)))
    cands = [qa for name in _MCQ_SOURCES for qa in GENERATORS[name](facts, sub)]
    ok = []
    for qa in cands:
        try:
            ok.append(to_mcq(qa, sub))
        except ValueError:
            continue
    return [_pick(rng, ok)] if ok else []


#: Generators by name, in the order the writer runs them.
GENERATORS: dict[str, Callable[[SceneFacts, np.random.Generator], list[QA]]] = {
    "identification": identification,
    "scale_specific": scale_specific,
    "discriminative": discriminative,
    "count": count,
    "grid_count": grid_count,
    "comparison": comparison,
    "existence": existence,
    "cloud": cloud,
    "colour": colour,
    "relation": relation,
    "grounding": grounding,
    "detection": detection,
    "roi": roi_questions,
    "mcq": mcq,
}

__all__ = [
    "BOX_FORMAT",
    "CELL_NAMES",
    "GENERATORS",
    "LAND_USE",
    "QA",
    "SceneFacts",
    "class_resolvable",
    "countable",
    "norm1000",
    "referents",
    "roi_questions",
    "scene_facts",
    "scene_features",
    "to_mcq",
]
