"""Caption metrics against hand-computed coco-caption values."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earthvlm.eval.metrics import (
    bleu,
    cider_d,
    cider_d_per_image,
    meteor_exact_sentence,
    meteor_exact_simplified,
    ptb_tokenize,
    rouge_l,
    rouge_l_sentence,
    score_captions,
)

TINY, SMALL = 1e-15, 1e-9  # coco-caption's BLEU smoothing


def t(s: str) -> list[str]:
    return s.split()


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("A man's dog, running!", ["a", "man", "'s", "dog", "running"]),
        ("Don't stop.", ["do", "n't", "stop"]),
        ("A black-and-white plane at 3.5 m.", ["a", "black-and-white", "plane", "at", "3.5", "m"]),
        ('"Quoted" (brackets) -- dashes...', ["quoted", "brackets", "dashes"]),
    ],
)
def test_ptb_tokenize(text: str, tokens: list[str]) -> None:
    assert ptb_tokenize(text) == tokens


def test_bleu_by_hand() -> None:
    hyp, ref = t("the cat sat on the mat"), t("the cat is on the mat")
    # clipped matches / guesses: 1-grams 5/6 (the x2, cat, on, mat), 2-grams 3/5
    # (the cat, on the, the mat), 3-grams 1/4 (on the mat), 4-grams 0/3; equal lengths
    b1, b2, b3, b4 = bleu([hyp], [[ref]])
    assert b1 == pytest.approx(5 / 6)
    assert b2 == pytest.approx(math.sqrt(5 / 6 * 3 / 5))
    assert b3 == pytest.approx((5 / 6 * 3 / 5 * 1 / 4) ** (1 / 3))  # 0.5
    p = [(5 + TINY) / (6 + SMALL), (3 + TINY) / (5 + SMALL), (1 + TINY) / (4 + SMALL)]
    assert b4 == pytest.approx((p[0] * p[1] * p[2] * (TINY / (3 + SMALL))) ** 0.25)  # ~8e-5


def test_bleu_brevity_penalty_and_closest_reference() -> None:
    # c = 2, r = 6: BP = exp(1 - 6/2) = exp(-2); p1 = p2 = 1
    assert bleu([t("the cat")], [[t("the cat is on the mat")]], n=2)[1] == pytest.approx(
        math.exp(-2)
    )
    # c = 4, references of 5 and 9 words: the closest is 5 -> BP = exp(1 - 5/4)
    b1 = bleu([t("a b c d")], [[t("a b c d e"), t("a b c d e f g h i")]], n=1)[0]
    assert b1 == pytest.approx(math.exp(-0.25))
    # tie (c = 5, references of 3 and 7): the shorter wins, so no penalty
    assert bleu([t("a b c d e")], [[t("a b c"), t("a b c d e f g")]], n=1)[0] == pytest.approx(1)


def test_bleu_is_corpus_level() -> None:
    # counts summed: 1-grams (2 + 1) / 4, 2-grams (1 + 0) / 2 -> sqrt(3/4 * 1/2)
    b2 = bleu([t("a b"), t("c d")], [[t("a b")], [t("c e")]], n=2)[1]
    assert b2 == pytest.approx(math.sqrt(0.75 * 0.5))


def test_rouge_l_by_hand() -> None:
    # LCS("the cat sat", "the cat is on the mat") = 2: P = 2/3, R = 2/6
    p, r, b2 = 2 / 3, 1 / 3, 1.2**2
    expected = (1 + b2) * p * r / (r + b2 * p)  # 0.4192
    assert rouge_l_sentence(t("the cat sat"), [t("the cat is on the mat")]) == pytest.approx(
        expected
    )
    # max P and max R are taken separately: "the cat" gives R = 1, the long one P = 1
    assert rouge_l_sentence(
        t("the cat sat"), [t("the cat"), t("the cat sat on a mat today")]
    ) == pytest.approx(1.0)
    assert rouge_l([t("x"), t("the cat sat")], [[t("y")], [t("the cat is on the mat")]]) == (
        pytest.approx((0 + expected) / 2)
    )


def test_cider_d_by_hand() -> None:
    # two images, one reference each; N = 2 so idf = log 2 - log(max(1, df)) = log 2 for
    # every n-gram here (df is 0 or 1), call it L
    hyps = [t("a b"), t("c d")]
    refs = [[t("a b")], [t("c e")]]
    # image 1: identical -> cosine 1 for n = 1, 2 and 0 for n = 3, 4 (no n-grams);
    #   mean over n = 0.5, x10 = 5.0
    # image 2: 1-grams: only c matches: L*L / (sqrt(2) L * sqrt(2) L) = 0.5; 2-grams: 0
    #   mean over n = 0.5 / 4 = 0.125, x10 = 1.25
    assert cider_d_per_image(hyps, refs) == pytest.approx([5.0, 1.25])
    assert cider_d(hyps, refs) == pytest.approx((5.0 + 1.25) / 2)


def test_cider_d_length_penalty_and_idf() -> None:
    # image 1: hyp "a b c" vs ref "a b" (all weights L again)
    #   1-grams: 2L^2 / (sqrt(3) L * sqrt(2) L) = 2 / sqrt(6); 2-grams: L^2 / (sqrt(2) L * L)
    #   length in bigrams: 2 vs 1 -> penalty exp(-1 / (2 * 36))
    per = cider_d_per_image([t("a b c"), t("c d")], [[t("a b")], [t("c e")]])
    expected = (2 / math.sqrt(6) + 1 / math.sqrt(2)) * math.exp(-1 / 72) / 4 * 10
    assert per[0] == pytest.approx(expected)
    # "x" is in the references of every image: idf log 2 - log 2 = 0, so it earns nothing
    per = cider_d_per_image([t("x"), t("b x")], [[t("a x")], [t("b x")]])
    # image 2: 1-grams b (weight L) and x (0): cosine 1; 2-gram "b x": 1 -> (1 + 1) / 4 * 10
    assert per == pytest.approx([0.0, 5.0])


def test_cider_d_needs_a_corpus() -> None:
    # one image: log(1) = 0, every weight is 0, the score is 0 (as in coco-caption)
    assert cider_d([t("a b")], [[t("a b")]]) == 0.0


def test_simplified_meteor_by_hand() -> None:
    # all 6 words match; the best alignment has 2 chunks ("the cat sat", "on the mat")
    # P = R = 1, Fmean = 1, penalty = 0.5 * (2/6)^3
    got = meteor_exact_sentence(t("the cat sat on the mat"), t("on the mat the cat sat"))
    assert got == pytest.approx(1 - 0.5 * (2 / 6) ** 3)
    # "the cat sat" vs "the cat is on the mat": m = 2, P = 2/3, R = 2/6, 1 chunk
    p, r = 2 / 3, 2 / 6
    fmean = p * r / (0.9 * p + 0.1 * r)
    got = meteor_exact_sentence(t("the cat sat"), t("the cat is on the mat"))
    assert got == pytest.approx(fmean * (1 - 0.5 * (1 / 2) ** 3))
    assert meteor_exact_sentence(t("x"), t("y")) == 0.0
    # the best reference per caption, then the mean over captions
    assert meteor_exact_simplified(
        [t("a b"), t("z")], [[t("q"), t("a b")], [t("y")]]
    ) == pytest.approx((1 - 0.5 * (1 / 2) ** 3) / 2)


def test_score_captions_counts_missing_captions() -> None:
    preds = ["The cat sat on the mat.", None, "A plane."]
    refs = [["The cat is on the mat."], ["A harbor with boats."], []]
    res = score_captions(preds, refs, with_meteor=False)
    assert res.n == 2  # the third image has no references: skipped
    assert res.ledger.ok == 1 and res.ledger.failed["missing caption"] == 1
    assert res.ledger.skipped["no reference captions"] == 1
    # the missing caption scores as empty: BLEU-1 counts 5 matches of 6 guesses, but the
    # reference length is 6 + 4 against 6 predicted words -> BP = exp(1 - 10/6)
    assert res.bleu[0] == pytest.approx((5 + TINY) / (6 + SMALL) * math.exp(1 - 10 / 6))
    d = res.to_dict()
    assert set(d) >= {"bleu_4", "rouge_l", "cider_d", "meteor_exact_simplified"}
    assert d["meteor"] is None  # the simplified score is never reported under METEOR's name
    json.dumps(d, allow_nan=False)


def test_meteor_matches_stems_and_wordnet_synonyms_by_hand() -> None:
    from earthvlm.eval.metrics import meteor
    from earthvlm.eval.metrics.text import WordNetUnavailableError, wordnet_synsets

    try:
        wordnet_synsets()
    except WordNetUnavailableError as e:
        pytest.skip(f"WordNet not installed here (run `earthvlm wordnet`): {e}")
    # "plane" ~ "airplane" (one WordNet synset), "ships" ~ "ship" (Porter stem): all three
    # words align in one chunk -> Fmean 1, penalty 0.5 * (1/3)^3
    hyp, ref = t("two ships plane"), t("two ship airplane")
    assert meteor([hyp], [[ref]]) == pytest.approx(1 - 0.5 / 27)
    assert meteor_exact_sentence(hyp, ref) < 0.5  # exact matching finds "two" only
    # no stage matches "cat" to "harbor": 1 of 2 words, Fmean = 0.5, one chunk
    f = 0.5 * 0.5 / (0.9 * 0.5 + 0.1 * 0.5)
    assert meteor([t("a cat")], [[t("a harbor")]]) == pytest.approx(f * (1 - 0.5 * 1**3))
    res = score_captions(["Two ships, plane."], [["two ship airplane"]], with_meteor=True)
    assert res.meteor == pytest.approx(1 - 0.5 / 27)
    assert res.to_dict()["meteor"] == pytest.approx(1 - 0.5 / 27)


def test_caption_input_checks() -> None:
    with pytest.raises(ValueError, match="references\\[0\\] is a single string"):
        score_captions(["a"], ["a"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="no image has reference captions"):
        score_captions(["a"], [[]])
    with pytest.raises(ValueError, match="non-empty list"):
        bleu([t("a")], [[]])


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=80))
def test_tokenizer_never_raises_and_drops_punctuation(text: str) -> None:
    tokens = ptb_tokenize(text)
    assert all(tok and tok not in {".", ",", "!", "?", ";", ":"} for tok in tokens)


words = st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=8)


@settings(max_examples=100, deadline=None)
@given(words, words)
def test_sentence_scores_are_bounded_and_perfect_on_identity(h: list[str], r: list[str]) -> None:
    assert 0.0 <= rouge_l_sentence(h, [r]) <= 1.0 + 1e-12
    assert 0.0 <= meteor_exact_sentence(h, r) <= 1.0
    assert rouge_l_sentence(h, [h]) == pytest.approx(1.0)
    assert meteor_exact_sentence(h, h) == pytest.approx(1 - 0.5 / len(h) ** 3)  # one chunk
