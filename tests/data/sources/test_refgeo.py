"""refGeo grounding JSONL -> grounding records: one or several boxes, none, quarantine."""

from __future__ import annotations

from pathlib import Path

import pytest

from earthvlm.data.detection_text import NONE_TARGET
from earthvlm.data.sources import build_reader
from earthvlm.scale.gsd import GSDKind


def test_records_targets_and_ledger(refgeo_root: Path) -> None:
    reader = build_reader("refgeo", subset="dior_rsvg_test")
    recs = {r.id: r for r in reader.read(refgeo_root)}
    assert sorted(recs) == [
        "refgeo-dior_rsvg_test-1",
        "refgeo-dior_rsvg_test-11",
        "refgeo-dior_rsvg_test-2",
        "refgeo-dior_rsvg_test-3",
    ]
    one = recs["refgeo-dior_rsvg_test-1"]
    assert (one.task, one.split, one.images[0].path) == (
        "grounding",
        "test",  # from the subset's name
        "images/dior_rsvg/00001.jpg",
    )
    assert "the storage tank on the left" in one.messages[0].text()
    assert one.messages[1].content == "4,10,20,30 the storage tank on the left"
    assert [(b.label, b.xyxy_px) for b in one.boxes] == [
        ("the storage tank on the left", (4, 10, 20, 30))
    ]
    assert one.images[0].gsd.kind is GSDKind.UNKNOWN
    two = recs["refgeo-dior_rsvg_test-2"]  # whitespace of the expression normalised
    assert two.messages[1].content == (
        "1,1,10,10 two vehicles near the road\n20,20,30,40 two vehicles near the road"
    )
    empty = recs["refgeo-dior_rsvg_test-3"]
    assert empty.boxes == [] and empty.messages[1].content == NONE_TARGET
    clipped = recs["refgeo-dior_rsvg_test-11"]
    assert clipped.boxes[0].xyxy_px == (60, 50, 64, 60)
    assert clipped.meta["box_repairs"] == {"clipped": 1}
    assert clipped.meta["fields"] == {"obb": [65, 55, 10, 10, 0]}
    ledger = reader.ledger
    assert (ledger.read, ledger.ok, dict(ledger.skipped)) == (11, 4, {"blank_line": 1})
    assert dict(ledger.failed) == {
        "bad_row": 1,
        "box_degenerate": 1,
        "box_not_numeric": 1,
        "invalid_json": 1,
        "missing_image": 1,
        "path_escape": 1,
    }
    rows = {p.reason: p.row for p in reader.problems}
    assert rows == {
        "invalid_json": 5,
        "box_degenerate": 6,
        "path_escape": 7,
        "missing_image": 8,
        "bad_row": 9,
        "box_not_numeric": 10,
    }


def test_geochat_test_png_fallback(refgeo_root: Path) -> None:
    (rec,) = list(build_reader("refgeo", subset="geochat_test").read(refgeo_root))
    assert rec.images[0].path == "images/geochat_test/g1.png"
    assert rec.meta["image_suffix_fallback"] is True


def test_explicit_files_default_to_train(refgeo_root: Path) -> None:
    reader = build_reader(
        "refgeo", annotations="metainfo/geochat_test.jsonl", image_dir="images/geochat_test"
    )
    assert reader.split == "test"
    reader = build_reader("refgeo", annotations="metainfo/mine.jsonl", image_dir="images")
    assert reader.split == "train"


def test_subset_typos_and_missing_files_are_named() -> None:
    with pytest.raises(ValueError, match="did you mean dior_rsvg_test"):
        build_reader("refgeo", subset="dior_rsvg_tst")
    with pytest.raises(ValueError, match="give subset"):
        build_reader("refgeo")
