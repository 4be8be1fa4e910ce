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

The generators live in one module per family: :mod:`.facts` (what a generator may look
at, and the helpers they share), :mod:`.geoscale`, :mod:`.counting`, :mod:`.objects`,
:mod:`.roi` and :mod:`.mcq`. Every name is importable from this package as well.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from earthvlm.synth.scene import LAND_USE

# Every name the single-module ``questions.py`` defined stays importable from here,
# private helpers included.
from .counting import cloud, comparison, count, existence, grid_count
from .facts import (  # noqa: F401
    _LAND_USE_DEFAULT_EXTENT_M,
    _VEHICLES,
    BOX_FORMAT,
    CELL_NAMES,
    CLEAR_ALPHA,
    COLOURS,
    GRID,
    LAND_USE_MIN_EXTENT_M,
    MIN_NORM_BOX,
    MODALITIES,
    OCCLUDED_ALPHA,
    QA,
    QUADRANTS,
    RELATIONS,
    SceneFacts,
    _box_shows,
    _box_text,
    _by_class,
    _cell_box,
    _clear_objects,
    _cloud_window,
    _colour_qa,
    _colourful,
    _countable_classes,
    _in_cell,
    _land_use_qa,
    _land_use_shows,
    _overlap_frac,
    _pick,
    _plural,
    _px,
    _round,
    _unambiguous,
    cell_of,
    class_resolvable,
    clouds_unknown,
    countable,
    is_clear,
    is_seen_clearly,
    is_visible,
    norm1000,
    referents,
    scene_facts,
    scene_features,
)
from .geoscale import (  # noqa: F401
    _URBAN_RURAL,
    _VEGETATED,
    _high_tier,
    _low_tier,
    _mid_tier,
    _orientation,
    discriminative,
    identification,
    scale_specific,
)
from .mcq import (  # noqa: F401
    _MCQ_SOURCES,
    _POOLS,
    LETTERS,
    MCQ_INSTRUCTION,
    _answer_type,
    _count_distractors,
    mcq,
    to_mcq,
)
from .objects import (  # noqa: F401
    DETECTION_PROMPT,
    _detection_key,
    _relation,
    colour,
    detection,
    grounding,
    relation,
)
from .roi import _roi, _roi_object, _roi_region, roi_questions  # noqa: F401

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
