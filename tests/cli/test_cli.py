"""The ``earthvlm`` command, run in-process with Typer's CliRunner."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from earthvlm.cli.main import app
from earthvlm.scale.examples import GeorefExample, write_georef_examples

SHARED_RASTERS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "rasters"
needs_shared = pytest.mark.skipif(
    not SHARED_RASTERS.is_dir(), reason=f"no shared rasters at {SHARED_RASTERS}"
)

# wide enough that rich does not fold paths and numbers in the tables
ENV = {"COLUMNS": "400"}


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> list[GeorefExample]:
    return write_georef_examples(tmp_path_factory.mktemp("georef_examples"))


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _json_rows(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


# -- gsd ---------------------------------------------------------------------------------


def test_gsd_prints_the_table(runner: CliRunner, examples: list[GeorefExample]) -> None:
    result = runner.invoke(app, ["gsd", *[str(e.path) for e in examples]], env=ENV)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Ground sampling distance" in out
    for col in ("GSD x", "GSD y", "tier", "source"):
        assert col in out
    for e in examples:
        assert str(e.path) in out
    assert "0.3 m" in out  # UTM 0.3 m grid
    assert "20 m" in out  # Sentinel-2 B05 from the name
    assert "unknown" in out  # no CRS
    assert f"{len(examples)} file(s): ok {len(examples)}, skipped 0, failed 0" in out


def test_gsd_json_matches_the_analytic_truth(
    runner: CliRunner, examples: list[GeorefExample]
) -> None:
    result = runner.invoke(app, ["gsd", "--json", *[str(e.path) for e in examples]])
    assert result.exit_code == 0, result.output
    rows = _json_rows(result.stdout)
    assert [r["path"] for r in rows] == [str(e.path) for e in examples]
    for e, row in zip(examples, rows, strict=True):
        assert row["status"] == "ok", row
        if e.expected_m is None:
            assert row["gsd_m"] is None, e.name
            assert row["gsd"]["kind"] == "unknown"
            assert row["tier"] is None
        else:
            assert math.isclose(row["gsd_m"], e.expected_m, rel_tol=1e-3), (e.name, row)
            assert row["gsd"]["kind"] == "exact"
        if e.expected_x_m is not None and row["x_m"] is not None:
            assert math.isclose(row["x_m"], e.expected_x_m, rel_tol=1e-3), e.name
            assert math.isclose(row["y_m"], e.expected_y_m, rel_tol=1e-3), e.name
    by_name = {Path(r["path"]).name: r for r in rows}
    assert by_name["T32TQM_20200101T101021_B05.tif"]["source"] == "filename"
    assert by_name["utm33n_0.3m.tif"]["source"] == "georef"
    assert by_name["utm33n_0.3m.tif"]["tier"] == "mid"


def test_gsd_missing_file_fails_its_row_only(
    runner: CliRunner, examples: list[GeorefExample], tmp_path: Path
) -> None:
    missing = tmp_path / "nope.tif"
    paths = [str(examples[0].path), str(missing), str(examples[1].path)]
    result = runner.invoke(app, ["gsd", "--json", *paths])
    assert result.exit_code == 1
    rows = _json_rows(result.stdout)
    assert [r["status"] for r in rows] == ["ok", "failed", "ok"]
    assert rows[1]["path"] == str(missing)
    assert "no such file" in rows[1]["error"]

    table = runner.invoke(app, ["gsd", *paths], env=ENV)
    assert table.exit_code == 1
    assert "3 file(s): ok 2, skipped 0, failed 1" in table.stdout
    assert "no such file" in table.stdout


def test_gsd_non_raster_is_skipped(
    runner: CliRunner, examples: list[GeorefExample], tmp_path: Path
) -> None:
    notes = tmp_path / "notes.md"
    notes.write_text("# not a raster\n", encoding="utf-8")
    result = runner.invoke(app, ["gsd", "--json", str(notes), str(examples[0].path)])
    assert result.exit_code == 0, result.output
    rows = _json_rows(result.stdout)
    assert [r["status"] for r in rows] == ["skipped", "ok"]
    assert "not a supported raster" in rows[0]["error"]

    table = runner.invoke(app, ["gsd", str(notes)], env=ENV)
    assert table.exit_code == 0
    assert "1 file(s): ok 0, skipped 1, failed 0" in table.stdout


def test_gsd_dota_label_header(runner: CliRunner, tmp_path: Path) -> None:
    label = tmp_path / "P0001.txt"
    label.write_text(
        "imagesource:GoogleEarth\ngsd:0.15\n10 10 20 10 20 20 10 20 plane 0\n", encoding="utf-8"
    )
    result = runner.invoke(app, ["gsd", "--json", str(label)])
    assert result.exit_code == 0, result.output
    (row,) = _json_rows(result.stdout)
    assert row["status"] == "ok"
    assert row["gsd_m"] == pytest.approx(0.15)
    assert row["gsd"]["source"] == "metadata"
    assert row["source"] == "metadata"
    assert row["tier"] == "high"


def test_gsd_dota_label_with_null_header_is_unknown(runner: CliRunner, tmp_path: Path) -> None:
    label = tmp_path / "P0002.txt"
    label.write_text("imagesource:GoogleEarth\ngsd:null\n", encoding="utf-8")
    result = runner.invoke(app, ["gsd", "--json", str(label)])
    assert result.exit_code == 0
    assert _json_rows(result.stdout)[0]["gsd_m"] is None


def test_gsd_dota_label_with_bad_header_fails(runner: CliRunner, tmp_path: Path) -> None:
    label = tmp_path / "P0003.txt"
    label.write_text("gsd:-0.5\n", encoding="utf-8")
    result = runner.invoke(app, ["gsd", "--json", str(label)])
    assert result.exit_code == 1
    (row,) = _json_rows(result.stdout)
    assert row["status"] == "failed" and "not positive" in row["error"]


def test_gsd_needs_a_path(runner: CliRunner) -> None:
    assert runner.invoke(app, ["gsd"]).exit_code == 2


# -- records check -----------------------------------------------------------------------


def _record(rid: str) -> str:
    return json.dumps(
        {
            "id": rid,
            "task": "caption",
            "source": "test",
            "images": [{"path": "a.png"}],
            "messages": [{"role": "user", "content": [{"type": "image", "index": 0}]}],
        }
    )


def test_records_check_with_a_bad_row(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text(f"{_record('a')}\n{{oops\n{_record('b')}\n", encoding="utf-8")
    result = runner.invoke(app, ["records", "check", str(path)], env=ENV)
    assert result.exit_code == 1
    out = result.stdout
    assert "train.jsonl: read 3 = ok 2 + skipped 0 + failed 1 (failed:invalid_json 1)" in out
    assert "line 2: invalid_json" in out
    assert "train.quarantine.jsonl" in out
    assert (tmp_path / "train.quarantine.jsonl").is_file()


def test_records_check_clean_file(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "ok.jsonl"
    path.write_text(f"{_record('a')}\n\n{_record('b')}\n", encoding="utf-8")
    result = runner.invoke(app, ["records", "check", str(path)], env=ENV)
    assert result.exit_code == 0, result.output
    assert "ok.jsonl: read 3 = ok 2 + skipped 1 + failed 0 (skipped:blank_line 1)" in result.stdout
    assert not (tmp_path / "ok.quarantine.jsonl").exists()


def test_records_check_root_and_must_exist(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(f"{_record('a')}\n", encoding="utf-8")
    args = ["records", "check", str(path), "--root", str(tmp_path), "--must-exist"]
    result = runner.invoke(app, args, env=ENV)
    assert result.exit_code == 1
    assert "failed:missing_file 1" in result.stdout
    (tmp_path / "a.png").write_bytes(b"png")
    assert runner.invoke(app, args, env=ENV).exit_code == 0


def test_records_check_missing_file(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["records", "check", str(tmp_path / "nope.jsonl")], env=ENV)
    assert result.exit_code == 2
    assert "no such JSONL file" in result.output


# -- gsd-examples, version -----------------------------------------------------------------


def test_gsd_examples_without_shared_data(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # an empty --shared folder: only the generated cases run
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    out = tmp_path / "run"
    empty = tmp_path / "empty"
    empty.mkdir()
    args = ["gsd-examples", "--out", str(out), "--shared", str(empty)]
    result = runner.invoke(app, args, env=ENV)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    cases = report["generated"]
    assert len(cases) == 9
    assert all(c["ok"] for c in cases), [c for c in cases if not c["ok"]]
    assert {c["case"] for c in cases} >= {"UTM metres", "no CRS", "S2 name only"}
    assert report["shared"] == []
    assert (out / "georef_examples" / "utm33n_0.3m.tif").is_file()
    assert "9/9 generated cases match their analytic truth" in result.stdout
    assert "MISMATCH" not in result.stdout


def test_gsd_examples_does_not_replace_an_explicit_shared_folder(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "project"
    work.mkdir()
    decoy = tmp_path / "shared" / "data" / "rasters"
    decoy.mkdir(parents=True)
    (decoy / "decoy.tif").write_bytes(b"not really a tiff")
    monkeypatch.chdir(work)
    out = tmp_path / "run"
    args = ["gsd-examples", "--out", str(out), "--shared", str(tmp_path / "typo_dir")]
    result = runner.invoke(app, args, env=ENV)
    assert result.exit_code == 2
    assert "typo_dir" in result.output
    assert not (out / "report.json").exists()


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.stdout.startswith("earthvlm ")


# -- real rasters beside the project -----------------------------------------------------


@pytest.mark.shared_data
@needs_shared
def test_gsd_on_shared_rasters(runner: CliRunner) -> None:
    names = ["cogeo.tif", "float32.tif", "README.md"]
    result = runner.invoke(app, ["gsd", "--json", *[str(SHARED_RASTERS / n) for n in names]])
    assert result.exit_code == 0, result.output
    cogeo, flt, readme = _json_rows(result.stdout)
    # Web Mercator grid pixels are not ground metres: the resolver measures on the ground
    assert cogeo["status"] == "ok" and cogeo["gsd"]["source"] == "georef"
    assert 0.4 < cogeo["gsd_m"] < 0.55
    assert flt["status"] == "ok" and flt["gsd_m"] is None  # no CRS: unknown, not 100 m
    assert readme["status"] == "skipped"


@pytest.mark.shared_data
@needs_shared
def test_gsd_verify_finds_the_corrupt_tile(runner: CliRunner) -> None:
    paths = [str(SHARED_RASTERS / n) for n in ("corrupt.tif", "byte.tif")]
    plain = runner.invoke(app, ["gsd", "--json", *paths])
    assert plain.exit_code == 0, plain.output  # the header alone is fine
    result = runner.invoke(app, ["gsd", "--json", "--verify", *paths])
    assert result.exit_code == 1
    corrupt, byte = _json_rows(result.stdout)
    assert corrupt["status"] == "failed" and corrupt["pixels"] == "unreadable"
    assert corrupt["gsd_m"] is not None  # georeferencing still reported
    assert byte["status"] == "ok" and byte["pixels"] == "ok"


@pytest.mark.shared_data
@needs_shared
def test_gsd_examples_with_shared_rasters(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["gsd-examples", "--out", str(out), "--shared", str(SHARED_RASTERS)]
    result = runner.invoke(app, args, env=ENV)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert all(c["ok"] for c in report["generated"])
    counts = report["shared_counts"]
    n_files = len([p for p in SHARED_RASTERS.iterdir() if p.is_file() and p.suffix != ".md"])
    assert sum(counts.values()) == len(report["shared"]) == n_files
    assert counts["failed"] >= 1  # corrupt.tif


# -- synth -------------------------------------------------------------------------------


def test_synth_writes_a_dataset(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    args = ["synth", "--out", str(out), "--n", "3", "--chips", "2", "--views", "optical,sar"]
    result = runner.invoke(app, [*args, "--seed", "1"], env=ENV)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["images"] == 3 * 2 + 2
    assert (out / "records.jsonl").is_file()
    assert "records" in result.stdout


def test_fusion_world_takes_set_for_every_world_field(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "world"
    args = ["fusion", "world", str(out), "--n-scenes", "2", "--seed", "3"]
    result = runner.invoke(
        app,
        [*args, "--set", "chip_background=textured", "--set", "cloud_cover=[0.5, 0.6]"],
        env=ENV,
    )
    assert result.exit_code == 0, result.output
    config = json.loads((out / "manifest.json").read_text(encoding="utf-8"))["config"]
    assert config["chip_background"] == "textured" and config["cloud_cover"] == [0.5, 0.6]
    assert config["n_scenes"] == 2 and config["seed"] == 3
    bad = runner.invoke(app, [*args, "--set", "chip_backgrond=flat"], env=ENV)
    assert bad.exit_code == 2 and "did you mean 'chip_background'" in bad.output
    bad = runner.invoke(app, [*args, "--set", "n_scenes=2.5"], env=ENV)
    assert bad.exit_code == 2 and "n_scenes=2.5: expected an integer" in bad.output


def test_fusion_run_refuses_a_bad_set_before_running(runner: CliRunner, tmp_path: Path) -> None:
    args = ["fusion", "run", "--preset", "ci", "--out", str(tmp_path / "x")]
    result = runner.invoke(app, [*args, "--set", "stepz=3"], env=ENV)
    assert result.exit_code == 2 and "did you mean 'steps'" in result.output
    assert not (tmp_path / "x").exists()


def test_synth_refuses_a_bad_range(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["synth", "--out", str(tmp_path), "--gsd-range", "0,5"], env=ENV)
    assert result.exit_code == 2
    assert "gsd_range_m" in result.output


def test_quickstart_takes_set_overrides_through_the_config_builder(tmp_path: Path) -> None:
    runner = CliRunner(env={"COLUMNS": "200"})
    bad = runner.invoke(app, ["quickstart", "--preset", "ci", "--out", str(tmp_path),
                              "--set", "stage1_stpes=3"])  # fmt: skip
    assert bad.exit_code == 2 and "stage1_stpes" in bad.output and "did you mean" in bad.output
    wrong = runner.invoke(app, ["quickstart", "--preset", "ci", "--out", str(tmp_path),
                                "--set", "seed=1.5"])  # fmt: skip
    assert wrong.exit_code == 2 and "seed=1.5" in wrong.output
    assert not any(tmp_path.iterdir())  # refused before anything ran
