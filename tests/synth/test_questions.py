"""Question generators: answers agree with the labels, questions respect the GSD.

Facts come from real rendered scenes (generate_scene + Canvas + label_scene) at GSDs
across the tiers and from hand-made label lists that pin down one rule each.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from functools import cache

import numpy as np
import pytest

from earthvlm.data.detection_text import NONE_TARGET
from earthvlm.data.record import Box, ImagePart, ImageRef, Message, Record, TextPart
from earthvlm.geo.boxes import canonical_quad, obb_to_quad, quad_to_xyxy
from earthvlm.synth.catalogue import CLASSES, CONFUSION
from earthvlm.synth.labels import DETECTABLE_PX, ObjectLabel, label_scene
from earthvlm.synth.questions import (
    GENERATORS,
    QA,
    SceneFacts,
    cloud,
    colour,
    comparison,
    count,
    detection,
    existence,
    grid_count,
    grounding,
    norm1000,
    relation,
    roi_questions,
    scale_specific,
    scene_facts,
    scene_features,
    to_mcq,
)
from earthvlm.synth.render import Canvas
from earthvlm.synth.scene import LAND_USE, Scene, Strip, generate_scene

REAL = [
    ("urban", 0.12, 0), ("urban", 0.3, 0), ("suburban", 0.15, 0), ("suburban", 0.5, 1),
    ("industrial", 0.8, 2), ("industrial", 2.5, 0), ("harbour", 1.5, 1), ("airport", 0.6, 0),
    ("farmland", 3.0, 0), ("forest", 10.0, 0), ("urban", 12.0, 0),
]  # fmt: skip
CELLS = [
    ["top-left", "top-centre", "top-right"],
    ["middle-left", "centre", "middle-right"],
    ["bottom-left", "bottom-centre", "bottom-right"],
]
POPULATION_KINDS = {"count", "grid_count", "comparison"}


@cache
def real_facts(kind: str, gsd: float, seed: int, n: int = 128) -> SceneFacts:
    scene = generate_scene(kind, n * gsd, n * gsd, gsd, seed)
    canvas = scene.render(Canvas(n, n, gsd))
    return scene_facts(scene, canvas, label_scene(scene, canvas))


def all_real() -> list[SceneFacts]:
    return [real_facts(*k) for k in REAL]


def lab(
    i: int,
    cls: str,
    cx: float,
    cy: float,
    length: float,
    width: float,
    angle: float = 0.0,
    colour: str | None = None,
) -> ObjectLabel:
    """A hand-made label; ``length`` and ``width`` in pixels."""
    quad = obb_to_quad(cx, cy, length, width, angle)
    return ObjectLabel(
        i, cls, quad, quad_to_xyxy(quad), (cx, cy, length, width, angle), length, width, colour
    )


def made(labels: list[ObjectLabel], gsd: float = 0.3, size: int = 120, **kw) -> SceneFacts:
    kind = kw.pop("kind", "urban")
    return SceneFacts(kind, LAND_USE[kind], gsd, size, size, labels, **kw)


def run_all(facts: SceneFacts, seed: int) -> list[QA]:
    rng = np.random.default_rng(seed)
    return [qa for gen in GENERATORS.values() for qa in gen(facts, rng)]


def key(qa: QA) -> tuple:
    return (
        qa.task, qa.kind, qa.question, qa.answer, tuple(lb.index for lb in qa.boxes),
        json.dumps(qa.meta, sort_keys=True),
    )  # fmt: skip


def many(gen, facts: SceneFacts, seeds: int = 40) -> list[QA]:
    return [qa for s in range(seeds) for qa in gen(facts, np.random.default_rng(s))]


def cell_of(facts: SceneFacts, x: float, y: float) -> str:
    col = int(np.digitize(x, [facts.width / 3, 2 * facts.width / 3]))
    row = int(np.digitize(y, [facts.height / 3, 2 * facts.height / 3]))
    return CELLS[row][col]


def resolvable(cls: str, gsd: float) -> bool:
    """Independent of the module: the catalogue's smallest member is detectable."""
    c = CLASSES[cls]
    return c.length_m[0] / gsd >= DETECTABLE_PX and c.length_m[0] * c.aspect / gsd >= 1.0


def mentioned(text: str) -> set[str]:
    return {c for c in CLASSES if re.search(rf"\b{re.escape(c)}(e?s)?\b", text)}


# -- every generator ---------------------------------------------------------------------


def test_generators_are_registered_with_valid_task_names() -> None:
    assert {
        "identification", "scale_specific", "discriminative", "count", "grid_count",
        "comparison", "existence", "colour", "relation", "grounding", "detection", "roi", "mcq",
    } <= set(GENERATORS)  # fmt: skip
    tasks = {qa.task for f in all_real() for qa in run_all(f, 0)}
    assert {"vqa", "counting", "grounding", "detection", "mcq", "roi"} <= tasks
    assert all(re.fullmatch(r"[a-z0-9_-]+", t) for t in tasks)


def test_every_generator_is_deterministic_for_a_seed() -> None:
    for facts in all_real():
        for gen in GENERATORS.values():
            a = gen(facts, np.random.default_rng(3))
            b = gen(facts, np.random.default_rng(3))
            assert [key(q) for q in a] == [key(q) for q in b]


def test_items_make_valid_records_with_json_metadata() -> None:
    for facts in all_real():
        image = ImageRef(path="img.tif", width=facts.width, height=facts.height)
        for k, qa in enumerate(run_all(facts, 1)):
            json.dumps(qa.meta)  # plain Python values only
            Record(
                id=f"r{k}", task=qa.task, source="synth", images=[image],
                messages=[
                    Message(role="user", content=[ImagePart(index=0), TextPart(text=qa.question)]),
                    Message(role="assistant", content=qa.answer),
                ],
                boxes=[Box(label=lb.cls, quad_px=tuple(lb.quad_px.reshape(-1))) for lb in qa.boxes],
            )  # fmt: skip


def test_no_question_mentions_a_class_it_cannot_see() -> None:
    facts_list = [*all_real(), *(made_scenes().values())]
    for facts in facts_list:
        groups: dict[str, list[ObjectLabel]] = {}
        for lb in facts.labels:
            groups.setdefault(lb.cls, []).append(lb)
        for seed in range(4):
            for qa in run_all(facts, seed):
                text = qa.question.split("\n")[0]  # an MCQ's options are candidates
                for cls in mentioned(text) - {qa.meta.get("hard_negative")}:
                    named = [lb for lb in qa.boxes if lb.cls == cls and lb.identifiable]
                    group = groups.get(cls, [])
                    assert named or (
                        all(lb.detectable for lb in group)
                        and (group or resolvable(cls, facts.gsd_m))
                    ), (facts.kind, facts.gsd_m, qa.question)
                if qa.kind in POPULATION_KINDS or (qa.kind == "existence" and qa.answer == "no"):
                    for cls in qa.meta["classes"]:
                        assert resolvable(cls, facts.gsd_m), qa.question
                        assert all(lb.detectable for lb in groups.get(cls, []))


def made_scenes() -> dict[str, SceneFacts]:
    """Hand-made facts, one rule each."""
    cars = [
        lab(0, "small vehicle", 10, 10, 14, 6, colour="red"),
        lab(1, "small vehicle", 22, 14, 14, 6, colour="white"),
        lab(2, "small vehicle", 12, 24, 14, 6, colour="white"),
        lab(3, "small vehicle", 45, 45, 14, 6, colour="blue"),
        lab(4, "small vehicle", 80, 10, 14, 6, colour="black"),  # straddles x = 80
        lab(5, "small vehicle", 100, 100, 14, 6, colour="grey"),
        lab(6, "small vehicle", 112, 100, 14, 6, 90.0, colour="grey"),
    ]
    return {
        "cars": made(cars, gsd=0.3),
        "mixed": made(
            [
                lab(0, "building", 30, 30, 40, 16, colour="red"),
                lab(1, "building", 90, 30, 30, 12, colour="grey"),
                lab(2, "building", 30, 90, 30, 12, colour="grey"),
                lab(3, "small vehicle", 70, 70, 14, 6, colour="white"),
                lab(4, "small vehicle", 90, 90, 14, 6, colour="red"),
                lab(5, "small vehicle", 100, 60, 1.5, 0.6),  # below detection
            ]
        ),
        "pair": made(
            [
                lab(0, "tennis court", 20, 60, 30, 14),
                lab(1, "storage tank", 95, 62, 20, 20, colour="white"),
            ],
            gsd=0.5,
        ),
        "diagonal": made(
            [
                lab(0, "tennis court", 20, 20, 30, 14),
                lab(1, "storage tank", 100, 100, 20, 20, colour="white"),
            ],
            gsd=0.5,
        ),
        "tiny": made([lab(0, "small vehicle", 50, 50, 1.5, 0.6)], gsd=3.0, kind="forest"),
        "coarse": made([lab(0, "building", 60, 60, 10, 4, colour="red")], gsd=2.0),
    }


# -- counting ----------------------------------------------------------------------------


def test_counts_match_the_labels() -> None:
    seen = 0
    for facts in [*all_real(), *made_scenes().values()]:
        for qa in many(count, facts, 6):
            (cls,) = qa.meta["classes"]
            assert int(qa.answer) == sum(lb.cls == cls for lb in facts.labels)
            assert all(lb.detectable for lb in facts.labels if lb.cls == cls)
            seen += 1
    assert seen > 20


def test_grid_counts_match_an_independent_count_by_centre() -> None:
    seen = 0
    for facts in [*all_real(), *made_scenes().values()]:
        for qa in many(grid_count, facts, 6):
            (cls,) = qa.meta["classes"]
            name = qa.meta["cell"]
            assert f"in the {name} cell of a 3 x 3 grid" in qa.question
            expected = [
                lb for lb in facts.labels if lb.cls == cls and cell_of(facts, *lb.centre_px) == name
            ]
            assert int(qa.answer) == len(expected)
            assert {lb.index for lb in qa.boxes} == {lb.index for lb in expected}
            seen += 1
    assert seen > 20


def test_grid_count_avoids_cells_an_object_straddles() -> None:
    facts = made_scenes()["cars"]
    asked = {qa.meta["cell"]: qa.answer for qa in many(grid_count, facts, 60)}
    # car 4 (centre x = 80 on a 120 px image) straddles top-centre / top-right
    assert "top-centre" not in asked and "top-right" not in asked
    assert asked.get("top-left", "3") == "3" and asked.get("centre", "1") == "1"
    assert asked.get("bottom-right", "2") == "2" and len(asked) >= 4


def test_population_questions_skip_classes_with_undetectable_members() -> None:
    facts = made_scenes()["mixed"]  # one car is 1.5 px long
    for gen in (count, grid_count, comparison):
        for qa in many(gen, facts, 30):
            assert "small vehicle" not in qa.meta["classes"], qa.question
    answers = {qa.answer for qa in many(count, facts, 10) if qa.meta["classes"] == ["building"]}
    assert answers == {"3"}
    for qa in many(existence, facts, 30):
        assert qa.meta["classes"] != ["small vehicle"]


def test_comparison_answers_match_the_counts() -> None:
    seen = 0
    for facts in [*all_real(), *made_scenes().values()]:
        for qa in many(comparison, facts, 6):
            x, y = qa.meta["classes"]
            nx = sum(lb.cls == x for lb in facts.labels)
            ny = sum(lb.cls == y for lb in facts.labels)
            assert qa.answer == ("yes" if nx > ny else "no") and nx != ny
            seen += 1
    assert seen > 5


def test_existence_says_no_only_for_classes_that_could_not_hide() -> None:
    coarse = many(existence, made_scenes()["coarse"], 40)  # 2 m: a car is 1.9 px long
    noes = {qa.meta["classes"][0] for qa in coarse if qa.answer == "no"}
    assert noes and "small vehicle" not in noes
    assert all(resolvable(c, 2.0) for c in noes)
    assert {qa.meta["classes"][0] for qa in coarse if qa.answer == "yes"} == {"building"}
    fine = many(existence, made([], gsd=0.3), 40)
    assert "small vehicle" in {qa.meta["classes"][0] for qa in fine if qa.answer == "no"}
    # a class with a member too small to see is never asked about
    assert not [
        qa
        for qa in many(existence, made_scenes()["tiny"], 20)
        if qa.meta["classes"] == ["small vehicle"]
    ]


# -- object level ------------------------------------------------------------------------


def test_colours_come_from_identifiable_labels_and_never_from_sar() -> None:
    seen = 0
    for facts in [*all_real(), *made_scenes().values()]:
        for qa in many(colour, facts, 6):
            (lb,) = qa.boxes
            assert lb.identifiable and qa.answer == lb.colour and lb.cls in qa.question
            seen += 1
    assert seen > 10
    sar = made(made_scenes()["cars"].labels, modality="sar")
    assert many(colour, sar, 10) == []
    assert all(qa.meta.get("answer_type") != "colour" for qa in run_all(sar, 0))


def test_relation_answers_follow_the_boxes() -> None:
    answers = {qa.question: qa.answer for qa in many(relation, made_scenes()["pair"], 20)}
    q = "Where is the {} relative to the {}: left, right, above or below?"
    assert answers == {
        q.format("tennis court", "storage tank"): "left",
        q.format("storage tank", "tennis court"): "right",
    }
    assert many(relation, made_scenes()["diagonal"], 20) == []  # no dominant axis
    for facts in all_real():
        for qa in many(relation, facts, 4):
            a, b = qa.boxes
            assert a.cls != b.cls and a.identifiable and b.identifiable
            dx, dy = a.centre_px[0] - b.centre_px[0], a.centre_px[1] - b.centre_px[1]
            expected = (
                ("left" if dx < 0 else "right")
                if abs(dx) > abs(dy)
                else ("above" if dy < 0 else "below")
            )
            assert qa.answer == expected


def test_grounding_boxes_in_0_1000_match_the_pixel_box() -> None:
    seen = 0
    for facts in [*all_real(), *made_scenes().values()]:
        for qa in many(grounding, facts, 6):
            (lb,) = qa.boxes
            vals = [
                int(v) for v in re.fullmatch(r"\[(\d+), (\d+), (\d+), (\d+)\]", qa.answer).groups()
            ]
            sizes = (facts.width, facts.height) * 2
            for v, px, s in zip(vals, lb.xyxy_px, sizes, strict=True):
                assert 0 <= v <= 1000 and abs(v * s / 1000 - px) <= s / 2000 + 1e-9
            assert qa.meta["answer_xyxy_px"] == pytest.approx(list(lb.xyxy_px), abs=1e-3)
            phrase = re.match(r"Locate (the .+) in this image", qa.question).group(1)
            same = [o for o in facts.labels if o.cls == lb.cls]
            if phrase == f"the {lb.cls}":
                assert len(same) == 1
            elif phrase.startswith("the largest"):
                assert all(o.length_px * 1.3 <= lb.length_px for o in same if o is not lb)
            else:
                assert phrase == f"the {lb.colour} {lb.cls}"
                assert [o.colour for o in same].count(lb.colour) == 1
            seen += 1
    assert seen > 5
    assert norm1000([0, 0, 128, 64], 128, 128) == [0, 0, 1000, 500]


# -- detection ---------------------------------------------------------------------------


def _parse(text: str) -> list[tuple[str, list[int]]]:
    out = []
    for line in text.split("\n"):
        coords, cls = line.split(" ", 1)
        out.append((cls, [int(v) for v in coords.split(",")]))
    return out


def test_detection_targets_are_sorted_canonical_and_complete() -> None:
    seen = 0
    for facts in [*all_real(), *made_scenes().values()]:
        (qa,) = detection(facts, np.random.default_rng(0))
        visible = [lb for lb in facts.labels if lb.detectable]
        assert len(qa.boxes) == len(visible) == qa.meta["n_objects"]
        if not visible:
            assert qa.answer == NONE_TARGET
            continue
        rows = _parse(qa.answer)
        assert len(rows) == len(visible)
        assert rows == sorted(rows, key=lambda r: (r[0], r[1][1], r[1][0], r[1]))
        for (cls, q), lb in zip(rows, qa.boxes, strict=True):
            assert cls == lb.cls
            assert np.array_equal(canonical_quad(q).reshape(-1), q)
            assert np.abs(np.array(q).reshape(4, 2) - lb.quad_px).max() <= 1.0
        seen += 1
    assert seen >= 5


def test_detection_keeps_images_without_objects() -> None:
    for facts in (real_facts("forest", 10.0, 0), made_scenes()["tiny"], made([])):
        (qa,) = detection(facts, np.random.default_rng(0))
        assert qa.answer == "There is none." and qa.boxes == ()


# -- clouds ------------------------------------------------------------------------------


def test_clouds_hide_objects_from_counts_and_detection() -> None:
    base = made_scenes()["cars"]
    alpha = np.zeros((120, 120), np.float32)
    alpha[:, 82:] = 1.0  # about the right third under cloud
    facts = made(base.labels, clouds=alpha, cloud_cover=0.3)
    assert many(count, facts, 10) == [] and many(comparison, facts, 10) == []
    assert {qa.meta["cell"] for qa in many(grid_count, facts, 40)} <= {
        "top-left", "middle-left", "bottom-left", "centre", "bottom-centre"
    }  # fmt: skip
    assert {qa.meta["cell"] for qa in many(grid_count, facts, 40)} >= {"top-left", "centre"}
    (det,) = detection(facts, np.random.default_rng(0))
    assert {lb.index for lb in det.boxes} == {0, 1, 2, 3, 4}  # 4 mostly clear; 5, 6 hidden
    assert all(qa.answer == "yes" for qa in existence(facts, np.random.default_rng(0)))
    assert [qa.answer for qa in cloud(facts, np.random.default_rng(0))] == ["yes"]
    # a cloudy image without its cloud map: nothing about objects
    unknown = made(base.labels, cloud_cover=0.3)
    qas = run_all(unknown, 0)
    assert qas and all(not qa.boxes for qa in qas)
    assert {qa.kind for qa in qas} <= {"cloud", "identification", "scale_specific", "roi_global"}


# -- GeoScale-VQA triple -----------------------------------------------------------------


def test_scale_specific_questions_follow_the_tier() -> None:
    high = made(
        [
            lab(0, "small vehicle", 50, 50, 45, 18, colour="red"),
            lab(1, "building", 100, 150, 150, 60),
        ],
        gsd=0.1, size=200, roads=True, lane_marks=True,
    )  # fmt: skip
    kinds = {(qa.meta["answer_type"], qa.answer) for qa in many(scale_specific, high, 20)}
    assert kinds == {("colour", "red"), ("yes_no", "yes")}  # the car, not the building
    mid = made_scenes()["cars"]
    types = {qa.meta["answer_type"] for qa in many(scale_specific, mid, 30)}
    assert types == {"count", "orientation", "quadrant"}
    answers = {(qa.meta["answer_type"], qa.answer) for qa in many(scale_specific, mid, 30)}
    assert {("orientation", "horizontally"), ("quadrant", "top-left")} <= answers
    assert {
        qa.answer for qa in many(scale_specific, mid, 30) if qa.meta["answer_type"] == "count"
    } == {"7"}
    low = made([], gsd=5.0, size=128, kind="forest")
    low_qas = many(scale_specific, low, 20)
    assert {qa.meta["answer_type"] for qa in low_qas} == {"yes_no", "urban_rural"}  # land cover
    pool = lab(0, "swimming pool", 60, 60, 4, 2)  # water, but not open water
    airport = made([pool], gsd=5.0, size=128, kind="airport")  # no land-cover question fits
    assert [qa.answer for qa in scale_specific(airport, np.random.default_rng(0))] == ["airport"]
    assert ("Is there open water in this image?", "no") in {(q.question, q.answer) for q in low_qas}
    for facts in all_real():
        for qa in many(scale_specific, facts, 4):
            assert qa.meta["question_tier"] == facts.tier.coarse
            if facts.tier.coarse == "low":
                assert qa.meta["answer_type"] in {"land_use", "yes_no", "urban_rural"}


def test_discriminative_uses_the_confusion_table() -> None:
    seen = 0
    for facts in [*all_real(), *made_scenes().values()]:
        for qa in many(GENERATORS["discriminative"], facts, 4):
            (lb,) = qa.boxes
            assert lb.identifiable and qa.answer == lb.cls
            assert qa.meta["hard_negative"] == CONFUSION[lb.cls]
            assert f"a {lb.cls} or" in qa.question or f"or a {lb.cls}?" in qa.question
            seen += 1
    assert seen > 5


# -- regions of interest -----------------------------------------------------------------


def test_roi_questions_carry_their_region() -> None:
    types, questions = set(), set()
    for facts in [*all_real(), *made_scenes().values()]:
        for qa in many(roi_questions, facts, 4):
            assert qa.task == "roi"
            t, roi = qa.meta["roi_type"], qa.meta["roi_xyxy_px"]
            types.add(t)
            if t == "global":
                assert roi == [] and qa.answer == facts.land_use
            elif t == "region":
                w, h = facts.width / 3, facts.height / 3
                assert roi[0] / w == pytest.approx(round(roi[0] / w), abs=1e-3)
                assert roi[2] - roi[0] == pytest.approx(w, abs=1e-2)
                assert roi[3] - roi[1] == pytest.approx(h, abs=1e-2)
                for lb in qa.boxes:
                    assert roi[0] <= lb.centre_px[0] < roi[2] and roi[1] <= lb.centre_px[1] < roi[3]
                if qa.meta["answer_type"] == "count":
                    assert int(qa.answer) == len(qa.boxes)
                else:  # the commonest kind of object in the cell
                    n = Counter(lb.cls for lb in qa.boxes)
                    assert n[qa.answer] > max([v for k, v in n.items() if k != qa.answer] or [0])
                    questions.add("majority")
            else:
                assert t == "object"
                (lb,) = qa.boxes
                assert roi == pytest.approx(list(lb.xyxy_px), abs=1e-3)
                if qa.meta["answer_type"] == "cell":
                    assert qa.answer == cell_of(facts, *lb.centre_px)
                else:
                    assert qa.answer == lb.colour
    assert types == {"global", "region", "object"} and questions == {"majority"}


# -- multiple choice ---------------------------------------------------------------------


def _check_mcq(m: QA) -> None:
    letters = [o[1] for o in m.meta["options"]]
    assert letters == list("ABCDE"[: len(letters)])
    choices = m.meta["choices"]
    assert len(set(choices)) == len(choices)
    assert choices.count(m.meta["answer_value"]) == 1
    assert choices["ABCDE".index(m.answer)] == m.meta["answer_value"]
    assert m.task == "mcq" and all(o in m.question for o in m.meta["options"])


def test_to_mcq_has_one_correct_letter_and_is_deterministic() -> None:
    qa = QA("counting", "count", "How many ships are there?", "0", (), {"answer_type": "count"})
    outs = [to_mcq(qa, np.random.default_rng(s)) for s in range(12)]
    for m in outs:
        _check_mcq(m)
        assert len(m.meta["choices"]) == 4
        assert all(0 <= int(c) <= 5 for c in m.meta["choices"])
    assert key(to_mcq(qa, np.random.default_rng(5))) == key(outs[5])
    assert len({m.question for m in outs}) > 1 and len({m.answer for m in outs}) > 1
    seven = to_mcq(QA("counting", "count", "How many?", "7"), np.random.default_rng(0))
    assert all(abs(int(c) - 7) <= 3 for c in seven.meta["choices"])


def test_to_mcq_class_options_include_the_hard_negative() -> None:
    qa = QA("vqa", "discriminative", "Is it a building or a small vehicle?", "building", (),
            {"hard_negative": "small vehicle", "stem": "What is the object?"})  # fmt: skip
    for s in range(5):
        m = to_mcq(qa, np.random.default_rng(s))
        _check_mcq(m)
        assert "small vehicle" in m.meta["choices"] and set(m.meta["choices"]) <= set(CLASSES)
        assert m.question.startswith("What is the object?\n") and "stem" not in m.meta
    m = to_mcq(QA("vqa", "colour", "What colour?", "red"), np.random.default_rng(0), options=5)
    _check_mcq(m)
    assert len(m.meta["choices"]) == 5 and m.meta["answer_type"] == "colour"
    m = to_mcq(QA("vqa", "x", "Odd?", "b"), np.random.default_rng(0), options=3, pool="abcd")
    _check_mcq(m)
    yes_no = QA("vqa", "existence", "Any ships?", "no")
    with pytest.raises(ValueError, match="distractors"):
        to_mcq(yes_no, np.random.default_rng(0))
    _check_mcq(to_mcq(yes_no, np.random.default_rng(0), options=2))
    with pytest.raises(ValueError, match="categorical"):
        to_mcq(QA("grounding", "grounding", "Where?", "[1, 2, 3, 4]"), np.random.default_rng(0))


def test_mcq_generator_makes_valid_items() -> None:
    seen = 0
    for facts in all_real():
        for m in many(GENERATORS["mcq"], facts, 3):
            _check_mcq(m)
            assert len(m.meta["choices"]) == 4
            seen += 1
    assert seen >= 10


# -- facts from a scene ------------------------------------------------------------------


def test_scene_features_find_roads_and_lane_marks() -> None:
    canvas = Canvas(200, 200, 0.1)  # 20 m window
    road = Strip(10.0, 10.0, 40.0, 7.0, 0.0, "asphalt")
    mark = Strip(10.0, 10.0, 3.0, 0.15, 0.0, "lane_mark")
    scene = Scene("farmland", 20.0, 20.0, 0.1, 0, strips=[road])
    assert scene_features(scene, canvas) == {"roads": True, "lane_marks": False}
    scene.strips.append(mark)
    assert scene_features(scene, canvas) == {"roads": True, "lane_marks": True}
    assert scene_features(scene, Canvas(20, 20, 1.0)) == {"roads": True, "lane_marks": None}
    runway = Scene("airport", 20.0, 20.0, 0.1, 0, strips=[Strip(10, 10, 40, 50, 0, "asphalt")])
    assert scene_features(runway, canvas) == {"roads": False, "lane_marks": None}
    assert math.isclose(real_facts("urban", 0.12, 0).gsd_m, 0.12)
    assert real_facts("urban", 0.12, 0).roads is True


def test_boxes_in_text_never_collapse_on_uhr_images() -> None:
    # a 15 px car in an 8192 px image is a degenerate 0-1000 box: never pointed at by box
    labels = [
        lab(0, "small vehicle", 700, 7500, 15, 6, colour="red"),
        lab(1, "storage tank", 4000, 4000, 120, 120, colour="white"),
    ]
    facts = made(labels, gsd=0.3, size=8192, kind="industrial")
    for qa in run_all(facts, 0) + run_all(facts, 1):
        for box in re.findall(r"\[(\d+), (\d+), (\d+), (\d+)\]", qa.question + qa.answer):
            x1, y1, x2, y2 = map(int, box)
            assert x2 - x1 >= 3 and y2 - y1 >= 3, qa.question
    pointed = {lb.index for s in range(10) for qa in colour(facts, np.random.default_rng(s))
               for lb in qa.boxes}  # fmt: skip
    assert pointed == {1}
