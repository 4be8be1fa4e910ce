"""``earthvlm data``: convert a source into records + quarantine + manifest; list sources."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
import typer
from typer.testing import CliRunner

from earthvlm.cli.data import data_app
from earthvlm.data.jsonl import read_records

# wide enough that rich does not fold paths and reasons in the tables
ENV = {"COLUMNS": "300"}
_GENERATORS = Path(__file__).resolve().parents[1] / "data" / "sources" / "fixtures.py"


def _generators() -> ModuleType:
    name = "earthvlm_source_fixtures"  # the name tests/data/sources/conftest.py uses
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, _GENERATORS)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture
def app() -> typer.Typer:
    root = typer.Typer()
    root.add_typer(data_app, name="data")
    return root


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_convert_writes_records_quarantine_and_manifest(
    app: typer.Typer, runner: CliRunner, tmp_path: Path
) -> None:
    root = _generators().write_dota(tmp_path / "dota")
    out = tmp_path / "out"
    result = runner.invoke(app, ["data", "convert", "dota", str(root), "--out", str(out)], env=ENV)
    assert result.exit_code == 0, result.output
    lines = {" ".join(line.strip("│┃ ").split()) for line in result.stdout.splitlines()}
    for row in (
        "read │ │ 10",
        "written │ │ 4",
        "skipped │ no_label_file │ 1",
        "skipped │ not_a_label_file │ 1",
        "quarantined │ bad_object_line │ 1",
        "quarantined │ unknown_class │ 1",
    ):
        assert row in lines, result.stdout
    assert "labelTxt/P0004.txt row 4: bad_object_line" in result.stdout
    assert "boxes dropped (their images kept): 1 (1 box_degenerate)" in result.stdout

    records = read_records(out / "records.jsonl", root=root, must_exist=True)
    assert [r.id for r in records.records] == [f"dota-P000{k}" for k in (1, 2, 3, 5)]
    assert records.ledger.failed == {}
    quarantine = [json.loads(x) for x in (out / "quarantine.jsonl").read_text().splitlines()]
    assert len(quarantine) == 4
    assert set(quarantine[0]) == {"source", "file", "row", "reason", "detail", "fix", "raw"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is True
    assert (manifest["source"], manifest["split"], manifest["records"]) == ("dota", "train", 4)
    assert manifest["root"] == str(root.resolve())
    assert manifest["ledger"]["read"] == 10 and manifest["quarantined"] == 4
    assert manifest["options"]["version"] == "1.0"
    assert manifest["reader"] == "earthvlm.data.sources.dota:DOTA"
    assert {"earthvlm", "git_commit", "pillow"} <= set(manifest["provenance"])
    digest = hashlib.sha256((out / "records.jsonl").read_bytes()).hexdigest()
    assert manifest["records_sha256"] == digest


def test_options_split_strict_and_stale_quarantine(
    app: typer.Typer, runner: CliRunner, tmp_path: Path
) -> None:
    gen = _generators()
    dota = gen.write_dota(tmp_path / "dota")
    hr = gen.write_rsvqa_hr(tmp_path / "hr")
    out = tmp_path / "out"
    args = ["data", "convert", "dota", str(dota), "--out", str(out), "--opt", "version=2.0"]
    result = runner.invoke(app, [*args, "--strict"], env=ENV)
    assert result.exit_code == 1  # rows were quarantined
    assert (out / "quarantine.jsonl").is_file()
    assert len((out / "records.jsonl").read_text().splitlines()) == 5  # P0009's airport too
    args = ["data", "convert", "rsvqa-hr", str(hr), "--out", str(out), "--split", "test_phili"]
    result = runner.invoke(app, [*args, "--strict"], env=ENV)
    assert result.exit_code == 0, result.output
    assert not (out / "quarantine.jsonl").exists()  # no stale file from the last run
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["split"] == "test_phili" and manifest["quarantine_file"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["dotta"], "did you mean dota"),
        (["dota", "--opt", "versoin=1.5"], "did you mean version"),
        (["dota", "--opt", "sensor=sentinel2"], "did you mean sentinel-2"),
        (["coco"], "annotations.json: no such file"),
    ],
)
def test_errors_exit_2_with_the_fix(
    app: typer.Typer, runner: CliRunner, tmp_path: Path, args: list[str], message: str
) -> None:
    root = _generators().write_dota(tmp_path / "dota")
    argv = ["data", "convert", args[0], str(root), "--out", str(tmp_path / "out"), *args[1:]]
    result = runner.invoke(app, argv, env=ENV)
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split())
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_sources_lists_every_reader(app: typer.Typer, runner: CliRunner) -> None:
    from earthvlm.data.sources import list_sources

    result = runner.invoke(app, ["data", "sources"], env=ENV)
    assert result.exit_code == 0, result.output
    for name in list_sources():
        assert f"│ {name} " in result.stdout
    assert "version='1.0'" in result.stdout and "gsd_range_m" in result.stdout


# -- zoom training data: zoom-chains and grpo-tasks --------------------------------------


@pytest.fixture(scope="module")
def uhr_records(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic UHR scene's records (one ROI question, one global, one detection, ...),
    plus an invalid JSONL row and a question whose image is missing."""
    from earthvlm.synth.dataset import SynthConfig, generate_dataset

    root = tmp_path_factory.mktemp("uhr-records")
    generate_dataset(root, SynthConfig(n_scenes=0, n_chips=0, n_uhr=1, uhr_size_px=2048))
    path = root / "records.jsonl"
    lines = path.read_text().splitlines()
    objects = [json.loads(x) for x in lines]
    missing = next(r for r in objects if r["meta"].get("roi_type") == "object")
    missing["id"] += "-missing"
    missing["images"][0]["path"] = "images/gone.tif"
    path.write_text("\n".join([*lines, json.dumps(missing), "{not json"]) + "\n")
    return path


def _rows(stdout: str) -> set[str]:
    return {" ".join(line.strip("│┃ ").split()) for line in stdout.splitlines()}


def test_zoom_chains_writes_chains_ledger_and_manifest(
    app: typer.Typer, runner: CliRunner, uhr_records: Path, tmp_path: Path
) -> None:
    n_valid = len(uhr_records.read_text().splitlines()) - 1
    out = tmp_path / "chains"
    argv = ["data", "zoom-chains", str(uhr_records), "--out", str(out), "--strict"]
    result = runner.invoke(app, argv, env=ENV)
    assert result.exit_code == 1, result.output  # --strict: the missing image failed
    rows = _rows(result.stdout)
    assert f"read │ │ {n_valid}" in rows and "failed │ missing_image │ 1" in rows, result.stdout
    assert "skipped │ task_skipped │ 1" in rows  # the detection record
    assert "invalid input rows (not counted above): 1" in " ".join(result.stdout.split())
    chains = read_records(out / "records.jsonl", root=out, must_exist=True)  # views exist
    assert chains.ledger.failed == {}
    kinds = [r.meta["zoom"]["action"] for r in chains.records]
    assert kinds.count("answer") == 1 and kinds.count("zoom") >= 1  # 1 whole-scene question
    zoom = next(r for r in chains.records if r.meta["zoom"]["action"] == "zoom")
    assert [m.role for m in zoom.messages][-2:] == ["tool", "assistant"]
    assert "GSD" not in zoom.messages[-2].text()  # off unless --observation-gsd
    left = [json.loads(x) for x in (out / "skipped.jsonl").read_text().splitlines()]
    assert {x["reason"] for x in left} >= {"no_roi", "task_skipped", "missing_image"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["written"] == len(chains.records)
    assert manifest["ledger"]["read"] == n_valid and manifest["input_ledger"]["failed"]
    digest = hashlib.sha256((out / "records.jsonl").read_bytes()).hexdigest()
    assert manifest["output_sha256"] == digest and manifest["config"]["box_frame"] == "norm1000"

    gsd_out = tmp_path / "chains-gsd"
    argv = ["data", "zoom-chains", str(uhr_records), "--out", str(gsd_out), "--templates",
            "--observation-gsd"]  # fmt: skip
    result = runner.invoke(app, argv, env=ENV)
    assert result.exit_code == 0, result.output
    templates = read_records(gsd_out / "template_questions.jsonl").records
    assert templates and all("roi_xyxy_px" in t.meta for t in templates)
    assert f"read │ │ {n_valid + len(templates)}" in _rows(result.stdout)
    chains = read_records(gsd_out / "records.jsonl", root=gsd_out).records
    zooms = [r for r in chains if r.meta["zoom"]["action"] == "zoom"]
    assert len(zooms) > 1 and all("GSD" in r.messages[-2].text() for r in zooms)


def test_grpo_tasks_writes_what_train_grpo_reads(
    app: typer.Typer, runner: CliRunner, uhr_records: Path, tmp_path: Path
) -> None:
    from earthvlm.train.grpo import load_tasks

    out = tmp_path / "rl"  # a folder, as zoom-chains and convert write
    argv = ["data", "grpo-tasks", str(uhr_records), "--out", str(out), "--templates"]
    result = runner.invoke(app, argv, env=ENV)
    assert result.exit_code == 0, result.output
    tasks = load_tasks(out)  # the folder (its tasks.jsonl), as data.tasks takes it
    assert tasks == load_tasks(out / "tasks.jsonl")
    assert all(Path(t["source"]).is_file() for t in tasks)
    assert sum(t["roi_xyxy_px"] is None for t in tasks) == 1  # the global question
    assert any(t["id"].endswith("-count_cell") for t in tasks)  # a template question
    left = [json.loads(x) for x in (out / "skipped.jsonl").read_text().splitlines()]
    assert {"missing_image", "no_roi"} <= {x["reason"] for x in left}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["written"] == len(tasks) and manifest["ledger"]["failed"] == {
        "missing_image": 1
    }
    assert (out / "template_questions.jsonl").is_file()
    # a file name for --out is refused with the folder to give instead
    argv[4] = str(tmp_path / "tasks.jsonl")
    result = runner.invoke(app, argv, env=ENV)
    assert result.exit_code == 2 and "give a folder" in result.stderr


def test_zoom_chains_bad_options_exit_2(
    app: typer.Typer, runner: CliRunner, uhr_records: Path, tmp_path: Path
) -> None:
    argv = ["data", "zoom-chains", str(uhr_records), "--out", str(tmp_path / "o"),
            "--family", "qwen9"]  # fmt: skip
    result = runner.invoke(app, argv, env=ENV)
    assert result.exit_code == 2 and "qwen9" in result.stderr
