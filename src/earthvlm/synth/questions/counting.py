"""Population questions: counting (whole image and 3 x 3 grid cells), comparison,
existence, and cloud cover.

A population question needs every object it asks about to be detectable at the GSD
and the area asked about to be cloud-free (see :func:`~.facts.countable`).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from earthvlm.synth.catalogue import CLASSES

from .facts import (
    CELL_NAMES,
    CLEAR_ALPHA,
    GRID,
    OCCLUDED_ALPHA,
    QA,
    SceneFacts,
    _by_class,
    _cell_box,
    _countable_classes,
    _in_cell,
    _pick,
    _plural,
    _px,
    _unambiguous,
    class_resolvable,
    is_clear,
    is_visible,
)


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
