"""The crop-and-zoom tool: its schema, reading calls from model text, and running them.

ZoomEarth's active perception (and RSCoVLM's Zoom-in Chain, sec. III-D): the model sees
a global view of a UHR image and calls ``zoom_in`` with a box on an image it has seen;
the tool reads that region of the *source* raster, natively when the model's pixel
budget allows, and returns it as a new :class:`~earthvlm.uhr.view.View` with its own GSD.
(The RSCoVLM reference crops the already-downsampled view instead, which shows the
model nothing new.)

The call format is Qwen's (the Qwen2.5 / Qwen3 chat templates list tools as JSON
function schemas and parse Hermes-style calls)::

    <tool_call>
    {"name": "zoom_in", "arguments": {"bbox_2d": [x1, y1, x2, y2]}}
    </tool_call>

``bbox_2d`` is in the backbone's box frame (:data:`~earthvlm.geo.boxes.BOX_FRAMES`:
0-1000 for Qwen3-VL, pixels of the image as shown for Qwen2.5-VL) of the image it is
drawn on: the latest view by default, or ``"view": i`` (0 is the global view). Every
view is read from the source and knows its window, so a box drawn on a crop of a crop
maps back to source pixels in one exact step (:meth:`View.to_source_px
<earthvlm.uhr.view.View.to_source_px>`).

Nothing the model writes raises. :func:`parse_tool_call` returns a :class:`ZoomCall` or
a :class:`ToolCallError` (a reason and an observation for the model), in time linear in
the text (``str.find``, no regular expressions, the JSON capped at
:data:`MAX_CALL_CHARS`). :func:`execute` turns a bad call, an invalid, degenerate or
out-of-image box, or a missing view into an observation saying what to fix; a box
reaching past the image is clipped (and the repair recorded). Only caller errors (no
views, views of another raster) and unreadable files raise.

The crop (:func:`zoom_window`): the box in source pixels is covered by whole pixels,
grown about its centre to the minimum side (``ZoomConfig.min_side_px``, and enough area
for the model's ``min_pixels`` so the processor never enlarges it), its sides rounded up
to whole tokens (so the processor keeps it native), shifted, not shrunk, to lie inside
the image, and widened if needed to keep the processors' aspect-ratio limit.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from earthvlm.data.resolution import MAX_ASPECT_RATIO
from earthvlm.geo.boxes import (
    BOX_DEGENERATE,
    BOX_FRAMES,
    BOX_NOT_FINITE,
    BOX_NOT_NUMERIC,
    BOX_OUT_OF_IMAGE,
    BOX_WRONG_LENGTH,
    normalise_box,
)
from earthvlm.uhr.reader import UHRReader
from earthvlm.uhr.view import View

#: The tool's name in schemas and calls.
ZOOM_TOOL_NAME = "zoom_in"
#: Tags around a call in assistant text (Qwen's chat templates).
CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
#: Longest call body parsed; a zoom call is well under 200 characters.
MAX_CALL_CHARS = 4096

# reasons a call is refused (beside the ``box_*`` reasons of earthvlm.geo.boxes)
NO_TOOL_CALL = "no_tool_call"
CALL_TOO_LONG = "call_too_long"
INVALID_JSON = "invalid_json"
NOT_AN_OBJECT = "not_an_object"
UNKNOWN_TOOL = "unknown_tool"
BAD_ARGUMENTS = "bad_arguments"
MISSING_BBOX = "missing_bbox"
BAD_VIEW = "bad_view"

_FORMAT = (
    f'{CALL_OPEN}{{"name": "{ZOOM_TOOL_NAME}", "arguments": {{"bbox_2d": [x1, y1, x2, y2]}}}}'
    f"{CALL_CLOSE}"
)
_FRAME_WORDS = {
    "norm1000": "coordinates normalised to 0-1000 along each axis of the image",
    "abs_px_resized": "pixel coordinates of the image as you see it",
}


def zoom_tool_schema(box_frame: str = "norm1000", *, gsd: bool = False) -> dict[str, Any]:
    """The ``zoom_in`` tool as a JSON function schema (the ``tools=`` list of a chat
    template), with the box frame of the backbone (``Backbone.box_frame``) spelled out.

    The schema has the shape ``transformers.utils.get_json_schema`` gives a typed Python
    function (no ``minItems`` / ``minimum`` constraints, optional arguments ``nullable``),
    so that the GRPO environment's ``zoom_in`` method, whose docstring is
    :func:`schema_docstring` of this schema, renders to the same tool text as SFT chains
    and the inference loop.

    Args:
        box_frame: The backbone's box frame.
        gsd: Say that the tool returns the crop's GSD (as its observation does with
            :attr:`ZoomConfig.observation_gsd`; for GSD-as-text models only).
    """
    if box_frame not in BOX_FRAMES:
        raise ValueError(f"box_frame={box_frame!r}: choose one of {list(BOX_FRAMES)}")
    returns = "Returns a new image of that region read from the full-resolution source"
    returns += ", with its ground sampling distance (GSD)." if gsd else "."
    return {
        "type": "function",
        "function": {
            "name": ZOOM_TOOL_NAME,
            "description": f"Zoom into a region of an image you have seen. {returns}",
            "parameters": {
                "type": "object",
                "properties": {
                    "bbox_2d": {
                        "type": "array",
                        "items": {"type": "number"},
                        "description": (
                            f"The region [x1, y1, x2, y2] (top-left, bottom-right) in "
                            f"{_FRAME_WORDS[box_frame]}."
                        ),
                    },
                    "view": {
                        "type": "integer",
                        "nullable": True,
                        "description": (
                            "The image the box is drawn on: 0 is the first (global) image, "
                            "1 the first zoomed image, and so on. Default: the latest image."
                        ),
                    },
                    "label": {
                        "type": "string",
                        "nullable": True,
                        "description": "What you expect to find in the region (optional).",
                    },
                },
                "required": ["bbox_2d"],
            },
        },
    }


def schema_docstring(schema: dict[str, Any]) -> str:
    """A Google-style docstring from which ``transformers.utils.get_json_schema`` rebuilds
    ``schema``'s description and argument descriptions (for a tool given to TRL as a
    Python method, whose schema is read from its signature and docstring)."""
    fn = schema["function"]
    args = [f"    {k}: {v['description']}" for k, v in fn["parameters"]["properties"].items()]
    return "\n".join([fn["description"], "", "Args:", *args])


def format_tool_call(
    bbox_2d: Sequence[float], *, view: int | None = None, label: str | None = None
) -> str:
    """A ``zoom_in`` call as the model writes it (for SFT trajectories); integers stay
    integers, other values keep two decimals."""
    args: dict[str, Any] = {"bbox_2d": [_number(v) for v in bbox_2d]}
    if view is not None:
        args["view"] = int(view)
    if label is not None:
        args["label"] = str(label)
    body = json.dumps({"name": ZOOM_TOOL_NAME, "arguments": args}, ensure_ascii=False)
    return f"{CALL_OPEN}\n{body}\n{CALL_CLOSE}"


# -- parsing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ZoomCall:
    """A ``zoom_in`` call read from model text.

    Attributes:
        bbox_2d: The box values as numbers (how many, and whether they make a box, is
            checked by :func:`execute`, which knows the frame).
        view: The view the box is drawn on; ``None`` for the latest.
        label: What the model expects there, if it said.
        repairs: What was repaired to read it: ``unclosed_tool_call``, ``trailing_text``,
            ``arguments_as_string``, ``parameters_key``, ``bbox_as_string``,
            ``quoted_numbers``, ``nested_points``, ``extra_arguments``, ``label_not_text``
            (the label is dropped).
        extra_calls: Further ``<tool_call>`` blocks in the same text (not run).
    """

    bbox_2d: tuple[float, ...]
    view: int | None = None
    label: str | None = None
    repairs: tuple[str, ...] = ()
    extra_calls: int = 0


@dataclass(frozen=True)
class ToolCallError:
    """Why a call could not be read or run, and what the model is told.

    Attributes:
        reason: A reason code (``no_tool_call``, ``invalid_json``, ... or a ``box_*``
            reason of :mod:`earthvlm.geo.boxes`).
        observation: The text returned to the model: what was wrong and what to write.
    """

    reason: str
    observation: str


def _error(reason: str, what: str) -> ToolCallError:
    return ToolCallError(reason, f"zoom_in was not run: {what}. Write {_FORMAT}.")


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_tool_call(text: str) -> ZoomCall | ToolCallError:
    """The first ``zoom_in`` call in assistant text; never raises.

    Reads the first ``<tool_call>`` block (an unclosed last block too: generation often
    stops on ``</tool_call>`` and drops it). Repairs are listed in ``ZoomCall.repairs``;
    everything else is refused with a reason: ``no_tool_call``, ``call_too_long``,
    ``invalid_json``, ``not_an_object``, ``unknown_tool``, ``bad_arguments``,
    ``missing_bbox``, ``bad_view``, ``box_not_numeric``.
    """
    if not isinstance(text, str):
        return _error(NO_TOOL_CALL, f"expected text, got {type(text).__name__}")
    start = text.find(CALL_OPEN)
    if start < 0:
        return _error(NO_TOOL_CALL, "no <tool_call> block was found")
    start += len(CALL_OPEN)
    end = text.find(CALL_CLOSE, start)
    repairs: list[str] = []
    if end < 0:
        repairs.append("unclosed_tool_call")
        end = len(text)
    extra_calls = text.count(CALL_OPEN, end)
    body = text[start:end].strip()
    truncated = len(body) > MAX_CALL_CHARS
    obj, why = _json_object(body[:MAX_CALL_CHARS], repairs)
    if why is not None:
        if truncated:
            return _error(CALL_TOO_LONG, f"the call is over {MAX_CALL_CHARS} characters")
        return _error(INVALID_JSON, f"the call is not valid JSON ({why})")
    if truncated and "trailing_text" not in repairs:
        repairs.append("trailing_text")  # a complete object, then more than the cap
    if not isinstance(obj, dict):
        return _error(NOT_AN_OBJECT, f"the call must be a JSON object, got {_short(obj)}")
    name = obj.get("name")
    if name != ZOOM_TOOL_NAME:
        return _error(UNKNOWN_TOOL, f"unknown tool {_short(name)}; the only tool is zoom_in")
    args = _arguments(obj, repairs)
    if isinstance(args, ToolCallError):
        return args
    if "bbox_2d" not in args:
        return _error(MISSING_BBOX, "the arguments have no bbox_2d")
    bbox = _numbers(args["bbox_2d"], repairs)
    if bbox is None:
        return _error(
            BOX_NOT_NUMERIC, f"bbox_2d must be four numbers, got {_short(args['bbox_2d'])}"
        )
    view = args.get("view")
    if view is not None and (isinstance(view, bool) or not isinstance(view, int) or view < 0):
        return _error(BAD_VIEW, f"view must be an image number 0, 1, ..., got {_short(view)}")
    label = args.get("label")
    if label is not None and not isinstance(label, str):
        label = None
        repairs.append("label_not_text")
    if set(args) - {"bbox_2d", "view", "label"}:
        repairs.append("extra_arguments")
    return ZoomCall(tuple(bbox), view, label, tuple(repairs), extra_calls)


def _json_object(body: str, repairs: list[str]) -> tuple[Any, str | None]:
    """``(value, None)`` for the JSON value of ``body`` (text after it tolerated), or
    ``(None, why)``."""
    if body.startswith("```"):  # a code fence inside the tags
        body = body.strip("`").removeprefix("json").strip()
    try:
        return json.loads(body), None
    except RecursionError:
        return None, "nested too deeply"
    except ValueError as e:  # JSONDecodeError, and int strings past Python's digit limit
        first = str(e)
    brace = body.find("{")
    if brace >= 0:
        try:
            value, _ = json.JSONDecoder().raw_decode(body, brace)
        except (ValueError, RecursionError):
            pass
        else:
            repairs.append("trailing_text")
            return value, None
    return None, _short(first, 80)


def _arguments(obj: dict[str, Any], repairs: list[str]) -> dict[str, Any] | ToolCallError:
    if "arguments" in obj:
        args = obj["arguments"]
    elif "parameters" in obj:
        args = obj["parameters"]
        repairs.append("parameters_key")
    else:
        return _error(BAD_ARGUMENTS, "the call has no arguments")
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except (ValueError, RecursionError):
            return _error(BAD_ARGUMENTS, f"arguments are not a JSON object: {_short(args)}")
        repairs.append("arguments_as_string")
    if not isinstance(args, dict):
        return _error(BAD_ARGUMENTS, f"arguments must be a JSON object, got {_short(args)}")
    return args


def _numbers(value: Any, repairs: list[str]) -> list[float] | None:
    """A flat list of floats from a JSON value, or None if it holds non-numbers."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            return None
        repairs.append("bbox_as_string")
    if not isinstance(value, list):
        return None
    if value and all(isinstance(v, list) for v in value):  # [[x1, y1], [x2, y2]]
        value = [v for point in value for v in point]
        repairs.append("nested_points")
    out: list[float] = []
    for v in value:
        if isinstance(v, str):
            try:
                v = float(v.strip())
            except ValueError:
                return None
            if "quoted_numbers" not in repairs:
                repairs.append("quoted_numbers")
        if isinstance(v, bool) or not isinstance(v, int | float):
            return None
        try:
            out.append(float(v))
        except OverflowError:  # an integer too large for a float
            out.append(math.inf)
    return out


# -- running ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ZoomConfig:
    """How :func:`execute` turns a box into a crop."""

    box_frame: str = "norm1000"
    """The backbone's box frame (``Backbone.box_frame``): ``"norm1000"`` (Qwen3-VL) or
    ``"abs_px_resized"`` (Qwen2.5-VL)."""
    min_side_px: int = 64
    """Smallest crop side in source pixels. The crop is also grown to the model's
    ``min_pixels`` (area), so the processor never enlarges it."""
    observation_gsd: bool = False
    """State the crop's GSD in the observation text. Off by default: a GSD in the text is
    an extra input that a model not trained on GSD text should not get (a scale-
    conditioned model receives each view's GSD through its conditioning instead). On
    for GSD-as-text (B3) models, in their chains, loop and GRPO rollouts alike."""

    def __post_init__(self) -> None:
        if self.box_frame not in BOX_FRAMES:
            raise ValueError(f"box_frame={self.box_frame!r}: choose one of {list(BOX_FRAMES)}")
        if int(self.min_side_px) != self.min_side_px or self.min_side_px < 1:
            raise ValueError(f"min_side_px={self.min_side_px!r}: give a whole number >= 1")


@dataclass(frozen=True)
class ZoomResult:
    """What one call gave: a new view and its observation, or an observation alone.

    Attributes:
        observation: The text for the model (the tool response beside the image).
        view: The new view; ``None`` when the call was refused.
        reason: Why it was refused (a reason code); ``None`` on success.
        box_xyxy_px: The requested region in source pixels, after repairs (for
            region-guided rewards); ``None`` when refused.
        repairs: What was repaired in the call and the box (``clipped``,
            ``swapped_corners``, and the parse repairs of :class:`ZoomCall`).
    """

    observation: str
    view: View | None = None
    reason: str | None = None
    box_xyxy_px: tuple[float, float, float, float] | None = None
    repairs: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.view is not None


_BOX_WHAT = {
    BOX_NOT_NUMERIC: "bbox_2d must be four numbers",
    BOX_WRONG_LENGTH: "bbox_2d must have exactly four numbers [x1, y1, x2, y2]",
    BOX_NOT_FINITE: "bbox_2d holds a number that is not finite",
    BOX_DEGENERATE: "bbox_2d has no area (x1 == x2 or y1 == y2)",
    BOX_OUT_OF_IMAGE: "bbox_2d lies outside the image",
}


def execute(
    call: ZoomCall | ToolCallError,
    views: Sequence[View],
    reader: UHRReader,
    config: ZoomConfig | None = None,
) -> ZoomResult:
    """Run a zoom call: map its box to source pixels, read the crop, describe it.

    Args:
        call: What :func:`parse_tool_call` returned (an error passes through as its
            observation, so a loop can always call this).
        views: The views shown so far, in order (``views[0]`` the global view); not
            changed: append ``result.view`` to show it.
        reader: The reader the views came from.
        config: The box frame and minimum crop side.

    Raises:
        ValueError: If ``views`` is empty or its views are of another raster (caller
            errors). Never for anything in ``call``.
        RasterError: If the crop cannot be read (a corrupt file).
    """
    config = config or ZoomConfig()
    if isinstance(call, ToolCallError):
        return ZoomResult(call.observation, reason=call.reason)
    if not views:
        raise ValueError("views is empty: show the global view first (reader.global_view())")
    if any(v.source_hw != reader.source_hw for v in views):
        raise ValueError(f"views of another raster than {reader.path.name} were passed")
    n = len(views)
    index = n - 1 if call.view is None else call.view
    if not 0 <= index < n:
        what = f"there is no image {index}; images 0-{n - 1} have been shown"
        return ZoomResult(_error(BAD_VIEW, what).observation, reason=BAD_VIEW)
    view, frame = views[index], config.box_frame
    width, height = view.frame_extent(frame)
    fixed = normalise_box(list(call.bbox_2d), "xyxy", width=width, height=height)
    if fixed.values is None:
        reason = fixed.problem or BOX_NOT_NUMERIC
        what = f"{_BOX_WHAT.get(reason, reason)}: {_short(list(call.bbox_2d))}"
        if reason == BOX_OUT_OF_IMAGE:
            what += f"; image {index} spans x 0-{width:g}, y 0-{height:g} ({_FRAME_WORDS[frame]})"
        return ZoomResult(_error(reason, what).observation, reason=reason)
    box_px = view.to_source_px(fixed.values, frame)
    factor = reader.resolution.factor
    min_side = max(int(config.min_side_px), math.isqrt(reader.resolution.min_pixels - 1) + 1)
    window = zoom_window(box_px, reader.source_hw, min_side_px=min_side, factor=factor)
    new = reader.read(window)
    observation = observation_text(n, index, fixed.values, new, gsd=config.observation_gsd)
    if call.extra_calls:
        observation += f" Only the first tool call was run ({call.extra_calls} more ignored)."
    box = (float(box_px[0]), float(box_px[1]), float(box_px[2]), float(box_px[3]))
    return ZoomResult(observation, new, None, box, (*call.repairs, *fixed.repairs))


def observation_text(
    n: int, index: int, bbox_2d: Sequence[float], view: View, *, gsd: bool = False
) -> str:
    """What the model reads beside a new crop: its number, where it zoomed, its size and
    whether it is native; its GSD only with ``gsd`` (:attr:`ZoomConfig.observation_gsd`).
    The one text SFT chains, the inference loop and GRPO rollouts all show.

    Args:
        n: The new image's number (views shown before it).
        index: The image the box was drawn on.
        bbox_2d: The box as drawn (after repairs), in the backbone's frame.
        view: The new view.
        gsd: State the view's GSD.
    """
    shown = ", ".join(str(_number(v)) for v in bbox_2d)
    if view.is_native:
        how = "native resolution"
    else:
        how = f"{'downsampled' if view.downsample > 1 else 'enlarged'} {view.downsample:.3g}x"
    text = f"Image {n}: zoom into image {index} at [{shown}]; {view.hw[1]} x {view.hw[0]} px, {how}"
    return f"{text}, GSD {view.gsd}." if gsd else f"{text}."


def zoom_window(
    box_xyxy_px: Sequence[float] | np.ndarray,
    image_hw: tuple[int, int],
    *,
    min_side_px: int,
    factor: int = 1,
) -> tuple[int, int, int, int]:
    """The integer source window a zoom into ``box_xyxy_px`` reads.

    The box (clipped to the image) is covered by whole pixels and grown about its
    centre: each side to at least ``min_side_px``, then up to a multiple of ``factor``
    (capped at the image side); the window is shifted, never shrunk, to lie inside the
    image, and its short side grown if needed to keep the aspect ratio within
    :data:`~earthvlm.data.resolution.MAX_ASPECT_RATIO`. The window always contains the
    clipped box.

    Args:
        box_xyxy_px: ``[x1, y1, x2, y2]`` in source pixels, ``x1 <= x2``, ``y1 <= y2``.
        image_hw: ``(height, width)`` of the source.
        min_side_px: Smallest window side.
        factor: Sides are rounded up to multiples of this (the token side).
    """
    h, w = image_hw
    x1, y1, x2, y2 = (float(v) for v in box_xyxy_px)
    cover_x = _cover(x1, x2, w)
    cover_y = _cover(y1, y2, h)
    side_x = _side(cover_x[1] - cover_x[0], min_side_px, factor, w)
    side_y = _side(cover_y[1] - cover_y[0], min_side_px, factor, h)
    if side_x > MAX_ASPECT_RATIO * side_y:
        side_y = _side(math.ceil(side_x / MAX_ASPECT_RATIO), min_side_px, factor, h)
    elif side_y > MAX_ASPECT_RATIO * side_x:
        side_x = _side(math.ceil(side_y / MAX_ASPECT_RATIO), min_side_px, factor, w)
    left, top = _place(*cover_x, side_x, w), _place(*cover_y, side_y, h)
    return left, top, left + side_x, top + side_y


def _cover(lo: float, hi: float, limit: int) -> tuple[int, int]:
    """Whole pixels covering ``[lo, hi]`` clipped to ``[0, limit]``, at least one."""
    a = min(max(math.floor(lo), 0), limit - 1)
    b = max(min(math.ceil(hi), limit), a + 1)
    return a, b


def _side(n: int, min_side: int, factor: int, limit: int) -> int:
    side = max(n, min_side)
    return min(-(-side // factor) * factor, limit)


def _place(a: int, b: int, side: int, limit: int) -> int:
    """The start of a ``side``-long run containing ``[a, b]``, centred, inside ``[0, limit]``."""
    return min(max(a - (side - (b - a)) // 2, 0), limit - side)


def _number(v: float) -> int | float:
    f = float(v)
    if f.is_integer():
        return int(f)
    return round(f, 2)


__all__ = [
    "BAD_ARGUMENTS",
    "BAD_VIEW",
    "CALL_TOO_LONG",
    "INVALID_JSON",
    "MAX_CALL_CHARS",
    "MISSING_BBOX",
    "NOT_AN_OBJECT",
    "NO_TOOL_CALL",
    "UNKNOWN_TOOL",
    "ZOOM_TOOL_NAME",
    "ToolCallError",
    "ZoomCall",
    "ZoomConfig",
    "ZoomResult",
    "execute",
    "format_tool_call",
    "observation_text",
    "parse_tool_call",
    "schema_docstring",
    "zoom_tool_schema",
    "zoom_window",
]
