"""``earthvlm diagnose spoof|gates|calibration|probe`` on the reduced experiment's runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from earthvlm.cli.main import app


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "400"})


def _args(micro_ci: Path, cmd: str, run: str, out: Path, *extra: str) -> list[str]:
    data = micro_ci / "data" / "test" / "records.jsonl"
    return ["diagnose", cmd, "--model", str(micro_ci / "runs" / run), "--data", str(data),
            "--out", str(out), *extra]  # fmt: skip


def test_spoof(runner: CliRunner, micro_ci: Path, tmp_path: Path) -> None:
    args = _args(micro_ci, "spoof", "cshlora", tmp_path, "--sweep", "offset",
                 "--per-class", "5", "--n-boot", "50")  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Cochran" in result.output
    report = json.loads((tmp_path / "spoof.json").read_text(encoding="utf-8"))
    curve = report["sections"]["offset sweep"]
    assert curve["n"] == 30 and curve["mode"] == "offset" and len(curve["x"]) == 13
    assert report["config"]["variant"] == "cshlora"
    assert report["config"]["pairs"] == [["building", "small vehicle"],
                                         ["roundabout", "storage tank"]]  # fmt: skip
    assert (tmp_path / "spoof_offset.png").is_file()
    assert (tmp_path / "spoof.md").is_file()


def test_gates_and_their_refusal_on_plain_lora(runner, micro_ci: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, _args(micro_ci, "gates", "cshlora", tmp_path))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "gates.png").is_file()
    gates = json.loads((tmp_path / "gates.json").read_text(encoding="utf-8"))
    assert gates["sections"]["gate curves"]
    refused = runner.invoke(app, _args(micro_ci, "gates", "b2", tmp_path / "b2"))
    assert refused.exit_code == 2
    assert "need a CS-HLoRA run" in refused.output


def test_calibration(runner: CliRunner, micro_ci: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, _args(micro_ci, "calibration", "cshlora", tmp_path))
    assert result.exit_code == 0, result.output
    stats = json.loads((tmp_path / "calibration.json").read_text())["sections"]
    cal = stats["SSE-U calibration"]
    assert cal["n"] == 120 and cal["ratio"] > 0
    assert set(cal["by_cues"]) == {"with cues", "without cues"}
    refused = runner.invoke(app, _args(micro_ci, "calibration", "b4", tmp_path / "b4"))
    assert refused.exit_code == 2 and "no SSE-U head" in refused.output


def test_probe(runner: CliRunner, micro_ci: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, _args(micro_ci, "probe", "cshlora", tmp_path, "--limit", "60"))
    assert result.exit_code == 0, result.output
    probe = json.loads((tmp_path / "probe.json").read_text())["sections"]["rank probe"]
    assert probe["n"] == 60
    assert set(probe["factors"]) >= {"texture", "geometry", "scene", "log10_gsd"}
    bad = runner.invoke(app, _args(micro_ci, "probe", "cshlora", tmp_path / "x", "--layer", "nope"))
    assert bad.exit_code == 2 and "matches no CS-HLoRA layer" in bad.output


def test_bad_paths_are_named(runner: CliRunner, micro_ci: Path, tmp_path: Path) -> None:
    args = ["diagnose", "spoof", "--model", str(tmp_path), "--data",
            str(micro_ci / "data" / "test" / "records.jsonl")]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "not a model folder" in result.output
    args = ["diagnose", "spoof", "--model", str(micro_ci / "runs" / "b2"), "--data",
            str(tmp_path / "missing.jsonl")]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "missing.jsonl: no such file" in result.output


def test_any_records_file_uses_what_it_can_and_says_what_it_left_out(
    runner: CliRunner, micro_ci: Path, tmp_path: Path
) -> None:
    """A synth world's records (scenes with VQA, counting, detection, ... and object
    chips) as the README runs them: spoofing keeps the closed-set chips and counts the
    rest by reason; a file with none it can use exits 2 with what is needed."""
    from earthvlm.synth.dataset import SynthConfig, generate_dataset

    world = tmp_path / "world"
    generate_dataset(world, SynthConfig(n_scenes=2, n_chips=12, chip_style="plain", seed=3))
    args = ["diagnose", "spoof", "--model", str(micro_ci / "runs" / "cshlora"), "--data",
            str(world / "records.jsonl"), "--out", str(tmp_path / "out"), "--sweep", "offset",
            "--n-boot", "20"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "using 12 of" in result.output and "not_closed_set_classification" in result.output
    assert "Traceback" not in result.output

    scenes_only = tmp_path / "scenes"
    generate_dataset(scenes_only, SynthConfig(n_scenes=2, seed=3))
    args[5] = str(scenes_only / "records.jsonl")
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "no usable record" in result.output and "closed-set classification" in result.output
    assert "Traceback" not in result.output
