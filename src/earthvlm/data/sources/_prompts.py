"""The prompts converted records carry, in one place.

Sources ship targets (labels, boxes, answers) but rarely the instruction a chat model
needs. These templates are what the readers write in the user turn; the targets follow
the project's conventions: detection as text (:mod:`earthvlm.data.detection_text`) in
pixels of the source image, grounding as one ``x1,y1,x2,y2 object`` line per match.
GeoChat's task tags (``[refer]`` ...) are replaced by :data:`GEOCHAT_TAG_PROMPTS`.
"""

from __future__ import annotations

from collections.abc import Sequence

from earthvlm.data.detection_text import NONE_TARGET

_NONE = f'"{NONE_TARGET}"'

#: The detection format sentence per ``(format, style)``.
DETECTION_ASK: dict[tuple[str, str], str] = {
    ("quad", "plain"): (
        "Give one object per line as x1,y1,x2,y2,x3,y3,x4,y4 class, with the corners of "
        "its oriented box in pixels."
    ),
    ("hbox", "plain"): "Give one object per line as x1,y1,x2,y2 class, with its box in pixels.",
    ("quad", "json"): (
        'Answer with a JSON list of {"quadrant bbox": [x1, y1, x2, y2, x3, y3, x4, y4], '
        '"label": class} objects, the corners of each oriented box in pixels.'
    ),
    ("hbox", "json"): (
        'Answer with a JSON list of {"bbox_2d": [x1, y1, x2, y2], "label": class} objects, '
        "boxes in pixels."
    ),
}

#: The grounding format sentence per ``(format, style)``; the label is the expression.
#: The readers write ``("hbox", "plain")``; the others are for the prompt augmenter.
GROUNDING_ASK: dict[tuple[str, str], str] = {
    ("hbox", "plain"): (
        "Give one line per matching object as x1,y1,x2,y2 object, the box in pixels; "
        f"answer {_NONE} if it is absent."
    ),
    ("quad", "plain"): (
        "Give one line per matching object as x1,y1,x2,y2,x3,y3,x4,y4 object, the corners "
        f"of its oriented box in pixels; answer {_NONE} if it is absent."
    ),
    ("hbox", "json"): (
        'Answer with a JSON list of {"bbox_2d": [x1, y1, x2, y2], "label": object} items, '
        f"one per matching object, boxes in pixels; answer {_NONE} if it is absent."
    ),
    ("quad", "json"): (
        'Answer with a JSON list of {"quadrant bbox": [x1, y1, x2, y2, x3, y3, x4, y4], '
        '"label": object} items, one per matching object, the corners of each oriented box '
        f"in pixels; answer {_NONE} if it is absent."
    ),
}

#: The instructions the readers write, with their slots: ``{classes}`` (classification:
#: the class list; detection: an optional `` Classes: a, b.``), ``{expression}``,
#: ``{format}`` (a sentence of :data:`DETECTION_ASK` / :data:`GROUNDING_ASK`). Each is
#: template 0 of its task in :data:`earthvlm.data.augment.TEMPLATES`.
CLASSIFICATION_TEMPLATE = (
    "Classify the scene in this remote-sensing image. Answer with one of these classes: {classes}."
)
GROUNDING_TEMPLATE = "Locate this in the image: {expression}. {format}"
DETECTION_TEMPLATE = (
    "Detect all objects in this image. {format}{classes} If there is no object, answer " + _NONE
)


def detection_prompt(fmt: str, style: str, classes: Sequence[str] | None = None) -> str:
    """The instruction of a detection record (format ``quad``/``hbox``, style
    ``plain``/``json``), optionally naming the classes to look for."""
    listed = " Classes: " + ", ".join(classes) + "." if classes else ""
    return DETECTION_TEMPLATE.format(format=DETECTION_ASK[(fmt, style)], classes=listed)


def grounding_prompt(expression: str) -> str:
    """The instruction of a referring-expression grounding record."""
    return GROUNDING_TEMPLATE.format(expression=expression, format=GROUNDING_ASK[("hbox", "plain")])


def classification_prompt(classes: Sequence[str]) -> str:
    """The instruction of a closed-set scene classification record."""
    return CLASSIFICATION_TEMPLATE.format(classes=", ".join(classes))


#: GeoChat's task tags (Kuckreja et al. 2024, sec. 3) as natural-language instructions.
#: ``{text}`` is the rest of the turn, tags and ``<p>`` markers removed and boxes already
#: in pixels.
GEOCHAT_TAG_PROMPTS: dict[str, str] = {
    "refer": "{text} Answer with the bounding box as [x1, y1, x2, y2] in pixels.",
    "grounding": (
        "{text} Give the bounding box of every object you mention as [x1, y1, x2, y2] in pixels."
    ),
    "identify": "{text}\n(The region is given as [x1, y1, x2, y2] in pixels.)",
    "caption": "{text}",
    "vqa": "{text}",
}

#: The record task of a conversation whose first user turn carries the tag.
GEOCHAT_TAG_TASKS: dict[str, str] = {
    "refer": "grounding",
    "grounding": "grounded_caption",
    "identify": "region_caption",
    "caption": "caption",
    "vqa": "vqa",
}
