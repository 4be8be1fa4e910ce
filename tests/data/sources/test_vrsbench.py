"""VRSBench evaluation files -> VQA, grounding and caption records; grid boxes to pixels."""

from __future__ import annotations

from pathlib import Path

import pytest

from earthvlm.data.sources import build_reader
from earthvlm.data.sources.vrsbench import parse_grid_box, type_group


def test_vqa_rows_and_type_groups(vrsbench_root: Path) -> None:
    reader = build_reader("vrsbench")
    recs = list(reader.read(vrsbench_root))
    assert [r.id for r in recs] == ["vrsbench-vqa-0", "vrsbench-vqa-1", "vrsbench-vqa-2"]
    assert [r.meta["type_group"] for r in recs] == ["object quantity", "scene type", "object color"]
    rec = recs[0]
    assert (rec.task, rec.split, rec.images[0].path) == ("vqa", "test", "Images_val/P0001_0000.png")
    assert rec.messages[0].text().startswith("How many ships are there?\nAnswer the question")
    assert rec.messages[1].content == "3"
    assert {p.row: p.reason for p in reader.problems} == {
        3: "missing_field:type",
        4: "missing_image",
    }
    assert (reader.ledger.read, reader.ledger.ok) == (5, 3)


def test_referring_boxes_from_the_grid_to_pixels(vrsbench_root: Path) -> None:
    reader = build_reader("vrsbench", subset="referring")
    recs = list(reader.read(vrsbench_root))
    assert [r.task for r in recs] == ["grounding", "grounding"]
    first, second = recs
    assert first.meta["box_grid"] == [10.0, 20.0, 50.0, 60.0] and first.meta["unique"] is True
    # a 20 x 10 image: x * 20 / 100, y * 10 / 100
    assert [(b.label, b.xyxy_px) for b in first.boxes] == [("ship", (2.0, 2.0, 10.0, 6.0))]
    assert first.messages[1].content == "[10, 20, 50, 60]"
    assert second.meta["unique"] is False and second.boxes[0].label == "vehicle"
    assert {p.row: p.reason for p in reader.problems} == {2: "bad_box", 3: "not_an_object"}


def test_captions(vrsbench_root: Path) -> None:
    recs = list(build_reader("vrsbench", subset="caption").read(vrsbench_root))
    assert [(r.id, r.task, r.messages[1].content) for r in recs] == [
        ("vrsbench-caption-0", "caption", "A dam holds back a reservoir.")
    ]


def test_grid_box_and_types() -> None:
    assert parse_grid_box("{<1><2><30><40>}") == (1, 2, 30, 40)
    assert parse_grid_box("it is {< 1 ><2><30><40>|<45>} there") == (1, 2, 30, 40)
    assert parse_grid_box("[1, 2, 3, 4]") is None and parse_grid_box(None) is None
    assert type_group(" Image ") == "scene type" and type_group("object size") == "object size"
    with pytest.raises(ValueError, match="subset"):
        build_reader("vrsbench", subset="det")
