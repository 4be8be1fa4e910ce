"""LRS-VQA: the reader's rows, per-source / per-category accuracy, the mean-of-AA headline,
the WordNet rule through an injected lexicon, and the early failure without WordNet."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

import pytest

from earthvlm.eval.benchmarks import BenchmarkError, build_benchmark
from earthvlm.eval.metrics.text import WordNetUnavailableError


class _Synset:
    """A stand-in synset: similarity 1.0 within a synonym group, 0.2 across groups."""

    def __init__(self, group: str) -> None:
        self.group = group

    def path_similarity(self, other: Any, /) -> float | None:
        return 1.0 if other.group == self.group else 0.2


_GROUPS = {"car": "vehicle", "automobile": "vehicle", "ship": "vessel", "boat": "boat"}


def fake_synsets(word: str) -> list[_Synset]:
    return [_Synset(_GROUPS[word])] if word in _GROUPS else []


#: Predictions for the five valid rows, in file order.
PREDICTIONS = ["White.", "4", "automobile", "boat", "farmland"]


def test_rows_become_records_with_source_and_category(bench_data: dict[str, Path]) -> None:
    bench = build_benchmark("lrs_vqa", synsets=fake_synsets)
    recs = list(bench.examples(bench_data["lrs_vqa"]))
    assert [r.meta["question_id"] for r in recs] == [
        "FAIR_1",
        "FAIR_2",
        "FAIR_3",
        "STAR_1",
        "GLH_1",
    ]
    assert bench.ledger.ok == 5 and bench.ledger.n_failed == 2  # size mismatch, no answer
    assert [bench.category(r) for r in recs][:2] == ["FAIR/color", "FAIR/count"]
    assert recs[1].boxes == [] and bench.reference(recs[1]) == "3"  # count row: no box
    assert "single word or phrase" in recs[0].messages[0].text()
    assert bench.options()["synsets"] == "custom"


def test_headline_is_the_mean_of_the_per_source_aa(bench_data: dict[str, Path]) -> None:
    bench = build_benchmark("lrs_vqa", synsets=fake_synsets)
    recs = list(bench.examples(bench_data["lrs_vqa"]))
    result = bench.score(recs, PREDICTIONS)
    # "automobile" matches "car" through the lexicon; "boat" vs "ship" is 0.2: wrong
    assert result.item_scores == (1.0, 0.0, 1.0, 0.0, 1.0)
    # FAIR AA = mean(color 1, count 0, category 1) = 2/3; STAR 0; GLH 1
    assert result.metrics["aa_FAIR"] == pytest.approx(2 / 3)
    assert result.metrics["aa_STAR"] == 0.0 and result.metrics["aa_GLH"] == 1.0
    assert result.headline == pytest.approx((2 / 3 + 0 + 1) / 3)
    assert result.metrics["overall_accuracy"] == pytest.approx(3 / 5)
    assert result.metrics["match"] == "lrs"
    assert result.categories["FAIR/count"].score == 0.0
    for rec, pred, s in zip(recs, PREDICTIONS, result.item_scores, strict=True):
        assert bench.reward(rec, pred) == s
    assert bench.score(recs, [None] * 5).headline == 0.0  # missing answers are wrong


def test_exact_match_only_is_said_in_the_result(bench_data: dict[str, Path]) -> None:
    bench = build_benchmark("lrs_vqa", wordnet=False)
    recs = list(bench.examples(bench_data["lrs_vqa"]))
    result = bench.score(recs, PREDICTIONS)
    assert result.item_scores == (1.0, 0.0, 0.0, 0.0, 1.0)  # no synonym for "automobile"
    assert result.metrics["match"] == "exact"
    assert result.headline == pytest.approx((1 / 3 + 0 + 1) / 3)
    with pytest.raises(ValueError, match="wordnet=False"):
        build_benchmark("lrs_vqa", wordnet=False, synsets=fake_synsets)


def test_missing_wordnet_fails_when_built_with_the_install_steps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_import = builtins.__import__

    def no_nltk(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "nltk" or name.startswith("nltk."):
            raise ImportError("No module named 'nltk'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_nltk)
    with pytest.raises(WordNetUnavailableError, match="apt-get install wordnet-base"):
        build_benchmark("lrs_vqa")


def test_a_folder_without_the_annotations_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match=r"no LRS_VQA/LRS_VQA_merged\.jsonl"):
        build_benchmark("lrs_vqa", wordnet=False).examples(tmp_path)
