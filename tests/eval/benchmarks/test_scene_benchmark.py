"""Scene classification over class folders: the release layouts, the split file, and the
closed-set answer rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from earthvlm.eval.benchmarks import BenchmarkError, build_benchmark
from earthvlm.eval.benchmarks.scene import DATASETS, closed_set_answer


def test_release_tables_are_complete() -> None:
    sizes = {k: len(v.classes) for k, v in DATASETS.items()}
    assert sizes == {"aid": 30, "ucmerced": 21, "nwpu_resisc45": 45, "whu_rs19": 19,
                     "meter_ml": 7}  # fmt: skip
    for key in DATASETS:
        names = build_benchmark(key).class_names()
        assert len(set(names)) == len(names), key


def test_aid_folders_split_file_and_gsd(bench_data: dict[str, Path]) -> None:
    bench = build_benchmark("aid")
    recs = list(bench.examples(bench_data["aid"]))
    assert [r.id for r in recs] == ["aid-Airport-airport_1", "aid-Airport-airport_2",
                                    "aid-BareLand-bareland_1"]  # fmt: skip
    assert dict(bench.ledger.skipped) == {"not_an_image": 1}
    assert dict(bench.ledger.failed) == {"unknown_class": 1}  # Volcano is no AID class
    assert [bench.reference(r) for r in recs] == ["airport", "airport", "bare land"]
    text = recs[0].messages[0].text()
    assert text.startswith("Classify the scene") and "bare land, baseball field" in text
    gsd = recs[0].images[0].gsd
    assert (gsd.lo_m, gsd.hi_m) == (0.5, 8.0)
    split = build_benchmark("aid", split_file="test.txt")
    assert [r.id for r in split.examples(bench_data["aid"])] == [
        "aid-Airport-airport_1", "aid-BareLand-bareland_1"]  # fmt: skip
    assert split.ledger.skipped["not_in_split"] == 1
    with pytest.raises(BenchmarkError, match="no such split file"):
        list(build_benchmark("aid", split_file="nope.txt").examples(bench_data["aid"]))


def test_overall_and_per_class_accuracy(bench_data: dict[str, Path]) -> None:
    bench = build_benchmark("aid")
    recs = list(bench.examples(bench_data["aid"]))
    # right (any case, a sentence); "port" is another class; bare land written as a folder
    preds = ["The scene shows an Airport.", "port", "BareLand"]
    result = bench.score(recs, preds)
    assert result.item_scores == (1.0, 0.0, 1.0)
    assert result.metric == "overall_accuracy" and result.headline == pytest.approx(2 / 3)
    assert {k: v.score for k, v in result.categories.items()} == {"airport": 0.5, "bare land": 1.0}
    assert result.metrics["average_accuracy"] == 0.75
    assert bench.reward(recs[1], None) == 0.0


def test_closed_set_rule() -> None:
    classes = ["parking", "park", "dense residential", "residential", "port", "airport"]
    assert closed_set_answer("Dense-Residential.", classes) == "dense residential"
    assert closed_set_answer("a dense residential area", classes) == "dense residential"
    assert closed_set_answer("an airport", classes) == "airport"  # not "port"
    assert closed_set_answer("parking", classes) == "parking"  # not "park"
    assert closed_set_answer("park or airport", classes) is None  # two classes
    assert closed_set_answer("a lake", classes) is None


def test_ucmerced_layout_and_missing_folder(bench_data: dict[str, Path], tmp_path: Path) -> None:
    bench = build_benchmark("ucmerced")
    recs = list(bench.examples(bench_data["ucmerced"]))
    assert [bench.reference(r) for r in recs] == ["dense residential", "tennis court"]
    assert bench.score(recs, ["denseresidential", "tennis"]).item_scores == (1.0, 0.0)
    (tmp_path / "x.txt").write_text("", encoding="utf-8")
    assert list(build_benchmark("whu_rs19").examples(tmp_path)) == []


def test_meter_ml_on_the_vhm_split(tmp_path: Path, gen) -> None:
    root = gen.write_meter_ml_vhm(tmp_path / "meter")
    bench = build_benchmark("meter_ml", vhm_json="cls_METER_ML.json")
    recs = list(bench.examples(root))
    assert [bench.reference(r) for r in recs] == [
        "concentrated animal feeding operations",
        "coal mines",
        "wastewater treatment plants",
    ]
    assert recs[0].images[0].path == "cls_METER_ML/0.png" and recs[0].task == "classification"
    assert recs[0].messages[0].text().startswith("Classify the scene")
    assert dict(bench.ledger.failed) == {"unknown_class": 1, "missing_image": 1}
    result = bench.score(recs, ["CAFOs", "Coal mine", "landfills"])
    assert result.item_scores == (1.0, 0.0, 0.0)  # "Coal mine" names no class exactly
    with pytest.raises(BenchmarkError, match=r"cls_METER_ML\.json"):
        list(build_benchmark("meter_ml", vhm_json="cls_METER_ML.json").examples(tmp_path))
    with pytest.raises(ValueError, match="give one of them"):
        build_benchmark("meter_ml", vhm_json="x.json", split_file="t.txt")
