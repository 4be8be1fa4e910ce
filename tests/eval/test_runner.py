"""The benchmark runner end to end on a tiny trained model: generation, the resumable
cache, sharding across processes, refused records, and the reports."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from earthvlm.eval.benchmarks import build_benchmark
from earthvlm.eval.runner import (
    COMPLETE_FILE,
    EvalError,
    Processes,
    RunConfig,
    run_benchmark,
    run_benchmarks,
)
from earthvlm.models import EarthVLM
from earthvlm.synth.dataset import SynthConfig, generate_dataset
from earthvlm.train import train
from earthvlm.train.config import config_from_dict

CONFIG = RunConfig(batch_size=4, limit=8, max_new_tokens=4)


@pytest.fixture(scope="module")
def chips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 object chips (the training data, and synth_chips' examples)."""
    out = tmp_path_factory.mktemp("chips")
    generate_dataset(out, SynthConfig(n_scenes=0, n_chips=12, chip_size_px=64, seed=0))
    return out


@pytest.fixture(scope="module")
def run_dir(chips: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stage-2 CS-HLoRA run of 2 steps on the chips (a tiny random Qwen3-VL)."""
    cfg = config_from_dict({
        "stage": 2, "name": "tiny", "output_dir": str(tmp_path_factory.mktemp("runs")),
        "progress": False,
        "data": {"records": str(chips / "records.jsonl"), "exact_share": 1.0, "min_bins": 2,
                 "max_length": 256},
        "adapter": {"kind": "cshlora", "r": 4, "alpha": 8.0},
        "optim": {"lr": 5e-3, "head_lr": 5e-3, "batch_size": 2, "grad_accum": 1,
                  "max_steps": 2, "warmup_ratio": 0.0},
    })  # fmt: skip
    assert train(cfg).finished
    return cfg.run_dir


@pytest.fixture
def model(run_dir: Path) -> EarthVLM:
    return EarthVLM.load(run_dir)


def count_generate(model: EarthVLM, monkeypatch: pytest.MonkeyPatch,
                   fail_on_call: int | None = None) -> list[int]:  # fmt: skip
    """Batch sizes of every generate call from now on (raises on call ``fail_on_call``)."""
    calls: list[int] = []
    original = model.generate_batch  # the runner decodes through it (scale, fusion, [SEG])

    def counted(batch: Any, **kwargs: Any) -> Any:
        calls.append(int(batch.inputs["input_ids"].shape[0]))
        if fail_on_call is not None and len(calls) == fail_on_call:
            raise RuntimeError("simulated crash")
        return original(batch, **kwargs)

    monkeypatch.setattr(model, "generate_batch", counted)
    return calls


def shard_ids(folder: Path, rank: int) -> list[str]:
    path = folder / "shards" / f"rank-{rank:03d}.jsonl"
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def test_a_run_writes_reports_and_a_rerun_generates_nothing(
    model: EarthVLM, chips: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_generate(model, monkeypatch)
    bench = build_benchmark("synth_chips")
    run = run_benchmark(model, bench, chips, tmp_path, CONFIG, Processes())
    assert calls == [4, 4] and (run.n_generated, run.n_cached) == (8, 0)
    folder = tmp_path / "synth_chips"
    assert run.folder == folder and (folder / COMPLETE_FILE).is_file()

    rows = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    recs = list(bench.examples(chips, limit=8))
    assert [r["id"] for r in rows] == [r.id for r in recs]
    assert all(isinstance(r["prediction"], str) and r["failure"] is None for r in rows)
    assert [r["score"] for r in rows] == list(run.result.item_scores)  # raw outputs + scores
    assert [r["reference"] for r in rows] == [bench.reference(r) for r in recs]

    report = json.loads((folder / "scores.json").read_text())
    assert report["result"]["metric"] == "accuracy" and report["result"]["n"] == 8
    assert report["generation"]["max_new_tokens"] == 4 and report["run"]["limit"] == 8
    assert report["model"]["checkpoint"] == str(model.source.resolve())
    assert report["model"]["variant"] == "cshlora"
    assert {"earthvlm", "git_commit", "torch", "transformers"} <= set(report["provenance"])
    with open(folder / "scores.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert table[0] == {"benchmark": "synth_chips", "version": "1", "category": "all", "n": "8",
                        "metric": "accuracy", "value": str(run.result.headline)}  # fmt: skip
    assert {r["category"] for r in table} >= {"all", *(bench.reference(r) for r in recs)}
    md = (folder / "report.md").read_text()
    assert "# synth_chips (v1)" in md and "## By category" in md and "git_commit" in md

    before = (folder / "predictions.jsonl").read_text()
    again = run_benchmark(model, bench, chips, tmp_path, CONFIG, Processes())
    assert calls == [4, 4]  # no new generate call
    assert (again.n_generated, again.n_cached) == (0, 8)
    assert (folder / "predictions.jsonl").read_text() == before
    assert again.result.item_scores == run.result.item_scores

    # the cache belongs to its setup: another max_new_tokens is refused, not mixed in
    with pytest.raises(EvalError, match="max_new_tokens differ"):
        run_benchmark(model, bench, chips, tmp_path, RunConfig(limit=8, max_new_tokens=5),
                      Processes())  # fmt: skip


def test_a_crash_costs_one_batch_and_a_torn_line_is_cut(
    model: EarthVLM, chips: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = build_benchmark("synth_chips")
    calls = count_generate(model, monkeypatch, fail_on_call=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_benchmark(model, bench, chips, tmp_path, CONFIG, Processes())
    folder = tmp_path / "synth_chips"
    assert len(shard_ids(folder, 0)) == 4 and not (folder / COMPLETE_FILE).exists()
    with open(folder / "shards" / "rank-000.jsonl", "a") as f:
        f.write('{"id": "chip-0000')  # killed mid-write
    monkeypatch.undo()
    calls = count_generate(model, monkeypatch)
    run = run_benchmark(model, bench, chips, tmp_path, CONFIG, Processes())
    assert calls == [4] and (run.n_generated, run.n_cached) == (4, 4)
    assert len(shard_ids(folder, 0)) == 8  # every line parses: the torn one was cut
    assert run.result.n == 8


def test_processes_take_every_kth_example_and_the_main_one_merges(
    model: EarthVLM, chips: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = build_benchmark("synth_chips")
    ids = [r.id for r in bench.examples(chips, limit=8)]
    calls = count_generate(model, monkeypatch)
    other = run_benchmark(model, bench, chips, tmp_path, CONFIG, Processes(index=1, count=2))
    assert other.result is None and other.n_generated == 4  # not main: no scores
    main = run_benchmark(model, bench, chips, tmp_path, CONFIG, Processes(index=0, count=2))
    folder = tmp_path / "synth_chips"
    assert shard_ids(folder, 1) == ids[1::2] and shard_ids(folder, 0) == ids[0::2]
    assert main.result is not None and main.result.n == 8 and calls == [4, 4]
    merged = [json.loads(line)["id"] for line in (folder / "predictions.jsonl").open()]
    assert merged == ids
    # resuming with another number of processes reads every shard
    single = run_benchmark(model, bench, chips, tmp_path, CONFIG, Processes())
    assert (single.n_generated, single.n_cached) == (0, 8) and calls == [4, 4]
    with pytest.raises(ValueError, match=r"outside 0\.\.1"):
        Processes(index=2, count=2)


def test_a_refused_record_is_wrong_counted_and_tried_again(
    model: EarthVLM, chips: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    shutil.copytree(chips, data)
    bench = build_benchmark("synth_chips")
    first = next(iter(bench.examples(data)))
    (data / first.images[0].path).unlink()
    cfg = RunConfig(batch_size=4, limit=4, max_new_tokens=3)
    run = run_benchmark(model, bench, data, tmp_path / "out", cfg, Processes())
    assert dict(run.failures) == {"missing_image": 1} and run.n_generated == 3
    assert run.result.item_scores[0] == 0.0
    row = json.loads((tmp_path / "out" / "synth_chips" / "predictions.jsonl").open().readline())
    assert (row["prediction"], row["failure"], row["score"]) == (None, "missing_image", 0.0)
    again = run_benchmark(model, bench, data, tmp_path / "out", cfg, Processes())
    assert dict(again.failures) == {"missing_image": 1} and again.n_cached == 3


def test_several_benchmarks_on_scenes_and_a_summary(
    model: EarthVLM, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    scenes = tmp_path_factory.mktemp("scenes")
    generate_dataset(scenes, SynthConfig(n_scenes=4, size_px=64, seed=0))
    names = ["synth_vqa", "synth_grounding", "synth_detection"]
    cfg = RunConfig(batch_size=2, limit=2, max_new_tokens=3)
    folders: Callable[[str], Path] = lambda name: scenes  # noqa: E731
    runs = run_benchmarks(model, names, folders, tmp_path, cfg, Processes())
    assert [r.name for r in runs] == names
    for r in runs:  # a random model's answers: scored (as wrong), never a crash
        assert r.result is not None and r.result.n == r.n_examples
        assert (tmp_path / r.name / COMPLETE_FILE).is_file()
    with open(tmp_path / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["benchmark"], r["metric"]) for r in rows] == [
        ("synth_vqa", "accuracy"),
        ("synth_grounding", "acc@0.5"),
        ("synth_detection", "ap50_nc"),
    ]
    md = (tmp_path / "summary.md").read_text()
    assert "[synth_vqa/report.md](synth_vqa/report.md)" in md
    assert str(model.source.resolve()) in md


def test_a_seg_answer_carries_its_mask_as_rle_at_the_image_size() -> None:
    from earthvlm.data.record import ImagePart, ImageRef, Message, Record, TextPart
    from earthvlm.eval.benchmarks.earthmind import parse_mask
    from earthvlm.eval.runner import mask_text

    rec = Record(
        id="r", task="referring_segmentation", source="t",
        images=[ImageRef(path="a.png", width=8, height=8)],
        messages=[Message(role="user", content=[ImagePart(index=0), TextPart(text="Segment")]),
                  Message(role="assistant", content="[SEG]")],
    )  # fmt: skip
    logits = torch.full((2, 4, 4), -5.0)
    logits[0, :2, 2:] = 5.0  # the first [SEG]'s mask: top-right quarter at 4 x 4
    mask = parse_mask(f"It is here. {mask_text(logits, rec)}", 8, 8)
    expected = np.zeros((8, 8), dtype=bool)
    expected[:4, 4:] = True
    assert mask is not None and np.array_equal(mask, expected)


def test_images_over_the_decode_budget_are_read_reduced_and_counted(
    model: EarthVLM, tmp_path: Path
) -> None:
    """Chips of 512 px (more than the tiny model's 256 x 256 px budget) under a decode
    budget of 100,000 px take the reduced read (the path XLRS-Bench's 10,000 px scenes
    take at the default budget): answers still come and the report counts the images."""
    from dataclasses import replace

    big = tmp_path / "big"
    generate_dataset(big, SynthConfig(n_scenes=0, n_chips=3, chip_size_px=512, seed=3))
    small = replace(CONFIG, limit=3, max_decode_pixels=100_000)
    out = tmp_path / "eval"
    run = run_benchmark(model, build_benchmark("synth_chips"), big, out, small, Processes())
    assert run.n_generated == 3 and not run.failures
    report = json.loads((out / "synth_chips" / "scores.json").read_text())
    assert report["generation"]["reduced_images"] == 3
    assert report["generation"]["reduced_examples"] == 3
    assert report["run"]["max_decode_pixels"] == 100_000
    md = (out / "synth_chips" / "report.md").read_text()
    assert "3 image(s) over 100,000 px read reduced" in md
    rows = (out / "synth_chips" / "predictions.jsonl").read_text().splitlines()
    assert all(json.loads(r)["reduced_images"] == 1 for r in rows)
    with pytest.raises(ValueError, match="max_decode_pixels"):
        RunConfig(max_decode_pixels=0)
