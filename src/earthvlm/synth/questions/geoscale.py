"""GeoScale-VQA generators (ScaleEarth sec. 2.3): three questions per image by GSD tier.

:func:`identification` (an object's class, else the land use), :func:`scale_specific`
(fine object detail at the high tier, layout and structure at the mid tier, land cover
at the low tiers) and :func:`discriminative` ("is this A or B?", B a hard negative from
the confusion table).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np

from earthvlm.synth.catalogue import CLASSES, CONFUSION
from earthvlm.synth.labels import ObjectLabel

from .facts import (
    _VEHICLES,
    BOX_FORMAT,
    QA,
    QUADRANTS,
    SceneFacts,
    _box_text,
    _by_class,
    _cell_box,
    _clear_objects,
    _colour_qa,
    _colourful,
    _land_use_qa,
    _land_use_shows,
    _pick,
    _plural,
    _unambiguous,
    cell_of,
    countable,
    is_clear,
)


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
