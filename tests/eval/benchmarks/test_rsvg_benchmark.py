"""DIOR-RSVG / RSVG grounding: refGeo's files, Acc@0.5 of the first box, parse misses."""

from __future__ import annotations

from pathlib import Path

import pytest

from earthvlm.eval.benchmarks import BenchmarkError, build_benchmark


def test_lines_become_grounding_records(bench_data: dict[str, Path]) -> None:
    bench = build_benchmark("dior_rsvg")
    recs = list(bench.examples(bench_data["dior_rsvg"]))
    assert len(recs) == 2 and bench.ledger.ok == 2 and bench.ledger.n_failed == 2
    assert bench.reference_px(recs[0]) == [2.0, 4.0, 12.0, 14.0]
    assert "the storage tank on the left" in recs[0].messages[0].text()


def test_acc_at_half_first_box_and_misses(bench_data: dict[str, Path]) -> None:
    bench = build_benchmark("dior_rsvg")
    recs = list(bench.examples(bench_data["dior_rsvg"]))
    # IoU([2,4,12,14], [2,4,12,9]) = 50 / 100 = 0.5: not above 0.5, a miss;
    # the second answer's first box is exact (its second box is ignored)
    result = bench.score(recs, ["2,4,12,9 tank", "10,0,20,8 vehicle\n0,0,5,5 vehicle"])
    assert result.item_scores == (0.0, 1.0)
    assert result.metric == "acc@0.5" and result.headline == 0.5
    assert result.metrics["mean_iou"] == pytest.approx(0.75)
    assert bench.reward(recs[0], "[2, 4, 12, 13]") == 1.0  # IoU 0.9
    assert bench.score(recs, ["There is none.", None]).item_scores == (0.0, 0.0)


def test_wrong_split_and_missing_files(bench_data: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="has test and val"):
        build_benchmark("rsvg", split="train")
    with pytest.raises(BenchmarkError, match=r"no metainfo/rsvg_test\.jsonl"):
        build_benchmark("rsvg").examples(bench_data["dior_rsvg"])
