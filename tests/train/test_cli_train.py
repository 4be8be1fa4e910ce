"""``earthvlm train``: runs a recipe, exit code 2 on config errors, 1 on training errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from earthvlm.cli.main import app

ENV = {"COLUMNS": "400"}


def _recipe(tmp_path: Path, chips: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "stage": 2,
                "name": "cli",
                "output_dir": str(tmp_path / "runs"),
                "progress": False,
                "data": {"records": str(chips), "exact_share": 1.0, "max_length": 256},
                "adapter": {"r": 8},
                "optim": {"batch_size": 4, "grad_accum": 1, "max_steps": 2, "lr": 1e-3},
            }
        )
    )
    return path


def test_train_runs_a_recipe_and_says_where_the_run_is(tmp_path: Path, chips: Path) -> None:
    recipe = _recipe(tmp_path, chips)
    result = CliRunner().invoke(app, ["train", str(recipe), "--set", "optim.lr=2e-3"], env=ENV)
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "cli"
    assert f"run folder: {run}" in result.output
    assert result.output.count("finished at step 2/2") == 1  # one summary, not two
    assert "metrics: " in result.output
    assert (run / "checkpoint-2" / "COMPLETE").is_file()
    assert yaml.safe_load((run / "config.yaml").read_text())["optim"]["lr"] == 2e-3


def test_config_errors_exit_2_with_the_field(tmp_path: Path, chips: Path) -> None:
    recipe = _recipe(tmp_path, chips)
    runner = CliRunner()
    bad = runner.invoke(app, ["train", str(recipe), "--set", "optim.grad_accum=0"], env=ENV)
    assert bad.exit_code == 2 and "optim.grad_accum=0" in bad.output
    typo = runner.invoke(app, ["train", str(recipe), "--set", "adapter.alpah=8"], env=ENV)
    assert typo.exit_code == 2 and "did you mean 'adapter.alpha'" in typo.output
    missing = runner.invoke(app, ["train", str(tmp_path / "nope.yaml")], env=ENV)
    assert missing.exit_code == 2 and "no such config file" in missing.output
    assert not (tmp_path / "runs").exists()


def test_a_recipe_this_machine_cannot_run_exits_2(tmp_path: Path, chips: Path) -> None:
    """bf16 (the paper recipes) without a CUDA GPU is a config error, as --help says."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        pytest.skip("this machine runs bf16")
    recipe = _recipe(tmp_path, chips)
    result = CliRunner().invoke(app, ["train", str(recipe), "--set", "precision=bf16"], env=ENV)
    assert result.exit_code == 2, result.output
    assert "needs a CUDA GPU" in result.output and "precision=fp32" in result.output


def test_training_errors_exit_1(tmp_path: Path, chips: Path) -> None:
    recipe = _recipe(tmp_path, chips)
    result = CliRunner().invoke(
        app, ["train", str(recipe), "--set", f"data.records={tmp_path / 'none.jsonl'}"], env=ENV
    )
    assert result.exit_code == 1 and "data.synth" in result.output
