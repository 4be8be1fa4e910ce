"""What a model is made of: backbone, adapter, SSE-U head, fusion and mask decoder.

A :class:`ModelRecipe` describes one assembled model (:class:`~earthvlm.models.EarthVLM`)
independently of how it is trained: the training config (``earthvlm.train.config``)
embeds these sections in its YAML (``model:``, ``adapter:``, ``fusion:``, ``seg:``) and
hands :attr:`TrainConfig.recipe <earthvlm.train.config.TrainConfig.recipe>` to the model;
a saved run is rebuilt from the same recipe. Each section is a frozen dataclass whose
fields carry their own docstring; ``__post_init__`` raises ``ValueError`` naming the
YAML key and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from earthvlm.adapters.targets import QWEN_LINEARS
from earthvlm.fusion.config import FusionConfig


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
class ModelRecipe:
    """One assembled model: the backbone and what is added to it.

    Attributes mirror the training config's sections; ``stage`` decides whether the
    backbone is the trained part (1) or a frozen base under an adapter (2).
    """

    stage: int = 2
    """1: the backbone itself is the model (full fine-tuning, or a plain checkpoint);
    2: a frozen backbone plus ``adapter`` (and SSE-U, if ``adapter.sseu``)."""
    seed: int = 0
    """Seed of the adapter's, head's, fusion module's and decoder's initialisation."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The backbone."""
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    """Stage 2: the adapter and the scale path (ignored in stage 1)."""
    fusion: FusionTrainConfig | None = None
    """Optical + SAR fusion (EarthMind); ``None``: off."""
    seg: SegTrainConfig | None = None
    """``[SEG]`` token and mask decoder; ``None``: off."""
    gsd_as_text: bool = False
    """The prompt states each image's GSD (the B3 baseline): a property of the model,
    since it must read its prompts the way it was trained."""

    def __post_init__(self) -> None:
        if self.stage not in (1, 2):
            raise ValueError(f"stage={self.stage}: choose 1 (full fine-tuning) or 2 (adapter)")

    @property
    def variant(self) -> str:
        """``stage1``, ``lora``, ``gsdtext``, ``moelora``, ``cshlora`` or ``none``."""
        if self.stage == 1:
            return "stage1"
        kind = self.adapter.kind
        return "gsdtext" if kind == "lora" and self.gsd_as_text else kind


__all__ = [
    "QWEN_LINEARS",
    "SEG_DECODERS",
    "AdapterConfig",
    "FusionTrainConfig",
    "ModelConfig",
    "ModelRecipe",
    "SegTrainConfig",
]
