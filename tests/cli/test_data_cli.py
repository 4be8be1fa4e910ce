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
        "written │ │ 3",
        "skipped │ no_label_file │ 1",
        "skipped │ not_a_label_file │ 1",
        "quarantined │ bad_object_line │ 1",
        "quarantined │ unknown_class │ 1",
    ):
        assert row in lines, result.stdout
    assert "labelTxt/P0004.txt row 4: bad_object_line" in result.stdout

    records = read_records(out / "records.jsonl", root=root, must_exist=True)
    assert [r.id for r in records.records] == ["dota-P0001", "dota-P0002", "dota-P0003"]
    assert records.ledger.failed == {}
    quarantine = [json.loads(x) for x in (out / "quarantine.jsonl").read_text().splitlines()]
    assert len(quarantine) == 5
    assert set(quarantine[0]) == {"source", "file", "row", "reason", "detail", "fix", "raw"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is True
    assert (manifest["source"], manifest["split"], manifest["records"]) == ("dota", "train", 3)
    assert manifest["root"] == str(root.resolve())
    assert manifest["ledger"]["read"] == 10 and manifest["quarantined"] == 5
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
    assert len((out / "records.jsonl").read_text().splitlines()) == 4  # P0009's airport too
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
