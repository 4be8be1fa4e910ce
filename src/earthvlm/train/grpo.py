"""GRPO on the zoom loop: the policy decides whether and where to zoom (ZoomEarth sec. 3.3).

One run: a backbone, a JSONL of UHR questions (a source raster, a question, an answer and,
for region or object questions, the ROI in source pixels), and TRL's ``GRPOTrainer`` with
a :class:`ZoomEnvironment` per rollout (TRL's ``environment_factory``). The prompt holds
the global view and the question; the model may call ``zoom_in``; the environment reads
the crop natively from the source through :func:`earthvlm.uhr.tool.execute` (the same
windows, sizes and observation text as SFT chains and the inference loop) and returns it
as an image the model sees on its next turn. Rewards (:mod:`earthvlm.train.rewards`) are
one TRL reward function per term, so each is logged (``rewards/<term>/mean``) and weighted
by ``GRPORunConfig.rewards``.

Why TRL's trainer and not our own step: TRL 1.16's ``environment_factory`` runs
multi-turn tool rollouts for VLMs, feeds images a tool returns back to the model for the
continuation *and* the loss, and masks tool-result tokens out of the loss
(``tool_mask``). Its ``rollout_func`` drops images it creates from the loss for VLMs, so
the environment route is the one that fits (see ``../shared/notes/hf-stack.md``).

Where this departs from ZoomEarth's release:

* the policy decides whether and where to zoom (the release forces the crop from the
  data during RL, so the box is never the policy's decision);
* observation tokens (the tool turn and its image) are masked out of the loss (the
  release trains on them);
* the crop comes from the native source, grown to the tool's minimum side and the
  model's pixel budget (:func:`~earthvlm.uhr.tool.zoom_window`);
* the region-guided reward is ``tanh(alpha / d)`` with ``alpha`` tied to the source
  resolution (see :mod:`earthvlm.train.rewards`).

Answer correctness comes from an injected ``score_fn(row, prediction) -> float`` (a
benchmark's ``reward``, say): ``train`` sits below ``eval`` and does not import it.
``row`` is the task's JSONL object. Without a ``score_fn`` the answer term is exact match
after case and whitespace folding.

The ``zoom_in`` schema TRL renders is built from :meth:`ZoomEnvironment.zoom_in`'s
signature and docstring (TRL's convention), not from
:func:`~earthvlm.uhr.tool.zoom_tool_schema`: the same name and arguments, shorter text.
Only Qwen3-VL backbones run here: TRL parses tool calls with a response schema it knows
for Qwen3's chat template, not for Qwen2.5-VL's.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from PIL import Image

from earthvlm.data.resolution import Resolution
from earthvlm.errors import EarthVLMError
from earthvlm.train.config import ModelConfig
from earthvlm.train.rewards import (
    RewardWeights,
    ScoreFn,
    answer_reward,
    format_reward,
    region_guided_reward,
    roi_iou_reward,
)
from earthvlm.uhr.chain import ZOOM_INSTRUCTION, extract_answer, user_text
from earthvlm.uhr.reader import UHRReader
from earthvlm.uhr.tool import CALL_CLOSE, CALL_OPEN, ZoomCall, ZoomConfig, execute
from earthvlm.uhr.view import View

TERMS = ("iou", "region", "answer", "format")


# -- configuration ------------------------------------------------------------------------


@dataclass(frozen=True)
class GRPODataConfig:
    """The questions."""

    tasks: str = ""
    """A JSONL file, one task a line: ``{"source": raster path (relative to the file),
    "question": ..., "answer": ..., "roi_xyxy_px": [x1, y1, x2, y2] or null}``."""
    global_max_pixels: int | None = None
    """Pixel budget of the global view; ``None``: the processor's ``max_pixels``."""

    def __post_init__(self) -> None:
        if self.global_max_pixels is not None and self.global_max_pixels < 1:
            raise ValueError(f"data.global_max_pixels={self.global_max_pixels}: give >= 1 or null")


@dataclass(frozen=True)
class ZoomLoopConfig:
    """The rollout's tool budget and crops."""

    max_zooms: int = 1
    """Most tool rounds per rollout (ZoomEarth: one global -> crop step)."""
    min_side_px: int = 64
    """Smallest crop side in source pixels."""
    instruction: str | None = ZOOM_INSTRUCTION
    """Appended to the question: the model may zoom and decides whether to."""

    def __post_init__(self) -> None:
        if self.max_zooms < 1:
            raise ValueError(f"loop.max_zooms={self.max_zooms}: give >= 1 (0 offers no tool)")
        ZoomConfig(min_side_px=self.min_side_px)


@dataclass(frozen=True)
class GRPOOptimConfig:
    """GRPO and the optimiser (TRL ``GRPOConfig`` fields of the same meaning)."""

    num_generations: int = 8
    """Rollouts per question: the group whose rewards are normalised."""
    batch_size: int = 8
    """Rollouts per step (a multiple of ``num_generations``)."""
    grad_accum: int = 1
    """Steps accumulated per optimiser update."""
    max_completion_length: int = 512
    """Tokens per rollout, model turns and tool results together."""
    max_steps: int = 1000
    """Optimiser updates."""
    lr: float = 1.0e-6
    """Learning rate."""
    beta: float = 0.0
    """KL weight against the reference policy (0: no reference model, as in DAPO / Dr GRPO)."""
    epsilon: float = 0.2
    """Clip range of the probability ratio."""
    temperature: float = 1.0
    """Sampling temperature of rollouts."""
    logging_steps: int = 1
    """Steps between logged metrics."""

    def __post_init__(self) -> None:
        for name in ("num_generations", "batch_size", "grad_accum", "max_completion_length",
                     "max_steps", "logging_steps"):  # fmt: skip
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"grpo.{name}={v!r}: give a whole number >= 1")
        if self.num_generations < 2:
            raise ValueError(
                f"grpo.num_generations={self.num_generations}: a group needs >= 2 rollouts"
            )
        if self.batch_size % self.num_generations:
            raise ValueError(
                f"grpo.batch_size={self.batch_size} is not a multiple of "
                f"grpo.num_generations={self.num_generations}"
            )
        for name in ("lr", "beta", "epsilon", "temperature"):
            v = float(getattr(self, name))
            if not math.isfinite(v) or v < 0 or (v == 0 and name != "beta"):
                raise ValueError(f"grpo.{name}={v}: give a positive number")


@dataclass(frozen=True)
class GRPORunConfig:
    """One GRPO run on the zoom loop."""

    name: str = "grpo"
    """Run name: the run folder is ``output_dir/name``."""
    output_dir: str = "runs"
    """Where run folders go."""
    seed: int = 0
    """Seed of sampling and data order."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The policy's backbone (a Qwen3-VL family)."""
    data: GRPODataConfig = field(default_factory=GRPODataConfig)
    """The questions."""
    loop: ZoomLoopConfig = field(default_factory=ZoomLoopConfig)
    """Tool budget and crops."""
    rewards: RewardWeights = field(default_factory=RewardWeights)
    """Reward weights (defaults: ZoomEarth's 1, 1, 1, 0.05)."""
    grpo: GRPOOptimConfig = field(default_factory=GRPOOptimConfig)
    """GRPO and the optimiser."""

    def __post_init__(self) -> None:
        if self.model.family != "qwen3_vl":
            raise ValueError(
                f"model.family={self.model.family!r}: GRPO with tools runs on 'qwen3_vl' "
                "(TRL parses tool calls only for chat templates it knows)"
            )

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name


def _build(cls: type, data: Any, where: str) -> Any:
    """A (nested) frozen dataclass from a mapping; unknown keys raise with a suggestion."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ValueError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            near = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ValueError(f"{where}{key}: unknown field{hint} (fields: {sorted(fields)})")
        hint_t = hints[key]
        if dataclasses.is_dataclass(hint_t):
            value = _build(hint_t, value, f"{where}{key}.")
        elif hint_t is float or (
            isinstance(hint_t, types.UnionType) and float in typing.get_args(hint_t)
        ):
            if isinstance(value, str):  # YAML 1.1 reads 1e-6 as a string
                try:
                    value = float(value)
                except ValueError:
                    raise ValueError(f"{where}{key}={value!r}: give a number") from None
            elif isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
        kwargs[key] = value
    return cls(**kwargs)


def grpo_config_from_dict(data: dict[str, Any]) -> GRPORunConfig:
    """A :class:`GRPORunConfig` from a (YAML) mapping; the mapping is not modified."""
    return _build(GRPORunConfig, data, "")


def load_grpo_config(path: str | Path) -> GRPORunConfig:
    """A :class:`GRPORunConfig` from a YAML recipe.

    Raises:
        EarthVLMError: If the file cannot be read or its fields are wrong.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
        return grpo_config_from_dict(data)
    except (OSError, yaml.YAMLError, ValueError, TypeError) as e:
        raise EarthVLMError(f"{path}: {e}") from e


# -- tasks and the environment -------------------------------------------------------------


def load_tasks(path: str | Path) -> list[dict[str, Any]]:
    """The tasks of a JSONL file; ``source`` paths made absolute (relative to the file).

    Raises:
        EarthVLMError: If a line is not a task (it names the line and the missing key).
    """
    path = Path(path)
    tasks = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            task = json.loads(line)
        except ValueError as e:
            raise EarthVLMError(f"{path}:{n}: not JSON ({e})") from e
        missing = {"source", "question", "answer"} - set(task)
        if missing:
            raise EarthVLMError(f"{path}:{n}: missing {sorted(missing)}")
        task["source"] = str((path.parent / task["source"]).resolve())
        task.setdefault("roi_xyxy_px", None)
        tasks.append(task)
    if not tasks:
        raise EarthVLMError(f"{path}: no tasks")
    return tasks


class ZoomEnvironment:
    """One rollout's UHR image and its ``zoom_in`` tool (a TRL ``environment_factory``
    product). TRL calls :meth:`reset` with the dataset row, exposes every public method
    but ``reset`` as a tool, and passes the environments to the reward functions."""

    def __init__(self, resolution: Resolution, zoom: ZoomConfig, max_pixels: int | None) -> None:
        self._resolution, self._zoom, self._max_pixels = resolution, zoom, max_pixels
        self._reader: UHRReader | None = None
        self.views: list[View] = []
        self.requested_xyxy_px: list[tuple[float, float, float, float]] = []
        self.observations: list[str] = []
        self.calls = 0
        self.refused = 0
        self.source_hw: tuple[int, int] = (0, 0)

    def reset(self, **row: Any) -> None:
        """Open the row's source and show its global view (the prompt's image)."""
        if self._reader is not None:
            self._reader.close()
        self._reader = UHRReader(row["source"], self._resolution)
        self.views = [self._reader.global_view(max_pixels=self._max_pixels)]
        self.source_hw = tuple(self._reader.source_hw)  # type: ignore[assignment]
        self.requested_xyxy_px, self.observations = [], []
        self.calls = self.refused = 0

    def zoom_in(
        self, bbox_2d: list[float], view: int | None = None, label: str | None = None
    ) -> list[dict[str, Any]] | str:
        """Zoom into a region of an image you have seen, read at full resolution.

        Args:
            bbox_2d: The region [x1, y1, x2, y2] in coordinates normalised to 0-1000 along
                each axis of the image.
            view: The image the box is drawn on: 0 is the first image. Default: the latest.
            label: What you expect to find in the region.
        """
        self.calls += 1
        if self._reader is None:
            self.refused += 1
            return "zoom_in was not run: there is no image"
        try:
            box = tuple(float(v) for v in bbox_2d)
        except (TypeError, ValueError):
            box = ()
        lab = label if isinstance(label, str) else None
        ok_view = view if isinstance(view, int) and not isinstance(view, bool) else None
        result = execute(ZoomCall(box, ok_view, lab), self.views, self._reader, self._zoom)
        self.observations.append(result.observation)
        if result.view is None:
            self.refused += 1
            return result.observation
        self.views.append(result.view)
        self.requested_xyxy_px.append(result.box_xyxy_px)
        image = Image.fromarray(result.view.pixels)
        return [{"type": "image", "image": image}, {"type": "text", "text": result.observation}]


# -- rewards as TRL reward functions -------------------------------------------------------


def turn_texts(completion: Any) -> list[str]:
    """The assistant turns of a TRL conversational completion, tool calls written back as
    ``<tool_call>`` blocks (TRL's parser moves them into ``tool_calls``)."""
    if isinstance(completion, str):
        return [completion]
    texts = []
    for message in completion if isinstance(completion, list) else []:
        if not isinstance(message, dict) or message.get("role") != "assistant":
            continue
        content = message.get("content") or ""
        text = content if isinstance(content, str) else ""
        for call in message.get("tool_calls") or []:
            fn = call.get("function", {}) if isinstance(call, dict) else {}
            body = json.dumps({"name": fn.get("name"), "arguments": fn.get("arguments")})
            text += f"{CALL_OPEN}\n{body}\n{CALL_CLOSE}"
        texts.append(text)
    return texts


def exact_match(row: dict[str, Any], prediction: str) -> float:
    """1 if the prediction equals the row's answer after case and whitespace folding."""
    return float(
        " ".join(prediction.lower().split()) == " ".join(str(row["answer"]).lower().split())
    )


def reward_functions(
    weights: RewardWeights, score_fn: ScoreFn | None = None
) -> tuple[list[Callable[..., list[float]]], list[float]]:
    """One TRL reward function per term (named ``iou``, ``region``, ``answer``,
    ``format`` so TRL logs each) and their weights."""
    score = score_fn or exact_match

    def _rows(n: int, kwargs: dict[str, Any]) -> list[dict[str, Any]]:
        keys = [k for k, v in kwargs.items() if isinstance(v, list) and len(v) == n]
        return [{k: kwargs[k][i] for k in keys} for i in range(n)]

    def _first(env: Any) -> Any:
        boxes = getattr(env, "requested_xyxy_px", None) or []
        return boxes[0] if boxes else None

    def iou(prompts, completions, environments=None, roi_xyxy_px=None, **kwargs):
        envs = environments or [None] * len(completions)
        rois = roi_xyxy_px or [None] * len(completions)
        return [roi_iou_reward(_first(e), r).value for e, r in zip(envs, rois, strict=True)]

    def region(prompts, completions, environments=None, roi_xyxy_px=None, **kwargs):
        envs = environments or [None] * len(completions)
        rois = roi_xyxy_px or [None] * len(completions)
        return [
            region_guided_reward(
                _first(e), r, getattr(e, "source_hw", (0, 0)), region_scale=weights.region_scale
            ).value
            for e, r in zip(envs, rois, strict=True)
        ]

    def answer(prompts, completions, **kwargs):
        rows = _rows(len(completions), kwargs)
        out = []
        for completion, row in zip(completions, rows, strict=True):
            texts = turn_texts(completion)
            prediction = extract_answer(texts[-1]) if texts else ""
            out.append(answer_reward(row, prediction, score).value)
        return out

    def format(prompts, completions, **kwargs):
        return [format_reward(turn_texts(c)).value for c in completions]

    funcs = [iou, region, answer, format]
    return funcs, [float(getattr(weights, t)) for t in TERMS]


# -- the run --------------------------------------------------------------------------------


def build_dataset(tasks: Sequence[dict[str, Any]], resolution: Resolution, cfg: GRPORunConfig):
    """A ``datasets.Dataset`` of conversational prompts with the global view as ``image``."""
    from datasets import Dataset

    rows: dict[str, list[Any]] = {"prompt": [], "image": []}
    extra = sorted({k for t in tasks for k in t} - {"prompt", "image"})
    for key in extra:
        rows[key] = []
    for task in tasks:
        with UHRReader(task["source"], resolution) as reader:
            overview = reader.global_view(max_pixels=cfg.data.global_max_pixels)
        text = user_text(str(task["question"]), cfg.loop.instruction)
        rows["prompt"].append(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
        )
        rows["image"].append(Image.fromarray(overview.pixels))
        for key in extra:
            rows[key].append(task.get(key))
    return Dataset.from_dict(rows)


@dataclass
class GRPOResult:
    """What a run left: the trainer (its ``state.log_history`` holds the metrics)."""

    trainer: Any
    log_history: list[dict[str, Any]]


def train_grpo(
    cfg: GRPORunConfig,
    *,
    score_fn: ScoreFn | None = None,
    backbone: Any = None,
    tasks: Sequence[dict[str, Any]] | None = None,
) -> GRPOResult:
    """Run GRPO on the zoom loop.

    Args:
        cfg: The run.
        score_fn: Answer correctness ``(row, prediction) -> [0, 1]``; default exact match.
        backbone: A :class:`~earthvlm.models.backbone.Backbone` to train in place of
            ``cfg.model`` (tests warm one first).
        tasks: Tasks in place of ``cfg.data.tasks``.
    """
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl import GRPOConfig, GRPOTrainer
    from trl.chat_template_utils import add_response_schema

    from earthvlm.models import build_tiny_backbone, load_backbone

    if backbone is None:
        m = cfg.model
        if m.path is None:
            backbone = build_tiny_backbone(
                m.family, m.size, m.init_seed, min_pixels=m.min_pixels, max_pixels=m.max_pixels
            )
        else:
            backbone = load_backbone(m.path)
    if backbone.family != "qwen3_vl":
        raise ValueError(f"backbone family {backbone.family!r}: GRPO with tools needs qwen3_vl")
    processor = add_response_schema(backbone.processor)
    resolution = Resolution.from_processor(processor.image_processor)
    task_list = list(tasks) if tasks is not None else load_tasks(cfg.data.tasks)
    dataset = build_dataset(task_list, resolution, cfg)
    zoom = ZoomConfig(backbone.box_frame, cfg.loop.min_side_px)

    def factory() -> ZoomEnvironment:
        return ZoomEnvironment(resolution, zoom, cfg.data.global_max_pixels)

    funcs, weights = reward_functions(cfg.rewards, score_fn)
    g = cfg.grpo
    args = GRPOConfig(
        output_dir=str(cfg.run_dir),
        per_device_train_batch_size=g.batch_size,
        gradient_accumulation_steps=g.grad_accum,
        num_generations=g.num_generations,
        max_completion_length=g.max_completion_length,
        max_tool_calling_iterations=cfg.loop.max_zooms,
        max_steps=g.max_steps,
        learning_rate=g.lr,
        beta=g.beta,
        epsilon=g.epsilon,
        temperature=g.temperature,
        reward_weights=weights,
        logging_steps=g.logging_steps,
        seed=cfg.seed,
        report_to="none",
        save_strategy="no",
        use_cpu=not _cuda(),
        bf16=False,
        disable_tqdm=True,
        remove_unused_columns=False,
    )
    backbone.model.train()
    trainer = GRPOTrainer(
        model=backbone.model,
        reward_funcs=funcs,
        args=args,
        train_dataset=dataset,
        processing_class=processor,
        environment_factory=factory,
    )
    trainer.train()
    return GRPOResult(trainer, list(trainer.state.log_history))


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


__all__ = [
    "GRPODataConfig",
    "GRPOOptimConfig",
    "GRPOResult",
    "GRPORunConfig",
    "ZoomEnvironment",
    "ZoomLoopConfig",
    "build_dataset",
    "exact_match",
    "grpo_config_from_dict",
    "load_grpo_config",
    "load_tasks",
    "reward_functions",
    "train_grpo",
    "turn_texts",
]
