"""Hostile JSON: one line nested thousands deep, an integer of thousands of digits or a
lone surrogate escape is quarantined with a reason; the rest of the file is read, and
every record read can be written back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from earthvlm.data.jsonl import read_records, write_records
from earthvlm.data.ledger import Ledger
from earthvlm.data.record import Message, Record
from earthvlm.data.sources import build_reader
from earthvlm.data.sources._base import SourceError
from earthvlm.errors import RecordError
from earthvlm.eval.benchmarks.base import BadRow, release_rows
from earthvlm.io import MAX_JSON_DEPTH, UntrustedJSONError, loads_untrusted

HUGE = "9" * 5000  # past Python's int digit limit (4300)


def row(rid: str, *, text: str = '"?"', meta: str = "{}") -> str:
    """A valid record line whose question text and meta are spliced in as raw JSON."""
    return (
        f'{{"id": "{rid}", "task": "vqa", "source": "t", "meta": {meta}, "messages": '
        f'[{{"role": "user", "content": {text}}}, {{"role": "assistant", "content": "a"}}]}}'
    )


#: (name, JSON text of a whole line, quarantine reason): one per kind of input
HOSTILE = [
    ("array_past_the_parser", "[" * 100_000 + "]" * 100_000, "too_deep"),
    ("truncated_object_past_the_parser", '{"a": ' * 50_000, "too_deep"),
    ("meta_past_the_limit", row("d", meta="[" * 200 + "]" * 200), "too_deep"),
    (
        "meta_just_past_the_limit",
        row("d", meta="[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH),
        "too_deep",
    ),
    ("huge_int", row("i", meta=f'{{"n": {HUGE}}}'), "number_too_long"),
    ("huge_negative_int_in_a_list", row("i", meta=f'{{"n": [1, -{HUGE}]}}'), "number_too_long"),
    ("high_surrogate_in_text", row("s", text='"q \\ud800"'), "lone_surrogate"),
    ("low_surrogate_in_meta", row("s", meta='{"note": "\\udfff"}'), "lone_surrogate"),
    ("surrogate_in_a_key", row("s", meta='{"\\udc00": 1}'), "lone_surrogate"),
    ("reversed_pair_in_id", row("\\udc00\\ud800"), "lone_surrogate"),
]


@pytest.mark.parametrize(("name", "text", "reason"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_loads_untrusted_names_the_reason(name: str, text: str, reason: str) -> None:
    with pytest.raises(UntrustedJSONError) as info:
        loads_untrusted(text)
    assert info.value.reason == reason


def test_loads_untrusted_accepts_what_is_fine() -> None:
    assert loads_untrusted('{"a": "\\ud83d\\ude00"}') == {"a": "\U0001f600"}  # a proper pair
    deep = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert loads_untrusted(deep) is not None  # exactly at the limit
    assert loads_untrusted("9" * 4000) == int("9" * 4000)  # under the digit limit


@pytest.mark.parametrize(("name", "text", "reason"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_read_records_quarantines_the_line_and_goes_on(
    tmp_path: Path, name: str, text: str, reason: str
) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join([row("ok1"), text, row("ok2")]) + "\n", encoding="utf-8")
    rs = read_records(path)
    assert [r.id for r in rs.records] == ["ok1", "ok2"]
    assert dict(rs.ledger.failed) == {reason: 1}
    (problem,) = rs.problems
    assert problem["line"] == 2 and problem["reason"] == reason
    # the quarantine file and the records read are writable and readable
    quarantined = [json.loads(line) for line in rs.quarantine_path.read_text().splitlines()]
    assert quarantined[0]["reason"] == reason
    assert write_records(rs.records, tmp_path / "out.jsonl") == 2
    with pytest.raises(RecordError, match=f"rows.jsonl:2: {reason}"):
        read_records(path, strict=True)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"messages": [Message(role="user", content="q \ud800")]},
        {"messages": [{"role": "user", "content": "q"}], "meta": {"note": "\udfff"}},
        {"messages": [{"role": "user", "content": "q"}], "meta": {"\udc00": 1}},
    ],
)
def test_a_record_made_in_python_with_a_lone_surrogate_is_refused(kwargs: dict) -> None:
    with pytest.raises(ValidationError) as info:
        Record(id="r", task="vqa", source="t", **kwargs)
    assert info.value.errors()[0]["type"] in ("lone_surrogate", "string_unicode")


def test_a_record_with_meta_too_deep_to_write_is_refused() -> None:
    meta: dict[str, Any] = {}
    inner = meta
    for _ in range(300):
        inner["a"] = {}
        inner = inner["a"]
    with pytest.raises(ValidationError, match="too_deep"):
        Record(
            id="r", task="vqa", source="t", messages=[{"role": "user", "content": "q"}], meta=meta
        )


@pytest.mark.parametrize(("name", "text", "reason"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_a_source_quarantines_a_hostile_jsonl_line(
    tmp_path: Path, name: str, text: str, reason: str
) -> None:
    root = tmp_path / "llava"
    root.mkdir()
    good = json.dumps(
        {
            "id": "t1",
            "conversations": [{"from": "human", "value": "Q?"}, {"from": "gpt", "value": "A."}],
        }
    )
    (root / "chat.jsonl").write_text(f"{good}\n{text}\n", encoding="utf-8")
    reader = build_reader("llava", annotations="chat.jsonl")
    assert [r.id for r in reader.read(root)] == ["llava-t1"]
    assert {p.row: p.reason for p in reader.problems} == {2: reason}


@pytest.mark.parametrize(
    ("body", "reason"),
    [("[" * 100_000, "too_deep"), (f"[{HUGE}]", "number_too_long")],
)
def test_a_whole_json_annotation_file_is_refused_with_the_reason(
    tmp_path: Path, body: str, reason: str
) -> None:
    root = tmp_path / "vhm"
    root.mkdir()
    (root / "cls_ucm.json").write_text(body)
    reader = build_reader("vhm", annotations="cls_ucm.json", gsd_range_m=(0.3, 0.3))
    with pytest.raises(SourceError, match=reason) as info:
        list(reader.read(root))
    assert "cls_ucm.json" in str(info.value)


def test_a_lone_surrogate_in_a_json_list_row_is_quarantined(tmp_path: Path) -> None:
    root = tmp_path / "vhm"
    (root / "cls_ucm").mkdir(parents=True)
    turns = '[{"from": "human", "value": "Q \\ud800?"}, {"from": "gpt", "value": "A"}]'
    (root / "cls_ucm.json").write_text(f'[{{"id": "v1", "conversations": {turns}}}]')
    reader = build_reader("vhm", annotations="cls_ucm.json", gsd_range_m=(0.3, 0.3))
    assert list(reader.read(root)) == []
    (problem,) = reader.problems
    assert problem.reason == "lone_surrogate"
    assert "\\ud800" in problem.raw  # kept, escaped: the quarantine file stays writable
    json.dumps(problem.to_dict(), ensure_ascii=False).encode("utf-8")


@pytest.mark.parametrize(("name", "text", "reason"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_benchmark_release_rows_fail_a_hostile_line(
    tmp_path: Path, name: str, text: str, reason: str
) -> None:
    path = tmp_path / "release.jsonl"
    path.write_text(f'{{"a": 1}}\n{text}\n', encoding="utf-8")
    rows = release_rows(path, Ledger("t"))
    assert rows[0] == {"a": 1}
    assert isinstance(rows[1], BadRow) and rows[1].reason == reason
