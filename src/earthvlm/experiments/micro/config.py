"""Micro-ScaleEarth: the experiment's settings, its presets and its stage-2 variants.

The experiment (ScaleEarth sec. 4 and App. A, shrunk to a CPU): a tiny Qwen-VL learns
object chips without any GSD (stage 1), then four stage-2 variants start from that
checkpoint with the same data, steps, schedule and rank: B2 plain LoRA, B3 LoRA with
the GSD stated in the prompt, B4 LoRA experts hard-routed by GSD bucket, and CS-HLoRA
with SSE-U. The chips' ambiguous pairs (small vehicle / building, storage tank /
roundabout) share one template and one pixel-size range, so pixels leave them at
chance and only the GSD separates them; plane and ship need no GSD.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from earthvlm.eval.diagnostics.spoof import PAPER_SPOOF_DELTAS, PAPER_SPOOF_GSDS_M
from earthvlm.experiments.presets import build_preset


@dataclass(frozen=True)
class Variant:
    """One stage-2 variant: a label and the config fields it sets over the shared recipe."""

    label: str
    fields: dict[str, dict[str, Any]]


#: The stage-2 variants (ScaleEarth App. A.1), in report order.
VARIANTS: dict[str, Variant] = {
    "b2": Variant("B2 LoRA", {"adapter": {"kind": "lora", "sseu": False}}),
    "b3": Variant(
        "B3 LoRA + GSD text",
        {"adapter": {"kind": "lora", "sseu": False}, "data": {"gsd_as_text": True}},
    ),
    "b4": Variant("B4 MoE-LoRA", {"adapter": {"kind": "moelora", "sseu": False}}),
    "cshlora": Variant("CS-HLoRA + SSE-U", {"adapter": {"kind": "cshlora", "sseu": True}}),
}


_POSITIVE = (
    "n_train",
    "n_test",
    "stage1_steps",
    "stage2_steps",
    "batch_size",
    "rank",
    "save_every",
)


@dataclass(frozen=True)
class MicroConfig:
    """Everything that decides a micro-ScaleEarth run (saved in its report)."""

    preset: str = "quick"
    """The preset these values came from (``quick``, ``full`` or ``ci``)."""
    family: str = "qwen3_vl"
    """Tiny backbone family (``qwen3_vl`` or ``qwen2_5_vl``)."""
    n_train: int = 2048
    """Training chips (classes in turn, so balanced)."""
    n_test: int = 240
    """Held-out chips (another generator seed)."""
    chip_size_px: int = 64
    """Chip side in pixels."""
    stage1_steps: int = 500
    """Stage-1 optimiser steps (full fine-tuning, no GSD)."""
    stage2_steps: int = 150
    """Stage-2 optimiser steps of every variant."""
    batch_size: int = 32
    """Samples per optimiser step (both stages)."""
    save_every: int = 50
    """Steps between checkpoints of every training run: an interrupted run resumes from
    the last one (exactly as if it had not stopped)."""
    stage1_lr: float = 2e-3
    """Stage-1 learning rate (vision tower, projector and LLM alike: a random tiny
    backbone, not the paper's pretrained 8B one)."""
    stage2_lr: float = 2e-3
    """Stage-2 learning rate of the adapters and the SSE-U head."""
    rank: int = 64
    """Adapter rank of every variant (B4: its experts share it, 3 x 21)."""
    variants: tuple[str, ...] = tuple(VARIANTS)
    """Which stage-2 variants to train (keys of :data:`VARIANTS`)."""
    spoof_per_class: int = 20
    """Class-balanced spoofing subset: questions per class."""
    deltas: tuple[float, ...] = PAPER_SPOOF_DELTAS
    """Offset sweep: claim true GSD x 10**delta (sec. 3.3: delta in [-2, 2])."""
    gsd_values_m: tuple[float, ...] = PAPER_SPOOF_GSDS_M
    """Absolute sweep, metres (App. A.3: 13 log-spaced values, 0.01-30 m)."""
    n_boot: int = 1000
    """Bootstrap resamples of every CI."""
    probe_layer: str = "layers.1.mlp.down_proj"
    """CS-HLoRA layer whose bottleneck the rank probe reads (the last block's MLP)."""
    seed: int = 0
    """Seed of training, sampling, shuffles, bootstraps and probes."""
    train_data_seed: int = 0
    """Generator seed of the training chips."""
    test_data_seed: int = 10_000
    """Generator seed of the held-out chips."""
    notes: tuple[str, ...] = field(default=())
    """Free-text notes carried into the report."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.variants) - set(VARIANTS))
        if unknown:
            raise ValueError(f"variants {unknown} unknown; choose from {sorted(VARIANTS)}")
        for name in _POSITIVE:
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 1")
        if self.n_test < 6 * self.spoof_per_class:
            raise ValueError(
                f"n_test={self.n_test} chips give {self.n_test // 6} per class, fewer than "
                f"spoof_per_class={self.spoof_per_class}; raise n_test or lower it"
            )
        if 0.0 not in self.deltas:
            raise ValueError("deltas must include 0.0 (the true GSD) for the claims")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (for the report)."""
        return dataclasses.asdict(self)


#: Presets. ``quick`` is the quickstart (the defaults: about 4 minutes on an idle 2-core
#: machine, README), ``full`` the committed report's run (``--full``), ``ci`` the reduced
#: run the test suite checks (the quick training, fewer chips and sweep points).
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {},
    "full": {
        "n_train": 4096,
        "n_test": 600,
        "stage1_steps": 2000,
        "stage2_steps": 600,
        "spoof_per_class": 100,
    },
    "ci": {
        "n_test": 120,
        "deltas": (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0),
        "gsd_values_m": (0.03, 0.1, 0.3, 1.0, 3.0, 10.0),
        "n_boot": 200,
    },
}


def preset(name: str, *, sets: Sequence[str] = (), **overrides: Any) -> MicroConfig:
    """The named preset with ``overrides`` (fields by name), then ``sets`` (``--set
    key=value`` texts, as the CLI passes them) applied.

    Raises:
        ConfigError: For an unknown preset, an unknown field (with a suggestion) or a
            bad value (a ``ValueError``).
    """
    return build_preset(MicroConfig, PRESETS, name, overrides, sets)


__all__ = ["PRESETS", "VARIANTS", "MicroConfig", "Variant", "preset"]
