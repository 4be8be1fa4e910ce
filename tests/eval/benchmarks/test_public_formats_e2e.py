"""A tiny trained run evaluated end to end on the tiny fixtures of the public formats read
through source readers: every example reaches the model (SAR views and fused pairs
included), none is refused by the collator, and every benchmark writes its report."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from earthvlm.eval.runner import RunConfig, run_benchmarks
from earthvlm.eval.trained import load_trained
from earthvlm.synth.dataset import SynthConfig, generate_dataset
from earthvlm.train import train
from earthvlm.train.config import config_from_dict


@pytest.mark.slow
def test_tiny_run_on_public_format_fixtures(
    tmp_path: Path, gen: ModuleType, source_gen: ModuleType
) -> None:
    chips = tmp_path / "chips"
    generate_dataset(chips, SynthConfig(n_scenes=0, n_chips=8, chip_size_px=64, seed=1))
    cfg = config_from_dict({
        "stage": 2, "name": "b2", "output_dir": str(tmp_path / "runs"), "progress": False,
        "data": {"records": str(chips / "records.jsonl"), "exact_share": 1.0, "min_bins": 2,
                 "max_length": 256},
        "adapter": {"kind": "lora", "r": 4, "alpha": 8.0, "sseu": False},
        "optim": {"lr": 5e-3, "batch_size": 2, "grad_accum": 1, "max_steps": 1,
                  "warmup_ratio": 0.0},
    })  # fmt: skip
    train(cfg)
    folders = {
        "earthmind": source_gen.write_earthmind(tmp_path / "earthmind"),
        "vrsbench_vqa": source_gen.write_vrsbench(tmp_path / "vrsbench"),
        "vrsbench_grounding": tmp_path / "vrsbench",
        "xlrs_lite": gen.write_xlrs_lite(tmp_path / "xlrs"),
        "omniearth": gen.write_omniearth(tmp_path / "omni"),
        "lrs_gro": gen.write_lrs_gro(tmp_path / "gro"),
        "meter_ml": gen.write_meter_ml_vhm(tmp_path / "meter"),
    }
    options = {
        "earthmind": {"setting": "all"},
        "lrs_gro": {"wordnet": False},
        "meter_ml": {"vhm_json": "cls_METER_ML.json"},
    }
    out = tmp_path / "out"
    runs = run_benchmarks(load_trained(cfg.run_dir), list(folders), folders.__getitem__, out,
                          RunConfig(batch_size=4, max_new_tokens=4), options=options)  # fmt: skip
    assert [r.name for r in runs] == list(folders)
    assert all(not r.failures for r in runs), {r.name: r.failures for r in runs}
    for name in folders:
        rows = [json.loads(line) for line in (out / name / "predictions.jsonl").open()]
        assert rows and all(r["failure"] is None for r in rows), name
        assert (out / name / "COMPLETE").exists()
    fused = [r for r in (json.loads(x) for x in (out / "earthmind" / "predictions.jsonl").open())
             if r["id"].startswith("earthmind-bench-fused-")]  # fmt: skip
    assert len(fused) == 8
