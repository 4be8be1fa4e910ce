"""Reading JSONL records never loses a row: each is ok, skipped or quarantined with a reason."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from earthvlm.data.jsonl import quarantine_path_for, read_records, record_to_json, write_records
from earthvlm.data.record import Record
from earthvlm.errors import RecordError
from earthvlm.scale.gsd import GSD


def _row(rid: str, path: str = "images/a.png", **over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": rid,
        "task": "vqa",
        "source": "test",
        "images": [{"path": path, "width": 100, "height": 100}],
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image", "index": 0}, {"type": "text", "text": "?"}],
            },
            {"role": "assistant", "content": "yes"},
        ],
    }
    row.update(over)
    return row


def _line(row: dict[str, Any]) -> bytes:
    return json.dumps(row).encode()


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, Path, list[bytes]]:
    """A dataset root with two images and a JSONL file mixing every kind of row.

    Returns the root, the JSONL path and the lines as written (without newlines).
    """
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "images" / "a.png").write_bytes(b"png")
    (root / "images" / "b.png").write_bytes(b"png")
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes(b"png")
    lines = [
        _line(_row("r1")),  # 1 ok
        b"",  # 2 blank
        b"{not json",  # 3 invalid_json
        b"[1, 2]",  # 4 not_an_object
        _line(_row("bad-box", boxes=[{"label": "x", "xyxy_px": [0, 0, 150, 10]}])),  # 5
        _line(_row("r2", "images/b.png")),  # 6 ok
        _line(_row("r1", "images/b.png")),  # 7 duplicate_id
        _line(_row("r3", str(outside))),  # 8 path_escape (only with a root)
        b"\xff\xfe",  # 9 not_utf8
        _line(_row("r4", "images/missing.png")),  # 10 missing_file (only with must_exist)
        b"   \t",  # 11 blank
        _line(_row("unsafe", "../../etc/passwd")),  # 12 images:unsafe_path
        _line(_row("r5")),  # 13 ok, CRLF ending
        _line(_row("extra", colour="red")),  # 14 colour:extra_forbidden, no final newline
    ]
    data = b"\n".join(lines[:12]) + b"\n" + lines[12] + b"\r\n" + lines[13]
    path = root / "train.jsonl"
    path.write_bytes(data)
    return root, path, lines


def _quarantine_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_mixed_file_with_root_and_must_exist(dataset: tuple[Path, Path, list[bytes]]) -> None:
    root, path, lines = dataset
    rs = read_records(path, root=root, must_exist=True)
    led = rs.ledger

    assert led.read == len(lines) == 14
    assert led.ok == 3
    assert dict(led.skipped) == {"blank_line": 2}
    assert dict(led.failed) == {
        "invalid_json": 1,
        "not_an_object": 1,
        "box_out_of_image": 1,
        "duplicate_id": 1,
        "path_escape": 1,
        "not_utf8": 1,
        "missing_file": 1,
        "images:unsafe_path": 1,
        "colour:extra_forbidden": 1,
    }
    assert led.balanced
    led.check()

    # valid records, in file order
    assert [r.id for r in rs.records] == ["r1", "r2", "r5"]
    assert rs.records[1].images[0].path == "images/b.png"

    # the quarantine file sits beside the input, one object per failed row, in line order
    q = root / "train.quarantine.jsonl"
    assert rs.quarantine_path == q == quarantine_path_for(path)
    rows = _quarantine_rows(q)
    assert len(rows) == led.n_failed == 9
    assert [r["line"] for r in rows] == [3, 4, 5, 7, 8, 9, 10, 12, 14]
    for r in rows:
        assert {"line", "reason", "detail", "raw"} <= set(r)
        assert r["detail"]
        if r["reason"] != "not_utf8":
            assert r["raw"] == lines[r["line"] - 1].decode("utf-8")
    by_reason = {r["reason"]: r for r in rows}
    assert by_reason["not_utf8"]["line"] == 9
    assert isinstance(by_reason["not_utf8"]["raw"], str)
    assert by_reason["duplicate_id"]["line"] == 7 and "'r1'" in by_reason["duplicate_id"]["detail"]
    assert "outside the dataset root" in by_reason["path_escape"]["detail"]
    assert "does not exist" in by_reason["missing_file"]["detail"]
    # the problems handed back are the quarantined rows
    assert [p["line"] for p in rs.problems] == [r["line"] for r in rows]
    assert Counter(p["reason"] for p in rs.problems) == led.failed


def test_mixed_file_with_root_only(dataset: tuple[Path, Path, list[bytes]]) -> None:
    root, path, _ = dataset
    rs = read_records(path, root=root)
    assert [r.id for r in rs.records] == ["r1", "r2", "r4", "r5"]
    assert rs.ledger.failed["path_escape"] == 1
    assert "missing_file" not in rs.ledger.failed
    assert rs.ledger.balanced


def test_mixed_file_without_root_accepts_absolute_paths(
    dataset: tuple[Path, Path, list[bytes]],
) -> None:
    _, path, lines = dataset
    rs = read_records(path)
    assert [r.id for r in rs.records] == ["r1", "r2", "r3", "r4", "r5"]
    assert "path_escape" not in rs.ledger.failed
    assert "missing_file" not in rs.ledger.failed
    assert rs.ledger.read == len(lines)
    assert rs.ledger.ok + rs.ledger.n_skipped + rs.ledger.n_failed == len(lines)


def test_symlink_out_of_root_is_quarantined(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    root.mkdir()
    (tmp_path / "secret.png").write_bytes(b"x")
    (root / "link.png").symlink_to(tmp_path / "secret.png")
    path = root / "x.jsonl"
    path.write_bytes(_line(_row("a", "link.png")) + b"\n")
    rs = read_records(path, root=root)
    assert rs.records == []
    assert dict(rs.ledger.failed) == {"path_escape": 1}


def test_escaping_mask_path_is_quarantined(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    root.mkdir()
    path = root / "x.jsonl"
    path.write_bytes(_line(_row("a", "a.png", masks=[{"path": "/etc/passwd"}])) + b"\n")
    assert dict(read_records(path, root=root).ledger.failed) == {"path_escape": 1}


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (b"{not json", "invalid_json"),
        (b"\xff\xfe", "not_utf8"),
        (b'"a string"', "not_an_object"),
        (_line(_row("r1")), "duplicate_id"),
    ],
)
def test_strict_raises_naming_the_line(tmp_path: Path, bad: bytes, reason: str) -> None:
    path = tmp_path / "s.jsonl"
    path.write_bytes(_line(_row("r1")) + b"\n\n" + bad + b"\n" + _line(_row("r2")) + b"\n")
    with pytest.raises(RecordError, match=rf"s\.jsonl:3: {reason}"):
        read_records(path, strict=True)
    assert not quarantine_path_for(path).exists()


def test_strict_passes_on_a_clean_file(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_bytes(_line(_row("r1")) + b"\n\n" + _line(_row("r2")) + b"\n")
    rs = read_records(path, strict=True)
    assert [r.id for r in rs.records] == ["r1", "r2"]
    assert rs.ledger.skipped["blank_line"] == 1


def test_fixed_file_removes_the_stale_quarantine(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    good = _line(_row("r1")) + b"\n"
    path.write_bytes(good + b"oops\n")
    first = read_records(path)
    q = tmp_path / "data.quarantine.jsonl"
    assert first.quarantine_path == q and q.is_file()
    assert _quarantine_rows(q)[0]["raw"] == "oops"

    path.write_bytes(good)
    second = read_records(path)
    assert second.quarantine_path is None
    assert not q.exists()
    assert second.ledger.n_failed == 0 and [r.id for r in second.records] == ["r1"]


def test_explicit_quarantine_path(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"[]\n")
    target = tmp_path / "q" / "rejected.jsonl"
    rs = read_records(path, quarantine=target)
    assert rs.quarantine_path == target
    assert [r["reason"] for r in _quarantine_rows(target)] == ["not_an_object"]
    assert not quarantine_path_for(path).exists()


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    rs = read_records(path)
    assert rs.records == [] and rs.ledger.read == 0 and rs.quarantine_path is None


def test_missing_file_is_a_record_error(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="no such JSONL file"):
        read_records(tmp_path / "nope.jsonl")


def _records() -> list[Record]:
    return [
        Record.model_validate(
            _row(
                "a",
                boxes=[{"label": "ship", "obb_px": [50, 50, 10, 4, 30]}],
                meta={"é": "ünïcode", "n": 1},
            )
        ),
        Record.model_validate(
            _row("b", images=[{"path": "b.tif", "gsd": GSD.range(0.5, 2.0).to_dict()}])
        ),
        Record.model_validate(_row("c", images=[{"path": "c.tif", "gsd": 0.3}], split="test")),
    ]


def test_write_then_read_round_trips_exactly(tmp_path: Path) -> None:
    recs = _records()
    path = tmp_path / "out" / "recs.jsonl"
    assert write_records(recs, path) == 3
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines == [record_to_json(r) for r in recs]
    assert "null" not in lines[0]  # None fields are left out
    rs = read_records(path)
    assert rs.records == recs
    assert rs.ledger.ok == 3 and rs.quarantine_path is None


def test_write_refuses_duplicate_ids_and_leaves_no_file(tmp_path: Path) -> None:
    recs = _records()
    recs.append(recs[0])
    path = tmp_path / "recs.jsonl"
    with pytest.raises(RecordError, match="duplicate record id 'a'"):
        write_records(recs, path)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "recs.jsonl"
    write_records(_records()[:1], path)
    before = path.read_bytes()
    with pytest.raises(RecordError):
        write_records(_records() + _records(), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recs.jsonl"]


def test_write_accepts_a_generator(tmp_path: Path) -> None:
    path = tmp_path / "g.jsonl"
    assert write_records((r for r in _records()), path) == 3
    assert [r.id for r in read_records(path).records] == ["a", "b", "c"]
