"""The SFT run's typed configuration: dataclasses, loaded from YAML with dotted overrides.

One :class:`TrainConfig` describes a whole run: the backbone (:class:`ModelConfig`), the
data (:class:`DataConfig`), the adapter and scale path (:class:`AdapterConfig`), the
optimiser and schedule (:class:`OptimConfig`), and the run itself (folder, seed,
precision, checkpoints). Every field carries its docstring; :meth:`__post_init__`
raises ``ValueError`` naming the field and the fix. Configs are frozen: loading with
overrides builds a new object and never mutates the caller's.

Recipes live in ``configs/*.yaml``::

    stage: 2
    model: {path: runs/stage1/checkpoint-1000/model, load_in_4bit: true}
    adapter: {kind: cshlora, r: 64, alpha: 32}
    optim: {lr: 1.0e-4, grad_accum: 16}

and ``--set optim.lr=2e-4 --set adapter.kind=lora`` overrides single fields (values
are parsed as YAML; numbers such as ``1e-5``, which YAML 1.1 reads as strings, are
accepted for float fields). Relative paths are relative to the working directory.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from earthvlm.adapters.targets import QWEN_LINEARS
from earthvlm.data.augment import AugmentConfig
from earthvlm.errors import EarthVLMError
from earthvlm.fusion.config import METHODS as FUSION_METHODS
from earthvlm.fusion.config import FusionConfig

#: The linear layers of a Qwen language-model block (ScaleEarth App. C: "all linear
#: projections in the LLM").


@dataclass(frozen=True)
class ModelConfig:
    """The backbone to train."""

    path: str | None = None
    """A backbone folder (``save_backbone`` output, a stage-1 checkpoint's ``model/``,
    or a downloaded Qwen-VL checkpoint); ``None`` builds a tiny one (``family``, ``size``)."""
    family: str = "qwen3_vl"
    """Family of the tiny backbone built when ``path`` is ``None``."""
    size: str = "tiny"
    """Preset of the tiny backbone: ``tiny`` or ``small``."""
    init_seed: int = 0
    """Construction seed of the tiny backbone."""
    min_pixels: int | None = None
    """Smallest resized image area in pixels (Tables 4/6: 3136); ``None``: as saved."""
    max_pixels: int | None = None
    """Largest resized image area in pixels (Tables 4/6: 12845056); ``None``: as saved."""
    load_in_4bit: bool = False
    """Stage 2: quantise the frozen language model to NF4 (needs bitsandbytes; sec. 3.2)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (less memory, ~30% more compute)."""

    def __post_init__(self) -> None:
        if self.family not in ("qwen3_vl", "qwen2_5_vl"):
            raise ValueError(f"model.family={self.family!r}: choose 'qwen3_vl' or 'qwen2_5_vl'")
        if self.size not in ("tiny", "small"):
            raise ValueError(f"model.size={self.size!r}: choose 'tiny' or 'small'")
        for name in ("min_pixels", "max_pixels"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"model.{name}={v}: must be a positive pixel count or null")
        if self.min_pixels and self.max_pixels and self.min_pixels > self.max_pixels:
            raise ValueError(
                f"model.min_pixels={self.min_pixels} > model.max_pixels={self.max_pixels}"
            )
        if self.load_in_4bit and self.path is None:
            raise ValueError(
                "model.load_in_4bit=true needs model.path (a saved backbone to load in NF4); "
                "a tiny backbone built in memory is not quantised"
            )


@dataclass(frozen=True)
class SynthDataConfig:
    """A synthetic dataset generated (``earthvlm.synth``) when ``data.records`` is absent."""

    n_chips: int = 256
    """Object chips (one centred object; the answer is its class)."""
    n_scenes: int = 0
    """Scene images (several questions each)."""
    chip_size_px: int = 64
    """Chip side in pixels."""
    chip_style: Literal["textured", "plain"] = "textured"
    """``textured`` (hard for a from-scratch tiny model) or ``plain`` chips."""
    size_px: int = 128
    """Scene side in pixels."""
    seed: int = 0
    """Seed of the generator (same seed, same bytes)."""

    def __post_init__(self) -> None:
        if self.n_chips < 0 or self.n_scenes < 0 or self.n_chips + self.n_scenes == 0:
            raise ValueError(
                f"data.synth: n_chips={self.n_chips}, n_scenes={self.n_scenes}: both must "
                "be >= 0 and one of them > 0"
            )


@dataclass(frozen=True)
class DataConfig:
    """Where the records are and how batches are drawn."""

    records: str = ""
    """The JSONL file of records (:mod:`earthvlm.data.jsonl`); required unless ``mixture``
    is set."""
    root: str | None = None
    """Dataset root that image paths are resolved in; default: the records' folder."""
    mixture: str | None = None
    """A mixture YAML (:mod:`earthvlm.data.mixture`, e.g. ``configs/mixtures/example.yaml``):
    its subsets are drawn online by weight in place of ``records``, and image paths are
    resolved in the mixture's root. With ``sampler: balanced`` the mixture's batches also
    meet ``exact_share`` and ``min_bins`` over each epoch's draws
    (:class:`~earthvlm.data.mixture.MixtureBatches`); ``shuffle`` keeps the draws' order."""
    augment: AugmentConfig | None = None
    """Online augmentation (:mod:`earthvlm.data.augment`: prompt templates, synonyms, box
    text style, random resize), drawn per sample from the run seed and the sample's
    (epoch, step, slot); ``null``: off."""
    synth: SynthDataConfig | None = None
    """Generate this synthetic dataset at ``records``' folder when the file is absent."""
    sampler: Literal["balanced", "shuffle"] = "balanced"
    """``balanced``: BalancedScaleSampler over each optimiser step's batch (App. C);
    ``shuffle``: a seeded shuffle (no scale constraint, e.g. stage 1)."""
    exact_share: float = 0.25
    """Share of exact-GSD samples per optimiser-step batch (Table 6: 0.25; 1.0 for data
    that is all exact)."""
    min_bins: int = 2
    """Distinct GSD tiers each optimiser-step batch must span (Table 6: 2; 0 disables)."""
    max_length: int = 8192
    """Samples with more tokens (images included) are dropped and counted, not cut
    (Table 4: 8192, Table 6: 16384)."""
    num_workers: int = 0
    """DataLoader worker processes that read images and collate."""
    max_failed_fraction: float = 0.05
    """Stop the run when more than this share of the samples read so far failed (after
    at least 32): a broken dataset should fail loudly, not train on what is left."""
    gsd_as_text: bool = False
    """State each image's GSD in the prompt (:mod:`earthvlm.data.gsd_text`): with
    ``adapter.kind: lora`` this is the B3 baseline (ScaleEarth App. A.1)."""
    pixel_format: Literal["float32", "uint8"] = "float32"
    """``pixel_values`` of training batches: ``float32``, the processor's rows; ``uint8``,
    packed patches (an eighth of the bytes) that the vision tower expands to the same
    values on its device (:mod:`earthvlm.models.pixels`): cheaper batches where the model
    runs on an accelerator, the same loss."""

    def __post_init__(self) -> None:
        if self.mixture is not None:
            if not isinstance(self.mixture, str) or not self.mixture:
                raise ValueError(
                    f"data.mixture={self.mixture!r}: give a mixture YAML file or leave it out"
                )
            if self.records or self.root is not None or self.synth is not None:
                raise ValueError(
                    f"data.mixture={self.mixture!r} with data.records/root/synth set: a "
                    "mixture lists its own records and root; remove data.records, data.root "
                    "and data.synth (or data.mixture)"
                )
        elif not self.records:
            raise ValueError(
                "data.records is required: the JSONL file of training records (or set "
                "data.mixture to a mixture YAML)"
            )
        if self.augment is not None and not isinstance(self.augment, AugmentConfig):
            raise ValueError(
                f"data.augment={self.augment!r}: give a mapping of augmentation fields or null"
            )
        if self.sampler not in ("balanced", "shuffle"):
            raise ValueError(f"data.sampler={self.sampler!r}: choose 'balanced' or 'shuffle'")
        if self.pixel_format not in ("float32", "uint8"):
            raise ValueError(
                f"data.pixel_format={self.pixel_format!r}: choose 'float32' (the processor's "
                "rows) or 'uint8' (packed, expanded by the model)"
            )
        if not 0.0 <= self.exact_share <= 1.0:
            raise ValueError(f"data.exact_share={self.exact_share}: must be in [0, 1]")
        if self.min_bins < 0:
            raise ValueError(f"data.min_bins={self.min_bins}: must be >= 0")
        if self.max_length < 16:
            raise ValueError(f"data.max_length={self.max_length}: must be >= 16 tokens")
        if self.num_workers < 0:
            raise ValueError(f"data.num_workers={self.num_workers}: must be >= 0")
        if not 0.0 <= self.max_failed_fraction <= 1.0:
            raise ValueError(
                f"data.max_failed_fraction={self.max_failed_fraction}: must be in [0, 1]"
            )


@dataclass(frozen=True)
class AdapterConfig:
    """Stage 2: what is trained on the frozen backbone, and the scale path's loss."""

    kind: Literal["cshlora", "moelora", "lora", "none"] = "cshlora"
    """``cshlora`` (GSD-gated LoRA, Eq. 1), ``moelora`` (B4: LoRA experts hard-routed by
    GSD bucket, ``r`` ranks in all), ``lora`` (peft LoRA with the same rank, alpha and
    targets: the B2 baseline) or ``none`` (no adapter; only the SSE-U head, if ``sseu``,
    is trained)."""
    r: int = 64
    """Rank (Table 6: 64)."""
    alpha: float = 32.0
    """LoRA scaling numerator; updates are scaled by alpha / r (Table 6: 32)."""
    dropout: float = 0.0
    """Dropout on the adapter input (Table 6: 0)."""
    target_modules: tuple[str, ...] = QWEN_LINEARS
    """Linear layers wrapped, inside the language model only."""
    sharpness_init: float = 5.0
    """CS-HLoRA: initial per-layer gate sharpness alpha (sec. 3.2: 5.0)."""
    sseu: bool = True
    """Train an SSE-U head on pooled vision features with the Gaussian NLL (Eq. 2-3)."""
    sseu_hidden: int | None = None
    """SSE-U trunk width (the paper does not state it; default: the feature size)."""
    p_e2e: float = 0.2
    """Probability that an exact GSD is replaced by SSE-U's mu in training (Eq. 4)."""
    lambda_gsd: float = 0.1
    """Weight of L_nll after the warm-up (Eq. 4: 0.1)."""
    lambda_gsd_warmup: float = 0.3
    """Weight of L_nll during the first ``lambda_warmup_frac`` of steps (Eq. 4: 0.3)."""
    lambda_warmup_frac: float = 0.1
    """Share of the optimiser steps that use ``lambda_gsd_warmup`` (Eq. 4: 10%)."""

    def __post_init__(self) -> None:
        if self.kind not in ("cshlora", "moelora", "lora", "none"):
            raise ValueError(
                f"adapter.kind={self.kind!r}: choose 'cshlora', 'moelora', 'lora' or 'none'"
            )
        if self.r < 1:
            raise ValueError(f"adapter.r={self.r}: must be >= 1")
        if not self.alpha > 0:
            raise ValueError(f"adapter.alpha={self.alpha}: must be > 0")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"adapter.dropout={self.dropout}: must be in [0, 1)")
        if not self.target_modules:
            raise ValueError("adapter.target_modules is empty: name the linear layers to wrap")
        if not self.sharpness_init > 0:
            raise ValueError(f"adapter.sharpness_init={self.sharpness_init}: must be > 0")
        if self.sseu_hidden is not None and self.sseu_hidden < 1:
            raise ValueError(f"adapter.sseu_hidden={self.sseu_hidden}: must be >= 1 or null")
        if not 0.0 <= self.p_e2e <= 1.0:
            raise ValueError(f"adapter.p_e2e={self.p_e2e}: must be in [0, 1]")
        for name in ("lambda_gsd", "lambda_gsd_warmup"):
            if getattr(self, name) < 0:
                raise ValueError(f"adapter.{name}={getattr(self, name)}: must be >= 0")
        if not 0.0 <= self.lambda_warmup_frac <= 1.0:
            raise ValueError(f"adapter.lambda_warmup_frac={self.lambda_warmup_frac}: in [0, 1]")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW, the cosine schedule with warm-up, clipping and batching."""

    lr: float = 1e-4
    """Peak learning rate: stage 1 the LLM and projector (Table 4: 1e-5), stage 2 the
    adapter (Table 6: 1e-4)."""
    vision_lr: float = 1e-6
    """Stage 1: peak learning rate of the vision tower without its merger (Table 4: 1e-6)."""
    head_lr: float = 1e-4
    """Stage 2: peak learning rate of the SSE-U head (Table 6: 1e-4)."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW beta1, beta2 (Table 4)."""
    eps: float = 1e-8
    """AdamW epsilon."""
    weight_decay: float = 1e-3
    """AdamW weight decay on matrices; biases, norms, thresholds and sharpness are not
    decayed (Tables 4/6: 1e-3)."""
    warmup_ratio: float = 0.05
    """Share of optimiser steps with linear warm-up before the cosine decay (Table 4:
    0.03, Table 6: 0.05)."""
    max_grad_norm: float = 5.0
    """Gradient clipping on the global norm (Table 4: 1.0, Table 6: 5.0); 0 disables."""
    batch_size: int = 1
    """Samples per device per micro-batch (Tables 4/6: 1)."""
    grad_accum: int = 16
    """Micro-batches per optimiser step (Table 4: 8, Table 6: 16)."""
    epochs: int = 1
    """Passes over the data (Tables 4/6: 1); ignored when ``max_steps`` is set."""
    max_steps: int | None = None
    """Optimiser steps of the whole run (overrides ``epochs``)."""

    def __post_init__(self) -> None:
        for name in ("lr", "vision_lr", "head_lr"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"optim.{name}={getattr(self, name)}: must be >= 0")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"optim.betas={self.betas}: two numbers in [0, 1)")
        if not self.eps > 0:
            raise ValueError(f"optim.eps={self.eps}: must be > 0")
        if self.weight_decay < 0:
            raise ValueError(f"optim.weight_decay={self.weight_decay}: must be >= 0")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"optim.warmup_ratio={self.warmup_ratio}: must be in [0, 1)")
        if self.max_grad_norm < 0:
            raise ValueError(f"optim.max_grad_norm={self.max_grad_norm}: >= 0 (0 disables)")
        for name in ("batch_size", "grad_accum", "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"optim.{name}={getattr(self, name)}: must be >= 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"optim.max_steps={self.max_steps}: must be >= 1 or null")


@dataclass(frozen=True)
class FusionTrainConfig:
    """Optical + SAR fusion between the projector and the language model (EarthMind sec.
    3.2): the method and its options; the token width is the backbone's hidden size.

    Samples whose images include an optical image next to a SAR image are fused
    (:class:`~earthvlm.models.fusion.EarthFusion`); every other image passes through.
    """

    method: str = "hca"
    """``hca`` (Eq. 2-7, learnable lambda), ``fixed`` (the release's variant: lambda frozen
    at ``lambda_init``), or a Table 4 baseline: ``concat``, ``average``, ``cosine``."""
    pooling: str = "avg"
    """Optical tokens onto the SAR grid: adaptive ``avg`` / ``max`` pooling, or ``none``."""
    lambda_init: float = 0.5
    """Initial lambda of Eq. 6 (learned by ``hca``), in (0, 1)."""
    score_scale: str = "tokens"
    """``tokens``: alpha and beta scaled by the token count; ``none``: Eq. 3/5 as written."""
    temperature: float = 1.0
    """Divides the sensors' scores before Eq. 7's two-way softmax."""
    lr: float | None = None
    """Peak learning rate of the fusion module; ``None``: ``optim.lr``."""

    def __post_init__(self) -> None:
        try:
            self.build(1)
        except ValueError as e:
            raise ValueError(f"fusion.{e}") from None
        if self.lr is not None and not self.lr >= 0:
            raise ValueError(f"fusion.lr={self.lr}: must be >= 0 or null")

    def build(self, dim: int) -> FusionConfig:
        """The :class:`~earthvlm.fusion.FusionConfig` for tokens ``dim`` wide."""
        return FusionConfig(
            dim=dim, method=self.method, pooling=self.pooling, lambda_init=self.lambda_init,
            score_scale=self.score_scale, temperature=self.temperature,
        )  # fmt: skip


#: Mask decoder kinds (``earthvlm.models.seg.DECODER_KINDS``; kept here torch-free).
SEG_DECODERS = ("light", "sam")


@dataclass(frozen=True)
class SegTrainConfig:
    """Referring segmentation: a ``[SEG]`` token prompting a mask decoder (EarthMind sec.
    3.1, 3.3, App. D). Records whose answer holds ``[SEG]`` and that carry masks train
    the decoder; the loss adds ``loss_weight * (bce_weight * BCE + dice_weight * Dice)``."""

    kind: str = "light"
    """``light`` (the compact decoder trained here) or ``sam`` (a SAM-style decoder whose
    weights are on disk: ``weights_path``, ``sam_class``)."""
    dim: int = 64
    """The light decoder's internal width."""
    heads: int = 4
    """Attention heads of the light decoder."""
    weights_path: str | None = None
    """``sam``: the local folder of the decoder's weights (never downloaded)."""
    sam_class: str | None = None
    """``sam``: ``"module:Class"`` of the decoder (``earthvlm.models.seg.MaskDecoder``)."""
    bce_weight: float = 2.0
    """Weight of the pixel binary cross-entropy (sec. 3.3; LISA's 2.0)."""
    dice_weight: float = 0.5
    """Weight of the Dice loss (sec. 3.3; LISA's 0.5)."""
    loss_weight: float = 1.0
    """Weight of the whole mask loss against the language loss."""
    train_token: bool = True
    """Stage 2: train the ``[SEG]`` rows of the (otherwise frozen) embeddings and output
    head, so that the model learns when to emit it. Gradients of every other row are
    zeroed; note that AdamW then keeps moments for the whole matrix."""
    lr: float | None = None
    """Peak learning rate of the decoder and the ``[SEG]`` rows; ``None``: ``optim.lr``."""

    def __post_init__(self) -> None:
        if self.kind not in SEG_DECODERS:
            raise ValueError(f"seg.kind={self.kind!r}: choose one of {list(SEG_DECODERS)}")
        for name in ("dim", "heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"seg.{name}={getattr(self, name)}: must be >= 1")
        if self.dim % self.heads:
            raise ValueError(f"seg.dim={self.dim} must be a multiple of seg.heads={self.heads}")
        if self.kind == "sam" and not (self.weights_path and self.sam_class):
            raise ValueError(
                "seg.kind=sam needs seg.weights_path (the local weights folder) and "
                "seg.sam_class ('module:Class'); or use seg.kind=light"
            )
        for name in ("bce_weight", "dice_weight", "loss_weight"):
            v = getattr(self, name)
            if not (v >= 0 and v != float("inf")):
                raise ValueError(f"seg.{name}={v}: must be a finite number >= 0")
        if self.lr is not None and not self.lr >= 0:
            raise ValueError(f"seg.lr={self.lr}: must be >= 0 or null")


@dataclass(frozen=True)
class TrainConfig:
    """One SFT run (ScaleEarth stage 1 or stage 2)."""

    data: DataConfig
    """The training data."""
    stage: int = 2
    """1: full fine-tuning of vision tower, projector and LLM (sec. 3.1); 2: frozen
    backbone plus an adapter and the SSE-U head (sec. 3.2)."""
    name: str = "run"
    """Run name: the run folder is ``output_dir/name``."""
    output_dir: str = "runs"
    """Parent folder of run folders."""
    seed: int = 0
    """Seed of the adapter's initialisation, sampling, Eq. 4's draws and dropout."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """``auto``: bf16 where the device supports it (CUDA with bf16), else fp32;
    ``bf16`` on a device without it is an error."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The backbone."""
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    """Stage 2: the adapter and the scale path (ignored in stage 1)."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimiser, schedule and batching."""
    log_every: int = 1
    """Optimiser steps between lines of ``metrics.jsonl`` (each line is one step's values)."""
    save_every: int = 0
    """Optimiser steps between checkpoints (0: only at the end of the run)."""
    keep_last: int = 2
    """Complete checkpoints kept (older ones are deleted); 0 keeps all."""
    resume: bool = True
    """Continue from the newest complete checkpoint in the run folder, if any; ``false``
    refuses a folder that already holds checkpoints (never mixes two runs)."""
    stop_after: int | None = None
    """Stop after this global step with a checkpoint, as a wall-clock-limited job would,
    leaving the schedule as for the whole run; resume continues from there."""
    progress: bool = True
    """Show a progress bar (main process only)."""
    fusion: FusionTrainConfig | None = None
    """Optical + SAR fusion (EarthMind); ``null``: images pass to the LM unchanged."""
    seg: SegTrainConfig | None = None
    """Referring segmentation with ``[SEG]`` and a mask decoder; ``null``: off."""

    def __post_init__(self) -> None:
        if self.stage not in (1, 2):
            raise ValueError(f"stage={self.stage}: choose 1 (full fine-tuning) or 2 (adapter)")
        if not self.name or "/" in self.name or self.name in (".", ".."):
            raise ValueError(f"name={self.name!r}: a folder name without '/'")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision={self.precision!r}: choose 'auto', 'fp32' or 'bf16'")
        for name in ("log_every",):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 1")
        for name in ("save_every", "keep_last"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 0")
        if self.stop_after is not None and self.stop_after < 1:
            raise ValueError(f"stop_after={self.stop_after}: must be >= 1 or null")
        if self.stage == 1 and self.model.load_in_4bit:
            raise ValueError(
                "model.load_in_4bit=true with stage=1: full fine-tuning cannot update NF4 "
                "weights; quantise only the frozen stage-2 backbone"
            )
        if (
            self.stage == 2
            and self.adapter.kind == "none"
            and not self.adapter.sseu
            and self.fusion is None
            and self.seg is None
        ):
            raise ValueError(
                "stage=2 with adapter.kind=none and adapter.sseu=false trains nothing; "
                "choose an adapter, enable the SSE-U head, or add a fusion / seg section"
            )

    @property
    def run_dir(self) -> Path:
        """The run folder: ``output_dir/name``."""
        return Path(self.output_dir) / self.name

    def to_dict(self) -> dict[str, Any]:
        """A YAML/JSON-ready dict (tuples as lists) that :func:`config_from_dict` reads back."""
        return _plain(dataclasses.asdict(self))


# -- reading -------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """``value`` as type ``tp`` (from a dataclass annotation), or a ValueError at ``where``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ValueError(f"{where}: null is not allowed")
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except ValueError as e:
                errors.append(str(e))
        raise ValueError(errors[0])
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ValueError(f"{where}={value!r}: choose one of {list(choices)}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where}={value!r}: expected a list")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ValueError(f"{where}={value!r}: expected {len(args)} values")
        pairs = enumerate(zip(value, args, strict=True))
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in pairs)
    if origin in (dict, collections.abc.Mapping):
        if not isinstance(value, dict):
            raise ValueError(f"{where}={value!r}: expected a mapping")
        key_tp, value_tp = typing.get_args(tp) or (Any, Any)
        return {
            _coerce(k, key_tp, f"{where} key"): _coerce(v, value_tp, f"{where}.{k}")
            for k, v in value.items()
        }
    if tp is Any:
        return value
    if _is_dataclass_type(tp):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return _build(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}={value!r}: expected true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}={value!r}: expected an integer")
        return value
    if tp is float:
        if isinstance(value, bool):
            raise ValueError(f"{where}={value!r}: expected a number")
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-5 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ValueError(f"{where}={value!r}: expected a number")
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}={value!r}: expected a string")
        return value
    raise TypeError(f"{where}: unsupported config type {tp!r}")  # a bug in this module


def _build(cls: type, data: dict[str, Any], where: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            prefix = f"{where}." if where else ""
            hint = f"; did you mean {prefix + close[0]!r}?" if close else f"; valid: {names}"
            raise ValueError(f"unknown config key {path!r}{hint}")
        kwargs[key] = _coerce(value, hints[key], path)
    try:
        return cls(**kwargs)
    except ValueError as e:
        # a section defined outside this module (AugmentConfig) names its fields from its
        # own name ("augment.json_prob"): name them from the config's root instead
        head, _, last = where.rpartition(".")
        message = str(e)
        if head and message.startswith(f"{last}.") and not message.startswith(f"{where}."):
            raise ValueError(f"{head}.{message}") from None
        raise
    except TypeError as e:  # a required field is missing
        missing = [
            f.name
            for f in dataclasses.fields(cls)
            if f.name not in kwargs
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        prefix = f"{where}." if where else ""
        raise ValueError(f"config is missing {[prefix + m for m in missing]}") from e


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Build and validate a :class:`TrainConfig` from a nested dict.

    Raises:
        ValueError: For unknown keys (with a suggestion), wrong types or bad values,
            naming the dotted key.
    """
    if not isinstance(data, dict):
        raise ValueError(f"a config is a mapping of fields, got {type(data).__name__}")
    return _build(TrainConfig, data)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=2e-4"`` -> ``(["optim", "lr"], 2e-4)``; the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ValueError(
            f"--set {text!r}: expected key=value with a dotted key, e.g. optim.lr=1e-4"
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ValueError(f"--set {text!r}: the value is not valid YAML ({e})") from None
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A copy of ``data`` with each ``key=value`` override set (nested dicts created)."""
    import copy

    out = copy.deepcopy(data)
    for text in overrides:
        keys, value = parse_override(text)
        node = out
        for k in keys[:-1]:
            child = node.get(k)
            if child is None:
                child = node[k] = {}
            if not isinstance(child, dict):
                raise ValueError(f"--set {text!r}: {k!r} is not a section")
            node = child
        node[keys[-1]] = value
    return out


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML recipe, apply ``--set``-style overrides, validate.

    Raises:
        EarthVLMError: If the file is missing or is not valid YAML.
        ValueError: For bad keys or values (naming the dotted key).
    """
    p = Path(path)
    if not p.is_file():
        raise EarthVLMError(f"{p}: no such config file")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise EarthVLMError(f"{p}: not valid YAML ({e})") from None
    return config_from_dict(apply_overrides(data, overrides or []))


def dump_config(cfg: TrainConfig) -> str:
    """The config as YAML text (what the run folder's ``config.yaml`` holds)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


#: The one typed dataclass-from-YAML builder, for other run configs (GRPO's).
build_dataclass = _build

__all__ = [
    "FUSION_METHODS",
    "QWEN_LINEARS",
    "AdapterConfig",
    "DataConfig",
    "FusionTrainConfig",
    "ModelConfig",
    "OptimConfig",
    "SegTrainConfig",
    "SynthDataConfig",
    "TrainConfig",
    "apply_overrides",
    "build_dataclass",
    "config_from_dict",
    "dump_config",
    "load_config",
    "parse_override",
]
