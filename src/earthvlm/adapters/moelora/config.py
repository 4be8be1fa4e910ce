"""Bucketed MoE-LoRA configuration."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from earthvlm.adapters.targets import QWEN_LINEARS


@dataclass(frozen=True)
class MoELoRAConfig:
    """What B4 changes.

    Attributes:
        r_total: The CS-HLoRA rank to match; each of the K experts gets
            ``r_total // K`` ranks (64 -> 3 x 21, 63 ranks in all).
        alpha_lora: LoRA scaling numerator; each expert's update is scaled by
            alpha_lora / r_total, so the full update has CS-HLoRA's scale.
        dropout: Dropout on the adapter input.
        boundaries_m: GSD bucket edges in metres (K - 1 of them); default the
            GeoScale-VQA tiers (high < 0.2 m <= mid < 1 m <= low).
        target_modules: Linear layer names to wrap (as CS-HLoRA).
        within: Only wrap modules under a module of this name.
    """

    r_total: int = 64
    alpha_lora: float = 32.0
    dropout: float = 0.0
    boundaries_m: tuple[float, ...] = (0.2, 1.0)
    target_modules: tuple[str, ...] = QWEN_LINEARS
    within: str = "language_model"

    def __post_init__(self) -> None:
        if self.r_total < self.n_experts:
            raise ValueError(f"r_total {self.r_total} < {self.n_experts} experts")
        if not self.alpha_lora > 0:
            raise ValueError(f"alpha_lora must be > 0, got {self.alpha_lora}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        b = self.boundaries_m
        if any(not (math.isfinite(x) and x > 0) for x in b) or list(b) != sorted(set(b)):
            raise ValueError(f"boundaries_m must be increasing positive metres, got {b}")

    @property
    def n_experts(self) -> int:
        return len(self.boundaries_m) + 1

    @property
    def r_expert(self) -> int:
        return self.r_total // self.n_experts

    @property
    def log10_boundaries(self) -> list[float]:
        return [math.log10(x) for x in self.boundaries_m]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["boundaries_m"] = list(self.boundaries_m)
        d["target_modules"] = list(self.target_modules)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MoELoRAConfig:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown MoE-LoRA config field(s) {sorted(unknown)}")
        kw = dict(d)
        for k in ("boundaries_m", "target_modules"):
            if k in kw:
                kw[k] = tuple(kw[k])
        return cls(**kw)
