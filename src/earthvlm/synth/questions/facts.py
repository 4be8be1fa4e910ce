"""What a question generator may look at, and the helpers every generator shares.

:class:`SceneFacts` (what the image shows, in pixels, and its GSD) and :class:`QA` (one
question and its answer); the visibility rules (:func:`class_resolvable`,
:func:`is_visible`, :func:`is_seen_clearly`, :func:`countable`, :func:`referents`);
:func:`scene_facts` and :func:`scene_features`, which build the facts of a rendered
scene; the 3 x 3 grid; and the small builders the generator modules have in common.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from earthvlm.scale.tiers import DEFAULT_TIERS, Tier
from earthvlm.synth.catalogue import CLASSES
from earthvlm.synth.labels import DETECTABLE_PX, ObjectLabel
from earthvlm.synth.materials import COLOUR_NAMES
from earthvlm.synth.render import Canvas
from earthvlm.synth.scene import HOMOGENEOUS_KINDS, LAND_USE, Scene, Strip

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
