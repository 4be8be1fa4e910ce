"""Question generators over the synthetic world's labels.

Every generator takes a :class:`SceneFacts` (what the image shows, in pixels, and its
GSD) and a seeded generator, and returns :class:`QA` items; the dataset writer turns
them into records. Generators only ask about what the GSD lets the image show:
counting and existence use *detectable* objects, identification uses *identifiable*
ones, and a question whose answer would depend on a sub-pixel object is not asked.

GeoScale-VQA (ScaleEarth sec. 2.3) asks three questions per image, conditioned on the
GSD tier: identification, a scale-specific question (fine objects and textures at the
high tier, layout and structure at the mid tier, land cover at the low tiers), and a
discriminative "is this A or B?" with B a hard negative from a confusion table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from earthvlm.scale.tiers import DEFAULT_TIERS, Tier
from earthvlm.synth.catalogue import CONFUSION
from earthvlm.synth.labels import ObjectLabel, counts
from earthvlm.synth.scene import LAND_USE


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
    """

    kind: str
    land_use: str
    gsd_m: float
    width: int
    height: int
    labels: list[ObjectLabel]
    has_scale_cues: bool = True
    cloud_cover: float = 0.0

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
        meta: Extra fields for the record's metadata.
    """

    task: str
    kind: str
    question: str
    answer: str
    boxes: tuple[ObjectLabel, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)


def _plural(cls: str) -> str:
    return (
        cls[:-1] + "ies" if cls.endswith("y") else (cls + "es" if cls.endswith("s") else cls + "s")
    )


def identification(facts: SceneFacts, rng: np.random.Generator) -> list[QA]:
    """What is the largest identifiable object, or the land use when none is."""
    ident = [lb for lb in facts.labels if lb.identifiable]
    if not ident:
        return [
            QA("vqa", "identification", "What type of area does this image show?", facts.land_use)
        ]
    big = max(ident, key=lambda lb: lb.length_px)
    return [
        QA(
            "vqa", "identification",
            "What is the largest clearly visible object in this image?", big.cls, (big,),
        )
    ]  # fmt: skip


def count(facts: SceneFacts, rng: np.random.Generator) -> list[QA]:
    """How many detectable objects of a class the image shows (whole image)."""
    c = counts(facts.labels)
    # a class with sub-detectable members is not counted: its true count is not visible
    hidden = {lb.cls for lb in facts.labels if not lb.detectable}
    options = sorted(k for k in c if k not in hidden)
    if not options:
        return []
    cls = str(rng.choice(options))
    return [
        QA(
            "counting", "count", f"How many {_plural(cls)} are there in this image?", str(c[cls]),
            tuple(lb for lb in facts.labels if lb.cls == cls),
        )
    ]  # fmt: skip


def discriminative(facts: SceneFacts, rng: np.random.Generator) -> list[QA]:
    """ "Is this A or B?" about an identifiable object, B its hard negative."""
    ident = [lb for lb in facts.labels if lb.identifiable and lb.cls in CONFUSION]
    if not ident:
        return []
    lb = ident[int(rng.integers(len(ident)))]
    a, b = lb.cls, CONFUSION[lb.cls]
    first, second = (a, b) if rng.random() < 0.5 else (b, a)
    x1, y1, x2, y2 = (round(float(v)) for v in lb.xyxy_px)
    return [
        QA(
            "vqa", "discriminative",
            f"Is the object in the region [{x1}, {y1}, {x2}, {y2}] a {first} or a {second}?",
            a, (lb,), {"hard_negative": b},
        )
    ]  # fmt: skip


#: Generators by name, in the order the writer runs them.
GENERATORS: dict[str, Callable[[SceneFacts, np.random.Generator], list[QA]]] = {
    "identification": identification,
    "count": count,
    "discriminative": discriminative,
}

__all__ = ["GENERATORS", "LAND_USE", "QA", "SceneFacts"]
