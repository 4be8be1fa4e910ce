"""Reading detections back: exact inverse of the serialiser, tolerant of damaged output,
never raising, and accounting for every candidate object."""

from __future__ import annotations

import gc
import math
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from earthvlm.data.detection_parse import MAX_CHARS, ParsedDetections, parse_detections
from earthvlm.data.detection_text import NONE_TARGET, serialise_detections
from earthvlm.geo.boxes import box_problem, canonical_quad, obb_to_quad

W, H = 1000, 800
CLASSES = ["plane", "ship", "small vehicle", "storage tank", "harbor", "bus"]


def _order(objects):
    """The serialiser's order: class, then y1, then x1, then the other coordinates."""
    return sorted(objects, key=lambda o: (o[0], o[1][1], o[1][0], o[1]))


def _check_invariants(res: ParsedDetections, classes=None, fmt="quad") -> None:
    """What must hold for any text: counts add up, every object is a valid box."""
    r = res.report
    assert r.balanced, r
    assert len(res.objects) == r.ok + r.repaired
    assert all(v > 0 for v in r.dropped.values())
    for label, coords in res.objects:
        assert label and label == label.strip()
        assert len(coords) == (8 if fmt == "quad" else 4)
        assert box_problem(coords, width=W, height=H) is None, coords
        if classes is not None:
            assert label in classes
        if fmt == "quad":
            assert np.array_equal(canonical_quad(coords).reshape(-1), coords)


# -- exact inverse of the serialiser ---------------------------------------------------

_label = st.one_of(
    st.sampled_from(CLASSES),
    st.from_regex(r"[a-z][a-z0-9 _-]{0,14}[a-z0-9]", fullmatch=True),
)


@st.composite
def _integer_quads(draw):
    """A canonical integer quad: a rotated box (sides >= 4 px) inside the image, rounded."""
    cx, cy = draw(st.floats(60, W - 60)), draw(st.floats(60, H - 60))
    w, h, a = draw(st.floats(4, 80)), draw(st.floats(4, 80)), draw(st.floats(0, 360))
    q = canonical_quad(np.floor(obb_to_quad(cx, cy, w, h, a) + 0.5))
    return tuple(int(v) for v in q.reshape(-1))


@st.composite
def _integer_boxes(draw):
    x1, y1 = draw(st.integers(0, W - 101)), draw(st.integers(0, H - 101))
    return (x1, y1, x1 + draw(st.integers(1, 100)), y1 + draw(st.integers(1, 100)))


@pytest.mark.parametrize("style", ["plain", "json"])
@pytest.mark.parametrize("fmt", ["quad", "hbox"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_parse_inverts_serialise(style, fmt, data) -> None:
    geometry = _integer_quads() if fmt == "quad" else _integer_boxes()
    objects = data.draw(st.lists(st.tuples(_label, geometry), max_size=10))
    text = serialise_detections(objects, fmt=fmt, style=style)
    for classes in (None, sorted({c for c, _ in objects})):
        res = parse_detections(text, width=W, height=H, classes=classes, fmt=fmt)
        assert res.objects == _order(objects)
        r = res.report
        assert r.ok == r.candidates == len(objects) and r.repaired == 0 and not r.dropped
        assert not r.repairs
        assert r.style == (style if objects else "none")


def test_the_none_target_reads_as_no_objects() -> None:
    for style in ("plain", "json"):
        assert serialise_detections([], style=style) == NONE_TARGET
        res = parse_detections(NONE_TARGET, width=W, height=H)
        assert res.objects == [] and res.report.style == "none" and res.report.candidates == 0
        assert not res.report.repairs
    for variant in ("There are none.", "there is none", "```\nThere is none.\n```"):
        res = parse_detections(variant, width=W, height=H)
        assert res.objects == [] and res.report.style == "none"
        assert res.report.repairs == {"none_wording": 1}
    for empty in ("[]", "```json\n[]\n```"):
        res = parse_detections(empty, width=W, height=H)
        assert res.objects == [] and res.report.candidates == 0 and res.report.style == "json"
    blank = parse_detections("  \n", width=W, height=H)
    assert blank.objects == [] and blank.report.style == "blank"


# -- worked examples of each kind of damage --------------------------------------------

PLANE_Q = (10.0, 10.0, 50.0, 10.0, 50.0, 30.0, 10.0, 30.0)  # the box 10,10,50,30 as a quad
SHIP_Q = (60.0, 60.0, 90.0, 60.0, 90.0, 95.0, 60.0, 95.0)

# (text, objects, repairs counted, drops counted); classes=CLASSES, fmt="quad"
EXAMPLES = {
    "qwen json, fenced": (
        '```json\n[\n\t{"bbox_2d": [10, 10, 50, 30], "label": "plane"}\n]\n```',
        [("plane", PLANE_Q)], {"hbox_as_quad": 1}, {},
    ),
    "trailing commas": (
        '[{"bbox_2d": [10, 10, 50, 30,], "label": "plane",},]',
        [("plane", PLANE_Q)], {"trailing_comma": 2, "hbox_as_quad": 1}, {},
    ),
    "parentheses": (
        '[{"bbox_2d": (10, 10, 50, 30), "label": "plane"}]',
        [("plane", PLANE_Q)], {"parentheses": 1, "hbox_as_quad": 1}, {},
    ),
    "single quotes": (
        "[{'quadrant bbox': [10, 10, 50, 10, 50, 30, 10, 30], 'label': 'plane'}]",
        [("plane", PLANE_Q)], {"single_quotes": 1}, {},
    ),
    "missing closing brackets (cut-off output)": (
        '[{"bbox_2d": [10, 10, 50, 30], "label": "plane"}, {"bbox_2d": [60, 60, 90, 95',
        [("plane", PLANE_Q)],
        {"hbox_as_quad": 1, "unclosed_list": 1}, {"no_label": 1},
    ),
    "unclosed list inside an object": (
        '[{"bbox_2d": [10, 10, 50, 30, "label": "plane"}]',
        [("plane", PLANE_Q)], {"unclosed_bracket": 1, "hbox_as_quad": 1}, {},
    ),
    "unclosed object": (
        '[{"bbox_2d": [10, 10, 50, 30], "label": "plane" {"bbox_2d": [60, 60, 90, 95], '
        '"label": "ship"}]',
        [("plane", PLANE_Q), ("ship", SHIP_Q)], {"unclosed_object": 1, "hbox_as_quad": 2}, {},
    ),
    "prose around, no list": (
        'Sure! The plane is at {"bbox_2d": [10, 10, 50, 30], "label": "plane"} as asked.',
        [("plane", PLANE_Q)], {"prose": 1, "hbox_as_quad": 1}, {},
    ),
    "unquoted keys and label": (
        "{bbox_2d: [10, 10, 50, 30], label: plane}",
        [("plane", PLANE_Q)],
        {"unquoted_key": 1, "unquoted_label": 1, "hbox_as_quad": 1}, {},
    ),
    "quoted numbers": (
        '{"bbox_2d": ["10", "10", "50", "30"], "label": "plane"}',
        [("plane", PLANE_Q)], {"quoted_numbers": 1, "hbox_as_quad": 1}, {},
    ),
    "box as one string": (
        '{"bbox_2d": "10, 10, 50, 30", "label": "plane"}',
        [("plane", PLANE_Q)], {"quoted_numbers": 1, "hbox_as_quad": 1}, {},
    ),
    "nested vertex pairs": (
        '{"polygon": [[10, 10], [50, 10], [50, 30], [10, 30]], "label": "plane"}',
        [("plane", PLANE_Q)], {}, {},
    ),
    "nested values are skipped with their object": (
        '[{"bbox_2d": [10, 10, 50, 30], "label": "plane", "attrs": {"colour": "red", '
        '"wing": [1, 2]}}, {"label": "ship", "bbox_2d": [60, 60, 90, 95]}]',
        [("plane", PLANE_Q), ("ship", SHIP_Q)], {"hbox_as_quad": 2}, {},
    ),
    "non-numbers in the box": (
        '{"bbox_2d": [10, null, 50, 30], "label": "plane"}', [], {}, {"bad_coordinates": 1},
    ),
    "no box / no label": (
        '[{"label": "plane"}, {"bbox_2d": [10, 10, 50, 30]}]', [], {}, {"no_box": 1, "no_label": 1},
    ),
    "class names: case, separators, plural, spelling, unknown": (
        "10,10,50,30 Plane\n60,60,90,95 Storage_Tank\n10,10,50,30 ships\n"
        "10,10,50,30 buses\n10,10,50,30 harbour\n10,10,50,30 helicopter",
        [
            ("plane", PLANE_Q), ("storage tank", SHIP_Q), ("ship", PLANE_Q), ("bus", PLANE_Q),
            ("harbor", PLANE_Q),
        ],
        {"class_normalised": 2, "class_plural": 2, "class_fuzzy": 1, "hbox_as_quad": 5},
        {"unknown_class": 1},
    ),
    "plain: list markers, spaces, label first, prose": (
        "Here are the objects:\n1. 10, 10, 50, 30 plane.\n- ship: 60,60,90,95\n```",
        [("plane", PLANE_Q), ("ship", SHIP_Q)],
        {"list_marker": 2, "separators": 1, "label_punctuation": 1, "label_first": 1,
         "hbox_as_quad": 2},
        {"not_an_object": 1},
    ),
    "geometry: swapped, out of order, clipped, outside, degenerate, wrong count": (
        "50,30,10,10 plane\n10,30,50,30,50,10,10,10 plane\n-20,10,50,900 plane\n"
        "2000,2000,2100,2100 plane\n10,10,10,30 plane\n10,10,50 plane\nnan,1,2,3 plane",
        [
            ("plane", PLANE_Q), ("plane", PLANE_Q),
            ("plane", (0.0, 10.0, 50.0, 10.0, 50.0, 800.0, 0.0, 800.0)),
        ],
        {"swapped_corners": 1, "vertex_order": 1, "clipped": 1, "hbox_as_quad": 2},
        {"box_out_of_image": 1, "box_degenerate": 1, "box_wrong_length": 2},
    ),
    "none among objects": (
        "There is none.\n10,10,50,30 plane",
        [("plane", PLANE_Q)], {"hbox_as_quad": 1}, {"none_with_objects": 1},
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_worked_examples(name) -> None:
    text, objects, repairs, dropped = EXAMPLES[name]
    res = parse_detections(text, width=W, height=H, classes=CLASSES)
    assert res.objects == objects
    assert dict(res.report.repairs) == repairs
    assert dict(res.report.dropped) == dropped
    _check_invariants(res, CLASSES)


def test_hbox_format_and_label_order_kept_as_written() -> None:
    text = "10,10,50,10,50,30,10,30 plane\n60,60,90,95 ship"
    res = parse_detections(text, width=W, height=H, fmt="hbox")
    assert res.objects == [("plane", (10, 10, 50, 30)), ("ship", (60, 60, 90, 95))]
    assert res.report.repairs == {"quad_as_hbox": 1} and res.report.ok == 1
    # without a class list any label is kept as written
    res = parse_detections("1,2,30,40 Weird_Thing", width=W, height=H, fmt="hbox")
    assert res.objects == [("Weird_Thing", (1, 2, 30, 40))]


def test_caps_count_the_overflow() -> None:
    text = "\n".join(f"{i},{i},{i + 5},{i + 5} ship" for i in range(10))
    res = parse_detections(text, width=W, height=H, fmt="hbox", max_objects=4)
    assert len(res.objects) == 4 and res.report.dropped == {"too_many_objects": 6}
    js = serialise_detections([("ship", [i, i, i + 5, i + 5]) for i in range(10)], style="json")
    res = parse_detections(js, width=W, height=H, max_objects=4)
    assert len(res.objects) == 4 and res.report.dropped == {"too_many_objects": 6}
    res = parse_detections(text, width=W, height=H, fmt="hbox", max_chars=len(text) - 3)
    assert res.report.truncated_chars == 3 and res.report.dropped["input_too_long"] == 1
    assert res.report.balanced and len(res.objects) == 10  # the last line lost its "hip"


def test_bad_arguments_raise_but_odd_text_types_do_not() -> None:
    with pytest.raises(ValueError, match="fmt"):
        parse_detections("", width=W, height=H, fmt="obb")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="width"):
        parse_detections("", width=0, height=H)
    with pytest.raises(ValueError, match="classes"):
        parse_detections("", width=W, height=H, classes="plane")
    with pytest.raises(ValueError, match="fuzzy_cutoff"):
        parse_detections("", width=W, height=H, fuzzy_cutoff=2)
    # any iterable of class names will do, read once
    got = parse_detections("1,2,30,40 Ships", width=W, height=H, classes=iter(CLASSES))
    assert got.objects[0].label == "ship"
    with pytest.raises(TypeError):
        parse_detections(12, width=W, height=H)  # type: ignore[arg-type]
    assert parse_detections(None, width=W, height=H).report.style == "blank"
    got = parse_detections(b"1,2,30,40 ship\xff", width=W, height=H, fmt="hbox")
    assert got.objects == [("ship\ufffd", (1, 2, 30, 40))]


# -- never raises, always accounts -----------------------------------------------------

_FRAGMENTS = [
    "{", "}", "[", "]", "(", ")", '"', "'", ":", ",", " ", "\n", "\\", "```json", "```",
    '"bbox_2d"', "'quadrant bbox'", "quad", '"label"', "label", "plane", "Ships", "x",
    "There is none.", "12", "-3.5", "1e9", "1e999", "nan", "0", "999", ".", "1.", "null",
]  # fmt: skip
_junk = st.lists(st.sampled_from(_FRAGMENTS), max_size=60).map("".join)


@settings(max_examples=150, deadline=None)
@given(text=st.one_of(st.text(max_size=300), _junk), fmt=st.sampled_from(["quad", "hbox"]))
def test_any_text_parses_and_accounts(text, fmt) -> None:
    for classes in (None, CLASSES):
        _check_invariants(parse_detections(text, width=W, height=H, classes=classes, fmt=fmt),
                          classes, fmt)  # fmt: skip


@st.composite
def _mutated(draw):
    fmt = draw(st.sampled_from(["quad", "hbox"]))
    objects = draw(st.lists(st.tuples(st.sampled_from(CLASSES), _integer_boxes()), max_size=5))
    text = serialise_detections(objects, fmt=fmt, style=draw(st.sampled_from(["plain", "json"])))
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 12)))
        op = draw(st.sampled_from(["delete", "insert", "replace", "duplicate", "truncate"]))
        frag = draw(st.sampled_from(_FRAGMENTS))
        if op == "delete":
            text = text[:i] + text[j:]
        elif op == "insert":
            text = text[:i] + frag + text[i:]
        elif op == "replace":
            text = text[:i] + frag + text[j:]
        elif op == "duplicate":
            text = text[:j] + text[i:j] + text[j:]
        else:
            text = text[:i]
    return text, fmt


@settings(max_examples=150, deadline=None)
@given(case=_mutated())
def test_mutated_outputs_parse_and_account(case) -> None:
    text, fmt = case
    for classes in (None, CLASSES):
        _check_invariants(parse_detections(text, width=W, height=H, classes=classes, fmt=fmt),
                          classes, fmt)  # fmt: skip


#: Each pathological shape as a function of its length in characters (about ``n``).
PATHOLOGICAL = {
    "braces": lambda n: "{" * n,
    "quotes": lambda n: '"' * n,
    "apostrophes": lambda n: "'" * n,
    "open list in a box": lambda n: '{"bbox_2d": [' + "1," * (n // 2),
    "commas in a box": lambda n: '{"bbox_2d": [' + "," * n,
    "nested lists": lambda n: '[{"a": ' + "[" * n,
    "colons": lambda n: '{"a"' + ":" * n,
    "keys": lambda n: "{" + '"label":' * (n // 8),
    "numbers": lambda n: "1," * (n // 2),
    "dots": lambda n: "1." * (n // 2),
    "word then spaces": lambda n: "a" + " " * n + "1",
    "words and spaces": lambda n: "a " * (n // 2) + "1",
    "backslashes": lambda n: '"' + "\\" * n,
    "lines": lambda n: "x\n" * (n // 2),
    "mixed": lambda n: "{[(\"',:1a " * (n // 10),
    "labels": lambda n: "1,2,30,40 plain-ish label\n" * (n // 26),
}


def _cpu_seconds(text: str, **kw) -> float:
    """The least CPU time of three parses (the parser allocates: no GC pauses in it)."""
    best = math.inf
    gc.collect()
    gc.disable()
    try:
        for _ in range(3):
            t0 = time.process_time()
            parse_detections(text, width=W, height=H, classes=CLASSES, **kw)
            best = min(best, time.process_time() - t0)
    finally:
        gc.enable()
    return max(best, 1e-4)


@pytest.mark.parametrize("name", list(PATHOLOGICAL))
def test_pathological_text_takes_time_linear_in_its_length(name) -> None:
    make = PATHOLOGICAL[name]
    short, long = make(2_000), make(20_000)
    ratio = _cpu_seconds(long, max_chars=10**6) / _cpu_seconds(short, max_chars=10**6)
    # ten times the text: about ten times the work; quadratic work would be ~100 times
    assert ratio < 30, f"{name}: 10x the text took {ratio:.0f}x the time"
    _check_invariants(parse_detections(long, width=W, height=H, classes=CLASSES), CLASSES)


def test_text_past_the_cap_costs_no_more_than_the_cap() -> None:
    cap = 4096
    over = "{" * (20 * cap)
    res = parse_detections(over, width=W, height=H, max_chars=cap)
    assert res.report.truncated_chars == 19 * cap
    assert res.report.dropped["input_too_long"] == 1 and res.report.balanced
    assert _cpu_seconds(over, max_chars=cap) / _cpu_seconds("{" * cap, max_chars=cap) < 3
    # the default cap, with its reason
    res = parse_detections("x" * (MAX_CHARS + 5), width=W, height=H)
    assert res.report.truncated_chars == 5 and res.report.dropped["input_too_long"] == 1
