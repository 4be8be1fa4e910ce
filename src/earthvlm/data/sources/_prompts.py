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

_DETECTION_ASK = {
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


def detection_prompt(fmt: str, style: str, classes: Sequence[str] | None = None) -> str:
    """The instruction of a detection record (format ``quad``/``hbox``, style
    ``plain``/``json``), optionally naming the classes to look for."""
    text = "Detect all objects in this image. " + _DETECTION_ASK[(fmt, style)]
    if classes:
        text += " Classes: " + ", ".join(classes) + "."
    return text + f' If there is no object, answer "{NONE_TARGET}"'


def grounding_prompt(expression: str) -> str:
    """The instruction of a referring-expression grounding record."""
    return (
        f"Locate this in the image: {expression}. Give one line per matching object as "
        f'x1,y1,x2,y2 object, the box in pixels; answer "{NONE_TARGET}" if it is absent.'
    )


def classification_prompt(classes: Sequence[str]) -> str:
    """The instruction of a closed-set scene classification record."""
    return (
        "Classify the scene in this remote-sensing image. Answer with one of these "
        "classes: " + ", ".join(classes) + "."
    )


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
