"""CS-HLoRA configuration, with the paper's defaults (ScaleEarth sec. 3.2, App. C)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from earthvlm.adapters.targets import QWEN_LINEARS

#: Tier initialisation of the paper for r = 64: (first rank, end rank, tau). Object ranks
#: 0-10 (tau 0: active up to ~1 m), structure 11-31 (tau 1: up to ~10 m), semantic
#: 32-63 (tau 4: active over the whole range).
PAPER_TIERS: tuple[tuple[int, int, float], ...] = ((0, 11, 0.0), (11, 32, 1.0), (32, 64, 4.0))


@dataclass(frozen=True)
class CSHLoRAConfig:
    """What CS-HLoRA changes and how it starts.

    Attributes:
        r: Rank (paper: 64).
        alpha_lora: LoRA scaling numerator; the update is scaled by alpha_lora / r
            (paper: 32).
        dropout: Dropout on the adapter input (paper: 0).
        target_modules: Names of the linear layers to wrap (the last component of the
            module path). Default: every linear projection of a Qwen language model.
        within: Only modules whose path contains this component are wrapped (the
            language model; the vision tower sees patches with no batch axis).
        sharpness_init: Initial per-layer sharpness alpha of the gate (paper: 5.0).
        tiers: (first rank, end rank, tau) for r = 64; scaled proportionally for other
            ranks (the paper gives only r = 64).
    """

    r: int = 64
    alpha_lora: float = 32.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] = QWEN_LINEARS
    within: str = "language_model"
    sharpness_init: float = 5.0
    tiers: tuple[tuple[int, int, float], ...] = field(default=PAPER_TIERS)

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ValueError(f"r must be >= 1, got {self.r}")
        if not self.alpha_lora > 0:
            raise ValueError(f"alpha_lora must be > 0, got {self.alpha_lora}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not self.target_modules:
            raise ValueError("target_modules is empty: name at least one linear layer")
        if not (math.isfinite(self.sharpness_init) and self.sharpness_init > 0):
            raise ValueError(f"sharpness_init must be > 0, got {self.sharpness_init}")
        ends = [t[1] for t in self.tiers]
        starts = [t[0] for t in self.tiers]
        if (
            not self.tiers
            or starts[0] != 0
            or any(a != b for a, b in zip(ends, starts[1:], strict=False))
        ):
            raise ValueError(f"tiers must tile the ranks from 0 without gaps, got {self.tiers}")

    @property
    def scaling(self) -> float:
        """alpha_lora / r."""
        return self.alpha_lora / self.r

    def tau_init(self) -> list[float]:
        """Initial thresholds for each of the ``r`` ranks, the tier layout scaled to ``r``."""
        total = self.tiers[-1][1]
        taus = []
        for k in range(self.r):
            pos = (k + 0.5) * total / self.r
            taus.append(next(t for lo, hi, t in self.tiers if lo <= pos < hi))
        return taus

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["target_modules"] = list(self.target_modules)
        d["tiers"] = [list(t) for t in self.tiers]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CSHLoRAConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown CS-HLoRA config field(s) {sorted(unknown)}")
        kw = dict(d)
        if "target_modules" in kw:
            kw["target_modules"] = tuple(kw["target_modules"])
        if "tiers" in kw:
            kw["tiers"] = tuple(tuple(t) for t in kw["tiers"])
        return cls(**kw)
