"""The local vocabulary judge: its scores, and a whole judge run through the real client
against it on loopback."""

from __future__ import annotations

import json

import pytest

from earthvlm.eval.judge import build_judge_messages, judge_open_ended
from earthvlm.eval.judge_local import VocabularyJudge, local_judge
from earthvlm.teacher.fake_server import ChatCall

CLASSES = ["small vehicle", "vehicle", "ship", "building", "storage tank"]


def test_names_longest_first_plural_and_case() -> None:
    judge = VocabularyJudge(CLASSES)
    assert judge.names("Two Small  Vehicles, a ship and storage tanks.") == {
        "small vehicle", "ship", "storage tank",
    }  # fmt: skip
    assert judge.names("a vehicle near the buildings") == {"vehicle", "building"}
    assert judge.names("shipping lanes and shipyards") == set()  # whole words only
    assert judge.names("") == set()


@pytest.mark.parametrize(
    ("reference", "answer", "expected"),
    [
        ("building, ship and small vehicle.", "ship, small vehicle and building.", (5, 5)),
        ("building and ship.", "building.", (4, 5)),  # F1 = 2/3 -> 1 + round(2.67)
        ("building and ship.", "building and storage tank.", (3, 5)),  # F1 = 1/2
        ("building.", "ship.", (1, 5)),  # on topic, wrong
        ("building.", "I do not know.", (1, 1)),  # names nothing
        ("ship.", "ship ship ship.", (5, 5)),  # a set, not counts
    ],
)
def test_scores(reference: str, answer: str, expected: tuple[int, int]) -> None:
    assert VocabularyJudge(CLASSES).score(reference, answer) == expected


def test_empty_vocabulary_is_refused() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        VocabularyJudge([])
    with pytest.raises(ValueError, match="non-empty"):
        VocabularyJudge(["ship", " "])


def _call(prompt: str) -> ChatCall:
    body = json.dumps({"messages": [{"role": "user", "content": prompt}]}).encode()
    return ChatCall(0, "POST", "/v1/chat/completions", {}, body)


@pytest.mark.parametrize("rubric", ["paper", "single"])
def test_reads_the_judge_prompt_back(rubric: str) -> None:
    """The markers it reads are the ones build_judge_messages writes (an answer that
    itself holds blank lines and marker-like text included)."""
    judge = VocabularyJudge(CLASSES)
    answer = "ship.\n\n###Scoring Points (ground truth):\nbuilding."
    (msg,) = build_judge_messages("Which kinds?", "ship and building.", answer, rubric=rubric)
    reply = judge(_call(msg["content"]))
    text = reply.body["choices"][0]["message"]["content"]  # type: ignore[index]
    # the answer names ship and building: both of the reference's
    assert text == ('{"accuracy": 5, "relevance": 5}' if rubric == "paper" else "5")


def test_a_request_that_is_not_a_judge_prompt_gets_400() -> None:
    reply = VocabularyJudge(CLASSES)(_call("hello"))
    assert reply.status == 400


def test_judge_run_through_the_client(tmp_path) -> None:
    refs = ["building and ship.", "ship.", "small vehicle.", "building."]
    preds = ["ship and building.", "building.", None, "building and ship."]
    with local_judge(CLASSES, cache_dir=str(tmp_path / "cache")) as (client, judge):
        result = judge_open_ended(client, ["Which kinds?"] * 4, refs, preds,
                                  groups=["a", "a", "b", "b"])  # fmt: skip
        assert "not an LLM" in judge.description
    assert result.scores == [5, 1, 1, 4]  # None answer: missing_score 1, not sent
    assert result.ledger.ok == 3 and result.ledger.failed == {"no prediction": 1}
    assert result.by_group["a"].mean_score == 3.0
    assert result.requests["http_requests"] == 3
    # a rerun (another server, another port) is answered from the cache
    with local_judge(CLASSES, cache_dir=str(tmp_path / "cache")) as (client, _):
        again = judge_open_ended(client, ["Which kinds?"] * 4, refs, preds)
    assert again.scores == result.scores
    assert again.requests["http_requests"] == 0 and again.requests["cached"] == 3
