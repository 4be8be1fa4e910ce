"""``earthvlm eval`` on a tiny B2 (peft LoRA) run: reports, resume, and errors that say
what to do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from earthvlm.cli.evaluate import DATA_ENV, data_folder, eval_command, parse_options
from earthvlm.synth.dataset import SynthConfig, generate_dataset
from earthvlm.train import train
from earthvlm.train.config import config_from_dict

app = typer.Typer()


@app.callback()
def _root() -> None:
    """Stands in for the ``earthvlm`` app, which registers ``eval`` the same way."""


app.command("eval")(eval_command)
runner = CliRunner(env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(data, run)``: 8 chips and a 2-step LoRA run on them (decodes without ScaleEarth)."""
    data = tmp_path_factory.mktemp("chips")
    generate_dataset(data, SynthConfig(n_scenes=0, n_chips=8, chip_size_px=64, seed=1))
    cfg = config_from_dict({
        "stage": 2, "name": "b2", "output_dir": str(tmp_path_factory.mktemp("runs")),
        "progress": False,
        "data": {"records": str(data / "records.jsonl"), "exact_share": 1.0, "min_bins": 2,
                 "max_length": 256},
        "adapter": {"kind": "lora", "r": 4, "alpha": 8.0, "sseu": False},
        "optim": {"lr": 5e-3, "batch_size": 2, "grad_accum": 1, "max_steps": 2,
                  "warmup_ratio": 0.0},
    })  # fmt: skip
    train(cfg)
    return data, cfg.run_dir


def test_eval_writes_reports_and_resumes(setup: tuple[Path, Path], tmp_path: Path) -> None:
    data, run = setup
    args = ["eval", "--model", str(run), "--bench", "synth-chips", "--data", str(data),
            "--out", str(tmp_path), "--limit", "4", "--batch-size", "4",
            "--max-new-tokens", "3"]  # fmt: skip
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "synth_chips" in first.output and "accuracy" in first.output
    assert f"reports: {tmp_path / 'summary.md'}" in first.output.replace("\n", "")
    scores = json.loads((tmp_path / "synth_chips" / "scores.json").read_text())
    assert scores["model"]["variant"] == "lora" and scores["generation"]["n_answered"] == 4
    assert (tmp_path / "summary.csv").read_text().startswith("benchmark,version,n,metric,value")
    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    row = next(line for line in second.output.splitlines() if "synth_chips" in line)
    assert [c.strip() for c in row.split("│")[5:7]] == ["0", "4"]  # generated 0, cached 4


def test_two_real_processes_shard_the_examples_and_merge(
    setup: tuple[Path, Path], tmp_path: Path
) -> None:
    """``torchrun`` starts two processes (gloo on CPU): each answers every 2nd example
    into its own shard, and the main one merges and scores after the barrier."""
    data, run = setup
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "earthvlm.cli.main",
           "eval", "--model", str(run), "--bench", "synth_chips", "--data", str(data),
           "--out", str(tmp_path), "--limit", "6", "--batch-size", "2",
           "--max-new-tokens", "2"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = tmp_path / "synth_chips"
    shards = [
        [json.loads(line)["id"] for line in (folder / "shards" / f"rank-{r:03d}.jsonl").open()]
        for r in (0, 1)
    ]
    merged = [json.loads(line)["id"] for line in (folder / "predictions.jsonl").open()]
    assert len(merged) == 6 and shards == [merged[0::2], merged[1::2]]
    scores = json.loads((folder / "scores.json").read_text())
    assert scores["result"]["n"] == 6 and (folder / "COMPLETE").is_file()
    # the table counts both processes' answers (not the main one's half)
    row = next(line for line in proc.stdout.splitlines() if "synth_chips" in line)
    assert [c.strip() for c in row.split("│")[5:7]] == ["6", "0"], proc.stdout


def test_default_output_folder_is_beside_the_run(setup: tuple[Path, Path]) -> None:
    data, run = setup
    args = ["eval", "--model", str(run), "--bench", "synth_chips", "--data", str(data),
            "--limit", "2", "--max-new-tokens", "2"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (run / "eval" / "checkpoint-2" / "synth_chips" / "COMPLETE").is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--bench", "synth_chip"], "did you mean synth_chips"),
        (["--bench", "synth_chips", "--batch-size", "0"], "batch_size=0"),
        (["--bench", "synth_chips", "--limit", "0"], "limit=0"),
        (["--bench", "synth_chips", "--opt", "synth_chips"], "write BENCH.FIELD=VALUE"),
        (["--bench", "synth_chips", "--opt", "xlrs_lite.split=x"], "not among the benchmarks"),
        (["--bench", "synth_chips", "--opt", "synth_chips.splitt=1"], "splitt"),
    ],
)
def test_bad_arguments_exit_2_with_a_hint(
    setup: tuple[Path, Path], extra: list[str], message: str
) -> None:
    data, run = setup
    result = runner.invoke(app, ["eval", "--model", str(run), "--data", str(data), *extra])
    assert result.exit_code == 2 and message in result.output.replace("\n", "")


def test_missing_model_or_data_exits_2(
    setup: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, run = setup
    result = runner.invoke(app, ["eval", "--model", str(tmp_path), "--bench", "synth_chips",
                                 "--data", str(data)])  # fmt: skip
    assert result.exit_code == 2 and "not a model folder" in result.output
    monkeypatch.delenv(DATA_ENV, raising=False)
    result = runner.invoke(app, ["eval", "--model", str(run), "--bench", "xlrs_lite"])
    assert result.exit_code == 2 and f"set {DATA_ENV}" in result.output.replace("\n", " ")
    result = runner.invoke(app, ["eval", "--model", str(run), "--bench", "rsvqa_lr",
                                 "--data", str(tmp_path / "nope")])  # fmt: skip
    assert result.exit_code == 2 and "does not exist" in result.output
    # files missing inside an existing folder: the benchmark says which ones
    result = runner.invoke(app, ["eval", "--model", str(run), "--bench", "rsvqa_lr",
                                 "--data", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 1 and "LR_split_test_questions.json" in result.output


def test_data_folders_per_benchmark_or_shared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "xlrs_lite").mkdir()
    assert data_folder("xlrs_lite", tmp_path) == tmp_path / "xlrs_lite"
    assert data_folder("synth_vqa", tmp_path) == tmp_path  # one folder for all
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert data_folder("xlrs_lite", None) == tmp_path / "xlrs_lite"
    with pytest.raises(typer.Exit):
        data_folder("rsvqa_lr", None)  # $EARTHVLM_BENCHMARKS/rsvqa_lr does not exist


def test_options_are_read_as_yaml_per_benchmark() -> None:
    got = parse_options(
        ["earthmind.setting=fused", "lrs-vqa.wordnet=false", "earthmind.judge_url=http://h:1/v1"],
        ["earthmind", "lrs_vqa"],
    )
    assert got == {
        "earthmind": {"setting": "fused", "judge_url": "http://h:1/v1"},
        "lrs_vqa": {"wordnet": False},
    }
