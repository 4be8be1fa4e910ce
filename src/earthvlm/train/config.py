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
accepted for float fields). Reading, overrides and validation are
:mod:`earthvlm.typed`'s, as for every other config. Relative paths are relative to the
working directory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from earthvlm.adapters.targets import QWEN_LINEARS
from earthvlm.data.augment import AugmentConfig
from earthvlm.fusion.config import METHODS as FUSION_METHODS
from earthvlm.models.recipe import (
    SEG_DECODERS,
    AdapterConfig,
    FusionTrainConfig,
    ModelConfig,
    ModelRecipe,
    SegTrainConfig,
)
from earthvlm.typed import (
    apply_overrides,
    build_dataclass,
    dump_yaml,
    load_yaml_config,
    parse_override,
    plain,
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
    """Show the progress (step, loss, steps/s, time left; main process only): a bar on a
    terminal, else a line every tenth of the run (:mod:`earthvlm.train.progress`)."""
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
    def recipe(self) -> ModelRecipe:
        """The model this run trains (:class:`~earthvlm.models.recipe.ModelRecipe`)."""
        return ModelRecipe(
            stage=self.stage,
            seed=self.seed,
            model=self.model,
            adapter=self.adapter,
            fusion=self.fusion,
            seg=self.seg,
            gsd_as_text=self.data.gsd_as_text,
        )

    @property
    def run_dir(self) -> Path:
        """The run folder: ``output_dir/name``."""
        return Path(self.output_dir) / self.name

    def to_dict(self) -> dict[str, Any]:
        """A YAML/JSON-ready dict (tuples as lists) that :func:`config_from_dict` reads back."""
        return plain(dataclasses.asdict(self))


# -- reading -------------------------------------------------------------------------------


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Build and validate a :class:`TrainConfig` from a nested dict.

    Raises:
        ConfigError: For unknown keys (with a suggestion), wrong types or bad values,
            naming the dotted key (a ``ValueError``).
    """
    return build_dataclass(TrainConfig, data)


def load_config(path: str | Path, overrides: Sequence[str] | None = None) -> TrainConfig:
    """Read a YAML recipe, apply ``--set``-style overrides, validate.

    Raises:
        ConfigError: If the file is missing or is not valid YAML, or for bad keys or
            values (naming the file and the dotted key); an ``EarthVLMError`` and a
            ``ValueError``.
    """
    return load_yaml_config(TrainConfig, path, overrides or ())


def dump_config(cfg: TrainConfig) -> str:
    """The config as YAML text (what the run folder's ``config.yaml`` holds)."""
    return dump_yaml(cfg.to_dict())


__all__ = [
    "FUSION_METHODS",
    "QWEN_LINEARS",
    "SEG_DECODERS",
    "AdapterConfig",
    "DataConfig",
    "FusionTrainConfig",
    "ModelConfig",
    "ModelRecipe",
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
