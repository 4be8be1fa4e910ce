"""Fixtures of the training tests: a small synthetic chips dataset and tiny run configs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from earthvlm.synth.dataset import SynthConfig, generate_dataset
from earthvlm.train.config import TrainConfig, apply_overrides, config_from_dict


@pytest.fixture(scope="session")
def chips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """records.jsonl of 48 object chips (exact GSDs over several tiers)."""
    out = tmp_path_factory.mktemp("chips")
    generate_dataset(out, SynthConfig(n_scenes=0, n_chips=48, chip_size_px=64, seed=0))
    return out / "records.jsonl"


@pytest.fixture
def tiny_config(chips: Path, tmp_path: Path) -> Callable[..., TrainConfig]:
    """``tiny_config(*overrides, **sections)``: a few-step stage-2 CS-HLoRA run on the chips,
    in ``tmp_path``; ``--set``-style overrides apply on top."""

    def make(*overrides: str, **sections: Any) -> TrainConfig:
        data: dict[str, Any] = {
            "stage": 2,
            "name": "run",
            "output_dir": str(tmp_path / "runs"),
            "progress": False,
            "data": {"records": str(chips), "exact_share": 1.0, "min_bins": 2,
                     "max_length": 256},
            "adapter": {"kind": "cshlora", "r": 8, "alpha": 16.0},
            "optim": {"lr": 5e-3, "head_lr": 5e-3, "batch_size": 4, "grad_accum": 2,
                      "max_steps": 6, "warmup_ratio": 0.2},
        }  # fmt: skip
        for key, value in sections.items():
            data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
        return config_from_dict(apply_overrides(data, list(overrides)))

    return make
