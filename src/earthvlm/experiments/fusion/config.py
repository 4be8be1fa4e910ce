"""The fusion experiment's settings and presets.

The experiment (EarthMind sec. 3.2, Table 4 and App. H, shrunk to a CPU): a tiny Qwen-VL
is trained from scratch, one run per fusion method (HCA and the baselines), through the
same SFT loop and recipe, on optical + SAR scenes of the synthetic world (optical
partly under cloud) asked MCQ and referring-segmentation questions in all three
settings (fused pair, optical alone, SAR alone: joint multi-sensor data, App. H). Every
run is then evaluated on held-out scenes in each setting, split by whether clouds hide
the objects asked about; the modality attention score (Eq. 1) is read per layer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from earthvlm.experiments.presets import build_preset
from earthvlm.fusion.config import METHODS
from earthvlm.synth.fusion_world import WorldConfig

#: Methods in report order, with their labels (Table 4 and the release's variant).
METHOD_LABELS: dict[str, str] = {
    "hca": "HCA (Eq. 2-7, learned lambda)",
    "fixed": "release (fixed lambda)",
    "concat": "concatenation",
    "average": "element-wise average",
    "cosine": "cosine attention",
}


@dataclass(frozen=True)
class FusionExpConfig:
    """Everything that decides a fusion-experiment run (saved in its report)."""

    preset: str = "quick"
    """The preset these values came from (``ci``, ``quick`` or ``full``)."""
    family: str = "qwen3_vl"
    """Tiny backbone family (``qwen3_vl`` or ``qwen2_5_vl``)."""
    methods: tuple[str, ...] = tuple(METHOD_LABELS)
    """Fusion methods to train (each a run with the same data, steps and seed)."""
    n_train: int = 2000
    """Training scenes (each: MCQs, an open question, a segmentation and sometimes an
    absent-class segmentation, in three settings)."""
    n_test: int = 160
    """Held-out scenes (another generator seed)."""
    layout: str = "chip"
    """``chip`` (one object near the centre: learnable by a tiny model in CPU minutes) or
    ``scene`` (whole generated scenes; see :mod:`earthvlm.synth.fusion_world`)."""
    size_px: int = 64
    """Side of each view in pixels (64 px: 2 x 2 merged tokens on the tiny backbone)."""
    cloud_prob: float = 0.5
    """Share of scenes whose optical view is partly under cloud."""
    steps: int = 1500
    """Optimiser steps of every run."""
    batch_size: int = 16
    """Samples per optimiser step."""
    lr: float = 3e-3
    """Learning rate (full fine-tuning of a random tiny backbone, fusion and decoder)."""
    seg_dim: int = 32
    """Width of the light mask decoder."""
    eval_batch: int = 32
    """Records per evaluation forward."""
    threads: int = 1
    """CPU threads of torch during the run (0: leave torch's setting). One by default:
    on a shared 2-core machine two intra-op threads of these tiny models spin against
    each other (600 steps took 9 min instead of 56 s under load)."""
    seed: int = 0
    """Seed of training (every run the same)."""
    train_data_seed: int = 0
    """Generator seed of the training scenes."""
    test_data_seed: int = 10_000
    """Generator seed of the held-out scenes."""
    notes: tuple[str, ...] = field(default=())
    """Free-text notes carried into the report."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown or not self.methods:
            raise ValueError(f"methods {unknown or '[]'}: choose from {sorted(METHODS)}")
        for name in ("n_train", "n_test", "steps", "batch_size", "seg_dim", "eval_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 1")
        if self.threads < 0:
            raise ValueError(f"threads={self.threads}: must be >= 0 (0: torch's default)")
        if self.family not in ("qwen3_vl", "qwen2_5_vl"):
            raise ValueError(f"family={self.family!r}: choose 'qwen3_vl' or 'qwen2_5_vl'")
        # the world's own checks (layout, size_px, cloud_prob), now rather than after the
        # first minutes of a run
        WorldConfig(size_px=self.size_px, cloud_prob=self.cloud_prob, layout=self.layout)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (for the report)."""
        return dataclasses.asdict(self)


#: Presets. ``ci``: seconds on 2 CPU cores (the pipeline, not a result); ``quick``: the
#: CLI's default, object chips, ~20 minutes on 2 cores for the five methods; ``full``:
#: twice the chips, steps and batch; ``scenes``: whole generated scenes at 96 px (the
#: realistic layout, which a tiny model does not learn in CPU hours).
PRESETS: dict[str, dict[str, Any]] = {
    "ci": {"n_train": 24, "n_test": 12, "steps": 12, "batch_size": 8, "eval_batch": 16},
    "quick": {},
    "full": {"n_train": 4000, "n_test": 320, "steps": 3000, "batch_size": 32},
    "scenes": {"layout": "scene", "n_train": 480, "n_test": 160, "size_px": 96, "steps": 3000},
}


def preset(name: str, *, sets: Sequence[str] = (), **overrides: Any) -> FusionExpConfig:
    """The named preset with ``overrides`` (fields by name), then ``sets`` (``--set
    key=value`` texts, as the CLI passes them) applied.

    Raises:
        ConfigError: For an unknown preset, an unknown field (with a suggestion) or a
            bad value (a ``ValueError``).
    """
    return build_preset(FusionExpConfig, PRESETS, name, overrides, sets)


__all__ = ["METHOD_LABELS", "PRESETS", "FusionExpConfig", "preset"]
