"""DOTA label files -> detection records: targets, boxes, GSD from the header, quarantine."""

from __future__ import annotations

from pathlib import Path

import pytest

from earthvlm.data.detection_text import NONE_TARGET
from earthvlm.data.record import Record
from earthvlm.data.sources import SourceError, build_reader
from earthvlm.data.sources.dota import DOTA, imagesource_sensor
from earthvlm.scale.gsd import GSDKind, GSDSource


def _read(root: Path, **options: object) -> tuple[DOTA, dict[str, Record]]:
    reader = build_reader("dota", **options)
    assert isinstance(reader, DOTA)
    return reader, {r.id: r for r in reader.read(root)}


def test_ledger_counts_every_file(dota_root: Path) -> None:
    reader, recs = _read(dota_root)
    assert sorted(recs) == ["dota-P0001", "dota-P0002", "dota-P0003", "dota-P0005"]
    ledger = reader.ledger
    assert (ledger.read, ledger.ok) == (10, 4)
    assert dict(ledger.skipped) == {"no_label_file": 1, "not_a_label_file": 1}
    assert dict(ledger.failed) == {
        "bad_gsd_header": 1,
        "bad_object_line": 1,
        "missing_image": 1,
        "unknown_class": 1,
    }
    assert len(reader.problems) == ledger.n_failed


def test_record_fields_boxes_and_target(dota_root: Path) -> None:
    _, recs = _read(dota_root)
    rec = recs["dota-P0001"]
    assert (rec.task, rec.source, rec.split) == ("detection", "dota", "train")
    image = rec.images[0]
    assert (image.path, image.width, image.height) == ("images/P0001.png", 100, 80)
    assert image.gsd.kind is GSDKind.EXACT and image.gsd.source is GSDSource.METADATA
    assert image.gsd.point_m == pytest.approx(0.146343590398)
    assert "gsd:0.146343590398" in image.gsd.detail
    assert [b.label for b in rec.boxes] == ["small-vehicle", "plane", "small-vehicle"]
    # canonical order (top-most vertex first, clockwise) and clipped to the 100 px width
    assert rec.boxes[0].quad_px == (10, 10, 30, 10, 30, 20, 10, 20)
    assert rec.boxes[1].quad_px == (90, 45, 95, 70, 65, 75, 60, 50)
    assert rec.boxes[2].quad_px == (95, 60, 100, 60, 100, 70, 95, 70)
    assert rec.messages[0].image_indexes() == [0]
    assert "x1,y1,x2,y2,x3,y3,x4,y4 class" in rec.messages[0].text()
    assert rec.messages[1].content == (
        "90,45,95,70,65,75,60,50 plane\n"
        "10,10,30,10,30,20,10,20 small-vehicle\n"
        "95,60,100,60,100,70,95,70 small-vehicle"
    )
    assert rec.meta["difficult"] == [1]
    assert rec.meta["imagesource"] == "GoogleEarth"
    assert rec.meta["box_repairs"] == {"clipped": 1, "vertex_order": 1}
    assert rec.meta["label_file"] == "labelTxt/P0001.txt"


def test_gsd_from_imagesource_then_unknown(dota_root: Path) -> None:
    _, recs = _read(dota_root)
    gf2 = recs["dota-P0002"].images[0].gsd  # gsd:null, imagesource:GF2
    assert gf2.kind is GSDKind.RANGE and gf2.source is GSDSource.SENSOR_TABLE
    assert gf2.bounds_m == (0.8, 3.2)
    google = recs["dota-P0003"].images[0].gsd  # gsd:null, imagesource:GoogleEarth
    assert google.kind is GSDKind.UNKNOWN and google.source is GSDSource.NONE
    assert imagesource_sensor("GF-2") == "gaofen-2"
    assert imagesource_sensor("JL1") == "jilin-1"
    assert imagesource_sensor("GoogleEarth") is None


def test_dataset_level_range_fills_only_what_the_header_leaves_unknown(dota_root: Path) -> None:
    _, recs = _read(dota_root, gsd_range_m=(0.1, 1.0))
    assert recs["dota-P0001"].images[0].gsd.source is GSDSource.METADATA
    filled = recs["dota-P0003"].images[0].gsd
    assert filled.source is GSDSource.DATASET and filled.bounds_m == (0.1, 1.0)


def test_empty_label_file_keeps_the_image_with_the_none_target(dota_root: Path) -> None:
    _, recs = _read(dota_root)
    rec = recs["dota-P0003"]
    assert rec.boxes == []
    assert rec.messages[1].content == NONE_TARGET
    assert rec.meta["n_objects"] == 0


def test_quarantine_names_file_row_reason_and_fix(dota_root: Path) -> None:
    reader, _ = _read(dota_root)
    by_file = {p.file: p for p in reader.problems}
    bad_line = by_file["labelTxt/P0004.txt"]
    assert (bad_line.row, bad_line.reason, bad_line.raw) == (4, "bad_object_line", "1 2 3 plane 0")
    assert "line 4" in bad_line.fix
    header = by_file["labelTxt/P0006.txt"]
    assert (header.row, header.reason, header.raw) == (2, "bad_gsd_header", "gsd:abc")
    assert "labelTxt/P0005.txt" not in by_file  # a bad box is dropped, not the image
    assert by_file["labelTxt/P0007.txt"].reason == "missing_image"
    assert "images/P0007.png" in by_file["labelTxt/P0007.txt"].fix
    unknown = by_file["labelTxt/P0009.txt"]
    assert unknown.reason == "unknown_class" and "version=2.0" in unknown.fix


def test_a_bad_box_is_dropped_and_counted_and_the_image_kept(dota_root: Path) -> None:
    _, recs = _read(dota_root)
    rec = recs["dota-P0005"]
    assert [b.label for b in rec.boxes] == ["plane"]  # the other objects stay
    assert rec.messages[1].content == "1,1,10,1,10,10,1,10 plane"
    assert rec.meta["boxes_dropped"] == {"box_degenerate": 1}
    assert rec.meta["dropped_lines"] == [2] and rec.meta["n_objects"] == 1


def test_version_two_reads_airports(dota_root: Path) -> None:
    reader, recs = _read(dota_root, version="2.0")
    assert recs["dota-P0009"].boxes[0].label == "airport"
    assert "unknown_class" not in reader.ledger.failed


def test_difficult_objects_can_be_left_out(dota_root: Path) -> None:
    _, recs = _read(dota_root, include_difficult=False)
    rec = recs["dota-P0001"]
    assert [b.label for b in rec.boxes] == ["small-vehicle", "small-vehicle"]
    assert rec.meta["difficult_omitted"] == 1 and rec.meta["difficult"] == []
    assert "plane" not in rec.messages[1].text()


def test_hbox_json_target(dota_root: Path) -> None:
    _, recs = _read(dota_root, fmt="hbox", style="json", list_classes=True)
    rec = recs["dota-P0002"]
    assert (
        rec.messages[1].content
        == '```json\n[\n\t{"bbox_2d": [5, 5, 20, 15], "label": "ship"}\n]\n```'
    )
    assert "bbox_2d" in rec.messages[0].text() and "Classes: plane, ship" in rec.messages[0].text()
    assert rec.boxes[0].quad_px == (5, 5, 20, 5, 20, 15, 5, 15)  # the annotation stays a quad


def test_bad_options_and_missing_folders(tmp_path: Path, dota_root: Path) -> None:
    with pytest.raises(ValueError, match="version"):
        DOTA(version="3.0")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="did you mean"):
        DOTA(sensor="gaofen2")
    with pytest.raises(SourceError, match="labelTxt"):
        list(DOTA().read(tmp_path))
    with pytest.raises(SourceError, match="no such folder"):
        list(DOTA().read(tmp_path / "absent"))
