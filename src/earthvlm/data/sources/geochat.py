"""GeoChat-Instruct (Kuckreja et al. 2024) -> records with plain-language prompts and pixel boxes.

GeoChat's rows are LLaVA conversations (:mod:`earthvlm.data.sources.llava`) with two
kinds of markup:

* a task tag opening a human turn: ``[refer]`` (give the box of a described object),
  ``[grounding]`` (describe, with a box for each object), ``[identify]`` (what is in
  this box), and ``[caption]`` / ``[vqa]``;
* boxes on a 0-100 grid of the image: ``{<x1><y1><x2><y2>|<θ>}`` (``θ``, the rotation
  angle in degrees, is optional), several in a row for several objects, and objects
  named as ``<p>phrase</p>``.

Conversion: the tag is replaced by the instruction of
:data:`~earthvlm.data.sources._prompts.GEOCHAT_TAG_PROMPTS`, ``<p>`` markers are
removed (the phrase stays), and each box is written ``[x1, y1, x2, y2]`` in pixels of
the image (``x * width / 100``, ``y * height / 100``, rounded half up) and added to the
record's boxes, labelled with the phrase before it (for ``[refer]`` answers: the
phrase of the question). The record's task follows the first tag (``refer`` ->
``grounding``, ``grounding`` -> ``grounded_caption``, ``identify`` -> ``region_caption``).

The angle: the pixel box keeps the four grid values as a horizontal box; ``θ`` is kept
per box in ``meta["box_angles_deg"]`` and not applied, because GeoChat's release does
not state the rotation's sign and centre. Boxes outside 0-100 are quarantined
(``box_outside_grid``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, ClassVar

from earthvlm.data.record import Box
from earthvlm.data.sources._base import RowError
from earthvlm.data.sources._prompts import GEOCHAT_TAG_PROMPTS, GEOCHAT_TAG_TASKS
from earthvlm.data.sources.llava import Conversation, LLaVAConversations
from earthvlm.geo.boxes import normalise_box

#: The grid GeoChat writes box coordinates on (0-100 along each axis).
GRID = 100

_NUM = r"\s*(-?\d+(?:\.\d+)?)\s*"
_BOX = rf"\{{\s*<{_NUM}>\s*<{_NUM}>\s*<{_NUM}>\s*<{_NUM}>\s*(?:\|\s*<?{_NUM}>?\s*)?\}}"
_TOKEN = re.compile(rf"<p>(?P<phrase>.*?)</p>|(?P<box>{_BOX})|(?P<delim><delim>)", re.DOTALL)
_TAG = re.compile(r"^\s*\[(?P<tag>[A-Za-z_]+)\]\s*")


def _round(v: float) -> int:
    return math.floor(v + 0.5)


def _tidy(text: str) -> str:
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r" +([?.,!;:])", r"\1", text)
    text = re.sub(r"\]\s*\[", "], [", text)
    return "\n".join(line.strip() for line in text.splitlines()).strip()


@dataclass(kw_only=True)
class GeoChatInstruct(LLaVAConversations):
    """GeoChat-Instruct conversations, tags as instructions and 0-100 boxes as pixels.

    Attributes:
        annotations: The JSON list of rows, relative to the root.
        image_dir: The folder image names are relative to, relative to the root.
    """

    name: ClassVar[str] = "geochat"
    files: ClassVar[tuple[str, ...]] = ("GeoChat_Instruct.json", "images/<image>")

    annotations: str = "GeoChat_Instruct.json"
    image_dir: str = "images"

    def _start_turn(self, role: str, turn: int, conv: Conversation) -> None:
        if role == "user":  # a new question: forget the last phrase and tag
            conv.state["phrase"] = None
            conv.state["tag"] = None

    def _convert_text(self, text: str, role: str, turn: int, conv: Conversation) -> str:
        tag = None
        if role == "user":
            m = _TAG.match(text)
            if m:
                tag = m.group("tag").lower()
                if tag not in GEOCHAT_TAG_PROMPTS:
                    raise RowError(
                        "unknown_task_tag",
                        f"turn {turn} opens with [{m.group('tag')}]",
                        f"use one of {', '.join(f'[{t}]' for t in GEOCHAT_TAG_PROMPTS)} or "
                        "remove the tag",
                    )
                text = text[m.end() :]
                if "task_set" not in conv.state:  # the first tag names the record's task
                    conv.task = GEOCHAT_TAG_TASKS[tag]
                    conv.state["task_set"] = True
                conv.state["tag"] = tag  # the answer's boxes belong to this question
        out = _tidy(self._boxes(text, turn, conv))
        if tag is not None:
            if out and out[-1] not in ".?!:]" and tag in ("refer", "grounding"):
                out += "."  # the instruction that follows is a new sentence
            out = GEOCHAT_TAG_PROMPTS[tag].format(text=out[:1].upper() + out[1:]).strip()
        return out

    def _boxes(self, text: str, turn: int, conv: Conversation) -> str:
        pieces: list[str] = []
        pos = 0
        for m in _TOKEN.finditer(text):
            pieces.append(text[pos : m.start()])
            pos = m.end()
            if m.group("phrase") is not None:
                phrase = " ".join(m.group("phrase").split())
                conv.state["phrase"] = phrase or conv.state.get("phrase")
                pieces.append(phrase)
            elif m.group("delim") is not None:
                pieces.append(" ")
            else:
                pieces.append(self._box(m, turn, conv))
        pieces.append(text[pos:])
        return "".join(pieces)

    def _box(self, m: re.Match[str], turn: int, conv: Conversation) -> str:
        raw = m.group("box")
        if not conv.images:
            raise RowError(
                "box_without_image", f"turn {turn} has the box {raw} but the row has no image",
                "give the row its image",
            )  # fmt: skip
        grid = [float(v) for v in m.groups()[2:6]]
        angle = m.group(7)
        if not all(0 <= v <= GRID for v in grid):
            raise RowError(
                "box_outside_grid",
                f"turn {turn}: box {raw} has values outside 0-{GRID}",
                f"write GeoChat boxes on the 0-{GRID} grid",
            )
        image = conv.images[0]
        w, h = image.width or 0, image.height or 0  # always set by _image
        px = [grid[0] * w / GRID, grid[1] * h / GRID, grid[2] * w / GRID, grid[3] * h / GRID]
        fixed = normalise_box(px, "xyxy", width=w, height=h)
        if fixed.values is None:
            raise RowError(
                fixed.problem or "bad_box",
                f"turn {turn}: box {raw} is {[round(v, 1) for v in px]} px in a {w} x {h} image",
                "correct the box (x1 < x2, y1 < y2 on the 0-100 grid)",
            )
        fallback = "region" if conv.state.get("tag") == "identify" else "object"
        label = conv.state.get("phrase") or fallback
        conv.boxes.append(Box(label=label, xyxy_px=fixed.values))  # type: ignore[arg-type]
        meta: dict[str, Any] = conv.meta
        meta.setdefault("box_turns", []).append(turn)
        meta.setdefault("box_angles_deg", []).append(float(angle) if angle is not None else None)
        meta["box_grid"] = GRID
        x1, y1, x2, y2 = (_round(v) for v in fixed.values)
        return f"[{x1}, {y1}, {x2}, {y2}]"
