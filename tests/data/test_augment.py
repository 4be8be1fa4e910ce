"""Online augmentation: templates, synonyms, plain/JSON targets, random resize."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from earthvlm.data.augment import (
    SYNONYM_TABLES,
    TEMPLATES,
    AugmentConfig,
    Augmenter,
    Synonyms,
    apply_resize,
    parse_prompt,
    pluralise,
    render_prompt,
    resize_record,
)
from earthvlm.data.detection_parse import parse_detections
from earthvlm.data.detection_text import NONE_TARGET, serialise_detections
from earthvlm.data.record import Box, ImagePart, ImageRef, Message, Record, TextPart
from earthvlm.errors import RecordError
from earthvlm.geo.boxes import scale_xy
from earthvlm.scale.gsd import GSD

#: Everything off: each test turns on what it checks.
OFF = AugmentConfig(templates=False, synonyms=False, switch_style=False, resize=False)
SLOTS = {
    "classification": {"classes": "airport, beach, forest"},
    "vqa": {"question": "What color is the roof?"},
    "counting": {"question": "How many planes are there?"},
    "caption": {},
    "grounding": {"expression": "the white plane on the left"},
    "detection": {"classes": " Classes: plane, ship."},
}


def _record(
    task: str,
    prompt: str,
    answer: str,
    boxes: list[Box] | None = None,
    *,
    source: str = "dota",
    size: tuple[int, int] = (200, 100),
    meta: dict | None = None,
) -> Record:
    w, h = size
    return Record(
        id=f"{task}-1",
        task=task,
        source=source,
        images=[ImageRef(path="img.png", width=w, height=h, gsd=GSD.exact(0.3))],
        messages=[
            Message(role="user", content=[ImagePart(index=0), TextPart(text=prompt)]),
            Message(role="assistant", content=answer),
        ],
        boxes=boxes or [],
        meta=meta or {},
    )


def _geom(b: Box) -> tuple[float, ...]:
    return b.xyxy_px or b.quad_px  # type: ignore[return-value]


def _dota_detection(style: str = "plain", classes: bool = True) -> Record:
    boxes = [
        Box(label="small-vehicle", quad_px=(10, 10, 30, 10, 30, 20, 10, 20)),
        Box(label="small-vehicle", quad_px=(50, 60, 70, 60, 70, 75, 50, 75)),
        Box(label="plane", quad_px=(100, 20, 160, 20, 160, 80, 100, 80)),
    ]
    listed = " Classes: plane, small-vehicle." if classes else ""
    prompt = render_prompt("detection", 0, {"classes": listed}, "quad", style)
    target = serialise_detections([(b.label, _geom(b)) for b in boxes], "quad", style)
    return _record("detection", prompt, target, boxes, meta={"format": "quad", "style": style})


def _text(rec: Record, role: str) -> str:
    return next(m.text() for m in rec.messages if m.role == role)


# -- templates ---------------------------------------------------------------------------


def test_template_tables_cover_the_tasks_with_several_templates() -> None:
    for task in ("classification", "vqa", "counting", "grounding", "detection", "caption"):
        assert len(TEMPLATES[task]) >= 3, task
        assert len(set(TEMPLATES[task])) == len(TEMPLATES[task]), task


def test_template_zero_is_the_wording_the_readers_write() -> None:
    prompts = pytest.importorskip(
        "earthvlm.data.sources._prompts", reason="the dataset readers are not in this tree"
    )
    for fmt in ("quad", "hbox"):
        for style in ("plain", "json"):
            ours = render_prompt("detection", 0, {"classes": " Classes: plane, ship."}, fmt, style)
            assert ours == prompts.detection_prompt(fmt, style, ["plane", "ship"])
    expr = {"expression": "the red car"}
    assert render_prompt("grounding", 0, expr, "hbox", "plain") == prompts.grounding_prompt(
        "the red car"
    )
    assert render_prompt("classification", 0, {"classes": "a, b"}) == (
        prompts.classification_prompt(["a", "b"])
    )


@pytest.mark.parametrize("task", sorted(TEMPLATES))
def test_every_template_parses_back_to_itself(task: str) -> None:
    for i in range(len(TEMPLATES[task])):
        for fmt, style in (("quad", "plain"), ("hbox", "json")):
            text = render_prompt(task, i, SLOTS[task], fmt, style)
            got = parse_prompt(task, text)
            assert got is not None, text
            j, slots = got
            assert render_prompt(task, j, slots, fmt, style) == text
            assert {k: v for k, v in slots.items() if k != "format"} == SLOTS[task]


def test_templates_are_drawn_at_random_and_keep_the_answer() -> None:
    rec = _record(
        "classification", render_prompt("classification", 0, SLOTS["classification"]), "beach"
    )
    aug = Augmenter(AugmentConfig(templates=True, synonyms=False, switch_style=False), seed=0)
    seen = set()
    for key in range(60):
        out = aug.apply(rec, key=key)
        seen.add(out.applied["template"])
        assert _text(out.record, "assistant") == "beach"
        assert "airport, beach, forest" in _text(out.record, "user")
    assert seen == set(range(len(TEMPLATES["classification"])))
    assert aug.counts["template"] == 60


def test_vqa_templates_wrap_the_whole_question_and_never_wrap_twice() -> None:
    question = "What is the shape of the pool?\n Answer the question using a single word or phrase."
    rec = _record("vqa", question, "round")
    aug = Augmenter(AugmentConfig(synonyms=False, switch_style=False), seed=1)
    for key in range(20):
        once = aug(rec, key=key)
        twice = aug(once, key=key + 100)
        for r in (once, twice):
            assert _text(r, "user").endswith(question) and _text(r, "assistant") == "round"
            assert len(_text(r, "user")) <= len(question) + 40  # one wrapper at most


def test_unrecognised_and_multi_turn_prompts_are_left_alone_and_counted() -> None:
    cap = _record("caption", "Describe the image in exactly one sentence.", "A port.")
    multi = cap.model_copy(
        update={"messages": [*cap.messages, Message(role="user", content="More?")]}
    )
    aug = Augmenter(AugmentConfig(synonyms=False), seed=0)
    assert aug(cap, key=0) is cap and aug(multi, key=0) is multi
    assert aug.counts["template:prompt_unrecognised"] == 1
    assert aug.counts["template:multi_turn"] == 1


# -- determinism and switches --------------------------------------------------------------


def test_same_seed_and_key_same_record_and_switches_are_independent() -> None:
    rec = _dota_detection()
    cfg = AugmentConfig(synonym_prob=1.0, resize=True, resize_prob=1.0)
    a, b = Augmenter(cfg, seed=5), Augmenter(cfg, seed=5)
    outs = [a.apply(rec, key=(0, k)) for k in range(10)]
    assert all(o.record == b(rec, key=(0, k)) for k, o in enumerate(outs))
    assert len({o.record.model_dump_json() for o in outs}) > 1  # keys differ
    assert Augmenter(cfg, seed=6)(rec, key=(0, 0)) != outs[0].record
    # turning synonyms off changes neither the template nor the resize drawn
    no_syn = Augmenter(AugmentConfig(synonyms=False, resize=True, resize_prob=1.0), seed=5)
    for k, o in enumerate(outs):
        other = no_syn.apply(rec, key=(0, k)).applied
        assert other["template"] == o.applied["template"]
        assert other["resize"] == o.applied["resize"]


def test_all_off_returns_the_record_itself() -> None:
    rec = _dota_detection()
    assert Augmenter(OFF, seed=0)(rec, key=3) is rec


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"json_prob": 1.5}, r"augment\.json_prob=1\.5"),
        ({"synonym_prob": -0.1}, r"augment\.synonym_prob"),
        ({"resize_area_ratio": (2.0, 1.0)}, r"augment\.resize_area_ratio"),
        ({"synonym_sources": {"dota": "nope"}}, r"augment\.synonym_sources.*unknown table"),
        ({"resize_max_pixels": 0}, r"augment\.resize_max_pixels"),
    ],
)
def test_config_errors_name_the_field(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AugmentConfig(**kwargs)


# -- synonyms ------------------------------------------------------------------------------


def test_synonyms_worked_example() -> None:
    rename = Synonyms({"small-vehicle": "car", "plane": "airplane"})
    text = "How many small vehicles and planes? Small-vehicle count; seaplane stays."
    assert rename(text) == "How many cars and airplanes? Car count; seaplane stays."
    assert pluralise("bus") == "buses" and pluralise("B737") == "B737s"
    assert pluralise("ferry") == "ferries"


def test_synonyms_match_whole_names_only() -> None:
    rename = Synonyms({"Tractor": "farm tractor", "Truck Tractor": "tractor unit"})
    assert rename("a Truck Tractor and a tractor") == "a Tractor unit and a farm tractor"
    assert Synonyms({"ship": "vessel"})("other-ship, ship") == "other-ship, vessel"
    # a class mapped to itself still keeps a shorter class from matching inside it
    keep = Synonyms({"Tractor": "farm tractor", "Truck Tractor": "Truck Tractor"})
    assert keep("two Truck Tractors, one Tractor") == "two Truck Tractors, one Farm tractor"
    assert keep.find("two Truck Tractors") == {"Truck Tractor"}


@pytest.mark.parametrize("table", sorted(SYNONYM_TABLES))
def test_no_two_classes_share_a_name(table: str) -> None:
    seen: dict[str, str] = {}
    for canonical, forms in SYNONYM_TABLES[table].items():
        for form in {canonical, *forms}:
            key = re.sub(r"[-_\s]+", " ", form.lower())
            assert seen.setdefault(key, canonical) == canonical, (form, canonical, seen[key])


def test_detection_synonyms_reach_question_answer_and_boxes() -> None:
    rec = _dota_detection()
    aug = Augmenter(AugmentConfig(templates=False, switch_style=False, synonym_prob=1.0), seed=2)
    renamed = 0
    for key in range(30):
        out = aug.apply(rec, key=key)
        mapping = out.applied.get("synonyms", {})
        r = out.record
        labels = {b.label for b in r.boxes}
        question, answer = _text(r, "user"), _text(r, "assistant")
        for canonical in ("plane", "small-vehicle"):
            name = mapping.get(canonical, canonical)
            assert name in labels
            assert f" {name}" in answer and re.search(rf"[ ,]{re.escape(name)}[,.]", question)
        if mapping:
            renamed += 1
            assert answer == serialise_detections([(b.label, _geom(b)) for b in r.boxes], "quad")
    assert renamed > 10


_CLASSES = [(t, c) for t in sorted(SYNONYM_TABLES) for c in sorted(SYNONYM_TABLES[t])]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    table_class=st.sampled_from(_CLASSES),
    spelling=st.sampled_from(["canonical", "spaced", "lower"]),
    key=st.integers(0, 10_000),
)
def test_synonyms_apply_to_both_question_and_answer(
    table_class: tuple[str, str], spelling: str, key: int
) -> None:
    table, canonical = table_class
    name = {
        "canonical": canonical,
        "spaced": canonical.replace("-", " "),
        "lower": canonical.lower(),
    }[spelling]
    rec = _record(
        "vqa",
        f"How many {pluralise(name)} are in the image?",
        f"There are 3 {pluralise(name)}.",
        source=table,
    )
    out = Augmenter(AugmentConfig(templates=False, synonym_prob=1.0), seed=0).apply(rec, key=key)
    chosen = out.applied.get("synonyms", {}).get(canonical)
    question, answer = _text(out.record, "user"), _text(out.record, "assistant")
    if chosen is None:  # the class's own name was drawn: texts untouched
        assert out.record == rec
        return
    new = re.compile(rf"(?<![\w-]){re.escape(pluralise(chosen))}(?![\w-])", re.I)
    assert new.search(question) and new.search(answer)
    assert "3" in answer
    if chosen.lower().replace("-", " ") != name.lower().replace("-", " "):
        old = re.compile(rf"(?<![\w-]){re.escape(pluralise(name))}(?![\w-])", re.I)
        for text in (question, answer):  # ("Airbus A220" holds "A220")
            assert not old.search(new.sub("", text))


def test_records_of_other_sources_get_no_synonyms() -> None:
    rec = _record("vqa", "How many planes?", "3", source="rsvqa")
    out = Augmenter(AugmentConfig(templates=False, synonym_prob=1.0), seed=0).apply(rec, key=0)
    assert out.record is rec and "synonyms" not in out.applied


# -- plain text or JSON ----------------------------------------------------------------------


@pytest.mark.parametrize("json_prob", [0.0, 1.0])
def test_style_switch_reserialises_target_and_prompt(json_prob: float) -> None:
    rec = _dota_detection("plain")
    cfg = AugmentConfig(templates=False, synonyms=False, json_prob=json_prob)
    out = Augmenter(cfg, seed=0)(rec, key=0)
    style = "json" if json_prob else "plain"
    answer = _text(out, "assistant")
    assert answer.startswith("```json") == (style == "json")
    assert _text(out, "user") == render_prompt(
        "detection", 0, {"classes": " Classes: plane, small-vehicle."}, "quad", style
    )
    assert out.meta["style"] == style
    before = parse_detections(_text(rec, "assistant"), fmt="quad", width=200, height=100)
    after = parse_detections(answer, fmt="quad", width=200, height=100)
    assert sorted(before.objects) == sorted(after.objects)


def test_empty_grounding_target_keeps_the_prompts_format() -> None:
    prompt = render_prompt("grounding", 0, {"expression": "a helipad"}, "hbox", "plain")
    rec = _record("grounding", prompt, NONE_TARGET)
    out = Augmenter(AugmentConfig(templates=False, synonyms=False, json_prob=1.0), seed=0)(rec)
    assert _text(out, "user") == render_prompt(
        "grounding", 0, {"expression": "a helipad"}, "hbox", "json"
    )
    assert _text(out, "assistant") == NONE_TARGET


def test_a_target_that_is_not_the_boxes_is_left_alone() -> None:
    rec = _dota_detection().model_copy(
        update={
            "messages": [
                _dota_detection().messages[0],
                Message(role="assistant", content="10,10,30,20 plane"),
            ]
        }
    )
    aug = Augmenter(AugmentConfig(templates=True, synonyms=False, resize=True, resize_prob=1.0))
    out = aug.apply(rec, key=0)
    assert out.record is rec
    assert out.skipped == {
        "template": "target_not_boxes",
        "style": "target_not_boxes",
        "resize": "target_not_boxes",
    }


# -- random resize -------------------------------------------------------------------------


def test_resize_worked_example() -> None:
    rec = _record(
        "vqa",
        "Is there a tank?",
        "yes",
        [
            Box(label="roi", xyxy_px=(10, 10, 50, 30)),
            Box(label="tank", obb_px=(100, 50, 20, 10, 0)),
        ],
    )
    out = resize_record(rec, 0.5)
    im = out.images[0]
    assert (im.width, im.height) == (100, 50)
    assert im.gsd.point_m == pytest.approx(0.6)  # half the side: twice the GSD
    assert out.boxes[0].xyxy_px == (5, 5, 25, 15)
    assert out.boxes[1].obb_px is None
    assert out.boxes[1].quad_px == pytest.approx((45, 22.5, 55, 22.5, 55, 27.5, 45, 27.5))
    assert out.meta["resize"] == [{"image": 0, "source_wh": [200, 100], "wh": [100, 50]}]
    again = resize_record(out, 3.0)  # the file's size is remembered across resizes
    assert again.meta["resize"] == [{"image": 0, "source_wh": [200, 100], "wh": [300, 150]}]


def test_random_resize_scales_sides_by_the_root_of_the_area_ratio() -> None:
    # the reference release multiplies the sides by the area ratio itself (200 -> 50)
    rec = _record("vqa", "Is it urban?", "yes", size=(200, 100))
    cfg = AugmentConfig(**{**OFF.__dict__, "resize": True, "resize_prob": 1.0,
                           "resize_area_ratio": (0.25, 0.25)})  # fmt: skip
    out = Augmenter(cfg, seed=0).apply(rec, key=0)
    assert (out.record.images[0].width, out.record.images[0].height) == (100, 50)
    assert out.applied["resize"]["side_scale"] == pytest.approx(0.5)


def test_resize_is_skipped_where_it_would_break_the_record() -> None:
    cfg = AugmentConfig(**{**OFF.__dict__, "resize": True, "resize_prob": 1.0,
                           "resize_max_pixels": 50_000})  # fmt: skip
    aug = Augmenter(cfg, seed=0)
    cases = {
        "coordinates_in_text": _record("vqa", "What is at [10, 20, 30, 40]?", "a car"),
        "unknown_size": _record("vqa", "Q?", "A").model_copy(
            update={"images": [ImageRef(path="img.png")]}
        ),
        "task_not_resized": _record("mcq", "Q?", "A"),
        "too_large": _record("vqa", "Q?", "A", size=(1000, 1000)),
    }
    for reason, rec in cases.items():
        out = aug.apply(rec, key=0)
        assert out.record is rec and out.skipped == {"resize": reason}
    capped = aug(_record("vqa", "Q?", "A", size=(200, 200)), key=0)
    assert capped.images[0].width * capped.images[0].height <= 50_000 * 1.01


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    w=st.integers(16, 2000),
    h=st.integers(16, 2000),
    fracs=st.lists(st.tuples(*[st.floats(0.0, 1.0) for _ in range(4)]), min_size=1, max_size=5),
    key=st.integers(0, 10_000),
)
def test_random_resize_keeps_boxes_inside_and_maps_back(
    w: int, h: int, fracs: list[tuple[float, ...]], key: int
) -> None:
    boxes = []
    for a, b, c, d in fracs:
        x1, x2 = sorted((a * w, c * w))
        y1, y2 = sorted((b * h, d * h))
        boxes.append(
            Box(label="plane", xyxy_px=(x1, y1, x1 + max(x2 - x1, 2), y1 + max(y2 - y1, 2)))
        )
    boxes = [b for b in boxes if b.xyxy_px[2] <= w and b.xyxy_px[3] <= h] or [  # type: ignore[index]
        Box(label="plane", xyxy_px=(0, 0, 2, 2))
    ]
    prompt = render_prompt("detection", 0, {"classes": ""}, "hbox", "plain")
    target = serialise_detections([(b.label, b.xyxy_px) for b in boxes], "hbox")  # type: ignore[misc]
    rec = _record("detection", prompt, target, boxes, size=(w, h))
    cfg = AugmentConfig(templates=False, synonyms=False, switch_style=False, resize=True,
                        resize_prob=1.0, resize_area_ratio=(0.25, 4.0))  # fmt: skip
    out = Augmenter(cfg, seed=0).apply(rec, key=key)
    r, scale = out.record, out.applied["resize"]["side_scale"]
    nw, nh = r.images[0].width, r.images[0].height
    assert (nw, nh) == (round(w * scale), round(h * scale))
    sx, sy = w / nw, h / nh
    for old, new in zip(boxes, r.boxes, strict=True):
        x1, y1, x2, y2 = new.xyxy_px  # type: ignore[misc]
        assert -1e-6 <= x1 < x2 <= nw + 1e-6 and -1e-6 <= y1 < y2 <= nh + 1e-6
        back = (x1 * sx, y1 * sy, x2 * sx, y2 * sy)
        assert back == pytest.approx(old.xyxy_px, abs=1e-6)
    # the text target: integers in the resized image, within half a resized pixel
    parsed = parse_detections(_text(r, "assistant"), fmt="hbox", width=nw, height=nh).objects
    assert len(parsed) == len(boxes)
    backs = [scale_xy(o.coords, sx, sy) for o in parsed]
    for old in boxes:
        err = min(float(np.abs(back - old.xyxy_px).max()) for back in backs)
        assert err <= 0.5 * max(sx, sy) + 1e-6  # half a pixel of the resized image
        if scale >= 0.5:
            assert err <= 1.0 + 1e-6
    assert r.images[0].gsd.point_m == pytest.approx(0.3 * math.sqrt(w * h / (nw * nh)))


def test_apply_resize_gives_the_image_the_boxes_describe() -> None:
    pixels = np.zeros((60, 100, 3), dtype=np.uint8)
    pixels[10:40, 20:60] = 255  # a white object at xyxy (20, 10, 60, 40)
    image = Image.fromarray(pixels)
    rec = _record("vqa", "Q?", "A", [Box(label="roi", xyxy_px=(20, 10, 60, 40))], size=(100, 60))
    assert apply_resize(image, rec, 0) is image  # no instruction: the file as it is
    out = resize_record(rec, 0.5)
    seen = np.asarray(apply_resize(image, out, 0))
    assert seen.shape[:2] == (out.images[0].height, out.images[0].width) == (30, 50)
    x1, y1, x2, y2 = (int(v) for v in out.boxes[0].xyxy_px)  # type: ignore[union-attr]
    assert seen[y1 + 1 : y2 - 1, x1 + 1 : x2 - 1].min() > 200  # inside the moved box
    outside = np.ones(seen.shape[:2], dtype=bool)
    outside[y1 - 1 : y2 + 1, x1 - 1 : x2 + 1] = False
    assert seen[outside].max() < 50
    with pytest.raises(RecordError, match=r"100x60 px but its resize instruction was made for"):
        apply_resize(image, out.model_copy(
            update={"meta": {"resize": [{"image": 0, "source_wh": [50, 50], "wh": [25, 25]}]}}
        ), 0)  # fmt: skip
