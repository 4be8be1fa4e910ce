"""``earthvlm eval --zoom`` on a synthetic world with a UHR scene and a tiny saved model:
two real processes (torchrun, gloo on CPU) share the zoom arm, each example keeps its
trace, and the direct arm run beside it gives both summaries and the arms table."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from earthvlm.cli.evaluate import eval_command
from earthvlm.models import build_tiny_backbone, save_backbone
from earthvlm.synth.dataset import SynthConfig, generate_dataset

app = typer.Typer()


@app.callback()
def _root() -> None:
    """Stands in for the ``earthvlm`` app, which registers ``eval`` the same way."""


app.command("eval")(eval_command)
runner = CliRunner(env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(data, model)``: one 2048 px UHR scene with its questions, and a tiny random
    Qwen3-VL saved as a Hugging Face folder (evaluated zero-shot)."""
    data = tmp_path_factory.mktemp("uhr")
    generate_dataset(data, SynthConfig(n_scenes=0, n_chips=0, n_uhr=1, uhr_size_px=2048, seed=0))
    model = save_backbone(
        build_tiny_backbone("qwen3_vl", seed=0), tmp_path_factory.mktemp("m") / "tiny"
    )
    return data, model


def test_eval_zoom_in_two_processes_then_the_direct_arm(
    setup: tuple[Path, Path], tmp_path: Path
) -> None:
    data, model = setup
    common = ["--model", str(model), "--bench", "synth_vqa", "--data", str(data),
              "--out", str(tmp_path), "--limit", "4", "--batch-size", "2",
              "--max-new-tokens", "4"]  # fmt: skip
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "earthvlm.cli.main",
           "eval", *common, "--zoom", "--max-zooms", "1"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "synth_vqa-zoom1" in proc.stdout
    folder = tmp_path / "synth_vqa-zoom1"
    rows = [json.loads(line) for line in (folder / "predictions.jsonl").open()]
    shards = [
        [json.loads(line)["id"] for line in (folder / "shards" / f"rank-{r:03d}.jsonl").open()]
        for r in (0, 1)
    ]
    assert len(rows) == 4 and shards == [[r["id"] for r in rows][k::2] for k in (0, 1)]
    for row in rows:  # the trace: views in source pixels with their GSD, turns, answer
        trace = row["zoom"]
        assert row["arm"] == "zoom" and trace["source"] == "images/uhr-0000.tif"
        assert trace["views"][0]["window_xyxy_px"] == [0, 0, 2048, 2048]
        assert trace["views"][0]["gsd"]["m"] == pytest.approx(8 * trace["source_gsd"]["m"])
        assert row["visual_tokens"] == sum(v["visual_tokens"] for v in trace["views"])
        assert 1 <= len(trace["turns"]) <= 3 and trace["answer"] == row["prediction"]
    scores = json.loads((folder / "scores.json").read_text())
    assert scores["generation"]["arm"] == "zoom1" and scores["zoom"]["n_looped"] == 4
    assert json.loads((folder / "generation.json").read_text())["zoom"]["max_zooms"] == 1

    direct = runner.invoke(app, ["eval", *common])
    assert direct.exit_code == 0, direct.output
    with (tmp_path / "summary.csv").open() as f:
        summary = list(csv.DictReader(f))
    assert [(s["benchmark"], s["arm"]) for s in summary] == [("synth_vqa", "direct")]
    assert float(summary[0]["visual_tokens_per_question"]) == 64.0
    arms = (tmp_path / "arms.md").read_text()
    assert "| benchmark | row | direct | zoom1 |" in arms and "zoom_rate" in arms


def test_zoom_options_are_checked(setup: tuple[Path, Path]) -> None:
    data, model = setup
    args = ["eval", "--model", str(model), "--bench", "synth_vqa", "--data", str(data)]
    result = runner.invoke(app, [*args, "--max-zooms", "1"])
    assert result.exit_code == 2 and "add --zoom" in result.output.replace("\n", "")
    endpoint = ["eval", "--endpoint", "http://127.0.0.1:1/v1", "--served-model", "m",
                "--bench", "synth_vqa", "--data", str(data), "--zoom"]  # fmt: skip
    refused = runner.invoke(app, endpoint)
    assert refused.exit_code == 2 and "--endpoint-zoom" in refused.output.replace("\n", "")
