"""Object-level questions: colour, spatial relation, grounding, and detection as text.

Each asks about objects the image shows clearly; boxes in the text are normalised to
0-1000 (:func:`~.facts.norm1000`), detection targets are integer pixel quads.
"""

from __future__ import annotations

import numpy as np

from earthvlm.data.detection_text import serialise_detections
from earthvlm.synth.labels import ObjectLabel

from .facts import (
    BOX_FORMAT,
    QA,
    SceneFacts,
    _box_shows,
    _box_text,
    _colour_qa,
    _colourful,
    _pick,
    _px,
    clouds_unknown,
    is_visible,
    referents,
)


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
