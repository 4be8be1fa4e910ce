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

What trains is ``policy.kind``: the whole backbone or a peft LoRA on it (GSD-gated adapters
need a GSD per view in the forward, which TRL's trainer does not pass). The policy is built
and saved as SFT builds and saves its model (:meth:`earthvlm.models.EarthVLM.build`,
:func:`~earthvlm.train.model.save_weights`, :func:`earthvlm.train.checkpoint.save_checkpoint`),
and the run folder's ``config.yaml`` is the matching SFT config (:func:`policy_train_config`),
so a GRPO run loads wherever an SFT run does (``earthvlm ask --model``, evaluation). A warm
start is ``model.path``: the ``model/`` folder of an SFT checkpoint on Zoom-in Chains.

No GSD reaches the text unless ``loop.gsd_as_text`` (a GSD-as-text policy): then the
global view's GSD sentence follows it in the prompt and each crop's observation states
its GSD, as its chains (``ChainConfig.observation_gsd``) and the inference loop do.

The ``zoom_in`` schema TRL renders is built from :meth:`ZoomEnvironment.zoom_in`'s
signature and docstring (TRL's convention); the docstring is written from
:func:`~earthvlm.uhr.tool.zoom_tool_schema`, so the rendered tool is the one SFT chains
and the inference loop show (a test compares the rendered prompts). Only Qwen3-VL
backbones run here: TRL parses tool calls with a response schema it knows for Qwen3's
chat template, not for Qwen2.5-VL's.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from earthvlm.adapters.targets import QWEN_LINEARS
from earthvlm.data.gsd_text import gsd_sentence
from earthvlm.data.resolution import Resolution
from earthvlm.errors import EarthVLMError
from earthvlm.io import UntrustedJSONError, loads_untrusted
from earthvlm.scale.gsd import GSD
from earthvlm.train.config import (
    AdapterConfig,
    DataConfig,
    ModelConfig,
    TrainConfig,
)
from earthvlm.train.rewards import (
    RewardWeights,
    ScoreFn,
    answer_reward,
    format_reward,
    region_guided_reward,
    roi_iou_reward,
)
from earthvlm.typed import build_dataclass, dump_yaml, load_yaml_config
from earthvlm.uhr.chain import ZOOM_INSTRUCTION, extract_answer, user_text
from earthvlm.uhr.reader import UHRReader
from earthvlm.uhr.tool import (
    CALL_CLOSE,
    CALL_OPEN,
    ZoomCall,
    ZoomConfig,
    execute,
    schema_docstring,
    zoom_tool_schema,
)
from earthvlm.uhr.view import View

TERMS = ("iou", "region", "answer", "format")


# -- configuration ------------------------------------------------------------------------


@dataclass(frozen=True)
class GRPODataConfig:
    """The questions."""

    tasks: str = ""
    """A JSONL file, one task a line: ``{"source": raster path (relative to the file),
    "question": ..., "answer": ..., "roi_xyxy_px": [x1, y1, x2, y2] or null}``, and
    optionally ``"source_gsd"`` (the record's GSD; default: the raster's georeferencing)
    and ``"record"`` (for benchmark rewards); or the folder ``earthvlm data grpo-tasks
    --out`` writes (its ``tasks.jsonl``)."""
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
    gsd_as_text: bool = False
    """A GSD-as-text (B3) policy: the global view's GSD sentence follows it in the prompt
    and each crop's observation states its GSD (:attr:`~earthvlm.uhr.tool.ZoomConfig.
    observation_gsd`), as its SFT chains and the inference loop do. Off: no GSD in the
    text (other models must not be handed it)."""

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
class PolicyConfig:
    """What GRPO trains, and so what its checkpoints hold."""

    kind: Literal["full", "lora"] = "full"
    """``full``: every backbone weight (checkpoints hold ``model/``, a whole backbone);
    ``lora``: peft LoRA on the frozen backbone's language model (checkpoints hold
    ``adapter/``; the base must be rebuildable from ``model``: a path or a tiny seed).
    GSD-gated adapters (CS-HLoRA, MoE-LoRA) are not offered: TRL's forward does not pass
    a GSD per view."""
    r: int = 16
    """LoRA rank."""
    alpha: float = 32.0
    """LoRA scaling numerator (updates scaled by alpha / r)."""
    dropout: float = 0.0
    """Dropout on the LoRA input."""
    target_modules: tuple[str, ...] = QWEN_LINEARS
    """Linear layers wrapped, inside the language model only."""

    def __post_init__(self) -> None:
        if self.kind not in ("full", "lora"):
            raise ValueError(f"policy.kind={self.kind!r}: choose 'full' or 'lora'")
        AdapterConfig(
            kind="lora", r=self.r, alpha=self.alpha, dropout=self.dropout,
            target_modules=self.target_modules, sseu=False,
        )  # fmt: skip


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
    """The policy's backbone (a Qwen3-VL family): ``path`` a saved backbone, e.g. the
    ``model/`` of an SFT warm-start checkpoint."""
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    """Full weights or LoRA."""
    data: GRPODataConfig = field(default_factory=GRPODataConfig)
    """The questions."""
    loop: ZoomLoopConfig = field(default_factory=ZoomLoopConfig)
    """Tool budget and crops."""
    rewards: RewardWeights = field(default_factory=RewardWeights)
    """Reward weights (defaults: ZoomEarth's 1, 1, 1, 0.05)."""
    grpo: GRPOOptimConfig = field(default_factory=GRPOOptimConfig)
    """GRPO and the optimiser."""
    save_every: int = 0
    """Optimiser steps between checkpoints (0: one checkpoint, at the end of the run)."""
    keep_last: int = 2
    """Complete checkpoints kept (older ones are deleted); 0 keeps all."""

    def __post_init__(self) -> None:
        if self.model.family != "qwen3_vl":
            raise ValueError(
                f"model.family={self.model.family!r}: GRPO with tools runs on 'qwen3_vl' "
                "(TRL parses tool calls only for chat templates it knows)"
            )
        if not self.name or "/" in self.name or self.name in (".", ".."):
            raise ValueError(f"name={self.name!r}: a folder name without '/'")
        for name in ("save_every", "keep_last"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 0")

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    def to_dict(self) -> dict[str, Any]:
        """A YAML/JSON-ready dict (tuples as lists) that :func:`grpo_config_from_dict`
        reads back."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


def grpo_config_from_dict(data: dict[str, Any]) -> GRPORunConfig:
    """A :class:`GRPORunConfig` from a (YAML) mapping; the mapping is not modified.

    Raises:
        ConfigError: For unknown keys (with a suggestion), wrong types or bad values,
            naming the dotted key (a ``ValueError`` and an ``EarthVLMError``).
    """
    return build_dataclass(GRPORunConfig, data)


def policy_train_config(cfg: GRPORunConfig) -> TrainConfig:
    """The :class:`~earthvlm.train.config.TrainConfig` that rebuilds the GRPO policy:
    stage 1 (a whole backbone) for ``policy.kind: full``, stage 2 with peft LoRA and no
    SSE-U head for ``lora``; ``data.gsd_as_text`` is the loop's. The run folder's
    ``config.yaml`` holds it, so :meth:`earthvlm.models.EarthVLM.load` (and
    ``earthvlm ask --model``) load a GRPO run as they load an SFT run."""
    p = cfg.policy
    lora = AdapterConfig(kind="lora", r=p.r, alpha=p.alpha, dropout=p.dropout,
                         target_modules=p.target_modules, sseu=False)  # fmt: skip
    return TrainConfig(
        data=DataConfig(  # records: a required field; loaders do not read it
            records=cfg.data.tasks or "tasks.jsonl",
            sampler="shuffle",
            gsd_as_text=cfg.loop.gsd_as_text,
        ),
        stage=1 if p.kind == "full" else 2,
        name=cfg.name,
        output_dir=cfg.output_dir,
        seed=cfg.seed,
        model=cfg.model,
        adapter=lora,
        progress=False,
    )


def load_grpo_config(path: str | Path, overrides: Sequence[str] = ()) -> GRPORunConfig:
    """A :class:`GRPORunConfig` from a YAML recipe with ``--set``-style ``overrides``.

    Raises:
        ConfigError: If the file cannot be read or its fields are wrong (an
            ``EarthVLMError`` naming the file and the dotted key).
    """
    return load_yaml_config(GRPORunConfig, path, overrides)


# -- tasks and the environment -------------------------------------------------------------


def load_tasks(path: str | Path) -> list[dict[str, Any]]:
    """The tasks of a JSONL file (or of a ``grpo-tasks`` folder's ``tasks.jsonl``);
    ``source`` paths made absolute (relative to the file).

    Raises:
        EarthVLMError: If the file is missing or a line is not a task (it names the line
            and the missing key).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "tasks.jsonl"
    if not path.is_file():
        raise EarthVLMError(
            f"{path}: no such tasks file; write one with 'earthvlm data grpo-tasks RECORDS "
            "--out FOLDER' and point data.tasks at the folder"
        )
    tasks = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            task = loads_untrusted(line)
        except UntrustedJSONError as e:  # nested too deep, huge integers, surrogates too
            raise EarthVLMError(f"{path}:{n}: not a task ({e})") from None
        if not isinstance(task, dict):
            raise EarthVLMError(f"{path}:{n}: not a task (a JSON object is needed)")
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
    but ``reset`` as a tool, and passes the environments to the reward functions.

    TRL renders the tool from :meth:`zoom_in`'s signature and docstring; the docstring is
    made from :func:`~earthvlm.uhr.tool.zoom_tool_schema`, so rollouts see the tool text
    SFT chains and the inference loop show. Observations without a GSD; a GSD-as-text
    policy uses :class:`GSDTextZoomEnvironment` (:func:`zoom_environment` picks)."""

    #: Whether observations (and the tool's description) state the crop's GSD.
    observation_gsd = False

    def __init__(self, resolution: Resolution, zoom: ZoomConfig, max_pixels: int | None) -> None:
        if zoom.observation_gsd != self.observation_gsd:
            raise ValueError(
                f"{type(self).__name__} with ZoomConfig(observation_gsd="
                f"{zoom.observation_gsd}): the tool text would not match the observations; "
                "use zoom_environment(), which picks the class"
            )
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
        self._reader = UHRReader(row["source"], self._resolution, gsd=task_gsd(row))
        self.views = [self._reader.global_view(max_pixels=self._max_pixels)]
        self.source_hw = tuple(self._reader.source_hw)  # type: ignore[assignment]
        self.requested_xyxy_px, self.observations = [], []
        self.calls = self.refused = 0

    # No return annotation: TRL's schema would carry it, and the chains' schema has none.
    # Returns the crop and its observation ([image part, text part]), or a refusal (text).
    def zoom_in(self, bbox_2d: list[float], view: int | None = None, label: str | None = None):
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

    zoom_in.__doc__ = schema_docstring(zoom_tool_schema("norm1000"))


class GSDTextZoomEnvironment(ZoomEnvironment):
    """:class:`ZoomEnvironment` for a GSD-as-text policy: each observation states the
    crop's GSD, and the tool's description says it will."""

    observation_gsd = True

    def zoom_in(self, bbox_2d: list[float], view: int | None = None, label: str | None = None):
        return super().zoom_in(bbox_2d, view, label)

    zoom_in.__doc__ = schema_docstring(zoom_tool_schema("norm1000", gsd=True))


def zoom_environment(
    resolution: Resolution, zoom: ZoomConfig, max_pixels: int | None
) -> ZoomEnvironment:
    """The environment whose tool text matches ``zoom.observation_gsd``."""
    cls = GSDTextZoomEnvironment if zoom.observation_gsd else ZoomEnvironment
    return cls(resolution, zoom, max_pixels)


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
        rows = [{k: kwargs[k][i] for k in keys} for i in range(n)]
        for row in rows:  # the task's JSON columns, as the task file had them
            for key in JSON_COLUMNS & row.keys():
                if isinstance(row[key], str):
                    row[key] = json.loads(row[key])
        return rows

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


#: Task columns of nested, row-dependent shape (a record, its meta, a GSD): Arrow cannot
#: hold them as columns, so the dataset keeps them as JSON text, decoded where read.
JSON_COLUMNS = frozenset({"record", "meta", "source_gsd"})


def task_gsd(row: dict[str, Any]) -> GSD | None:
    """The source GSD a task row carries (``source_gsd``, a :meth:`GSD.to_dict
    <earthvlm.scale.gsd.GSD.to_dict>` mapping or its JSON text), or ``None`` to read it from
    the raster's georeferencing, as SFT chains do with their records' GSDs.

    Raises:
        EarthVLMError: If ``source_gsd`` is not a GSD.
    """
    value = row.get("source_gsd")
    if value is None:
        return None
    try:
        gsd = GSD.from_dict(json.loads(value) if isinstance(value, str) else value)
    except (ValueError, TypeError, KeyError) as e:
        raise EarthVLMError(f"task {row.get('id', '?')}: source_gsd={value!r}: {e}") from None
    return gsd if gsd.is_known else None


def build_dataset(tasks: Sequence[dict[str, Any]], resolution: Resolution, cfg: GRPORunConfig):
    """A ``datasets.Dataset`` of conversational prompts with the global view as ``image``;
    the tasks' other keys become columns (:data:`JSON_COLUMNS` as JSON text)."""
    from datasets import Dataset

    rows: dict[str, list[Any]] = {"prompt": [], "image": []}
    extra = sorted({k for t in tasks for k in t} - {"prompt", "image"})
    for key in extra:
        rows[key] = []
    for task in tasks:
        with UHRReader(task["source"], resolution, gsd=task_gsd(task)) as reader:
            overview = reader.global_view(max_pixels=cfg.data.global_max_pixels)
        text = user_text(str(task["question"]), cfg.loop.instruction)
        content: list[dict[str, Any]] = [{"type": "image"}]
        if cfg.loop.gsd_as_text and overview.gsd.is_known:  # as the loop's B3 user turn
            content.append({"type": "text", "text": gsd_sentence(overview.gsd.point_m) + " "})
        content.append({"type": "text", "text": text})
        rows["prompt"].append([{"role": "user", "content": content}])
        rows["image"].append(Image.fromarray(overview.pixels))
        for key in extra:
            value = task.get(key)
            rows[key].append(json.dumps(value) if key in JSON_COLUMNS else value)
    return Dataset.from_dict(rows)


@dataclass
class GRPOResult:
    """What a run left.

    Attributes:
        trainer: The TRL trainer (its ``state.log_history`` holds the metrics).
        log_history: The logged rows (``rewards/<term>/mean``, ``tools/call_frequency``...).
        checkpoint: The last checkpoint written (``run_dir/final`` points at it);
            ``None`` on processes other than the main one.
    """

    trainer: Any
    log_history: list[dict[str, Any]]
    checkpoint: Path | None = None


#: The GRPO recipe, in the run folder and in each checkpoint (``config.yaml`` beside it
#: is the :func:`policy_train_config` the loaders read).
GRPO_CONFIG_FILE = "grpo_config.yaml"


def _policy(cfg: GRPORunConfig, train_cfg: TrainConfig, backbone: Any) -> Any:
    """The policy as an :class:`~earthvlm.models.EarthVLM` (built as SFT builds its
    model, so :func:`~earthvlm.models.saved.save_weights` writes what loaders read)."""
    from earthvlm.models.earthvlm import EarthVLM

    if backbone is None:
        return EarthVLM.build(train_cfg.recipe, name=train_cfg.name)
    if cfg.policy.kind != "full":
        raise ValueError(
            "a backbone passed in memory trains with policy.kind=full only: a LoRA "
            "checkpoint needs a base the loaders can rebuild; save the backbone "
            "(save_backbone) and set model.path to it"
        )
    for p in backbone.model.parameters():
        p.requires_grad_(True)
    return EarthVLM(backbone, recipe=train_cfg.recipe, name=train_cfg.name)


def train_grpo(
    cfg: GRPORunConfig,
    *,
    score_fn: ScoreFn | None = None,
    backbone: Any = None,
    tasks: Sequence[dict[str, Any]] | None = None,
) -> GRPOResult:
    """Run GRPO on the zoom loop and save the policy.

    The run folder (``cfg.run_dir``) gets ``config.yaml`` (:func:`policy_train_config`),
    :data:`GRPO_CONFIG_FILE` and ``checkpoint-{step}/`` folders written by
    :func:`earthvlm.train.checkpoint.save_checkpoint` (atomically, ``COMPLETE`` last;
    weights as safetensors by :func:`earthvlm.train.model.save_weights`: ``model/`` or
    ``adapter/``; optimiser and RNG state; config and provenance), every
    ``cfg.save_every`` steps and at the end; ``final`` points at the last. Such a folder
    loads with :meth:`earthvlm.models.EarthVLM.load` and ``earthvlm ask --model``.

    Args:
        cfg: The run.
        score_fn: Answer correctness ``(row, prediction) -> [0, 1]``; default exact match.
        backbone: A :class:`~earthvlm.models.backbone.Backbone` to train in place of
            ``cfg.model`` (``policy.kind: full`` only; tests warm one first).
        tasks: Tasks in place of ``cfg.data.tasks``.

    Raises:
        EarthVLMError: If the run folder already holds checkpoints (GRPO runs do not
            resume; choose another ``name``).
    """
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer
    from trl.chat_template_utils import add_response_schema

    from earthvlm.io import atomic_write_text
    from earthvlm.models.saved import record_base, save_weights
    from earthvlm.provenance import provenance
    from earthvlm.train.checkpoint import complete_checkpoints, mark_final, save_checkpoint
    from earthvlm.train.config import dump_config

    run = cfg.run_dir
    if complete_checkpoints(run):
        raise EarthVLMError(
            f"{run}: the folder already holds checkpoints of a run; GRPO runs do not resume "
            "here: choose another name (--set name=...)"
        )
    train_cfg = policy_train_config(cfg)
    policy = _policy(cfg, train_cfg, backbone)
    backbone = policy.backbone
    if backbone.family != "qwen3_vl":
        raise ValueError(f"backbone family {backbone.family!r}: GRPO with tools needs qwen3_vl")
    processor = add_response_schema(backbone.processor)
    resolution = Resolution.from_processor(processor.image_processor)
    task_list = list(tasks) if tasks is not None else load_tasks(cfg.data.tasks)
    dataset = build_dataset(task_list, resolution, cfg)
    zoom = ZoomConfig(backbone.box_frame, cfg.loop.min_side_px, cfg.loop.gsd_as_text)

    def factory() -> ZoomEnvironment:
        return zoom_environment(resolution, zoom, cfg.data.global_max_pixels)

    funcs, weights = reward_functions(cfg.rewards, score_fn)
    g = cfg.grpo
    args = GRPOConfig(
        output_dir=str(run),
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
        save_strategy="no",  # our checkpoints (below), not the Trainer's pickles
        use_cpu=not _cuda(),
        bf16=False,
        disable_tqdm=True,
        remove_unused_columns=False,
    )
    net = policy.peft_model if policy.peft_model is not None else backbone.model
    net.train()
    trainer = GRPOTrainer(
        model=net,
        reward_funcs=funcs,
        args=args,
        train_dataset=dataset,
        processing_class=processor,
        environment_factory=factory,
    )
    main = trainer.accelerator.is_main_process
    if main:
        atomic_write_text(run / "config.yaml", dump_config(train_cfg))
        record_base(run, train_cfg.recipe)
        atomic_write_text(run / GRPO_CONFIG_FILE, dump_yaml(cfg.to_dict()))
    saved: list[Path] = []

    def save(step: int) -> None:
        if not main or (saved and saved[-1].name == f"checkpoint-{step}"):
            return
        metrics = next((h for h in reversed(trainer.state.log_history) if "reward" in h), {})

        def write(folder: Path) -> None:
            save_weights(policy, folder, provenance())
            recipe = dump_yaml(cfg.to_dict())
            (folder / GRPO_CONFIG_FILE).write_text(recipe, encoding="utf-8")

        state = {"step": step, "config": train_cfg.to_dict(), "metrics": dict(metrics)}
        ckpt = save_checkpoint(
            run, step, write_weights=write, optimizer=trainer.optimizer, state=state,
            keep_last=cfg.keep_last,
        )  # fmt: skip
        saved.append(ckpt)

    class _Saver(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if cfg.save_every and state.global_step % cfg.save_every == 0:
                save(state.global_step)

    trainer.add_callback(_Saver())
    trainer.train()
    save(trainer.state.global_step)
    final = None
    if main:
        mark_final(run, saved[-1])
        final = saved[-1]
    return GRPOResult(trainer, list(trainer.state.log_history), final)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


__all__ = [
    "GRPO_CONFIG_FILE",
    "JSON_COLUMNS",
    "GRPODataConfig",
    "GRPOOptimConfig",
    "GRPOResult",
    "GRPORunConfig",
    "GSDTextZoomEnvironment",
    "PolicyConfig",
    "ZoomEnvironment",
    "ZoomLoopConfig",
    "build_dataset",
    "exact_match",
    "grpo_config_from_dict",
    "load_grpo_config",
    "load_tasks",
    "policy_train_config",
    "reward_functions",
    "task_gsd",
    "train_grpo",
    "turn_texts",
    "zoom_environment",
]
