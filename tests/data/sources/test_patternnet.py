"""Class folders (PatternNet and any other) -> classification records."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from earthvlm.data.sources import build_reader
from earthvlm.data.sources.class_folders import PatternNet, class_text
from earthvlm.scale.gsd import GSDKind, GSDSource


def test_patternnet_records_prompt_and_gsd(patternnet_root: Path) -> None:
    reader = build_reader("patternnet")
    recs = {r.id: r for r in reader.read(patternnet_root)}
    assert sorted(recs) == [
        "patternnet-airplane-airplane001",
        "patternnet-airplane-airplane002",
        "patternnet-tennis_court-tennis_court001",
    ]
    rec = recs["patternnet-tennis_court-tennis_court001"]
    assert (rec.task, rec.source) == ("classification", "patternnet")
    assert rec.images[0].path == "PatternNet/images/tennis_court/tennis_court001.jpg"
    assert (rec.images[0].width, rec.images[0].height) == (16, 16)
    assert rec.messages[1].content == "tennis court"
    assert rec.meta == {"class": "tennis_court"}
    prompt = rec.messages[0].text()
    # the closed set is the release's 38 classes, the empty "beach" folder included
    assert prompt.count(", ") == len(PatternNet.classes) - 1 == 37
    assert "beach" in prompt and "wastewater treatment plant" in prompt
    g = rec.images[0].gsd
    assert g.kind is GSDKind.RANGE and g.source is GSDSource.DATASET
    assert g.bounds_m == (0.062, 4.693)


def test_patternnet_ledger_and_quarantine(patternnet_root: Path) -> None:
    reader = build_reader("patternnet")
    list(reader.read(patternnet_root))
    ledger = reader.ledger
    assert (ledger.read, ledger.ok) == (8, 3)
    assert dict(ledger.skipped) == {"not_an_image": 1, "outside_class_folder": 1}
    assert dict(ledger.failed) == {"path_escape": 1, "unknown_class": 1, "unreadable_image": 1}
    by_reason = {p.reason: p for p in reader.problems}
    escape = by_reason["path_escape"]
    assert escape.file == "PatternNet/images/airplane/escape.jpg"
    assert "outside the dataset root" in escape.detail
    assert "class-folders" in by_reason["unknown_class"].fix


def test_class_folders_take_the_folders_as_classes(patternnet_root: Path) -> None:
    reader = build_reader("class-folders", image_dir="PatternNet/images", sensor="naip")
    recs = {r.id: r for r in reader.read(patternnet_root)}
    assert "class-folders-volcano-volcano001" in recs
    rec = recs["class-folders-volcano-volcano001"]
    assert rec.messages[0].text().endswith("classes: airplane, beach, tennis court, volcano.")
    g = rec.images[0].gsd
    assert g.source is GSDSource.SENSOR_TABLE and g.point_m == 0.6
    assert dict(reader.ledger.failed) == {"path_escape": 1, "unreadable_image": 1}


def test_verify_images_finds_a_truncated_jpeg(tmp_path: Path, gen: ModuleType) -> None:
    good = gen.jpeg(tmp_path / "scenes/river/a.jpg", 64, 64, 1)
    cut = tmp_path / "scenes/river/b.jpg"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # header intact
    assert len(list(build_reader("class-folders").read(tmp_path / "scenes"))) == 2
    reader = build_reader("class-folders", verify_images=True)
    assert [r.id for r in reader.read(tmp_path / "scenes")] == ["class-folders-river-a"]
    assert dict(reader.ledger.failed) == {"unreadable_image": 1}


def test_class_text() -> None:
    assert class_text("christmas_tree_farm") == "christmas tree farm"
    assert class_text("Dense Residential") == "Dense Residential"
