"""GeoChat-Instruct -> records: tags become instructions, 0-100 boxes become pixels."""

from __future__ import annotations

from pathlib import Path

from earthvlm.data.record import ImagePart, Record, TextPart
from earthvlm.data.sources import build_reader


def _records(root: Path) -> tuple[object, dict[str, Record]]:
    reader = build_reader("geochat")
    return reader, {r.id: r for r in reader.read(root)}


def test_refer_becomes_a_pixel_grounding_record(geochat_root: Path) -> None:
    _, recs = _records(geochat_root)
    rec = recs["geochat-P0001_0000"]
    assert rec.task == "grounding"
    assert (rec.images[0].width, rec.images[0].height) == (200, 100)
    user, answer = rec.messages
    assert user.content == [
        ImagePart(index=0),
        TextPart(
            text="Where is silver plane? Answer with the bounding box as [x1, y1, x2, y2] "
            "in pixels."
        ),
    ]
    # {<16><55><24><63>|<11>} on a 200 x 100 image
    assert answer.content == "[32, 55, 48, 63]"
    assert [(b.label, b.xyxy_px) for b in rec.boxes] == [("silver plane", (32, 55, 48, 63))]
    assert rec.meta["box_angles_deg"] == [11.0]
    assert rec.meta["box_turns"] == [1]
    assert rec.meta["source_id"] == "P0001_0000"


def test_grounding_answer_keeps_phrases_and_boxes(geochat_root: Path) -> None:
    _, recs = _records(geochat_root)
    rec = recs["geochat-P0001_0000-row1"]  # the id repeats row 0's: made unique
    assert rec.task == "grounded_caption"
    assert rec.messages[0].text() == (
        "Describe the image in detail. Give the bounding box of every object you mention "
        "as [x1, y1, x2, y2] in pixels."
    )
    assert rec.messages[1].content == (
        "There are 2 planes [20, 10, 40, 20], [60, 30, 80, 40] parked on the apron."
    )
    assert [b.label for b in rec.boxes] == ["2 planes", "2 planes"]
    assert rec.boxes[1].xyxy_px == (60, 30, 80, 40)


def test_identify_box_is_an_input_region(geochat_root: Path) -> None:
    _, recs = _records(geochat_root)
    rec = recs["geochat-P0001_0001"]
    assert rec.task == "region_caption"
    user = rec.messages[0]
    assert isinstance(user.content, list) and user.content[-1] == ImagePart(index=0)
    assert user.text() == (
        "What is this [100, 50, 120, 60]\n(The region is given as [x1, y1, x2, y2] in pixels.)"
    )
    assert [(b.label, b.xyxy_px) for b in rec.boxes] == [("region", (100, 50, 120, 60))]
    assert rec.meta["box_angles_deg"] == [None]


def test_untagged_chat_without_image_token(geochat_root: Path) -> None:
    _, recs = _records(geochat_root)
    rec = recs["geochat-P0002"]
    assert rec.task == "conversation"
    assert [m.role for m in rec.messages] == ["user", "assistant", "user", "assistant"]
    assert rec.messages[0].content == [
        ImagePart(index=0),
        TextPart(text="How many buildings are there?"),
    ]
    assert rec.messages[2].content == "Is there a road?"
    assert rec.boxes == []


def test_malformed_rows_are_quarantined(geochat_root: Path) -> None:
    reader, recs = _records(geochat_root)
    assert len(recs) == 5
    assert {p.row: p.reason for p in reader.problems} == {
        4: "unknown_task_tag",
        5: "box_outside_grid",
        6: "missing_image",
        7: "no_conversations",
        8: "image_token_mismatch",
        9: "unknown_role",
    }
    assert reader.ledger.read == 11 and reader.ledger.ok == 5
    tag = next(p for p in reader.problems if p.reason == "unknown_task_tag")
    assert "[refer]" in tag.fix and "[detect]" in tag.detail


def test_refer_phrase_reaches_the_answer_when_the_image_comes_last(geochat_root: Path) -> None:
    _, recs = _records(geochat_root)
    rec = recs["geochat-P0001_0002"]
    assert rec.messages[0].content == [
        TextPart(
            text="Give me the location of the ship. Answer with the bounding box as "
            "[x1, y1, x2, y2] in pixels."
        ),
        ImagePart(index=0),
    ]
    assert rec.messages[1].content == "[0, 0, 100, 50]"
    assert [(b.label, b.xyxy_px) for b in rec.boxes] == [("the ship", (0, 0, 100, 50))]
