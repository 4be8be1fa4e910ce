"""Rule-based text cleaning: worked examples, counts per rule, numbers never change."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earthvlm.data.clean import RULES, CleanReport, clean_record, clean_records, clean_text
from earthvlm.data.detection_text import serialise_detections
from earthvlm.data.record import Box, ImagePart, ImageRef, Message, Record, TextPart

_NUMBERS = re.compile(r"\d+")


@pytest.mark.parametrize(
    ("text", "expected", "rules"),
    [
        ("There is none .", "There is none.", {"space_before_punct": 1}),
        ("Two  planes,  one ship", "Two planes, one ship", {"duplicate_spaces": 2}),
        ("What is this ??", "What is this?", {"space_before_punct": 1, "duplicate_punct": 1}),
        ("yes!!! really,, sure..", "yes! really, sure.", {"duplicate_punct": 3}),
        ("Teh buliding is red", "The building is red", {"typos": 2}),
        ("wait...", "wait...", {}),  # an ellipsis is kept
        ("line one  \nline two", "line one\nline two", {"trailing_spaces": 1}),
        ("\tindented  text", "\tindented text", {"duplicate_spaces": 1}),
        ("it is 3 .5 m, not 1..2 or 1,,2", "it is 3 .5 m, not 1..2 or 1,,2", {}),
        ("The buildings .", "The buildings.", {"space_before_punct": 1}),
    ],
)
def test_worked_examples_and_counts_per_rule(text: str, expected: str, rules: dict) -> None:
    report = CleanReport()
    assert clean_text(text, report=report) == expected
    assert dict(report.counts) == rules
    assert report.texts == 1 and report.texts_changed == (text != expected)


def test_code_fences_are_left_exactly_as_they_are() -> None:
    target = serialise_detections([("plane", (1, 2, 30, 40))], "hbox", "json")
    text = f"Here  it is :\n{target}\nDone  ."
    out = clean_text(text)
    assert target in out and out.startswith("Here it is:\n") and out.endswith("Done.")


def test_rules_can_be_chosen_and_unknown_rules_are_refused() -> None:
    assert clean_text("teh  car .", rules=["typos"]) == "the  car ."
    with pytest.raises(ValueError, match=r"unknown rule\(s\) \['spelling'\]"):
        clean_text("x", rules=["spelling"])
    assert RULES[-1] == "typos"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab1 2.,;:!?\n\t-", max_size=40))
def test_numbers_never_change_and_cleaning_is_idempotent(text: str) -> None:
    report = CleanReport()
    out = clean_text(text, report=report)
    assert _NUMBERS.findall(out) == _NUMBERS.findall(text)
    assert not any(k.startswith("reverted:") for k in report.counts)
    assert clean_text(out) == out


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["plane", "small vehicle", "storage-tank"]),
            st.lists(st.integers(0, 500), min_size=4, max_size=4),
        ),
        max_size=6,
    ),
    st.sampled_from(["plain", "json"]),
)
def test_detection_targets_are_never_changed(objects: list, style: str) -> None:
    objects = [(c, (x, y, x + 1 + w, y + 1 + h)) for c, (x, y, w, h) in objects]
    target = serialise_detections(objects, "hbox", style)
    assert clean_text(target) == target


def _grounding(expression: str) -> Record:
    box = Box(label=expression, xyxy_px=(1, 2, 30, 40))
    return Record(
        id="g",
        task="grounding",
        source="refgeo",
        images=[ImageRef(path="a.png", width=64, height=64)],
        messages=[
            Message(
                role="user",
                content=[ImagePart(index=0), TextPart(text=f"Locate this: {expression} .")],
            ),
            Message(role="assistant", content=serialise_detections([(expression, box.xyxy_px)])),
        ],
        boxes=[box],
    )


def test_records_clean_texts_and_box_labels_alike() -> None:
    dirty, tidy = _grounding("the  white vehical"), _grounding("the white vehicle")
    out, report = clean_records([dirty, tidy])
    assert out[0].messages[0].text() == "Locate this: the white vehicle."
    assert out[0].boxes[0].label == "the white vehicle"
    assert out[0].messages[1].text() == serialise_detections(
        [(b.label, b.xyxy_px) for b in out[0].boxes]
    )  # the target is still exactly the serialisation of the boxes
    assert report.records == 2 and report.records_changed == 2  # " ." in both prompts
    # prompt, target and box label: one typo and one double space each
    assert report.counts["typos"] == 3 and report.counts["duplicate_spaces"] == 3
    assert "records" in report.summary() and report.to_dict()["records_changed"] == 2
    clean = clean_record(out[0])
    assert clean is out[0]  # nothing left to change: the record itself
