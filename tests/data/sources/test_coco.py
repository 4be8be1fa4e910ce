"""COCO detection JSON -> detection records: xywh boxes, crowd regions, orphans, quarantine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from earthvlm.data.detection_text import NONE_TARGET
from earthvlm.data.sources import SourceError, build_reader
from earthvlm.scale.gsd import GSDKind, GSDSource


def test_records_targets_and_ledger(coco_root: Path) -> None:
    reader = build_reader("coco")
    recs = {r.id: r for r in reader.read(coco_root)}
    assert sorted(recs) == ["coco-1", "coco-2"]
    rec = recs["coco-1"]
    assert (rec.task, rec.source, rec.split) == ("detection", "coco", "train")
    assert (rec.images[0].path, rec.images[0].width, rec.images[0].height) == (
        "images/0001.jpg",
        64,
        48,
    )
    # [x, y, w, h] -> xyxy; the third airplane reaches past the corner and is clipped
    assert [(b.label, b.xyxy_px) for b in rec.boxes] == [
        ("airplane", (10, 5, 30, 15)),
        ("storage tank", (40, 20, 50, 30)),
        ("airplane", (60, 40, 64, 48)),
    ]
    assert rec.messages[1].content == (
        "10,5,30,15 airplane\n60,40,64,48 airplane\n40,20,50,30 storage tank"
    )
    assert rec.meta["crowd_omitted"] == 1
    assert rec.meta["box_repairs"] == {"clipped": 1}
    assert rec.meta["image_id"] == 1
    assert recs["coco-2"].messages[1].content == NONE_TARGET  # no annotation: kept, empty
    ledger = reader.ledger
    assert (ledger.read, ledger.ok, ledger.n_skipped) == (11, 2, 0)
    assert dict(ledger.failed) == {
        "box_degenerate": 1,
        "duplicate_image_id": 3,
        "image_size_mismatch": 1,
        "missing_image": 1,
        "not_an_object": 1,
        "orphan_annotation": 1,
        "unknown_category": 1,
    }


def test_problems_point_at_the_annotation(coco_root: Path) -> None:
    reader = build_reader("coco")
    list(reader.read(coco_root))
    by_reason = {}
    for p in reader.problems:
        by_reason.setdefault(p.reason, p)
    assert by_reason["box_degenerate"].row == "annotations[3]"
    assert json.loads(by_reason["box_degenerate"].raw)["bbox"] == [5, 5, 0, 10]
    assert by_reason["orphan_annotation"].row == "annotations[5]"
    assert by_reason["image_size_mismatch"].row == "images[3]"
    assert "100 x 100" in by_reason["image_size_mismatch"].detail
    assert all(p.file == "annotations.json" and p.fix for p in reader.problems)


def test_gsd_is_unknown_unless_a_sensor_is_given(coco_root: Path) -> None:
    rec = next(iter(build_reader("coco").read(coco_root)))
    assert rec.images[0].gsd.kind is GSDKind.UNKNOWN
    rec = next(iter(build_reader("coco", sensor="worldview-3", source="dior").read(coco_root)))
    assert rec.id == "dior-1" and rec.source == "dior"
    g = rec.images[0].gsd
    assert g.source is GSDSource.SENSOR_TABLE and g.bounds_m == (0.31, 1.24)


def test_crowd_regions_can_be_kept_and_json_style(coco_root: Path) -> None:
    reader = build_reader("coco", include_crowd=True, style="json")
    rec = next(iter(reader.read(coco_root)))
    assert len(rec.boxes) == 4 and "crowd_omitted" not in rec.meta
    assert rec.messages[1].content == (
        "```json\n[\n"
        '\t{"bbox_2d": [10, 5, 30, 15], "label": "airplane"},\n'
        '\t{"bbox_2d": [60, 40, 64, 48], "label": "airplane"},\n'
        '\t{"bbox_2d": [0, 0, 64, 48], "label": "storage tank"},\n'
        '\t{"bbox_2d": [40, 20, 50, 30], "label": "storage tank"}\n'
        "]\n```"
    )


def test_a_file_without_annotations_is_refused(tmp_path: Path) -> None:
    (tmp_path / "annotations.json").write_text(json.dumps({"images": [], "categories": []}))
    with pytest.raises(SourceError, match="no 'annotations'"):
        list(build_reader("coco").read(tmp_path))
    (tmp_path / "annotations.json").write_text("{truncated")
    with pytest.raises(SourceError, match="not valid JSON"):
        list(build_reader("coco").read(tmp_path))
