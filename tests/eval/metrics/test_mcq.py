"""Multiple-choice extraction and scoring, with hand-checked examples."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earthvlm.eval.metrics import (
    XLRS_SUBTASKS,
    Choice,
    extract_choice,
    extract_omniearth,
    extract_xlrs,
    parse_answer_letters,
    score_choices,
    score_mcq,
    score_omniearth,
    score_xlrs,
)

OPTIONS = ["(A) forest", "(B) lake", "(C) water", "(D) rain forest", "(E) unable to decide"]


def letters(choice: Choice) -> str:
    return "".join(sorted(choice.letters))


# -- XLRS-Bench -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rule", "release"),
    [
        ("B", "B", "B"),
        ("The answer is B", "B", "B"),  # prefix stripped, " B" remains
        ("(C)", "C", "C"),
        ("(a) and (C)", "AC", "AC"),  # the parenthesis step reads both cases
        ("b", "", ""),  # no upper-case A-E at all -> empty
        ("none of them", "", ""),
        ("B. Forest", "B", "BE"),  # the release's optional anchors also take the e of Forest
        ("A C", "AC", "AC"),  # multi-answer land use
        ("Based on it, D", "D", "ABDE"),  # "B" of Based passes the upper-case check
        ("XYZ", "", ""),
    ],
)
def test_xlrs_rule_and_its_release_quirk(text: str, rule: str, release: str) -> None:
    assert letters(extract_xlrs(text)) == rule
    assert letters(extract_xlrs(text, release=True)) == release


def test_xlrs_empty_extraction_says_why() -> None:
    got = extract_xlrs("lake")
    assert not got.ok and got.reason == "no upper-case letter A-E"
    assert extract_xlrs(None).reason == "no response"


def test_xlrs_micro_and_macro_by_hand() -> None:
    cats = ["Counting/Overall counting"] * 3 + ["Object properties/Object color"] * 2
    preds = ["A", "The answer is B", "lake", "C", "D"]
    answers = ["A", "B", "C", "A", "B"]
    res = score_xlrs(preds, answers, cats)
    # counting: A ok, B ok, "lake" -> nothing (wrong): 2/3; color: 0/2
    assert res.n == 5 and res.n_correct == 2
    assert res.micro == pytest.approx(2 / 5)
    assert res.macro == pytest.approx((2 / 3 + 0 / 2) / 2)  # 1/3
    assert res.ledger.read == 5 and res.ledger.ok == 4 and res.ledger.n_failed == 1
    assert res.ledger.failed["no upper-case letter A-E"] == 1
    assert res.abstain_rate == pytest.approx(1 / 5)
    d = res.to_dict()
    assert d["by_subtask"]["Counting/Overall counting"]["n_correct"] == 2
    assert d["ledger"]["failed"] == {"no upper-case letter A-E": 1}
    json.dumps(d, allow_nan=False)


def test_multi_answer_is_set_equality() -> None:
    res = score_xlrs(["B A", "A", "ABC"], ["AB", "A,B", ["A", "B"]], ["x/y"] * 3)
    # {A,B} == {A,B}; {A} != {A,B}; {A,B,C} != {A,B}
    assert [g.n_correct for g in res.table.by_group.values()] == [1]


def test_macro_refuses_a_partial_benchmark_when_told_to_expect_all_subtasks() -> None:
    with pytest.raises(ValueError, match="expected_subtasks names 12 subtask"):
        score_xlrs(["A"], ["A"], [XLRS_SUBTASKS[0]], expected_subtasks=XLRS_SUBTASKS)


# -- OmniEarth-Bench --------------------------------------------------------------------------


def test_omniearth_reads_letters_past_e_unless_release() -> None:
    six = 6  # A-F, F = unable to decide
    assert letters(extract_omniearth("F", n_options=six)) == "F"
    assert not extract_omniearth("F", n_options=six, release=True).ok  # release: A-E only
    assert letters(extract_omniearth("Best option: C", n_options=six)) == "C"


def test_omniearth_unable_to_decide_rate_by_hand() -> None:
    opts4 = ["(A) cloud", "(B) fog", "(C) smoke", "(D) unable to decide"]
    opts6 = ["(A) a", "(B) b", "(C) c", "(D) d", "(E) e", "(F) Unable to decide"]
    preds = ["D", "A", "F", "B"]
    answers = ["A", "A", "C", "B"]
    res = score_omniearth(preds, answers, [opts4, opts4, opts6, opts6], l1_tasks=["x"] * 4)
    # item 0 chose D (unable, 4 options), item 2 chose F (unable, 6 options): 2 of 4
    assert res.n_unable == 2 and res.unable_rate == pytest.approx(2 / 4)
    assert res.micro == pytest.approx(2 / 4)  # items 1 and 3 correct


def test_omniearth_insists_on_the_unable_to_decide_option() -> None:
    with pytest.raises(ValueError, match="unable to decide"):
        score_omniearth(["A"], ["A"], [["(A) x", "(B) y"]])


# -- the project's extractor ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("B", "B"),
        ("(b)", "B"),  # lower case is fine when the response is only a letter
        ("B.", "B"),
        ("B. lake", "B"),
        ("[C] water", "C"),
        ("Answer: (C) water", "C"),
        ("The correct answer is: C", "C"),
        ("The answer is B because A is wrong.", "B"),
        ("Looking at the image, the answer is B.", "B"),
        ("I would choose option D.", "D"),
        ("<think>A or D?</think><answer>D</answer>", "D"),
        ("**B**", "B"),
        ("forest", "A"),  # option text
        ("It is a rain forest.", "D"),  # "forest" inside "rain forest" is not a second hit
        ("unable to decide", "E"),
    ],
)
def test_extract_choice_reads_common_answer_shapes(text: str, expected: str) -> None:
    got = extract_choice(text, options=OPTIONS)
    assert letters(got) == expected, got.reason


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("B, D", "several letters"),
        ("I think (B) is right, but (C) too", "several letters"),
        ("Not a forest", "negation"),
        ("There is a forest and a lake", "several options"),
        ("F", "not an option"),
        ("I cannot tell", "no option letter"),
        ("", "empty response"),
        ("The answer is", "no answer"),
        (None, "no response"),
    ],
)
def test_extract_choice_abstains_instead_of_guessing(text: str | None, reason: str) -> None:
    got = extract_choice(text, options=OPTIONS)
    assert not got.ok and reason in (got.reason or "")


def test_extract_choice_article_a_is_not_option_a() -> None:
    got = extract_choice("A large lake in the middle.", n_options=4)  # no options to match
    assert not got.ok


def test_extract_choice_multi_answer_lists() -> None:
    assert letters(extract_choice("A and C", multi=True)) == "AC"
    assert letters(extract_choice("The answers are: B, D", multi=True)) == "BD"


def test_score_mcq_counts_abstentions_as_wrong_and_failed() -> None:
    res = score_mcq(["B", "B, D", None], ["B", "B", "A"], subtasks=["s1", "s1", "s2"])
    assert res.n == 3 and res.n_correct == 1
    assert res.ledger.ok == 1 and res.ledger.n_failed == 2  # ambiguity and missing response
    assert res.macro == pytest.approx((1 / 2 + 0 / 1) / 2)


@pytest.mark.parametrize(
    ("answer", "expected"), [("A", "A"), ("(B)", "B"), ("A, C", "AC"), (["D", "B"], "BD")]
)
def test_answer_letters(answer: object, expected: str) -> None:
    assert "".join(sorted(parse_answer_letters(answer))) == expected


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="answers"):
        parse_answer_letters("", 3)
    with pytest.raises(ValueError, match="predictions has 2, answers has 1"):
        score_mcq(["A", "B"], ["A"])
    with pytest.raises(ValueError, match="single string"):
        score_mcq("A", "A")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_options"):
        extract_choice("A", n_options=1)
    with pytest.raises(ValueError, match="choices\\[0\\]"):
        score_choices(["A"], ["A"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="no items"):
        score_mcq([], [])


# -- properties -----------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=80), st.booleans())
def test_extractors_never_raise_and_return_valid_letters(text: str, multi: bool) -> None:
    for got in (
        extract_xlrs(text),
        extract_xlrs(text, release=True),
        extract_omniearth(text, n_options=6),
        extract_choice(text, options=OPTIONS, multi=multi),
        extract_choice(text, n_options=4, multi=multi),
    ):
        assert got.letters <= set("ABCDEF")
        assert got.ok or got.reason


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from("ABCDE"), min_size=1, max_size=3, unique=True))
def test_a_bare_letter_list_round_trips(picked: list[str]) -> None:
    text = ", ".join(picked)
    assert extract_choice(text, multi=True).letters == frozenset(picked)
    assert extract_xlrs(text).letters == frozenset(picked)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("答案是B", "B"),
        ("答案：C", "C"),
        ("正确答案为（C）", "C"),  # full-width brackets
        ("答案是【D】。", "D"),
        ("故选C。", "C"),
        ("根据图像，答案应该是 A", "A"),
        ("我认为B是对的", "B"),  # a capital standing alone in Chinese text
        ("B选项正确", "B"),
        ("B。因为图中有湖泊", "B"),  # full-width full stop as the marker
        ("この問題の答えはBです。", "B"),
        ("AとBのうち、正解はCです", "C"),  # the declaration wins over the mentions
    ],
)
def test_extract_choice_reads_letters_in_cjk_text(text: str, expected: str) -> None:
    got = extract_choice(text, options=OPTIONS)
    assert letters(got) == expected, got.reason


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("B\nThe image shows a lake surrounded by trees.", "B"),
        ("B\n\nExplanation: A is wrong because it is a forest.", "B"),  # not {A, B}
        ("(C)\nBecause the water is brown.", "C"),
        ("b.\nIt is a lake.", "B"),
    ],
)
def test_extract_choice_reads_a_bare_letter_on_the_first_line(text: str, expected: str) -> None:
    got = extract_choice(text, options=OPTIONS)
    assert letters(got) == expected, got.reason


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is A. Wait, looking again, the answer is C.", "C"),
        ("Answer: A\nOn reflection the lake is larger.\nFinal answer: D", "D"),
        ("B\nHmm, no. The correct answer is (C).", "C"),  # a later declaration corrects line 1
        ("答案是A。不对，答案是C", "C"),
        ("The answer is B because A is wrong.", "B"),  # a mention after it is no declaration
    ],
)
def test_extract_choice_takes_the_last_answer_declaration(text: str, expected: str) -> None:
    got = extract_choice(text, options=OPTIONS)
    assert letters(got) == expected, got.reason


def test_extract_choice_last_declaration_still_abstains_on_two_letters() -> None:
    got = extract_choice("The answer is A. Hmm, the answer is A or B.", options=OPTIONS)
    assert not got.ok and "several letters" in (got.reason or "")
    assert letters(extract_choice("答案是A和C", options=OPTIONS, multi=True)) == "AC"


def test_benchmark_rules_keep_their_published_behaviour_on_the_new_shapes() -> None:
    # the release rules are not the project's extractor: they must not learn these shapes
    assert letters(extract_xlrs("The answer is A. Wait, the answer is C.")) == "AC"
    assert letters(extract_xlrs("答案是B")) == "B"
    assert letters(extract_omniearth("B\nA is wrong.", n_options=5)) == "AB"
