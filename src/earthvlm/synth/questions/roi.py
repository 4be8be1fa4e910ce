"""Region-of-interest questions as in LRS-GRO (ZoomEarth): one ``global``, one
``region`` (a 3 x 3 grid cell) and one ``object`` ROI per image, in pixels."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from .facts import (
    CELL_NAMES,
    GRID,
    QA,
    SceneFacts,
    _cell_box,
    _in_cell,
    _land_use_qa,
    _pick,
    _plural,
    _px,
    _unambiguous,
    cell_of,
    class_resolvable,
    countable,
    is_clear,
    is_seen_clearly,
    is_visible,
    referents,
)


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
