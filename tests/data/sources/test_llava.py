"""LLaVA-style conversations (generic JSONL, VHM's image_path) -> conversation records."""

from __future__ import annotations

from pathlib import Path

from earthvlm.data.record import ImagePart, TextPart
from earthvlm.data.sources import build_reader
from earthvlm.scale.gsd import GSDSource


def test_vhm_rows_name_their_folder(vhm_root: Path) -> None:
    reader = build_reader("vhm", annotations="cls_ucm.json", gsd_range_m=(0.3, 0.3))
    (rec,) = list(reader.read(vhm_root))
    assert (rec.id, rec.source, rec.task) == ("vhm-v1", "vhm", "conversation")
    assert rec.images[0].path == "cls_ucm/a.jpg"
    assert rec.messages[0].content == [
        ImagePart(index=0),
        TextPart(text="What is the scene? Answer with one word or short phrase."),
    ]
    assert rec.messages[1].content == "beach"
    g = rec.images[0].gsd
    assert g.source is GSDSource.DATASET and g.bounds_m == (0.3, 0.3)
    (problem,) = reader.problems
    assert (problem.row, problem.reason) == (1, "path_escape")


def test_llava_jsonl_interleaved_images_and_text_only_rows(llava_root: Path) -> None:
    reader = build_reader("llava", annotations="chat.jsonl")
    recs = {r.id: r for r in reader.read(llava_root)}
    assert sorted(recs) == ["llava-m1", "llava-t1"]
    multi = recs["llava-m1"]
    assert [im.path for im in multi.images] == ["images/t1.png", "images/t2.png"]
    assert multi.messages[0].content == [
        TextPart(text="Before:"),
        ImagePart(index=0),
        TextPart(text="After:"),
        ImagePart(index=1),
        TextPart(text="What changed?"),
    ]
    text_only = recs["llava-t1"]
    assert text_only.images == [] and text_only.messages[0].content == "What is a GSD?"
    assert {p.row: p.reason for p in reader.problems} == {3: "empty_turn", 4: "invalid_json"}
    assert reader.ledger.read == 4
