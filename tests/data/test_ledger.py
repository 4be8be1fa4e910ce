"""The ledger: read == ok + skipped + failed, and says so when it does not add up."""

from __future__ import annotations

import pytest

from earthvlm.data.ledger import Ledger
from earthvlm.errors import EarthVLMError


def _ledger() -> Ledger:
    led = Ledger("train.jsonl")
    for _ in range(8):
        led.count_ok()
    led.count_skipped("blank_line")
    led.count_failed("invalid_json")
    led.count_failed("duplicate_id")
    led.count_failed("invalid_json")
    return led


def test_counts() -> None:
    led = _ledger()
    assert (led.read, led.ok, led.n_skipped, led.n_failed) == (12, 8, 1, 3)
    assert led.skipped == {"blank_line": 1}
    assert led.failed == {"invalid_json": 2, "duplicate_id": 1}
    assert led.balanced
    led.check()


def test_empty_ledger_is_balanced() -> None:
    led = Ledger("nothing")
    assert (led.read, led.ok, led.n_skipped, led.n_failed) == (0, 0, 0, 0)
    assert led.balanced
    assert led.summary() == "nothing: read 0 = ok 0 + skipped 0 + failed 0"


def test_summary_text() -> None:
    assert _ledger().summary() == (
        "train.jsonl: read 12 = ok 8 + skipped 1 + failed 3 "
        "(failed:duplicate_id 1, failed:invalid_json 2, skipped:blank_line 1)"
    )


def test_summary_without_problems_has_no_reasons() -> None:
    led = Ledger("s")
    led.count_ok()
    assert led.summary() == "s: read 1 = ok 1 + skipped 0 + failed 0"


@pytest.mark.parametrize("delta", [1, -1])
def test_check_raises_when_unbalanced(delta: int) -> None:
    led = _ledger()
    led.read += delta
    assert not led.balanced
    with pytest.raises(EarthVLMError, match=r"train\.jsonl: ledger does not add up: read 1[13]"):
        led.check()


def test_check_raises_when_an_item_is_counted_without_being_read() -> None:
    led = Ledger("s")
    led.failed["lost"] += 1
    with pytest.raises(EarthVLMError, match="failed 1"):
        led.check()


def test_merge_adds_counts_and_reasons() -> None:
    a = _ledger()
    b = Ledger("val.jsonl")
    b.count_ok()
    b.count_skipped("blank_line")
    b.count_failed("not_utf8")
    a.merge(b)
    assert a.stage == "train.jsonl"
    assert (a.read, a.ok, a.n_skipped, a.n_failed) == (15, 9, 2, 4)
    assert a.skipped == {"blank_line": 2}
    assert a.failed == {"invalid_json": 2, "duplicate_id": 1, "not_utf8": 1}
    assert a.balanced
    # the merged-in ledger is unchanged
    assert (b.read, b.ok) == (3, 1)


def test_to_dict_is_sorted_and_plain() -> None:
    assert _ledger().to_dict() == {
        "stage": "train.jsonl",
        "read": 12,
        "ok": 8,
        "skipped": {"blank_line": 1},
        "failed": {"duplicate_id": 1, "invalid_json": 2},
    }
    assert list(_ledger().to_dict()["failed"]) == ["duplicate_id", "invalid_json"]
