"""XLRS-Bench-lite, OmniEarth-Bench and LRS-GRO as training sources: the benchmark's own
fixture files (one generator per format), the parser the benchmarks share, images checked,
malformed rows quarantined with their reasons."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from earthvlm.data.sources import SourceError, build_reader
from earthvlm.data.sources._base import RowError
from earthvlm.data.sources.xlrs import answer_letters, parse_xlrs_row


def test_xlrs_rows_become_training_records(tmp_path: Path, bench_gen: ModuleType) -> None:
    root = bench_gen.write_xlrs_lite(tmp_path / "xlrs")
    reader = build_reader("xlrs-bench-lite")
    recs = list(reader.read(root))
    assert [r.id for r in recs] == [f"xlrs-bench-lite-{i}" for i in range(4)]
    assert [r.messages[1].content for r in recs] == ["B", "C", "AC", "A"]
    assert [len(r.images) for r in recs] == [1, 2, 1, 1]
    assert (recs[1].images[1].path, recs[1].images[1].width) == ("images/0002b.png", 24)
    assert recs[0].messages[0].text().endswith("(A, B, C, D).\nThe answer is:")
    assert recs[2].meta["category"] == "Land use classification/Overall Land use classification"
    led = reader.ledger
    assert (led.read, led.ok, dict(led.skipped)) == (9, 4, {"blank_line": 1})
    assert sorted(p.reason for p in reader.problems) == [
        "invalid_json", "missing_field:answer", "no_answer_letters", "not_an_object"]  # fmt: skip
    (root / "images" / "0004.png").unlink()
    reader = build_reader("xlrs-bench-lite")
    assert len(list(reader.read(root))) == 3
    assert "missing_image" in {p.reason for p in reader.problems}


def test_omniearth_rows_become_training_records(tmp_path: Path, bench_gen: ModuleType) -> None:
    root = bench_gen.write_omniearth(tmp_path / "omni")
    reader = build_reader("omniearth-bench", split="train")
    recs = list(reader.read(root))
    assert [(r.id, r.split, r.messages[1].content) for r in recs] == [
        ("omniearth-bench-0", "train", "B"),
        ("omniearth-bench-1", "train", "AB"),
        ("omniearth-bench-2", "train", "A"),
    ]
    assert recs[0].meta["L1-task"] == "atmosphere"
    assert "Select all correct answers" in recs[1].messages[0].text()
    assert {p.row: p.reason for p in reader.problems} == {
        3: "last_option_not_unable_to_decide", 5: "answer_not_an_option"}  # fmt: skip


def test_lrs_gro_rows_of_one_split_with_their_region(tmp_path: Path, bench_gen: ModuleType) -> None:
    root = bench_gen.write_lrs_gro(tmp_path / "gro")
    reader = build_reader("lrs-gro", split="test")
    recs = {r.id: r for r in reader.read(root)}
    assert sorted(recs) == ["lrs-gro-G1", "lrs-gro-O1", "lrs-gro-O2", "lrs-gro-R1"]
    glob, region = recs["lrs-gro-G1"], recs["lrs-gro-R1"]
    assert glob.boxes == [] and glob.messages[1].content == "<answer>urban</answer>"
    assert region.messages[1].content == "[100, 200, 400, 500]\n<answer>farmland</answer>"
    # a.png is 32 x 24: the 1024 grid maps to the longer side, 32 px
    assert region.boxes[0].xyxy_px == (3.125, 6.25, 12.5, 15.625)
    assert region.images[0].path == "image/a.png" and region.split == "test"
    assert dict(reader.ledger.skipped) == {"blank_line": 1, "other_split": 1}
    assert sorted(p.reason for p in reader.problems) == ["bad_bbox", "unknown_type"]
    half = {r.id: r for r in build_reader("lrs-gro", split="test", box_grid_px=512).read(root)}
    assert half["lrs-gro-R1"].messages[1].content.startswith("[50, 100, 200, 250]")
    assert len(list(build_reader("lrs-gro", split="rl").read(root))) == 1  # "RL" in the file


def test_lrs_gro_scale_must_match_the_image(tmp_path: Path, bench_gen: ModuleType) -> None:
    root = tmp_path / "gro"
    bench_gen._image(root / "image" / "a.png", 32, 24, seed=1)
    row = {**bench_gen.LRS_GRO_ROWS[1], "split": "sft"}
    lines = [{**row, "question_id": "ok", "scale": 32 / 1024},
             {**row, "question_id": "resized", "scale": 4.79}]  # fmt: skip
    (root / "LRS-GRO.jsonl").write_text("\n".join(json.dumps(r) for r in lines), encoding="utf-8")
    reader = build_reader("lrs-gro")
    assert [r.id for r in reader.read(root)] == ["lrs-gro-ok"]
    assert [p.reason for p in reader.problems] == ["scale_mismatch"]


def test_shared_parser_reasons_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(RowError) as e:
        row = {"index": 1, "image": ["a.png"], "question": "q", "category": "c",
               "multi-choice options": [1, 2], "answer": "A"}  # fmt: skip
        parse_xlrs_row(row)
    assert e.value.reason == "bad_field_type"
    assert answer_letters(["a", "C"]) == {"A", "C"} and answer_letters("(B)") == {"B"}
    for name in ("xlrs-bench-lite", "omniearth-bench", "lrs-gro"):
        with pytest.raises(SourceError, match="none of"):
            list(build_reader(name).read(tmp_path))
