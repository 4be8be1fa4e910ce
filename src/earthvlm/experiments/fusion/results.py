"""What a fusion-experiment run measured: plain data that the run fills in and the
report reads (the report imports nothing from the run)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from earthvlm.experiments.fusion.config import FusionExpConfig
from earthvlm.experiments.fusion.evaluate import MASResult, SettingScores


@dataclass
class MethodResult:
    """One method's run and scores."""

    method: str
    label: str
    run_dir: Path
    scores: dict[str, SettingScores]
    mas: MASResult
    train_loss: list[float]
    lambda_final: float | None
    seconds: float
    seg_loss: list[float] = field(default_factory=list)
    judge: dict[str, Any] = field(default_factory=dict)
    """The open-ended judge's ledger, requests and per-setting means."""


@dataclass
class FusionExpResult:
    """Everything the report needs."""

    config: FusionExpConfig
    out: Path
    data: dict[str, Any]
    methods: dict[str, MethodResult] = field(default_factory=dict)
    figures: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0
    prior: dict[str, dict[str, bool]] = field(default_factory=dict)
    """Per non-visual baseline (:func:`text_prior`), ``item -> correct`` on the held-out
    MCQs."""
    judge: str = ""
    """What scored the open-ended answers."""


__all__ = ["FusionExpResult", "MethodResult"]
