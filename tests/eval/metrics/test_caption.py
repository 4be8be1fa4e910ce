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
    meteor,
    meteor_exact_sentence,
    meteor_exact_simplified,
    ptb_tokenize,
    rouge_l,
    rouge_l_sentence,
    score_captions,
)
from earthvlm.eval.metrics.meteor import MeteorUnavailableError, load_resources

TINY, SMALL = 1e-15, 1e-9  # coco-caption's BLEU smoothing


def t(s: str) -> list[str]:
    return s.split()


# Each right-hand side is what pycocoevalcap 1.2 makes of the left (Stanford CoreNLP 3.4.1
# PTBTokenizer -lowerCase, then its punctuation list removed), recorded from the Java run.
@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("A man's dog, running!", "a man 's dog running"),
        ("Don't stop.", "do n't stop"),
        ("A black-and-white plane at 3.5 m.", "a black-and-white plane at 3.5 m."),
        ('"Quoted" (brackets) -- dashes...', "quoted -lrb- brackets -rrb- dashes"),
        ("Two planes [parked] near {the} hangar (left).",
         "two planes -lsb- parked -rsb- near -lcb- the -rcb- hangar -lrb- left -rrb-"),
        ("a ship(s) and car(s)", "a ship -lrb- s -rrb- and car -lrb- s -rrb-"),
        ("The U.S. airport, Mr. Smith's car & a $5 bill: 50% off; e-mail/web",
         "the u.s. airport mr. smith 's car & a $ 5 bill 50 % off e-mail/web"),
        ("I cannot go, gonna wanna can't won't", "i can not go gon na wan na ca n't wo n't"),
        ("Ships at 10:30, 1,000 boats; x=3 y<4 #tag #1",
         "ships at 10:30 1,000 boats x = 3 y < 4 #tag # 1"),
        ("It's 'single' quoted and ``double''", "it 's single quoted and double"),
        ("A plane... Two? Yes!! no-- maybe - ok", "a plane two yes !! no maybe ok"),
        ("many trees. green,trees the planes' wings", "many trees green trees the planes wings"),
        ("e.g. trees i.e. grass etc. and/or n/a", "e.g. trees i.e. grass etc. and/or n/a"),
        ("an em dash \u2014 an en dash \u2013 it\u2019s", "an em dash an en dash it 's"),
    ],
)  # fmt: skip
def test_ptb_tokenize_matches_coco_captions_java_tokenizer(text: str, tokens: str) -> None:
    assert ptb_tokenize(text) == tokens.split()


def test_brackets_count_in_bleu_as_in_coco_caption() -> None:
    # the same words, but the reference has a bracketed remark: coco-caption keeps -lrb-
    # and -rrb- as words, so the caption without them is shorter and misses n-grams
    hyp = ptb_tokenize("a plane left of the hangar")
    ref = ptb_tokenize("a plane (left) of the hangar")
    assert ref == ["a", "plane", "-lrb-", "left", "-rrb-", "of", "the", "hangar"]
    assert bleu([hyp], [[ref]], n=1)[0] == pytest.approx(6 / 6 * math.exp(1 - 8 / 6))


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


def test_exact_only_meteor_is_meteor_15_scoring_with_exact_matches() -> None:
    # all 6 words match in 2 chunks ("the cat sat", "on the mat"): P = R = 1 and the
    # METEOR 1.5 penalty 0.6 * (2/6)^0.2 (not METEOR 1.0's 0.5 * (2/6)^3)
    got = meteor_exact_sentence(t("the cat sat on the mat"), t("on the mat the cat sat"))
    assert got == pytest.approx(1 - 0.6 * (2 / 6) ** 0.2)
    assert meteor_exact_sentence(t("x"), t("y")) == 0.0
    # the best reference per caption, then the summed statistics (a corpus score)
    one = meteor_exact_simplified([t("a b")], [[t("q"), t("a b")]])
    assert one == 1.0  # identical to its second reference: no penalty
    two = meteor_exact_simplified([t("a b"), t("z")], [[t("q"), t("a b")], [t("y")]])
    assert 0 < two < one


def test_exact_only_meteor_reads_lower_than_meteor() -> None:
    # the docstring's promise: missing stems and synonyms can only lower the score
    hyp, ref = t("two ships parked beside a plane"), t("two ship parked next to an airplane")
    exact = meteor_exact_simplified([hyp], [[ref]])
    try:
        full = meteor([hyp], [[ref]])
    except MeteorUnavailableError as e:
        pytest.skip(f"METEOR 1.5's files are not installed here: {e}")
    assert exact < full


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
    assert d["meteor"] is None  # the exact-only score is never reported under METEOR's name
    json.dumps(d, allow_nan=False)


def test_score_captions_reports_meteor_only_when_it_is_meteor_15() -> None:
    try:
        load_resources()
    except MeteorUnavailableError:
        res = score_captions(["Two ships, plane."], [["two ship airplane"]])
        assert res.meteor is None and res.to_dict()["meteor"] is None
        with pytest.raises(MeteorUnavailableError, match="pycocoevalcap"):
            score_captions(["Two ships."], [["two ship"]], with_meteor=True)
        return
    res = score_captions(["Two ships, plane."], [["two ship airplane"]], with_meteor=True)
    # "ships" ~ "ship" (stem), "plane" ~ "airplane" (synonym): all three words align in
    # one chunk, so METEOR is above the exact-only score
    assert res.meteor is not None and res.meteor > res.meteor_exact_simplified
    assert res.to_dict()["meteor"] == pytest.approx(res.meteor)


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
    dropped = {"''", "'", "``", "`", ".", "?", "!", ",", ":", "-", "--", "...", ";"}
    assert all(tok and tok not in dropped for tok in tokens)


words = st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=8)


@settings(max_examples=100, deadline=None)
@given(words, words)
def test_sentence_scores_are_bounded_and_perfect_on_identity(h: list[str], r: list[str]) -> None:
    assert 0.0 <= rouge_l_sentence(h, [r]) <= 1.0 + 1e-12
    assert 0.0 <= meteor_exact_sentence(h, r) <= 1.0
    assert rouge_l_sentence(h, [h]) == pytest.approx(1.0)
    assert meteor_exact_sentence(h, h) == 1.0  # identical: no fragmentation penalty
