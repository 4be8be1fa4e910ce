"""lmms-eval export: the task YAML parses, the generated utils.py runs on the exported docs,
and its scores equal earthvlm's (per item and the corpus headline)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from types import ModuleType

import pytest
import typer
import yaml
from typer.testing import CliRunner

from earthvlm.cli.lmms import lmms_export_command
from earthvlm.eval.benchmarks import BenchmarkError, build_benchmark
from earthvlm.eval.lmms_export import export_lmms_task, load_task_yaml

_FIXTURES = Path(__file__).parent / "benchmarks" / "fixtures.py"


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def xlrs_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gen = _load(_FIXTURES, "earthvlm_lmms_export_fixtures")
    return gen.write_xlrs_lite(tmp_path_factory.mktemp("xlrs"))


def test_task_yaml_names_the_callbacks_and_greedy_generation(
    xlrs_data: Path, tmp_path: Path
) -> None:
    bench = build_benchmark("xlrs_lite")
    result = export_lmms_task(bench, xlrs_data, tmp_path / "task", limit=3)
    assert result.n_docs == 3 and (result.folder / "COMPLETE").is_file()
    cfg = load_task_yaml(result.yaml_path)
    assert cfg["task"] == "earthvlm_xlrs_lite" == result.task
    assert cfg["doc_to_text"] == "utils.doc_to_text"
    assert cfg["process_results"] == "utils.process_results"
    assert cfg["generation_kwargs"]["max_new_tokens"] == 64
    assert cfg["generation_kwargs"]["do_sample"] is False
    assert cfg["generation_kwargs"]["temperature"] == 0
    assert [m["metric"] for m in cfg["metric_list"]] == ["score", "micro"]
    docs = Path(cfg["dataset_kwargs"]["data_files"]["test"])
    assert docs.is_file() and len(docs.read_text().splitlines()) == 3
    # plain safe_load sees only the lmms-eval `!function` tag as unknown
    text = result.yaml_path.read_text()
    assert yaml.safe_load(text.replace("!function ", "")) == cfg
    meta = json.loads((result.folder / "earthvlm_task.json").read_text())
    assert meta["benchmark"] == "xlrs_lite" and "git_commit" in meta["provenance"]


def test_utils_reproduce_earthvlm_scores(xlrs_data: Path, tmp_path: Path) -> None:
    bench = build_benchmark("xlrs_lite")
    result = export_lmms_task(bench, xlrs_data, tmp_path / "task")
    utils = _load(result.folder / "utils.py", "earthvlm_lmms_export_utils_xlrs")
    docs = [json.loads(line) for line in (result.folder / "docs.jsonl").read_text().splitlines()]
    records = list(bench.examples(xlrs_data))
    predictions = ["(B)", "The answer is C", "A C", "D"]
    items = []
    for doc, rec, pred in zip(docs, records, predictions, strict=True):
        visuals = utils.doc_to_visual(doc)
        assert visuals and visuals[0].mode == "RGB"
        assert utils.doc_to_text(doc) == rec.messages[0].text()
        assert utils.doc_to_text(doc, {"pre_prompt": "Q: ", "post_prompt": ""}).startswith("Q: ")
        assert utils.doc_to_target(doc) == bench.reference(rec)
        out = utils.process_results(doc, [pred])
        assert out["score"] == bench.reward(rec, pred)
        items.append(out["micro"])
    expected = bench.score(records, predictions)
    assert [i for i in expected.item_scores] == [1.0, 1.0, 1.0, 0.0]
    assert utils.aggregate_headline(items) == expected.headline == 0.75


def test_options_travel_and_custom_lexicons_are_refused(tmp_path: Path) -> None:
    gen = _load(_FIXTURES, "earthvlm_lmms_export_fixtures_gro")
    data = gen.write_lrs_gro(tmp_path / "gro")
    bench = build_benchmark("lrs_gro", split="test", wordnet=False, box_grid_px=512)
    result = export_lmms_task(bench, data, tmp_path / "task")
    utils = _load(result.folder / "utils.py", "earthvlm_lmms_export_utils_gro")
    assert utils.benchmark().options() == bench.options()
    doc = json.loads((result.folder / "docs.jsonl").read_text().splitlines()[1])
    out = utils.process_results(doc, ["[50, 100, 200, 175]\n<answer>farmland</answer>"])
    assert out["score"] == 1.0
    assert math.isclose(utils.aggregate_headline([out["accuracy"]]), 1.0)
    with pytest.raises(BenchmarkError, match="custom synonym provider"):
        export_lmms_task(build_benchmark("lrs_gro", synsets=lambda w: []), data, tmp_path / "task2")


def test_cli_command_writes_the_folder(xlrs_data: Path, tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(lmms_export_command)
    runner = CliRunner()
    out = tmp_path / "cli"
    res = runner.invoke(
        app, ["--bench", "xlrs-lite", "--data", str(xlrs_data), "--out", str(out), "--limit", "2"]
    )
    assert res.exit_code == 0, res.output
    assert "earthvlm_xlrs_lite" in res.output and (out / "earthvlm_xlrs_lite.yaml").is_file()
    res = runner.invoke(app, ["--bench", "xlrs", "--data", str(xlrs_data), "--out", str(out)])
    assert res.exit_code == 2 and "did you mean" in res.output
