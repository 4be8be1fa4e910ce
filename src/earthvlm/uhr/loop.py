"""The zoom loop: a model looks at a UHR image, zooms where it chooses, and answers.

ZoomEarth's active perception (and RSCoVLM's Zoom-in Chain at inference, sec. III-D)::

    global view + question  ->  model  ->  answer                      (done)
                                       ->  zoom_in(bbox_2d)  ->  crop read natively from
                                           the source, appended as a new image  ->  model ...

up to ``max_zooms`` zooms. Every image carries its own GSD (the project's "one GSD per
view" contract): a scale-conditioned model (:class:`~earthvlm.models.scaleearth.ScaleEarth`)
gets one GSD per view through ``generate(gsd=...)``, and its per-token gates put the
answer under the GSD of the latest crop; a GSD-as-text model (B3) reads each view's GSD
after its image and in each zoom observation (no other model gets GSD text). The
conversation is the one :mod:`earthvlm.uhr.chain` trains on: the
tool schema goes to the chat template's ``tools`` argument when the template has one
(Qwen3-VL), otherwise into a system turn with the same text (Qwen2.5-VL); crops come back
in a ``tool`` turn (``user`` for templates without a tool role).

Nothing the model writes stops the loop with an error: text without a call is the
answer; a malformed call, a bad box or a call past the budget becomes an observation the
model reads on its next turn (:func:`~earthvlm.uhr.tool.execute`), and the trace records
each. The turn after the budget is spent is final, whatever it holds.

The returned :class:`ZoomTrace` holds the views (pixels, source windows in source
pixels, GSDs), each turn's text, action and token count, and the answer;
:meth:`ZoomTrace.draw` pictures it on the global view.

Each turn re-encodes the whole conversation (no KV cache across turns): simple, and the
cost is small beside the vision tower at these sizes. One sample at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw

from earthvlm.data.gsd_text import gsd_sentence
from earthvlm.data.resolution import Resolution
from earthvlm.io import atomic_path
from earthvlm.models.backbone import Backbone
from earthvlm.models.earthvlm import EarthVLM
from earthvlm.models.tokenizer import decode_text
from earthvlm.scale.gsd import GSD
from earthvlm.uhr.chain import ZOOM_INSTRUCTION, extract_answer, tool_system_prompt, user_text
from earthvlm.uhr.reader import ReaderConfig, UHRReader
from earthvlm.uhr.tool import (
    NO_TOOL_CALL,
    ZOOM_TOOL_NAME,
    ToolCallError,
    ZoomConfig,
    execute,
    parse_tool_call,
    zoom_tool_schema,
)
from earthvlm.uhr.view import View

#: ``(inputs, gsds, max_new_tokens) -> new token ids``: one generation step. ``inputs`` is
#: the processor's batch of one; ``gsds`` holds one GSD per image, in order.
GenerateFn = Callable[[Mapping[str, Any], list[GSD], int], Sequence[int]]

Action = Literal["answer", "zoom", "invalid", "refused", "final"]
Stop = Literal["answered", "max_zooms", "max_invalid"]

BUDGET_SPENT = "budget_spent"


@dataclass(frozen=True)
class LoopConfig:
    """How :func:`run_zoom_loop` runs."""

    max_zooms: int = 2
    """Most crops shown. 0 offers no tool: the model answers from the global view."""
    max_invalid_calls: int = 1
    """Most refused calls (bad JSON, bad box) answered with an observation."""
    max_new_tokens: int = 128
    """Tokens per turn."""
    global_max_pixels: int | None = None
    """Pixel budget of the global view; ``None``: the processor's ``max_pixels``. Use the
    value the chains were built with (:attr:`ChainConfig.global_max_pixels`)."""
    min_side_px: int = 64
    """Smallest crop side in source pixels."""
    instruction: str | None = ZOOM_INSTRUCTION
    """Appended to the question (as in :mod:`earthvlm.uhr.chain`)."""
    tools: Literal["auto", "template", "system"] = "auto"
    """Where the tool schema goes: the template's ``tools`` argument, a system turn, or
    ``auto`` (the template's argument when it renders it)."""
    gsd_as_text: bool = False
    """State each view's GSD as text (the B3 baseline): after its image in user turns, and
    in the zoom observation and tool schema (:attr:`~earthvlm.uhr.tool.ZoomConfig.
    observation_gsd`), as its chains and GRPO rollouts do. Also on when the model is a
    GSD-as-text model (:attr:`EarthVLM.gsd_as_text`); off, no GSD reaches the text."""

    def __post_init__(self) -> None:
        if self.max_zooms < 0 or self.max_invalid_calls < 0:
            raise ValueError(
                f"max_zooms={self.max_zooms}, max_invalid_calls={self.max_invalid_calls}: "
                "give numbers >= 0"
            )
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={self.max_new_tokens}: give >= 1")
        if self.tools not in ("auto", "template", "system"):
            raise ValueError(f"tools={self.tools!r}: choose 'auto', 'template' or 'system'")
        if self.global_max_pixels is not None and self.global_max_pixels < 1:
            raise ValueError(f"global_max_pixels={self.global_max_pixels}: give >= 1 or None")
        ZoomConfig(min_side_px=self.min_side_px)  # checks min_side_px


def greedy_ids(
    model: EarthVLM, inputs: Mapping[str, Any], gsds: list[GSD], max_new_tokens: int
) -> list[int]:
    """Greedy decoding of one sample through :meth:`EarthVLM.generate` (one GSD per
    view); the new token ids (EOS included, if reached)."""
    out, _ = model.generate(inputs, list(gsds), max_new_tokens=max_new_tokens, do_sample=False)
    n = inputs["input_ids"].shape[1]
    return out[0, n:].tolist()  # a batch of one: no padding after EOS


@dataclass(frozen=True)
class Turn:
    """One model turn and what the loop made of it.

    Attributes:
        text: What the model wrote (special tokens removed).
        n_tokens: Tokens it generated.
        action: ``answer`` (no call), ``zoom`` (a crop was shown), ``invalid`` (the call
            was refused: bad JSON, bad box, ...), ``refused`` (a call past the budget) or
            ``final`` (the turn after the budget was spent).
        observation: The text returned to the model, if any.
        reason: Why a call was refused (a reason code of :mod:`earthvlm.uhr.tool`, or
            ``budget_spent``).
        view: Index of the view this turn added.
        n_images: Images the model saw on this turn.
        gsd_decisions: For a scale-conditioned model, the GSD each image was conditioned
            on and its branch (``metadata``, ``estimate``, ``neutral``), in image order.
    """

    text: str
    n_tokens: int
    action: Action
    observation: str | None = None
    reason: str | None = None
    view: int | None = None
    n_images: int = 1
    gsd_decisions: tuple[tuple[str, str], ...] = ()


@dataclass
class ZoomTrace:
    """What happened in one run of the loop.

    Attributes:
        question: The question asked.
        source: The source raster.
        source_hw: ``(height, width)`` of the source.
        source_gsd: The source GSD.
        views: The images shown, in order (``views[0]`` the global view).
        requested_xyxy_px: Per view, the region the model asked for in source pixels
            (``None`` for the global view); the view's window contains it.
        turns: The model's turns, in order.
        answer: The final answer (tool calls and ``<think>`` removed).
        stop: ``answered`` (a turn without a call), ``max_zooms`` or ``max_invalid`` (the
            final turn after a budget was spent).
        tools_via: ``template`` (the chat template's ``tools``), ``system`` or ``none``.
    """

    question: str
    source: Path
    source_hw: tuple[int, int]
    source_gsd: GSD
    views: list[View] = field(default_factory=list)
    requested_xyxy_px: list[tuple[float, float, float, float] | None] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    answer: str = ""
    stop: Stop = "answered"
    tools_via: str = "none"

    @property
    def windows_xyxy_px(self) -> list[tuple[int, int, int, int]]:
        """Each view's source window in source pixels."""
        return [v.window_xyxy_px for v in self.views]

    @property
    def gsds(self) -> list[GSD]:
        """Each view's GSD (what the model was given for it)."""
        return [v.gsd for v in self.views]

    @property
    def tokens_per_turn(self) -> list[int]:
        return [t.n_tokens for t in self.turns]

    @property
    def n_zooms(self) -> int:
        return len(self.views) - 1

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (no pixels)."""
        return {
            "question": self.question,
            "source": str(self.source),
            "source_hw": list(self.source_hw),
            "source_gsd": self.source_gsd.to_dict(),
            "views": [
                {
                    "window_xyxy_px": list(v.window_xyxy_px),
                    "hw": list(v.hw),
                    "gsd": v.gsd.to_dict(),
                    "downsample": round(v.downsample, 4),
                    "native": v.is_native,
                    "requested_xyxy_px": None if r is None else [round(x, 2) for x in r],
                }
                for v, r in zip(self.views, self.requested_xyxy_px, strict=True)
            ],
            "turns": [
                {
                    "action": t.action,
                    "n_tokens": t.n_tokens,
                    "text": t.text,
                    "observation": t.observation,
                    "reason": t.reason,
                    "view": t.view,
                    "n_images": t.n_images,
                    "gsd_decisions": [list(d) for d in t.gsd_decisions],
                }
                for t in self.turns
            ],
            "answer": self.answer,
            "stop": self.stop,
            "tools_via": self.tools_via,
        }

    def draw(self, *, min_side: int = 512, thumb: int = 192) -> Image.Image:
        """The global view with each zoom window (numbered, in source order), and the
        crops beside it labelled with their GSDs."""
        return draw_trace(self, min_side=min_side, thumb=thumb)

    def save_png(self, path: str | Path, **kwargs: Any) -> Path:
        """Write :meth:`draw` to ``path`` (atomically)."""
        target = Path(path)
        with atomic_path(target, suffix=".png") as tmp:
            self.draw(**kwargs).save(tmp, format="PNG")
        return target


# -- the loop -----------------------------------------------------------------------------


def template_renders_tools(backbone: Backbone) -> bool:
    """Whether the backbone's chat template renders a ``tools`` argument (Qwen3-VL's
    does, Qwen2.5-VL's does not)."""
    text = backbone.processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "text", "text": "x"}]}],
        chat_template=backbone.chat_template(),
        tools=[zoom_tool_schema(backbone.box_frame)],
        tokenize=False,
    )
    return ZOOM_TOOL_NAME in text


def run_zoom_loop(
    model: EarthVLM | Backbone,
    source: str | Path | UHRReader,
    question: str,
    config: LoopConfig | None = None,
    *,
    gsd: GSD | None = None,
    generate: GenerateFn | None = None,
    reader_config: ReaderConfig | None = None,
) -> ZoomTrace:
    """Ask ``question`` about a UHR image, letting the model zoom.

    Args:
        model: The model (a bare :class:`Backbone` runs as a zero-shot
            :class:`EarthVLM`, GSD unused).
        source: A raster path (opened with the processor's resolution) or an open reader
            (its resolution should be the processor's: views are then kept as shown).
        question: The question.
        config: Budgets and prompt format.
        gsd: The source GSD; ``None`` reads it from the file's georeferencing (unknown
            when it has none). Ignored when ``source`` is a reader.
        generate: One generation step (tests script decisions with it); default greedy
            decoding (:func:`greedy_ids`).
        reader_config: How a path is read (budgets, bands).

    Raises:
        RasterError: If the raster cannot be opened or read. Nothing the model writes
            raises.
    """
    zm = model if isinstance(model, EarthVLM) else EarthVLM.from_backbone(model)
    cfg = config or LoopConfig()
    if isinstance(source, UHRReader):
        return _Loop(zm, source, question, cfg, generate).run()
    resolution = Resolution.from_processor(zm.backbone.processor.image_processor)
    with UHRReader(source, resolution, gsd=gsd, config=reader_config) as reader:
        return _Loop(zm, reader, question, cfg, generate).run()


class _Loop:
    def __init__(
        self,
        model: EarthVLM,
        reader: UHRReader,
        question: str,
        cfg: LoopConfig,
        generate: GenerateFn | None,
    ) -> None:
        self.model, self.reader, self.question, self.cfg = model, reader, question, cfg
        self.generate = generate or partial(greedy_ids, model)
        bb = model.backbone
        self.template = bb.chat_template()
        # GSD text only for models that read it (B3); the scale path gets it via generate()
        self.gsd_text = cfg.gsd_as_text or model.gsd_as_text
        self.zoom_config = ZoomConfig(bb.box_frame, cfg.min_side_px, self.gsd_text)
        self.tokenizer = bb.tokenizer
        self.special = sorted({str(t) for t in getattr(self.tokenizer, "all_special_tokens", [])})
        self.schema = zoom_tool_schema(bb.box_frame, gsd=self.gsd_text)
        if cfg.max_zooms == 0:
            self.tools_via = "none"
        elif cfg.tools == "system":
            self.tools_via = "system"
        elif template_renders_tools(bb):
            self.tools_via = "template"
        elif cfg.tools == "auto":
            self.tools_via = "system"
        else:
            raise ValueError(
                f"tools='template', but the {bb.family} chat template does not render a tools "
                "argument; use tools='auto' or 'system'"
            )
        # a template that renders tools has a tool role too (Qwen3-VL); else crops come back
        # in a user turn, as RSCoVLM's chains have them
        self.observation_role = "tool" if self.tools_via == "template" else "user"

    def run(self) -> ZoomTrace:
        cfg, reader = self.cfg, self.reader
        overview = reader.global_view(max_pixels=cfg.global_max_pixels)
        trace = ZoomTrace(
            self.question,
            reader.path,
            reader.source_hw,
            reader.gsd,
            [overview],
            [None],
            tools_via=self.tools_via,
        )
        instruction = cfg.instruction if cfg.max_zooms > 0 else None
        conv: list[dict[str, Any]] = []
        if self.tools_via == "system":
            conv.append({"role": "system", "content": tool_system_prompt([self.schema])})
        conv.append(self._turn("user", overview, user_text(self.question, instruction)))
        zooms = invalid = 0
        final = cfg.max_zooms == 0
        while True:
            text, n_tokens, decisions = self._generate(conv, trace.views)
            turn = partial(Turn, text, n_tokens, n_images=len(trace.views), gsd_decisions=decisions)
            parsed = parse_tool_call(text)
            no_call = isinstance(parsed, ToolCallError) and parsed.reason == NO_TOOL_CALL
            if final or no_call:
                after_refusal = bool(trace.turns) and trace.turns[-1].action == "refused"
                trace.turns.append(turn("answer" if no_call and not after_refusal else "final"))
                trace.answer = extract_answer(text)
                if not no_call and not after_refusal:  # max_zooms == 0 and the model called
                    trace.stop = "max_zooms"
                return trace
            conv.append({"role": "assistant", "content": text})
            is_call = not isinstance(parsed, ToolCallError)
            if zooms >= cfg.max_zooms if is_call else invalid >= cfg.max_invalid_calls:
                spent = f"{cfg.max_zooms} zoom(s)" if is_call else "invalid calls"
                obs = (
                    f"zoom_in was not run: the budget of {spent} is spent. Answer the "
                    "question from the images shown."
                )
                trace.turns.append(turn("refused", obs, BUDGET_SPENT))
                trace.stop = "max_zooms" if is_call else "max_invalid"
                conv.append(self._turn(self.observation_role, None, obs))
                final = True
                continue
            result = execute(parsed, trace.views, reader, self.zoom_config)
            if result.view is None:
                invalid += 1
                trace.turns.append(turn("invalid", result.observation, result.reason))
                conv.append(self._turn(self.observation_role, None, result.observation))
                continue
            zooms += 1
            trace.views.append(result.view)
            trace.requested_xyxy_px.append(result.box_xyxy_px)
            index = len(trace.views) - 1
            trace.turns.append(turn("zoom", result.observation, view=index))
            conv.append(self._turn(self.observation_role, result.view, result.observation))

    def _turn(self, role: str, view: View | None, text: str) -> dict:
        """A user or tool turn: the view's image (if any), its GSD sentence for B3, text."""
        if view is None:
            return {"role": role, "content": [{"type": "text", "text": text}]}
        parts: list[dict[str, Any]] = [{"type": "image", "image": Image.fromarray(view.pixels)}]
        # as data.gsd_text writes B3 records: the sentence right after the image
        if self.gsd_text and role == "user" and view.gsd.is_known:
            parts.append({"type": "text", "text": gsd_sentence(view.gsd.point_m) + " "})
        parts.append({"type": "text", "text": text})
        return {"role": role, "content": parts}

    def _encode(self, conv: list[dict[str, Any]]) -> Any:
        kwargs: dict[str, Any] = {}
        if self.tools_via == "template":
            kwargs["tools"] = [self.schema]
        return self.model.backbone.processor.apply_chat_template(
            conv,
            chat_template=self.template,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
            add_generation_prompt=True,
            **kwargs,
        )

    def _generate(
        self, conv: list[dict[str, Any]], views: list[View]
    ) -> tuple[str, int, tuple[tuple[str, str], ...]]:
        inputs = self._encode(conv)
        scale = self.model.scale
        before = scale.last if scale is not None else None
        ids = [
            int(i) for i in self.generate(inputs, [v.gsd for v in views], self.cfg.max_new_tokens)
        ]
        decisions: tuple[tuple[str, str], ...] = ()
        if scale is not None and scale.last is not before:
            decisions = tuple(
                (str(d.gsd), str(d.branch.value)) for d in scale.last.decisions if d is not None
            )
        text = decode_text(self.tokenizer, ids)  # \xNN, not U+FFFD, for stray bytes
        for token in self.special:  # a random model can spell a control token in pieces
            text = text.replace(token, "")
        return text, len(ids), decisions


# -- the picture --------------------------------------------------------------------------

_COLOURS = ((230, 57, 70), (255, 183, 3), (42, 157, 143), (69, 123, 157), (231, 111, 81))


def draw_trace(trace: ZoomTrace, *, min_side: int = 512, thumb: int = 192) -> Image.Image:
    """The global view (enlarged to ``min_side``) with each zoom window drawn and
    numbered, and the crops (``thumb`` px) beside it, each with its GSD."""
    overview = trace.views[0]
    h, w = overview.hw
    s = max(1.0, min_side / min(h, w))
    base = Image.fromarray(np.ascontiguousarray(overview.pixels)).resize(
        (round(w * s), round(h * s)), Image.Resampling.NEAREST
    )
    crops = trace.views[1:]
    rows = max(1, len(crops))
    canvas = Image.new(
        "RGB",
        (base.width + (thumb + 16 if crops else 0), max(base.height, rows * (thumb + 24)) + 28),
        "white",
    )
    canvas.paste(base, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for k, (view, req) in enumerate(zip(crops, trace.requested_xyxy_px[1:], strict=True), 1):
        colour = _COLOURS[(k - 1) % len(_COLOURS)]
        x1, y1, x2, y2 = (
            float(v) * s
            for v in overview.from_source_px(list(view.window_xyxy_px), "abs_px_resized")
        )
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=3)
        if req is not None:
            r = overview.from_source_px(list(req), "abs_px_resized") * s
            draw.rectangle(tuple(float(v) for v in r), outline=colour, width=1)
        draw.text((x1 + 4, y1 + 2), str(k), fill=colour)
        vh, vw = view.hw
        k_s = thumb / max(vh, vw)
        image = Image.fromarray(np.ascontiguousarray(view.pixels)).resize(
            (max(1, round(vw * k_s)), max(1, round(vh * k_s))), Image.Resampling.NEAREST
        )
        top = (k - 1) * (thumb + 24)
        canvas.paste(image, (base.width + 8, top))
        draw.rectangle(
            (base.width + 8, top, base.width + 8 + image.width - 1, top + image.height - 1),
            outline=colour,
            width=2,
        )
        draw.text((base.width + 8, top + image.height + 2), f"{k}: GSD {view.gsd}", fill="black")
    answer = trace.answer if len(trace.answer) <= 80 else trace.answer[:77] + "..."
    draw.text(
        (4, canvas.height - 24), f"global GSD {overview.gsd} | {trace.stop}: {answer}", fill="black"
    )
    return canvas


__all__ = [
    "BUDGET_SPENT",
    "GenerateFn",
    "LoopConfig",
    "Turn",
    "ZoomTrace",
    "draw_trace",
    "greedy_ids",
    "run_zoom_loop",
    "template_renders_tools",
]
