"""Zoom-in Chain training data (RSCoVLM sec. III-D, eq. 5) and LRS-VQA-Zoom-style questions.

A Zoom-in Chain is one conversation about a UHR image::

    system:     the zoom_in tool (Qwen's "# Tools" text, see tool_system_prompt)
    user:       [global view] question + ZOOM_INSTRUCTION
    assistant:  <tool_call>{"name": "zoom_in", "arguments": {"bbox_2d": [...]}}</tool_call>
    tool:       [crop] "Image 1: zoom into image 0 at [...]; 256 x 256 px, native resolution."
    assistant:  answer

Both assistant turns are targets (the collator's training template puts labels on every
assistant turn); the system, user and tool turns are context. :class:`ChainWriter` builds
one from any single-image record with a region of interest (ROI): the global view and the
crop are written as PNG files under the output folder, each :class:`~earthvlm.data.record.ImageRef`
carrying the GSD of what it shows (the project's "one GSD per view" contract), and the
crop is taken exactly as the inference loop (:mod:`earthvlm.uhr.loop`) takes it: the call's
box goes through :func:`~earthvlm.uhr.tool.execute`, so training and inference see the
same windows, sizes and observation text. The observation states the crop's GSD only with
``ChainConfig.observation_gsd`` (chains for GSD-as-text models); each view's GSD is in its
``ImageRef`` either way, which is how scale-conditioned models receive it.

:func:`template_questions` writes LRS-VQA-Zoom's rule-based subset (sec. III-D1) from an
image's complete labels (e.g. a synthetic UHR scene's detection record): counts over the
whole image or one cell of a 3 x 3 grid, comparisons of two classes' counts, and
multiple-choice versions of the counts; each carries its ROI in source pixels
(``meta["roi_xyxy_px"]``) for :class:`ChainWriter`.

Where this departs from the paper and its release:

* the crop is read from the *native* source (the release crops the already-downsampled
  view, see the project's HF-stack notes), and the call's box is in the backbone's box
  frame of the global view (``bbox_2d``, Qwen's grounding key; the release's
  ``image_zoom_in`` takes ``bbox`` in pixels of the resized input);
* the instruction lets the model decide (ZoomEarth's active perception) instead of
  ordering a zoom ("Zoom in to the region of interest and answer the question.");
* a chain whose crop would be no sharper than the global view (``min_zoom_gain``) is
  skipped with a reason rather than written: the zoom would show nothing new;
* questions with a ``global`` ROI (ZoomEarth's whole-scene questions) become direct
  answers with no tool call, so the model also learns when not to zoom;
* a record may say how the zoom loop asks it (:func:`zoom_question_answer`:
  ``meta["zoom_question"]`` / ``meta["zoom_answer"]``, e.g. LRS-GRO, whose direct prompt
  asks for the box as text) and carry a teacher's reasoning (``meta["reasoning"]``:
  ``global``, ``locate``, ``answer``), which the chain puts in ``<think>`` blocks as
  ZoomEarth's SFT does: the global description and the locating before the call, the
  reasoning on the crop before the answer (all three before a direct answer).

NumPy, PIL and rasterio only (no torch): data preparation runs without the model stack.
Two concepts share this file (past the ~600-line mark) because the templates exist to
feed the chains; they can move to a file of their own without changing either.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
from PIL import Image

from earthvlm.data.ledger import Ledger
from earthvlm.data.letters import OPTION_LETTERS
from earthvlm.data.paths import resolve_within
from earthvlm.data.record import ImagePart, ImageRef, Message, Record, TextPart
from earthvlm.data.resolution import Resolution
from earthvlm.errors import EarthVLMError, PathEscapeError, RasterError
from earthvlm.geo.boxes import BOX_FRAMES
from earthvlm.io import atomic_path
from earthvlm.scale.gsd import GSD
from earthvlm.uhr.reader import ReaderConfig, UHRReader
from earthvlm.uhr.tool import (
    CALL_CLOSE,
    CALL_OPEN,
    ZoomCall,
    ZoomConfig,
    execute,
    format_tool_call,
    zoom_tool_schema,
)
from earthvlm.uhr.view import View

#: Appended to the question: the model may zoom, and decides whether to.
ZOOM_INSTRUCTION = (
    "If you need a closer look, call zoom_in on the region of interest first; "
    "then answer the question."
)
#: Qwen's tool preamble, verbatim from the Qwen3 / Qwen3-VL chat templates: a system turn
#: holding this text renders exactly as the template's ``tools=`` block.
TOOLS_HEADER = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
TOOLS_FOOTER = (
    "\n</tools>\n\nFor each function call, return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
)
#: Record task of chains and direct answers.
CHAIN_TASK = "zoom_chain"
#: 3 x 3 grid cell names, as the synthetic question generators write them.
CELL_NAMES: tuple[tuple[str, ...], ...] = (
    ("top-left", "top-centre", "top-right"),
    ("middle-left", "centre", "middle-right"),
    ("bottom-left", "bottom-centre", "bottom-right"),
)
#: At most five options in generated chains (as LRS-VQA-Zoom writes them).
MCQ_LETTERS = OPTION_LETTERS[:5]
MCQ_INSTRUCTION = "Answer with the letter of the correct option."

# reasons a record does not become a chain (ledger keys)
NO_ROI = "no_roi"
NO_ZOOM_GAIN = "no_zoom_gain"
NOT_SINGLE_IMAGE = "not_single_image"
NOT_SINGLE_TURN = "not_single_turn"
UNSUPPORTED_MODALITY = "unsupported_modality"
MISSING_IMAGE = "missing_image"
UNREADABLE_IMAGE = "unreadable_image"
BAD_ROI = "bad_roi"
TASK_SKIPPED = "task_skipped"


# -- the conversation format (shared with the inference loop) ---------------------------


def tool_system_prompt(tools: Sequence[dict[str, Any]]) -> str:
    """The system text Qwen's chat templates render for ``tools=``: one JSON schema a line
    between ``<tools>`` tags, then the call format. Templates without a ``tools``
    argument (Qwen2.5-VL's) get the same text as a system turn."""
    body = "".join("\n" + json.dumps(t, ensure_ascii=False) for t in tools)
    return TOOLS_HEADER + body + TOOLS_FOOTER


def user_text(question: str, instruction: str | None = ZOOM_INSTRUCTION) -> str:
    """The user turn's text beside the global view."""
    return f"{question}\n{instruction}" if instruction else question


_THINK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL)
_ANSWER = re.compile(r"<answer>(.*?)(</answer>|$)", re.DOTALL)


def extract_answer(text: str) -> str:
    """The answer in a final assistant turn: ``<answer>...</answer>`` when present
    (ZoomEarth's format), else the text without ``<think>`` sections and tool calls.
    Linear in the text; never raises."""
    text = _THINK.sub("", text)
    m = _ANSWER.search(text)
    if m:
        return m.group(1).strip()
    out, pos = [], 0
    while True:
        start = text.find(CALL_OPEN, pos)
        if start < 0:
            out.append(text[pos:])
            break
        out.append(text[pos:start])
        end = text.find(CALL_CLOSE, start)
        if end < 0:
            break
        pos = end + len(CALL_CLOSE)
    return "".join(out).strip()


# -- chains -----------------------------------------------------------------------------


class ChainError(EarthVLMError):
    """A record cannot become a chain; ``reason`` is the ledger key."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ChainConfig:
    """How :class:`ChainWriter` turns records into Zoom-in Chains."""

    box_frame: str = "norm1000"
    """The backbone's box frame (``Backbone.box_frame``) the call's ``bbox_2d`` is in."""
    global_max_pixels: int | None = None
    """Pixel budget of the global view; ``None``: the resolution's ``max_pixels``. Use the
    value the inference loop uses (:attr:`LoopConfig.global_max_pixels`)."""
    min_side_px: int = 64
    """Smallest crop side in source pixels (:class:`~earthvlm.uhr.tool.ZoomConfig`)."""
    min_zoom_gain: float = 2.0
    """Skip a chain whose crop is less than this many times finer (GSD) than the global
    view: the zoom would show nothing the global view does not."""
    instruction: str | None = ZOOM_INSTRUCTION
    """Appended to the question (``None``: the question alone)."""
    observation_role: Literal["tool", "user"] = "tool"
    """Role of the turn holding the crop: ``tool`` (Qwen3-VL's template renders it as a
    ``<tool_response>`` in a user turn), ``user`` for templates without a tool role
    (Qwen2.5-VL's, as RSCoVLM does)."""
    tools_in_system: bool = True
    """Start with a system turn describing the tool (:func:`tool_system_prompt`)."""
    observation_gsd: bool = False
    """State the crop's GSD in the tool observation (:attr:`~earthvlm.uhr.tool.ZoomConfig.
    observation_gsd`) and the tool schema. Only for chains that train a GSD-as-text (B3)
    model (SFT with ``data.gsd_as_text``, whose loop and GRPO runs state it too); other
    models must not be handed the GSD as text."""
    skip_tasks: tuple[str, ...] = ("detection",)
    """Record tasks left out (``task_skipped``): detection targets are in source pixels,
    the frame of no view the model sees."""
    reasoning: bool = True
    """Write a record's ``meta["reasoning"]`` into ``<think>`` blocks (ZoomEarth's SFT
    rows); ``False`` trains the calls and answers alone."""

    def __post_init__(self) -> None:
        if self.box_frame not in BOX_FRAMES:
            raise ValueError(f"box_frame={self.box_frame!r}: choose one of {list(BOX_FRAMES)}")
        if self.global_max_pixels is not None and self.global_max_pixels < 1:
            raise ValueError(f"global_max_pixels={self.global_max_pixels}: give >= 1 or None")
        if int(self.min_side_px) != self.min_side_px or self.min_side_px < 1:
            raise ValueError(f"min_side_px={self.min_side_px!r}: give a whole number >= 1")
        if not (math.isfinite(self.min_zoom_gain) and self.min_zoom_gain >= 1.0):
            raise ValueError(f"min_zoom_gain={self.min_zoom_gain}: give a number >= 1")
        if self.observation_role not in ("tool", "user"):
            raise ValueError(f"observation_role={self.observation_role!r}: 'tool' or 'user'")


@dataclass
class ChainResult:
    """What :meth:`ChainWriter.build` made.

    Attributes:
        records: The chains (and direct answers), in input order.
        ledger: Every input record counted: ok, skipped or failed with a reason.
        failures: ``(record id, reason, message)`` per record left out.
    """

    records: list[Record]
    ledger: Ledger
    failures: list[tuple[str, str, str]] = field(default_factory=list)


def record_roi(record: Record) -> tuple[tuple[float, float, float, float] | None, str]:
    """The region of interest of a single-image record, in source pixels, and where it
    came from: ``meta["roi_xyxy_px"]`` (``"roi"``; empty with ``roi_type == "global"``
    gives ``(None, "global")``), ``meta["cell_xyxy_px"]`` (``"cell"``), the union of the
    record's boxes on image 0 (``"boxes"``), or ``(None, "none")``."""
    meta = record.meta
    roi = meta.get("roi_xyxy_px")
    if isinstance(roi, list | tuple) and len(roi) == 4:
        return _xyxy(roi), "roi"
    if meta.get("roi_type") == "global":
        return None, "global"
    cell = meta.get("cell_xyxy_px")
    if isinstance(cell, list | tuple) and len(cell) == 4:
        return _xyxy(cell), "cell"
    corners = [c for b in record.boxes if b.image == 0 for c in b.corners_px()]
    if corners:
        xs, ys = [c[0] for c in corners], [c[1] for c in corners]
        return (min(xs), min(ys), max(xs), max(ys)), "boxes"
    return None, "none"


def zoom_question_answer(record: Record) -> tuple[str, str]:
    """The question the zoom loop asks about a single-image, single-question record and
    the final answer a chain writes: ``meta["zoom_question"]`` and ``meta["zoom_answer"]``
    where the record gives them (its direct prompt asks for more than the answer, e.g.
    LRS-GRO's box line, which a zoom call replaces), else its turns
    (:func:`question_answer`). Inference (:mod:`earthvlm.eval.zoom`) asks the same.

    Raises:
        ChainError: ``not_single_image`` or ``not_single_turn``.
    """
    question, answer = question_answer(record)
    q, a = record.meta.get("zoom_question"), record.meta.get("zoom_answer")
    return (
        q.strip() if isinstance(q, str) and q.strip() else question,
        a if isinstance(a, str) and a.strip() else answer,
    )


def record_reasoning(record: Record) -> dict[str, str] | None:
    """``meta["reasoning"]`` as ``{"global", "locate", "answer"}`` text (missing parts
    empty), or None when the record has none."""
    raw = record.meta.get("reasoning")
    if not isinstance(raw, dict):
        return None
    parts = {k: str(raw.get(k) or "").strip() for k in ("global", "locate", "answer")}
    return parts if any(parts.values()) else None


def _think(*parts: str) -> str:
    """A ``<think>`` block of the non-empty parts, then a newline ('' when all are empty)."""
    text = " ".join(p for p in parts if p)
    return f"<think>{text}</think>\n" if text else ""


def _xyxy(values: Sequence[Any]) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in values)
    return x1, y1, x2, y2


class ChainWriter:
    """Build Zoom-in Chain records, writing their views as PNG files under ``out_dir``.

    Use as a context manager (source rasters stay open between records of one image)::

        res = Resolution.from_processor(backbone.processor.image_processor)
        with ChainWriter(data_root, out_dir, res, ChainConfig(box_frame=backbone.box_frame)) as w:
            result = w.build(records)
        write_records(result.records, out_dir / "records.jsonl")

    Args:
        root: The dataset root the input records' image paths are relative to.
        out_dir: The new dataset root: views go to ``out_dir/views/``, and the chain
            records' image paths are relative to it.
        resolution: The backbone's dynamic-resolution policy (sizes and GSDs of views).
        config: Frame, budgets and format.
        reader_config: How source rasters are read (budgets, bands).
    """

    def __init__(
        self,
        root: str | Path,
        out_dir: str | Path,
        resolution: Resolution,
        config: ChainConfig | None = None,
        *,
        reader_config: ReaderConfig | None = None,
    ) -> None:
        self.root, self.out_dir = Path(root), Path(out_dir)
        self.resolution = resolution
        self.config = config or ChainConfig()
        self.reader_config = reader_config
        c = self.config
        self.zoom_config = ZoomConfig(c.box_frame, c.min_side_px, c.observation_gsd)
        self.tools = [zoom_tool_schema(c.box_frame, gsd=c.observation_gsd)]
        # source path -> (reader, global view, its ImageRef); the last two sources stay open
        self._open: OrderedDict[Path, tuple[UHRReader, View, ImageRef]] = OrderedDict()

    def __enter__(self) -> ChainWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every open source raster."""
        while self._open:
            self._open.popitem()[1][0].close()

    # -- one record -----------------------------------------------------------------------

    def chain(self, record: Record, roi_xyxy_px: Sequence[float] | None = None) -> Record:
        """The Zoom-in Chain of one single-image, single-question record.

        Args:
            record: A record with one image (the source), a user turn and the answer as
                its last assistant turn.
            roi_xyxy_px: The region of interest in source pixels; default
                :func:`record_roi`. A ``global`` ROI gives a direct answer (no call).

        Raises:
            ChainError: With a reason (``no_roi``, ``no_zoom_gain``, ``not_single_image``,
                ``not_single_turn``, ``unsupported_modality``, ``missing_image``,
                ``unreadable_image``, ``bad_roi``, ``task_skipped``) when the record cannot
                become one.
        """
        if record.task in self.config.skip_tasks:
            raise ChainError(
                TASK_SKIPPED,
                f"record {record.id}: task {record.task!r} is in "
                f"skip_tasks {list(self.config.skip_tasks)}",
            )
        question, answer = zoom_question_answer(record)
        why = record_reasoning(record) if self.config.reasoning else None
        if roi_xyxy_px is not None:
            roi, roi_from = _xyxy(roi_xyxy_px), "explicit"
        else:
            roi, roi_from = record_roi(record)
        reader, overview, global_ref = self._source(record)
        meta_base = {
            "source_id": record.id,
            "source_task": record.task,
            "source_image": record.images[0].path,
            "roi_from": roi_from,
            "global_gsd_m": _gsd_m(overview.gsd),
        }
        if roi is None:
            if roi_from != "global":
                raise ChainError(
                    NO_ROI,
                    f"record {record.id}: no region of interest (meta "
                    "roi_xyxy_px / cell_xyxy_px, or boxes on image 0)",
                )
            if why is not None:
                answer = _think(why["global"], why["locate"], why["answer"]) + answer
            messages = [*self._system(), self._user(question), _text("assistant", answer)]
            zoom = {**meta_base, "action": "answer"}
            return self._record(record, [global_ref], messages, zoom)
        box = _frame_box(overview, roi, self.config.box_frame)
        if box is None:
            raise ChainError(
                BAD_ROI,
                f"record {record.id}: ROI {roi} is not a box inside "
                f"the {reader.source_hw[1]} x {reader.source_hw[0]} px image",
            )
        result = execute(ZoomCall(box), [overview], reader, self.zoom_config)
        if result.view is None:  # cannot happen for a box made inside the view
            raise ChainError(BAD_ROI, f"record {record.id}: {result.observation}")
        crop = result.view
        gain = overview.downsample / crop.downsample
        if gain < self.config.min_zoom_gain:
            raise ChainError(
                NO_ZOOM_GAIN,
                f"record {record.id}: the crop of ROI {[round(v) for v in roi]} is only "
                f"{gain:.2f}x finer than the global view (min_zoom_gain="
                f"{self.config.min_zoom_gain:g}); the zoom would show nothing new",
            )
        crop_ref = self._write(reader.path, crop, "crop")
        observation = Message(
            role=self.config.observation_role,
            content=[ImagePart(index=1), TextPart(text=result.observation)],
        )
        call = format_tool_call(box)
        if why is not None:
            call = _think(why["global"], why["locate"]) + call
            answer = _think(why["answer"]) + answer
        messages = [
            *self._system(),
            self._user(question),
            _text("assistant", call),
            observation,
            _text("assistant", answer),
        ]
        zoom = {
            **meta_base,
            "action": "zoom",
            "roi_xyxy_px": [round(v, 3) for v in roi],
            "call_bbox_2d": list(box),
            "box_frame": self.config.box_frame,
            "observation_gsd": self.config.observation_gsd,
            "window_xyxy_px": list(crop.window_xyxy_px),
            "crop_gsd_m": _gsd_m(crop.gsd),
            "zoom_gain": round(gain, 3),
        }
        return self._record(record, [global_ref, crop_ref], messages, zoom)

    def build(
        self, records: Iterable[Record], *, progress: Callable[[Ledger], None] | None = None
    ) -> ChainResult:
        """Chains of many records; each is counted as ok, skipped or failed with its
        reason; ``progress`` is called with the ledger after each record."""
        return ChainResult(*collect(records, self.chain, "zoom_chain", progress=progress))

    # -- pieces ---------------------------------------------------------------------------

    def _system(self) -> list[Message]:
        if not self.config.tools_in_system:
            return []
        return [_text("system", tool_system_prompt(self.tools))]

    def _user(self, question: str) -> Message:
        text = user_text(question, self.config.instruction)
        return Message(role="user", content=[ImagePart(index=0), TextPart(text=text)])

    def _record(
        self, source: Record, images: list[ImageRef], messages: list[Message], zoom: dict
    ) -> Record:
        suffix = "zoom" if zoom["action"] == "zoom" else "direct"
        return Record(
            id=f"{source.id}-{suffix}",
            task=CHAIN_TASK,
            source=source.source,
            split=source.split,
            images=images,
            messages=messages,
            meta={**source.meta, "zoom": zoom},
        )

    def _source(self, record: Record) -> tuple[UHRReader, View, ImageRef]:
        ref = record.images[0]
        path = source_path(record, self.root, check_file=False)
        if path in self._open:
            self._open.move_to_end(path)
            return self._open[path]
        source_path(record, self.root)  # now that it is not open: is it there?
        gsd = ref.gsd if ref.gsd.is_known else None
        try:
            reader = UHRReader(path, self.resolution, gsd=gsd, config=self.reader_config)
        except RasterError as e:
            raise ChainError(UNREADABLE_IMAGE, f"record {record.id}: {e}") from None
        try:
            overview = reader.global_view(max_pixels=self.config.global_max_pixels)
            entry = (reader, overview, self._write(path, overview, "global"))
        except (RasterError, OSError) as e:
            reader.close()
            raise ChainError(UNREADABLE_IMAGE, f"record {record.id}: {e}") from None
        self._open[path] = entry
        while len(self._open) > 2:
            self._open.popitem(last=False)[1][0].close()
        return entry

    def _write(self, source: Path, view: View, kind: str) -> ImageRef:
        """Write ``view`` as a PNG (once: the name says what it shows) and describe it."""
        digest = hashlib.sha1(str(source.resolve()).encode()).hexdigest()[:10]
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", source.stem)[:40] or "image"
        x1, y1, x2, y2 = view.window_xyxy_px
        h, w = view.hw
        name = f"{kind}-{x1}-{y1}-{x2}-{y2}-{w}x{h}.png"
        rel = f"views/{stem}-{digest}/{name}"
        target = self.out_dir / rel
        if not target.is_file():
            with atomic_path(target, suffix=".png") as tmp:
                Image.fromarray(np.ascontiguousarray(view.pixels)).save(tmp, format="PNG")
        return ImageRef(
            path=rel,
            modality="optical",
            bands=["red", "green", "blue"],
            width=w,
            height=h,
            gsd=view.gsd,
        )


#: Reasons that count as failures (the data is broken); the others are skips.
FAILED_REASONS = (MISSING_IMAGE, UNREADABLE_IMAGE)

T = TypeVar("T")


def collect(
    records: Iterable[Record],
    make: Callable[[Record], T],
    stage: str,
    *,
    progress: Callable[[Ledger], None] | None = None,
) -> tuple[list[T], Ledger, list[tuple[str, str, str]]]:
    """``make`` of each record, counted in a ledger: ok, or skipped / failed
    (:data:`FAILED_REASONS`) with the reason of the :class:`ChainError` it raised.

    Returns:
        The results in input order, the ledger, and ``(record id, reason, message)`` per
        record left out.
    """
    ledger = Ledger(stage=stage)
    out: list[T] = []
    failures: list[tuple[str, str, str]] = []
    for rec in records:
        try:
            out.append(make(rec))
        except ChainError as e:
            (ledger.count_failed if e.reason in FAILED_REASONS else ledger.count_skipped)(e.reason)
            failures.append((rec.id, e.reason, str(e)))
        else:
            ledger.count_ok()
        if progress is not None:
            progress(ledger)
    ledger.check()
    return out, ledger, failures


def source_path(record: Record, root: str | Path, *, check_file: bool = True) -> Path:
    """The source raster of a single-image record, inside ``root``.

    Raises:
        ChainError: ``unsupported_modality`` (not optical), ``missing_image`` (a path
            escaping ``root``, or with ``check_file`` no such file).
    """
    ref = record.images[0]
    if ref.modality != "optical":
        raise ChainError(
            UNSUPPORTED_MODALITY,
            f"record {record.id}: modality {ref.modality!r}; zooming takes optical images",
        )
    try:
        path = resolve_within(root, ref.path)
    except PathEscapeError as e:
        raise ChainError(MISSING_IMAGE, f"record {record.id}: {e}") from None
    if check_file and not path.is_file():
        raise ChainError(
            MISSING_IMAGE, f"record {record.id}: {ref.path}: no such file under {root}"
        )
    return path


def question_answer(record: Record) -> tuple[str, str]:
    """The question and answer of a single-image, single-question record.

    Raises:
        ChainError: ``not_single_image`` or ``not_single_turn``.
    """
    if len(record.images) != 1:
        raise ChainError(
            NOT_SINGLE_IMAGE,
            f"record {record.id}: {len(record.images)} images; a chain or task starts "
            "from one source image",
        )
    users = [m for m in record.messages if m.role == "user"]
    answers = [m for m in record.messages if m.role == "assistant"]
    if len(users) != 1 or len(answers) != 1 or record.messages[-1].role != "assistant":
        raise ChainError(
            NOT_SINGLE_TURN,
            f"record {record.id}: needs one user question and one final answer",
        )
    return users[0].text().strip(), answers[0].text()


def _text(role: str, text: str) -> Message:
    return Message(role=role, content=text)  # type: ignore[arg-type]


def _gsd_m(gsd: GSD) -> float | None:
    return round(gsd.point_m, 6) if gsd.is_known else None


def _frame_box(
    view: View, roi_xyxy_px: Sequence[float], frame: str
) -> tuple[int, int, int, int] | None:
    """The ROI as integers in ``frame`` on ``view``, rounded outwards so the call's box
    still contains the ROI; ``None`` when nothing of it lies inside the view."""
    coords = view.from_source_px(list(roi_xyxy_px), frame)
    if not np.all(np.isfinite(coords)):
        return None
    width, height = view.frame_extent(frame)
    x1, y1 = max(0, math.floor(coords[0])), max(0, math.floor(coords[1]))
    x2, y2 = min(int(width), math.ceil(coords[2])), min(int(height), math.ceil(coords[3]))
    if x2 <= x1 or y2 <= y1:
        return None
    return x1, y1, x2, y2


def build_chains(
    records: Iterable[Record],
    root: str | Path,
    out_dir: str | Path,
    resolution: Resolution,
    config: ChainConfig | None = None,
) -> ChainResult:
    """:meth:`ChainWriter.build` in one call (sources closed afterwards)."""
    with ChainWriter(root, out_dir, resolution, config) as writer:
        return writer.build(records)


# -- LRS-VQA-Zoom template questions ----------------------------------------------------


@dataclass(frozen=True)
class TemplateConfig:
    """Which template questions :func:`template_questions` asks of one image."""

    cell_counts: int = 2
    """Grid-cell count questions per class (cells drawn, non-empty ones preferred)."""
    comparisons: int = 2
    """Comparison questions (a pair of classes, in the image or one cell)."""
    mcq_prob: float = 0.3
    """Chance that a count question also gets a multiple-choice version."""
    mcq_options: int = 4
    """Options of a multiple-choice question (2-5)."""

    def __post_init__(self) -> None:
        if self.cell_counts < 0 or self.comparisons < 0:
            raise ValueError("cell_counts and comparisons must be >= 0")
        if not 0.0 <= self.mcq_prob <= 1.0:
            raise ValueError(f"mcq_prob={self.mcq_prob}: give a probability in [0, 1]")
        if not 2 <= self.mcq_options <= len(MCQ_LETTERS):
            raise ValueError(f"mcq_options={self.mcq_options}: give 2..{len(MCQ_LETTERS)}")


def label_records(records: Iterable[Record]) -> list[Record]:
    """One record per source image holding all its labels: the synthetic world's
    ``detection`` record (every visible object, as boxes), first one per image path."""
    seen: dict[str, Record] = {}
    for rec in records:
        if rec.task == "detection" and len(rec.images) == 1:
            seen.setdefault(rec.images[0].path, rec)
    return list(seen.values())


Box4 = tuple[float, float, float, float]


@dataclass(frozen=True)
class _Q:
    kind: str
    question: str
    answer: str
    roi: Sequence[float]
    meta: dict[str, Any]


def _plural(cls: str) -> str:
    if cls.endswith("y"):
        return cls[:-1] + "ies"
    return cls + "es" if cls.endswith("s") else cls + "s"


def _union(boxes: Sequence[Box4]) -> Box4:
    a = np.asarray(boxes, dtype=np.float64)
    return float(a[:, 0].min()), float(a[:, 1].min()), float(a[:, 2].max()), float(a[:, 3].max())


def _in_cell(boxes: Sequence[Box4], cell: Box4) -> list[Box4]:
    """The boxes whose centre lies in ``cell``."""
    x1, y1, x2, y2 = cell
    return [b for b in boxes if x1 <= (b[0] + b[2]) / 2 < x2 and y1 <= (b[1] + b[3]) / 2 < y2]


def _clear(boxes: Sequence[Box4], cell: Box4) -> bool:
    """No box straddles ``cell``: each is at least 80 % inside or 80 % outside."""
    for b in boxes:
        w = max(0.0, min(b[2], cell[2]) - max(b[0], cell[0]))
        h = max(0.0, min(b[3], cell[3]) - max(b[1], cell[1]))
        area = (b[2] - b[0]) * (b[3] - b[1])
        if area > 0 and 0.2 < w * h / area < 0.8:
            return False
    return True


def template_questions(
    labels: Record, rng: np.random.Generator, config: TemplateConfig | None = None
) -> list[Record]:
    """LRS-VQA-Zoom's template subset (RSCoVLM sec. III-D1) for one labelled image.

    ``labels`` must hold *every* object of the classes it names (a count is only right
    if nothing is missing): the synthetic world's detection records do. Questions:

    * ``count_image``: how many of a class the whole image holds (ROI: their union);
    * ``count_cell``: how many lie (by centre) in one 3 x 3 grid cell (ROI: the cell);
      cells that an object of the class straddles (20-80 % inside) are not asked;
    * ``compare_image`` / ``compare_cell``: are there more of one class than another
      (yes / no; ROI: both classes' union, or the cell);
    * ``mcq``: a count as a multiple-choice question with nearby counts as distractors.

    Every record keeps the source image, ``meta["roi_xyxy_px"]`` (source pixels) and
    ``meta["template"]``; :class:`ChainWriter` turns them into chains (and skips those
    whose ROI is too large to gain from a zoom). Deterministic for a given ``rng`` state.

    Raises:
        ValueError: If image 0 has no width and height.
    """
    cfg = config or TemplateConfig()
    image = labels.images[0]
    if image.width is None or image.height is None:
        raise ValueError(f"record {labels.id}: image 0 has no width / height; set them")
    width, height = image.width, image.height
    objs: dict[str, list[Box4]] = {}
    for b in labels.boxes:
        if b.image == 0:
            xs, ys = zip(*b.corners_px(), strict=True)
            objs.setdefault(b.label, []).append((min(xs), min(ys), max(xs), max(ys)))
    n = len(CELL_NAMES)
    cells = {
        CELL_NAMES[r][c]: (c * width / n, r * height / n, (c + 1) * width / n, (r + 1) * height / n)
        for r in range(n)
        for c in range(n)
    }
    qs: list[_Q] = []
    for cls in sorted(objs):
        qs += _counts(cls, objs[cls], cells, cfg.cell_counts, rng)
    qs += _comparisons(objs, cells, cfg.comparisons, rng)
    for q in list(qs):
        if q.kind.startswith("count") and rng.random() < cfg.mcq_prob:
            text, letter, options = _count_mcq(q.question, int(q.answer), cfg.mcq_options, rng)
            meta = {**q.meta, "answer_value": q.answer, "options": options, "source_kind": q.kind}
            qs.append(_Q("mcq", text, letter, q.roi, meta))
    limits = (width, height, width, height)
    return [
        Record(
            id=f"{labels.id}-zq{k}-{q.kind}",
            task="mcq" if q.kind == "mcq" else "counting",
            source=labels.source,
            split=labels.split,
            images=[image],
            messages=[
                Message(role="user", content=[ImagePart(index=0), TextPart(text=q.question)]),
                Message(role="assistant", content=q.answer),
            ],
            meta={
                **q.meta,
                "template": q.kind,
                "roi_xyxy_px": [
                    round(min(max(v, 0.0), m), 3) for v, m in zip(q.roi, limits, strict=True)
                ],
                "labels_id": labels.id,
            },
        )
        for k, q in enumerate(qs)
    ]


def _counts(
    cls: str, boxes: list[Box4], cells: dict[str, Box4], n_cells: int, rng: np.random.Generator
) -> list[_Q]:
    """The whole-image count of a class, and counts in up to ``n_cells`` clear cells
    (non-empty ones preferred, 70 %)."""
    meta = {"answer_type": "count", "classes": [cls]}
    q = f"How many {_plural(cls)} are there in this image?"
    out = [_Q("count_image", q, str(len(boxes)), _union(boxes), meta)]
    clear = [name for name, cell in cells.items() if _clear(boxes, cell)]
    for _ in range(min(n_cells, len(clear))):
        full = [name for name in clear if _in_cell(boxes, cells[name])]
        pool = full if full and rng.random() < 0.7 else clear
        name = pool[int(rng.integers(len(pool)))]
        clear.remove(name)
        q = f"How many {_plural(cls)} are in the {name} cell of a 3 x 3 grid over this image?"
        count = str(len(_in_cell(boxes, cells[name])))
        out.append(_Q("count_cell", q, count, cells[name], {**meta, "cell": name}))
    return out


def _comparisons(
    objs: dict[str, list[Box4]], cells: dict[str, Box4], n: int, rng: np.random.Generator
) -> list[_Q]:
    """Up to ``n`` "are there more A than B?" questions, over one clear cell holding
    either class (half the time, when there is one) or the whole image."""
    classes = sorted(objs)
    pairs = [(a, b) for a in classes for b in classes if a != b]
    out = []
    for _ in range(min(n, len(pairs))):
        a, b = pairs.pop(int(rng.integers(len(pairs))))
        both = objs[a] + objs[b]
        scoped = [
            name for name, cell in cells.items() if _clear(both, cell) and _in_cell(both, cell)
        ]
        meta: dict[str, Any] = {"answer_type": "yes_no", "classes": [a, b]}
        if scoped and rng.random() < 0.5:
            name = scoped[int(rng.integers(len(scoped)))]
            cell = cells[name]
            na, nb = len(_in_cell(objs[a], cell)), len(_in_cell(objs[b], cell))
            kind, where, roi = (
                "compare_cell",
                f"in the {name} cell of a 3 x 3 grid over this image",
                cell,
            )
            meta["cell"] = name
        else:
            na, nb = len(objs[a]), len(objs[b])
            kind, where, roi = "compare_image", "in this image", _union(both)
        q = f"Are there more {_plural(a)} than {_plural(b)} {where}?"
        out.append(_Q(kind, q, "yes" if na > nb else "no", roi, {**meta, "counts": [na, nb]}))
    return out


def _count_mcq(
    question: str, n: int, options: int, rng: np.random.Generator
) -> tuple[str, str, list[str]]:
    """``(question with options, correct letter, option lines)``; distractors are the
    nearest other non-negative counts, shuffled."""
    near = sorted(
        (v for v in range(max(0, n - options), n + options + 1) if v != n),
        key=lambda v: (abs(v - n), v),
    )
    choices = [n, *near[: options - 1]]
    perm = rng.permutation(options)
    shown = [choices[i] for i in perm]
    letter = MCQ_LETTERS[int(np.flatnonzero(perm == 0)[0])]
    lines = [f"({MCQ_LETTERS[i]}) {v}" for i, v in enumerate(shown)]
    text = "\n".join([question, "The choices are listed below:", *lines, MCQ_INSTRUCTION])
    return text, letter, lines


__all__ = [
    "CELL_NAMES",
    "CHAIN_TASK",
    "FAILED_REASONS",
    "MCQ_INSTRUCTION",
    "TOOLS_FOOTER",
    "TOOLS_HEADER",
    "ZOOM_INSTRUCTION",
    "ChainConfig",
    "ChainError",
    "ChainResult",
    "ChainWriter",
    "TemplateConfig",
    "build_chains",
    "collect",
    "extract_answer",
    "label_records",
    "question_answer",
    "record_reasoning",
    "record_roi",
    "source_path",
    "template_questions",
    "tool_system_prompt",
    "user_text",
    "zoom_question_answer",
]
