"""LRS-VQA JSONL -> VQA records: boxes, per-source ids, GSD from georeferencing."""

from __future__ import annotations

from pathlib import Path

import pytest

from earthvlm.data.sources import build_reader
from earthvlm.scale.gsd import GSDKind, GSDSource


def test_records_boxes_and_ledger(lrs_vqa_root: Path) -> None:
    reader = build_reader("lrs-vqa")
    recs = {r.id: r for r in reader.read(lrs_vqa_root)}
    assert sorted(recs) == ["lrs-vqa-FAIR_1", "lrs-vqa-STAR_7"]
    rec = recs["lrs-vqa-FAIR_1"]
    assert (rec.task, rec.split, rec.images[0].path) == ("vqa", "test", "LRS_VQA/image/1.tif")
    assert rec.messages[0].text() == (
        "What color is the car?\n Answer the question using a single word or phrase."
    )
    assert rec.messages[1].content == "white"
    assert [(b.label, b.xyxy_px) for b in rec.boxes] == [("roi", (2, 3, 10, 12))]
    assert rec.meta == {
        "question_id": "FAIR_1",
        "benchmark_source": "FAIR",
        "category": "color",
        "abs_size": 72,
        "size_bin": "small",
        "rbox_quad_px": [2.0, 3.0, 10.0, 3.0, 10.0, 12.0, 2.0, 12.0],
    }
    count = recs["lrs-vqa-STAR_7"]
    assert count.boxes == [] and count.messages[1].content == "0"
    assert count.meta["benchmark_source"] == "STAR"
    ledger = reader.ledger
    assert (ledger.read, ledger.ok, dict(ledger.skipped)) == (8, 2, {"blank_line": 1})
    assert {p.row: p.reason for p in reader.problems} == {
        3: "image_size_mismatch",
        4: "box_inverted",
        5: "missing_image",
        7: "not_an_object",
        8: "box_wrong_length",
    }


def test_gsd_from_georeferencing_else_unknown(lrs_vqa_root: Path) -> None:
    recs = {r.id: r for r in build_reader("lrs-vqa").read(lrs_vqa_root)}
    geo = recs["lrs-vqa-FAIR_1"].images[0].gsd
    assert geo.kind is GSDKind.EXACT and geo.source is GSDSource.GEOREF
    assert geo.point_m == pytest.approx(0.5, rel=1e-2)
    assert recs["lrs-vqa-STAR_7"].images[0].gsd.kind is GSDKind.UNKNOWN


def test_dataset_range_fills_the_rest_and_georef_can_be_off(lrs_vqa_root: Path) -> None:
    recs = {r.id: r for r in build_reader("lrs-vqa", gsd_range_m=(0.3, 0.8)).read(lrs_vqa_root)}
    assert recs["lrs-vqa-FAIR_1"].images[0].gsd.source is GSDSource.GEOREF
    filled = recs["lrs-vqa-STAR_7"].images[0].gsd
    assert filled.source is GSDSource.DATASET and filled.bounds_m == (0.3, 0.8)
    recs = {r.id: r for r in build_reader("lrs-vqa", read_georef=False).read(lrs_vqa_root)}
    assert recs["lrs-vqa-FAIR_1"].images[0].gsd.kind is GSDKind.UNKNOWN
