"""What a micro-ScaleEarth run measured: plain data that the run fills in and the
report reads (the report imports nothing from the run)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from earthvlm.eval.diagnostics.calibration import CalibrationStats
from earthvlm.eval.diagnostics.gates import GateCurves
from earthvlm.eval.diagnostics.probe import ProbeResult
from earthvlm.eval.diagnostics.spoof import SpoofCurve
from earthvlm.experiments.micro.config import MicroConfig
from earthvlm.synth.chips import CHIP_CLASSES

#: The closed set of answers (the chip classes).
CLASSES: tuple[str, ...] = tuple(sorted(CHIP_CLASSES))
#: The ambiguous pairs of the chip world.
PAIRS: tuple[tuple[str, str], ...] = tuple(
    sorted({tuple(sorted((n, c.pair))) for n, c in CHIP_CLASSES.items() if c.pair})
)


@dataclass
class ModelResult:
    """What the experiment measured on one model.

    Attributes:
        key: ``stage1`` or a key of :data:`VARIANTS`.
        label: Its display name.
        trainable: Parameters it trained.
        train_seconds: Wall time of its training (0 when reused).
        accuracy: ``"true" | "shuffled"`` -> group -> accuracy (groups: ``ambiguous``,
            ``unambiguous``, ``all`` and ``tier:<name>``).
        ambiguous_ci: 95 % bootstrap CI of the ambiguous-pair accuracy with the true GSD.
        offset: The offset spoofing sweep (stage 2 only).
        absolute: The absolute spoofing sweep (stage 2 only).
    """

    key: str
    label: str
    trainable: int
    train_seconds: float
    accuracy: dict[str, dict[str, float]] = field(default_factory=dict)
    ambiguous_ci: tuple[float, float] = (math.nan, math.nan)
    offset: SpoofCurve | None = None
    absolute: SpoofCurve | None = None


@dataclass
class ExperimentResult:
    """Everything a micro-ScaleEarth run produced (the report is written from it)."""

    config: MicroConfig
    out: Path
    models: dict[str, ModelResult]
    train_range_m: tuple[float, float]
    timings: dict[str, float]
    gates: GateCurves | None = None
    calibration: CalibrationStats | None = None
    probe: ProbeResult | None = None
    report: Path | None = None
    figures: dict[str, Path] = field(default_factory=dict)


__all__ = ["CLASSES", "PAIRS", "ExperimentResult", "ModelResult"]
