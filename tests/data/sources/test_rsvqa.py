"""RSVQA LR/HR release JSON -> VQA records: active flags, answers, question types, GSD."""

from __future__ import annotations

from pathlib import Path

import pytest

from earthvlm.data.sources import SourceError, build_reader
from earthvlm.scale.gsd import GSDKind, GSDSource


def test_lr_train_records_and_ledger(rsvqa_lr_root: Path) -> None:
    reader = build_reader("rsvqa-lr")
    recs = {r.id: r for r in reader.read(rsvqa_lr_root)}
    assert sorted(recs) == ["rsvqa-lr-0", "rsvqa-lr-1", "rsvqa-lr-3"]
    rec = recs["rsvqa-lr-0"]
    assert (rec.task, rec.source, rec.split) == ("vqa", "rsvqa-lr", "train")
    assert (rec.images[0].path, rec.images[0].width, rec.images[0].height) == (
        "Images_LR/0.tif",
        16,
        16,
    )
    assert rec.messages[0].text() == "Is there a road?"
    assert rec.messages[1].content == "yes"
    assert rec.meta == {
        "question_id": 0,
        "image_id": 0,
        "question_type": "presence",
        "question_type_raw": "presence",
    }
    assert recs["rsvqa-lr-1"].messages[1].content == "0"  # a falsy answer survives
    assert recs["rsvqa-lr-3"].meta["question_type"] == "comparison"
    assert recs["rsvqa-lr-3"].meta["question_type_raw"] == "comp"
    ledger = reader.ledger
    assert (ledger.read, ledger.ok) == (10, 3)
    assert dict(ledger.skipped) == {"inactive": 1}
    assert dict(ledger.failed) == {
        "bad_question": 1,
        "image_not_in_split": 1,
        "missing_answer": 1,
        "missing_image": 1,
        "not_an_object": 1,
        "unknown_image": 1,
    }
    rows = {p.reason: p.row for p in reader.problems}
    assert rows["unknown_image"] == 4 and rows["missing_answer"] == 7
    assert all(p.file == "LR_split_train_questions.json" for p in reader.problems)


def test_lr_gsd_is_sentinel2_10m(rsvqa_lr_root: Path) -> None:
    g = next(iter(build_reader("rsvqa-lr").read(rsvqa_lr_root))).images[0].gsd
    assert g.kind is GSDKind.EXACT and g.source is GSDSource.DATASET and g.point_m == 10.0
    assert "Sentinel-2" in g.detail


def test_a_split_of_inactive_entries_gives_no_record(rsvqa_lr_root: Path) -> None:
    reader = build_reader("rsvqa-lr", split="val")
    assert list(reader.read(rsvqa_lr_root)) == []
    assert (reader.ledger.read, reader.ledger.ok, dict(reader.ledger.skipped)) == (
        2,
        0,
        {"inactive": 2},
    )


def test_hr_test_phili(rsvqa_hr_root: Path) -> None:
    reader = build_reader("rsvqa-hr", split="test_phili")
    (rec,) = list(reader.read(rsvqa_hr_root))
    assert rec.id == "rsvqa-hr-40" and rec.split == "test_phili"
    assert rec.images[0].path == "Data/10.tif"
    assert rec.messages[1].content == "between 10m2 and 100m2"
    assert rec.meta["question_type"] == "area"
    g = rec.images[0].gsd
    assert g.kind is GSDKind.EXACT and g.source is GSDSource.DATASET and g.point_m == 0.15


def test_splits_are_checked(rsvqa_lr_root: Path) -> None:
    with pytest.raises(ValueError, match="split='test_phili'"):
        build_reader("rsvqa-lr", split="test_phili")
    with pytest.raises(SourceError, match=r"LR_split_test_questions\.json"):
        list(build_reader("rsvqa-lr", split="test").read(rsvqa_lr_root))
