"""LRS-GRO: rows by type, answers read from the response, accuracy by type with the LRS
rule, APO IoU with a missing box scoring 0, and predictions on another grid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from earthvlm.eval.benchmarks import BenchmarkError, build_benchmark
from earthvlm.eval.benchmarks.lrs_gro import extract_answer


class _Synset:
    def __init__(self, group: str) -> None:
        self.group = group

    def path_similarity(self, other: Any, /) -> float | None:
        return 1.0 if other.group == self.group else 0.2


def fake_synsets(word: str) -> list[_Synset]:
    groups = {"car": "vehicle", "automobile": "vehicle"}
    return [_Synset(groups[word])] if word in groups else []


#: Responses for G1, R1, O1, O2 (split "test").
PREDICTIONS = [
    "<think>dense roofs</think><answer>Urban.</answer>",
    '[{"bbox_2d": [100, 200, 400, 350], "label": "field"}]\n<answer>farm land</answer>',
    "[0, 0, 100, 100]\nautomobile",
    "<answer>white</answer>",
]


def test_rows_by_type_and_split(bench_data: dict[str, Path]) -> None:
    bench = build_benchmark("lrs_gro", split="test", synsets=fake_synsets)
    recs = list(bench.examples(bench_data["lrs_gro"]))
    assert [r.meta["question_id"] for r in recs] == ["G1", "R1", "O1", "O2"]
    assert bench.ledger.ok == 4 and bench.ledger.n_failed == 2  # unknown type, bad box
    assert [bench.category(r) for r in recs] == ["global", "region", "object", "object"]
    assert bench.reference_box(recs[0]) is None
    assert bench.reference_box(recs[1]) == [100.0, 200.0, 400.0, 500.0]
    assert recs[0].images[0].path == "image/a.png"
    assert "<answer></answer>" in recs[0].messages[0].text()
    everything = build_benchmark("lrs_gro", wordnet=False)
    assert len(list(everything.examples(bench_data["lrs_gro"]))) == 5  # the train row too


def test_accuracy_by_type_and_apo_iou(bench_data: dict[str, Path]) -> None:
    bench = build_benchmark("lrs_gro", split="test", synsets=fake_synsets)
    recs = list(bench.examples(bench_data["lrs_gro"]))
    result = bench.score(recs, PREDICTIONS)
    assert result.item_scores == (1.0, 0.0, 1.0, 1.0)
    assert result.metric == "accuracy" and result.headline == 0.75
    assert result.metrics["acc_global"] == 1.0 and result.metrics["acc_region"] == 0.0
    assert result.metrics["acc_object"] == 1.0 and result.metrics["match"] == "lrs"
    # IoU 0.5 (region), 1.0 (object), 0 (no box); the global row has no box to score
    assert result.metrics["apo_iou"] == pytest.approx(0.5)
    assert result.categories["object"].score == 1.0
    assert [bench.reward(r, p) for r, p in zip(recs, PREDICTIONS, strict=True)] == [1, 0, 1, 1]
    exact = build_benchmark("lrs_gro", split="test", wordnet=False)
    res = exact.score(recs, PREDICTIONS)
    assert res.headline == 0.5 and res.metrics["match"] == "exact"  # "automobile" != "car"


def test_boxes_on_a_512_grid_are_rescaled(bench_data: dict[str, Path]) -> None:
    bench = build_benchmark("lrs_gro", split="test", wordnet=False, box_grid_px=512)
    recs = list(bench.examples(bench_data["lrs_gro"]))
    assert "longer side is 512" in recs[0].messages[0].text()
    preds = ["urban", "[50, 100, 200, 175] farmland", "[0, 0, 50, 50] car", "no box"]
    result = bench.score(recs, preds)
    assert result.metrics["apo_iou"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert result.headline == 0.75  # "no box" is a wrong answer


def test_answer_extraction() -> None:
    assert extract_answer("<think>a</think><answer> Ship </answer>") == "Ship"
    assert extract_answer("<answer>a</answer><answer>b</answer>") == "b"
    assert extract_answer('<think>x</think>\n[{"bbox_2d": [1, 2, 3, 4]}]\nharbour') == "harbour"
    assert extract_answer(None) is None and extract_answer("[1, 2, 3, 4]") == ""


def test_missing_rows_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(
        BenchmarkError, match=r"none of LRS-GRO\.jsonl, lrs_gro\.jsonl, lrs_gro\.json"
    ):
        build_benchmark("lrs_gro", wordnet=False).examples(tmp_path)
    with pytest.raises(ValueError, match="box_grid_px=0"):
        build_benchmark("lrs_gro", wordnet=False, box_grid_px=0)


#: Path similarities of the table synsets (1.0 to itself, else 0.1).
SIMILARITY = {frozenset({"white", "ivory"}): 0.8}


class _Sim:
    """A synset whose similarity to another is read from :data:`SIMILARITY`."""

    def __init__(self, word: str) -> None:
        self.word = word

    def path_similarity(self, other: Any, /) -> float | None:
        if other.word == self.word:
            return 1.0
        return SIMILARITY.get(frozenset({self.word, other.word}), 0.1)


def table_synsets(word: str) -> list[_Sim]:
    return [_Sim(word)] if word in {"car", "white", "ivory", "urban"} else []


def test_the_release_rule_beside_ours(bench_data: dict[str, Path]) -> None:
    """The release's eval.py: lemmas, similarity >= 0.8, no full stop stripped; ours:
    no lemmas, > 0.8, a trailing full stop stripped. Each differs on one answer here."""
    preds = ["<answer>Urban.</answer>", "<answer>farmland</answer>", "<answer>cars</answer>",
             "<answer>ivory</answer>"]  # fmt: skip
    lemmas = {"cars": "car"}.get
    ours = build_benchmark("lrs_gro", split="test", synsets=table_synsets)
    release = build_benchmark("lrs_gro", split="test", synsets=table_synsets,
                              answer_rule="release", lemmatize=lambda w: lemmas(w, w))  # fmt: skip
    recs = list(ours.examples(bench_data["lrs_gro"]))
    assert ours.score(recs, preds).item_scores == (1.0, 1.0, 0.0, 0.0)
    result = release.score(recs, preds)
    assert result.item_scores == (0.0, 1.0, 1.0, 1.0)
    assert result.metrics["match"] == "release" and result.metrics["acc_object"] == 1.0
    assert release.options()["answer_rule"] == "release"
    assert release.reward(recs[2], "<answer>cars</answer>") == 1.0
    with pytest.raises(ValueError, match="needs WordNet"):
        build_benchmark("lrs_gro", wordnet=False, answer_rule="release")
    with pytest.raises(ValueError, match="answer_rule='x'"):
        build_benchmark("lrs_gro", wordnet=False, answer_rule="x")


def test_what_the_zoom_arm_asks_and_scores_against(bench_data: dict[str, Path]) -> None:
    bench = build_benchmark("lrs_gro", split="test", wordnet=False)
    glob, region = list(bench.examples(bench_data["lrs_gro"]))[:2]
    ask = region.meta["zoom_question"]
    assert ask.startswith("What is the land use south of the river?\n")
    assert "<answer></answer>" in ask and "[x1" not in ask  # the zoom call is the box
    # the 1024 grid maps to the image's longer side (here 2048 px)
    assert bench.roi_xyxy_px(region, (1536, 2048)) == ("region", [200.0, 400.0, 800.0, 1000.0])
    assert bench.roi_xyxy_px(glob, (1536, 2048)) == ("global", None)
