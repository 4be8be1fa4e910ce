"""Open-ended short answers: normalisation, the LRS-VQA rule (with a fake WordNet), RSVQA."""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Sequence
from typing import ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earthvlm.errors import EarthVLMError
from earthvlm.eval.metrics import (
    WordNetUnavailableError,
    exact_match,
    lrs_match,
    lrs_vqa_source,
    mean_of_source_aa,
    normalise_answer,
    score_lrs_vqa,
    score_open_ended,
    score_rsvqa,
    wordnet_similar,
    wordnet_synsets,
    words_to_digits,
)


class FakeSynset:
    """A synset whose path similarity comes from a small table (1.0 with itself)."""

    TABLE: ClassVar[dict[frozenset[str], float]] = {
        frozenset({"car.n.01", "boat.n.01"}): 0.2,
        frozenset({"ship.n.01", "boat.n.01"}): 0.8,  # exactly the threshold: not similar
        frozenset({"pool.n.01", "tank.n.02"}): 0.9,
    }

    def __init__(self, name: str) -> None:
        self.name = name

    def path_similarity(self, other: FakeSynset) -> float | None:
        if other.name == self.name:
            return 1.0
        return self.TABLE.get(frozenset({self.name, other.name}))


LEXICON = {
    "car": ["car.n.01"],
    "automobile": ["car.n.01"],
    "boat": ["boat.n.01"],
    "ship": ["ship.n.01"],
    "pool": ["pool.n.01"],
    "tank": ["tank.n.01", "tank.n.02"],
    "harbor": ["harbor.n.01"],
}


def fake_synsets(word: str) -> Sequence[FakeSynset]:
    return [FakeSynset(n) for n in LEXICON.get(word, [])]


# -- normalisation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kwargs", "expected"),
    [
        ("  Storage   Tank. ", {}, "storage tank"),  # the LRS-VQA rule: case, spaces, "."
        ("The harbor", {}, "the harbor"),  # articles stay unless asked
        ("The harbor", {"articles": True}, "harbor"),
        ("Three", {"number_words": True}, "3"),
        ("twenty-one planes", {"number_words": True}, "21 planes"),
        ("yes!", {"punctuation": True}, "yes"),
        ("3.5 m", {"punctuation": True}, "3.5 m"),  # a decimal point survives
    ],
)
def test_normalise_answer(text: str, kwargs: dict[str, bool], expected: str) -> None:
    assert normalise_answer(text, **kwargs) == expected


def test_words_to_digits_keeps_other_words() -> None:
    assert words_to_digits("two hundred and five well-known cars") == "205 well-known cars"
    assert words_to_digits("three four") == "3 4"  # two numbers, not 7


def test_exact_match_never_matches_an_empty_or_missing_prediction() -> None:
    assert exact_match("Harbor.", "harbor")
    assert not exact_match("", "")
    assert not exact_match(None, "harbor")


# -- the LRS-VQA rule with a fake WordNet -------------------------------------------------------


def test_wordnet_rule_is_any_synset_pair_strictly_above_0_8() -> None:
    assert wordnet_similar("car", "automobile", fake_synsets)  # shared synset: 1.0
    assert not wordnet_similar("car", "boat", fake_synsets)  # 0.2
    assert not wordnet_similar("ship", "boat", fake_synsets)  # 0.8 is not > 0.8
    assert wordnet_similar("pool", "tank", fake_synsets)  # second synset of tank: 0.9
    assert not wordnet_similar("harbor", "unknownword", fake_synsets)  # no synsets
    assert lrs_match("Automobile.", "car", fake_synsets)
    assert not lrs_match(None, "car", fake_synsets)


def test_lrs_vqa_aggregation_by_hand() -> None:
    rows = [
        # (question_id, category, ground truth, prediction, correct?)
        ("FAIR_1", "color", "white", "White.", True),
        ("FAIR_2", "color", "red", "blue", False),
        ("FAIR_3", "count", "3", "3", True),
        ("STAR_1", "category", "car", "automobile", True),  # WordNet (fake): 1.0
        ("STAR_2", "category", "boat", "ship", False),  # 0.8, not above
        ("STAR_3", "shape", "round", "square", False),
        ("STAR_4", "shape", "round", None, False),  # missing: failed, wrong
        ("GLH_1", "background", "pool", "tank", True),  # 0.9
        ("GLH_2", "background", "", "water", None),  # no ground truth: skipped
    ]
    qids, cats, gts, preds, _ = zip(*rows, strict=True)
    res = score_lrs_vqa(list(preds), list(gts), list(cats), list(qids), synsets=fake_synsets)
    fair, star, glh = res.by_source["FAIR"], res.by_source["STAR"], res.by_source["GLH"]
    # FAIR: color 1/2, count 1/1 -> AA = (0.5 + 1.0) / 2 = 0.75, OA = 2/3
    assert fair.average == pytest.approx(0.75) and fair.overall == pytest.approx(2 / 3)
    # STAR: category 1/2, shape 0/2 -> AA = (0.5 + 0) / 2 = 0.25, OA = 1/4
    assert star.average == pytest.approx(0.25) and star.overall == pytest.approx(1 / 4)
    # GLH: background 1/1 (the skipped row is not scored) -> AA = 1.0
    assert glh.average == pytest.approx(1.0) and glh.n == 1
    # headline = mean of the per-source AAs = (0.75 + 0.25 + 1.0) / 3 = 2/3
    assert res.headline == pytest.approx(2 / 3)
    assert res.overall == pytest.approx(4 / 8)
    assert res.ledger.read == 9 and res.ledger.ok == 7
    assert res.ledger.failed["missing prediction"] == 1
    assert res.ledger.skipped["no ground truth"] == 1
    assert res.to_dict()["by_source"]["STAR"]["average_accuracy"] == pytest.approx(0.25)
    json.dumps(res.to_dict(), allow_nan=False)


def test_the_papers_headline_example() -> None:
    # LRS-VQA paper: per-source AAs 27.37, 42.42, 31.77 -> (27.37 + 42.42 + 31.77) / 3
    assert mean_of_source_aa({"FAIR": 27.37, "STAR": 42.42, "GLH": 31.77}) == pytest.approx(
        101.56 / 3
    )
    assert round(mean_of_source_aa({"a": 27.37, "b": 42.42, "c": 31.77}), 2) == 33.85
    with pytest.raises(ValueError, match="aa_by_source"):
        mean_of_source_aa({})


def test_exact_mode_needs_no_wordnet() -> None:
    res = score_lrs_vqa(["automobile"], ["car"], ["category"], ["STAR_1"], match="exact")
    assert res.match == "exact" and res.overall == 0.0


def test_lrs_vqa_source_prefix() -> None:
    assert lrs_vqa_source("GLH_0042") == "GLH"
    with pytest.raises(ValueError, match="source prefix"):
        lrs_vqa_source("0042")


# -- WordNet absent: a clear project error, never a download --------------------------------------


def test_without_nltk_the_error_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nltk", None)  # import nltk -> ImportError
    with pytest.raises(WordNetUnavailableError) as info:
        wordnet_synsets()
    msg = str(info.value)
    assert "nltk is not installed" in msg
    assert "wordnet-base" in msg and "lexnames" in msg and "NLTK_DATA" in msg
    assert isinstance(info.value, EarthVLMError)
    with pytest.raises(WordNetUnavailableError):  # the scorer asks before scoring anything
        score_lrs_vqa(["car"], ["car"], ["category"], ["STAR_1"])


def test_without_wordnet_data_the_error_lists_the_search_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    nltk = types.ModuleType("nltk")
    corpus = types.ModuleType("nltk.corpus")
    data = types.SimpleNamespace(path=[])

    def find(name: str) -> None:
        raise LookupError(f"Resource {name} not found.")

    data.find = find
    nltk.data = data  # type: ignore[attr-defined]
    corpus.wordnet = types.SimpleNamespace(ensure_loaded=lambda: None)  # type: ignore[attr-defined]
    nltk.corpus = corpus  # type: ignore[attr-defined]
    nltk.download = lambda *a, **k: pytest.fail("WordNet must never be downloaded")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "nltk", nltk)
    monkeypatch.setitem(sys.modules, "nltk.corpus", corpus)
    monkeypatch.delenv("NLTK_DATA", raising=False)
    with pytest.raises(WordNetUnavailableError, match="cannot load it") as info:
        wordnet_synsets(data_dir=str(tmp_path))
    assert str(tmp_path) in str(info.value)  # the folder was added to the search path
    assert "lexnames" in str(info.value)


# -- generic scorer and RSVQA --------------------------------------------------------------------


def test_score_open_ended_checks_inputs() -> None:
    with pytest.raises(ValueError, match="predictions has 1, references has 2"):
        score_open_ended(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="match must be"):
        score_open_ended(["a"], ["a"], match="fuzzy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sources\\[0\\]"):
        score_open_ended(["a"], ["a"], sources=[""])


def test_rsvqa_per_type_overall_and_average_by_hand() -> None:
    preds = ["Yes", "no", "two", "3", "0m2", "rural", "yes"]
    refs = ["yes", "yes", "2", "4", "0m2", "urban", "no"]
    types_ = ["presence", "presence", "count", "count", "area", "rural_urban", "comparison"]
    res = score_rsvqa(preds, refs, types_)
    by = {k: v.accuracy for k, v in res.table.by_group.items()}
    # presence 1/2, count 1/2 ("two" == "2"), area 1/1, rural_urban 0/1, comparison 0/1
    assert by == pytest.approx(
        {"presence": 0.5, "count": 0.5, "area": 1.0, "rural_urban": 0.0, "comparison": 0.0}
    )
    assert res.overall == pytest.approx(3 / 7)
    assert res.average == pytest.approx((0.5 + 0.5 + 1.0 + 0.0 + 0.0) / 5)  # 0.4
    assert res.to_dict()["by_type"]["count"]["n"] == 2


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=60), st.booleans(), st.booleans(), st.booleans())
def test_normalise_never_raises_and_is_idempotent(
    text: str, articles: bool, punctuation: bool, number_words: bool
) -> None:
    opts = {"articles": articles, "punctuation": punctuation, "number_words": number_words}
    once = normalise_answer(text, **opts)
    assert normalise_answer(once, **opts) == once
    assert not once.endswith((".", " "))


def test_integer_ground_truth_reads_as_digits() -> None:
    assert score_open_ended(["three"], [3], normalise={"number_words": True}).overall == 1.0


def test_all_rows_skipped_gives_nan_not_an_error() -> None:
    res = score_open_ended(["a"], [""])
    assert res.n == 0 and res.ledger.n_skipped == 1
    assert res.to_dict()["headline"] is None
