"""A tiny trained run evaluated end to end, through ``earthvlm eval``, on the tiny fixtures
of the public formats read through source readers: every example reaches the model (SAR
views and fused pairs included), none is refused by the collator, and every benchmark
writes its report."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

from typer.testing import CliRunner

from earthvlm.cli.main import app
from earthvlm.synth.dataset import SynthConfig, generate_dataset
from earthvlm.train import train
from earthvlm.train.config import config_from_dict


def test_tiny_run_on_public_format_fixtures_from_the_cli(
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
    data = tmp_path / "data"  # one folder per benchmark, named after it (--data)
    writers = {
        "earthmind": source_gen.write_earthmind,
        "vrsbench_vqa": source_gen.write_vrsbench,
        "vrsbench_grounding": source_gen.write_vrsbench,
        "xlrs_lite": gen.write_xlrs_lite,
        "omniearth": gen.write_omniearth,
        "lrs_gro": gen.write_lrs_gro,
        "meter_ml": gen.write_meter_ml_vhm,
    }
    for name, write in writers.items():
        write(data / name)
    out = tmp_path / "out"
    args = ["eval", "--model", str(cfg.run_dir), "--bench", ",".join(writers),
            "--data", str(data), "--out", str(out), "--batch-size", "4",
            "--max-new-tokens", "4", "--opt", "earthmind.setting=all",
            "--opt", "meter_ml.vhm_json=cls_METER_ML.json"]  # fmt: skip
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, args)
    assert result.exit_code == 0, result.output
    for name in writers:
        rows = [json.loads(line) for line in (out / name / "predictions.jsonl").open()]
        assert rows and all(r["failure"] is None for r in rows), name
        assert (out / name / "COMPLETE").exists()
    fused = [r for r in (json.loads(x) for x in (out / "earthmind" / "predictions.jsonl").open())
             if r["id"].startswith("earthmind-bench-fused-")]  # fmt: skip
    assert len(fused) == 8
    summary = (out / "summary.csv").read_text()
    assert all(name in summary for name in writers)
