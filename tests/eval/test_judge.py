"""The EarthMind open-ended judge: score parsing, and a whole run against a local server.

The end-to-end tests start a real :class:`FakeChatServer` on 127.0.0.1 that plays the
judge: it reads the answer out of the rubric prompt and replies the way judge models do
(JSON, prose, nonsense), fails some requests, and must see no request on a rerun.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _chat import fast_client
from _work import growth
from earthvlm.eval.judge import (
    NO_SCORE,
    NOT_WHOLE,
    OUT_OF_RANGE,
    RANGE,
    build_judge_messages,
    judge_open_ended,
    parse_judge_score,
)
from earthvlm.teacher import ChatClient
from earthvlm.teacher.fake_server import ChatCall, FakeChatServer, Reply, completion

# -- reading a score ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "score", "relevance"),
    [
        ("Score: 4", 4, None),
        ("4/5", 4, None),
        ("4 out of 5", 4, None),
        ("4", 4, None),
        ("  **5**\n", 5, None),
        ('{"score": 4}', 4, None),
        ('{"score": "3"}', 3, None),
        ('{"accuracy": 2, "relevance": 5}', 2, 5),
        ('```json\n{"accuracy": 4, "relevance": 3}\n```', 4, 3),
        ('{"scores": {"accuracy_score": 1, "relevance_score": 4}}', 1, 4),
        ("**Accuracy score:** 3\n**Relevance score:** 5/5", 3, 5),  # "5/5" is the relevance
        ("Relevance: 5. Accuracy: 2.", 2, 5),
        ("I would rate this answer a 4.", 4, None),
        ("The prediction deserves a score of 2 out of 5.", 2, None),
        ("On a scale of 1-5, score: 2", 2, None),  # the scale is not a score
        ("Score: 2. On reflection, the final score is 4.", 4, None),  # the last one wins
        ("Score: 4 - mostly matching", 4, None),  # a dash, not a range
        ("Rating = 5", 5, None),
        ("The score is: 3", 3, None),
        ("Score: 4.0", 4, None),
    ],
)
def test_scores_are_read_from_the_forms_judges_use(
    reply: str, score: int, relevance: int | None
) -> None:
    got = parse_judge_score(reply)
    assert (got.score, got.relevance, got.reason) == (score, relevance, None)


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("Score: 7", OUT_OF_RANGE),
        ("Score: 0", OUT_OF_RANGE),
        ('{"accuracy": 85}', OUT_OF_RANGE),
        ("Score: -2", OUT_OF_RANGE),
        ("Score: 3-4", RANGE),
        ("Score: 3 or 4", RANGE),
        ("somewhere between a score of 3 to 4", RANGE),
        ("Score: 3.5", NOT_WHOLE),
        ("8/10", "a score on another scale (out of 10)"),
        ("Rating: 4/10", "a score on another scale (out of 10)"),
        ("The answer is quite good.", NO_SCORE),
        ("I cannot evaluate this without the image.", NO_SCORE),
        ("There are 3 buildings in both.", NO_SCORE),  # a number, but no declaration
        ('{"score": null}', NO_SCORE),
        ("", "empty reply"),
        (None, "no reply"),
    ],
)
def test_unusable_replies_fail_with_a_reason(reply: str | None, reason: str) -> None:
    got = parse_judge_score(reply)
    assert got.score is None and not got.ok and got.reason == reason


@pytest.mark.parametrize(
    ("reply", "explicit", "first_digit"),
    [
        ("On a scale of 1-5, I give it 4", 4, 1),  # why the release rule is not the default
        ("Score: 3-4", None, 3),
        ("4/5", 4, 4),
        ("8/10", None, None),  # the first digit, 8, is outside 1-5
        ("no digits", None, None),
    ],
)
def test_the_release_first_digit_rule(
    reply: str, explicit: int | None, first_digit: int | None
) -> None:
    assert parse_judge_score(reply).score == explicit
    assert parse_judge_score(reply, rule="first_digit").score == first_digit


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_arbitrary_text_never_raises(text: str) -> None:
    got = parse_judge_score(text)
    assert (got.score is None) == (got.reason is not None)
    assert got.score is None or 1 <= got.score <= 5


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            ["Score", "score:", ": ", "4", "/5", " out of ", "-", "{", '"accuracy"', "rate", " "]
        ),
        max_size=60,
    )
)
def test_score_like_fragments_never_raise(parts: list[str]) -> None:
    got = parse_judge_score("".join(parts))
    assert got.score is None or 1 <= got.score <= 5


#: Pathological replies as a function of their length in characters (about ``n``).
PATHOLOGICAL = {
    "labels": lambda n: "score: " * (n // 7),
    "digits": lambda n: "9" * n,
    "long-number": lambda n: "Score: " + "4" * n,
    "braces": lambda n: "{" * n,
    "prose": lambda n: "rate it " * (n // 8) + "4",
    "fractions": lambda n: "1/" * (n // 2),
    "spaces": lambda n: " " * n + "x",
}


@pytest.mark.parametrize("name", list(PATHOLOGICAL))
def test_pathological_replies_take_time_linear_in_their_length(name: str) -> None:
    parse_judge_score(PATHOLOGICAL[name](500_000))  # a long one parses at all
    ratio = growth(parse_judge_score, PATHOLOGICAL[name], 20_000)
    # ten times the reply: about ten times the work; a quadratic pattern would be ~100x
    assert ratio < 30, f"{name}: 10x the reply took {ratio:.0f}x the CPU time"


# -- prompts -----------------------------------------------------------------------------


def test_the_paper_rubric_asks_for_two_scores_as_json() -> None:
    (message,) = build_judge_messages("What is shown?", "A harbour.", "Some boats.")
    text = message["content"]
    assert message["role"] == "user"
    assert "two scores" in text and '{"accuracy": <1-5>, "relevance": <1-5>}' in text
    assert "5 - Highly consistent" in text
    assert "What is shown?" in text and "A harbour." in text
    assert "<<<ANSWER\nSome boats.\nANSWER>>>" in text


def test_the_single_rubric_asks_for_one_score_and_unknown_rubrics_are_refused() -> None:
    (message,) = build_judge_messages("q", "r", "p", rubric="single")
    assert "a single integer from 1 to 5" in message["content"]
    assert "relevance" not in message["content"]
    with pytest.raises(ValueError, match="rubric"):
        build_judge_messages("q", "r", "p", rubric="fancy")  # type: ignore[arg-type]


# -- a whole run against a local judge ----------------------------------------------------

ANSWER = re.compile(r"<<<ANSWER\n(.*)\nANSWER>>>", re.DOTALL)

#: What the fake judge replies to each prediction.
REPLIES: dict[str, Any] = {
    "five boats in a harbour": '{"accuracy": 5, "relevance": 5}',
    "a harbour": "Accuracy score: 4\nRelevance score: 5",
    "a forest": "I would rate this answer a 1 out of 5.",
    "flooding is likely": '```json\n{"accuracy": 3, "relevance": 4}\n```',
    "it depends": "Hard to say; somewhere between 2 and 3, honestly.",
    "take the bridge": "Score: 2",
    "SERVER ERROR": Reply(500, {"error": {"message": "boom"}}),
    "TRUNCATED": Reply(body=completion('{"accuracy": 4, "rel', finish_reason="length")),
}


def judge_script(call: ChatCall) -> Reply:
    match = ANSWER.search(call.last_user_text)
    answer = match[1] if match else ""
    reply = REPLIES.get(answer, "Score: 3")
    return reply if isinstance(reply, Reply) else Reply(body=completion(reply))


def judge_client(server: FakeChatServer, cache: Path) -> ChatClient:
    return fast_client(server.url, cache)


QUESTIONS = ["Describe the image."] * 4 + ["Is flooding likely?"] * 3 + ["Route?"] * 3
REFERENCES = ["Five boats moored in a harbour."] * 4 + ["Yes, low-lying."] * 3
REFERENCES += ["Take the bridge.", "Take the bridge.", None]
PREDICTIONS = [
    "five boats in a harbour",
    "a harbour",
    "a forest",
    None,  # the model said nothing
    "flooding is likely",
    "it depends",
    "SERVER ERROR",
    "take the bridge",
    "TRUNCATED",
    "anything",  # no reference: skipped
]
GROUPS = ["caption"] * 4 + ["disaster"] * 3 + ["route"] * 3


def run_judge(server: FakeChatServer, cache: Path, **kw: Any) -> Any:
    return judge_open_ended(
        judge_client(server, cache), QUESTIONS, REFERENCES, PREDICTIONS, groups=GROUPS, **kw
    )


def test_a_judge_run_scores_aggregates_and_accounts_for_every_item(tmp_path: Path) -> None:
    with FakeChatServer(judge_script) as server:
        result = run_judge(server, tmp_path)
        # 8 sent once each (no prediction, no reference: nothing sent) + 1 retry of the 500
        assert server.n_calls == 9
    assert [i.score for i in result.items] == [5, 4, 1, 1, 3, None, None, 2, None, None]
    assert [i.status for i in result.items] == [
        "judged", "judged", "judged", "no_prediction", "judged", "unscored",
        "request_failed", "judged", "request_failed", "no_reference",
    ]  # fmt: skip
    assert result.n == 9 and result.n_scored == 6
    assert result.coverage == pytest.approx(6 / 9)
    assert result.mean_score == pytest.approx((5 + 4 + 1 + 1 + 3 + 2) / 6)
    assert result.mean_relevance == pytest.approx((5 + 5 + 4) / 3)
    assert result.distribution == {1: 2, 2: 1, 3: 1, 4: 1, 5: 1}
    by_group = {k: (g.n, g.scores) for k, g in result.by_group.items()}
    assert by_group == {"caption": (4, (5, 4, 1, 1)), "disaster": (3, (3,)), "route": (2, (2,))}
    assert result.average == pytest.approx((11 / 4 + 3 + 2) / 3)  # O-Avg: mean of task means
    ledger = result.ledger.to_dict()
    assert ledger["read"] == 10 and ledger["ok"] == 5
    assert ledger["skipped"] == {"no reference": 1}
    assert ledger["failed"] == {
        "no prediction": 1,
        NO_SCORE: 1,
        "request http_5xx_exhausted": 1,
        "request truncated": 1,
    }
    assert result.ledger.balanced
    # the raw replies are kept, the failed requests have none
    assert result.items[0].reply == '{"accuracy": 5, "relevance": 5}'
    assert result.items[5].reply.startswith("Hard to say")
    assert result.items[6].reply is None and result.items[6].key is not None
    assert result.requests["retries"] == {"http_500": 1}
    assert result.requests["ledger"]["read"] == 8
    # JSON-ready, NaN-free
    json.dumps(result.to_dict(), allow_nan=False)
    assert result.to_dict()["distribution"] == {"1": 2, "2": 1, "3": 1, "4": 1, "5": 1}


def test_a_rerun_is_served_from_the_cache_and_retries_only_failures(tmp_path: Path) -> None:
    with FakeChatServer(judge_script) as server:
        first = run_judge(server, tmp_path)
        before = server.n_calls
        second = run_judge(server, tmp_path)
        resent = [ANSWER.search(c.last_user_text)[1] for c in server.calls[before:]]
    # the five good replies and the unscored one come from the cache; the two failed
    # requests are tried again (and fail again: 2 tries of the 500, 1 of the truncation)
    assert sorted(resent) == ["SERVER ERROR", "SERVER ERROR", "TRUNCATED"]
    assert second.requests["cached"] == 6
    assert [i.score for i in second.items] == [i.score for i in first.items]
    assert second.to_dict()["ledger"] == first.to_dict()["ledger"]


def test_rescoring_kept_replies_sends_nothing(tmp_path: Path) -> None:
    with FakeChatServer(judge_script) as server:
        result = run_judge(server, tmp_path)
        calls = server.n_calls
        release = result.rescore("first_digit")
        assert server.n_calls == calls
    # "Accuracy score: 4 ..." still reads 4; the prose of item 5 now reads its first digit
    assert [i.score for i in release.items] == [5, 4, 1, 1, 3, 2, None, 2, None, None]
    assert release.rule == "first_digit" and release.ledger.balanced
    assert release.rescore("explicit").to_dict() == result.to_dict()


def test_missing_predictions_can_be_left_out_of_the_mean(tmp_path: Path) -> None:
    with FakeChatServer(judge_script) as server:
        result = run_judge(server, tmp_path, missing_score=None)
    assert result.items[3].score is None and result.n_scored == 5
    assert result.mean_score == pytest.approx((5 + 4 + 1 + 3 + 2) / 5)


def test_the_single_rubric_end_to_end(tmp_path: Path) -> None:
    with FakeChatServer(lambda c: Reply(body=completion("4"))) as server:
        result = judge_open_ended(
            judge_client(server, tmp_path), ["q"], ["ref"], ["pred"], rubric="single"
        )
        assert "a single integer" in server.calls[0].last_user_text
    assert result.scores == [4] and math.isnan(result.mean_relevance)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"questions": ["q"], "references": ["r", "r"], "predictions": ["p"]}, "one entry"),
        ({"questions": ["q"], "references": ["r"], "predictions": [3]}, r"predictions\[0\]"),
        ({"questions": [None], "references": ["r"], "predictions": ["p"]}, r"questions\[0\]"),
        ({"questions": "q", "references": ["r"], "predictions": ["p"]}, "single string"),
        (
            {"questions": ["q"], "references": ["r"], "predictions": ["p"], "missing_score": 0},
            "1-5",
        ),
        ({"questions": ["q"], "references": ["r"], "predictions": ["p"], "rule": "x"}, "rule"),
    ],
)
def test_bad_inputs_are_refused_before_any_request(
    tmp_path: Path, kwargs: dict[str, Any], fragment: str
) -> None:
    with FakeChatServer(judge_script) as server:
        with pytest.raises(ValueError, match=fragment):
            judge_open_ended(judge_client(server, tmp_path), **kwargs)
        assert server.n_calls == 0
