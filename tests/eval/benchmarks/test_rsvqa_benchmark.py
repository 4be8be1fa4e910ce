"""RSVQA LR and HR: the release's split files, the instruction, accuracy per question type."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from earthvlm.eval.benchmarks import BenchmarkError, build_benchmark


def test_lr_reads_the_active_questions_with_the_instruction(
    bench_data: dict[str, Path], gen: ModuleType
) -> None:
    bench = build_benchmark("rsvqa_lr")
    recs = list(bench.examples(bench_data["rsvqa_lr"]))
    assert [r.id for r in recs] == [f"rsvqa-lr-{q}" for q, *_ in gen.RSVQA_LR_ROWS]
    assert (bench.ledger.ok, dict(bench.ledger.skipped)) == (5, {"inactive": 1})
    assert recs[0].messages[0].text() == (
        "Is there a road in the image?\nAnswer the question using a single word or phrase."
    )
    assert [bench.category(r) for r in recs] == [
        "presence", "comparison", "rural_urban", "count", "presence"]  # fmt: skip
    assert recs[0].images[0].gsd.lo_m == 10.0  # Sentinel-2
    bare = build_benchmark("rsvqa_lr", instruction="")
    assert next(iter(bare.examples(bench_data["rsvqa_lr"]))).messages[0].text() == (
        "Is there a road in the image?"
    )


def test_lr_accuracy_per_type_average_and_overall(bench_data: dict[str, Path]) -> None:
    bench = build_benchmark("rsvqa_lr")
    recs = list(bench.examples(bench_data["rsvqa_lr"]))
    # presence yes (right), comparison no (said yes), rural (right, any case),
    # count 12 (said twelve: number words read as digits), presence no (garbage)
    preds = ["Yes", "yes", "Rural.", "twelve", "<|image_pad|>"]
    result = bench.score(recs, preds)
    assert result.item_scores == (1.0, 0.0, 1.0, 1.0, 0.0)
    assert result.metrics["overall_accuracy"] == 3 / 5
    # per type: presence 1/2, comparison 0, rural_urban 1, count 1 -> AA = 2.5 / 4
    assert result.metric == "average_accuracy" and result.headline == 2.5 / 4
    assert {k: v.score for k, v in result.categories.items()} == {
        "comparison": 0.0, "count": 1.0, "presence": 0.5, "rural_urban": 1.0}  # fmt: skip
    for r, p, s in zip(recs, preds, result.item_scores, strict=True):
        assert bench.reward(r, p) == s


def test_hr_and_its_second_test_set(bench_data: dict[str, Path], tmp_path: Path) -> None:
    bench = build_benchmark("rsvqa_hr")
    recs = list(bench.examples(bench_data["rsvqa_hr"]))
    assert len(recs) == 4 and recs[0].images[0].gsd.lo_m == pytest.approx(0.15)
    preds = ["yes", "between 10m2 and 100m2", "3", None]
    result = bench.score(recs, preds)
    assert result.item_scores == (1.0, 1.0, 0.0, 0.0)
    assert {k: v.score for k, v in result.categories.items()} == {
        "area": 1.0, "comparison": 0.0, "count": 0.0, "presence": 1.0}  # fmt: skip
    with pytest.raises(BenchmarkError, match=r"no USGS_split_test_phili_questions\.json"):
        build_benchmark("rsvqa_hr", split="test_phili").examples(bench_data["rsvqa_hr"])
    with pytest.raises(BenchmarkError, match=r"no LR_split_test_questions\.json"):
        build_benchmark("rsvqa_lr").examples(bench_data["rsvqa_hr"])
