"""Detection as plain text: one object per line, canonical quads, sorted, "There is none."."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earthvlm.data.detection_text import JSON_KEYS, NONE_TARGET, serialise_detections
from earthvlm.geo.boxes import canonical_quad, obb_to_quad


def _rows(text: str) -> list[tuple[str, list[int]]]:
    out = []
    for line in text.split("\n"):
        coords, cls = line.split(" ", 1)
        out.append((cls, [int(v) for v in coords.split(",")]))
    return out


def test_an_empty_image_has_the_none_target() -> None:
    assert serialise_detections([]) == NONE_TARGET == "There is none."
    assert serialise_detections([], fmt="hbox") == "There is none."


def test_quads_are_canonical_integers_sorted_by_class_then_y_then_x() -> None:
    objects = [
        ("small vehicle", obb_to_quad(50.2, 40.7, 10, 4, 30)),
        ("building", [10.4, 5.2, 30.6, 5.2, 30.6, 20.8, 10.4, 20.8]),
        ("small vehicle", np.array([[20.0, 10.0], [30.0, 10.0], [30.0, 14.0], [20.0, 14.0]])),
        ("building", [40, 5, 60, 5, 60, 9, 40, 9]),
        ("small vehicle", [5, 10, 15, 10, 15, 14, 5, 14]),
    ]
    text = serialise_detections(objects)
    assert text.split("\n") == [
        "10,5,31,5,31,21,10,21 building",
        "40,5,60,5,60,9,40,9 building",
        "5,10,15,10,15,14,5,14 small vehicle",
        "20,10,30,10,30,14,20,14 small vehicle",
        text.split("\n")[4],
    ]
    cls, q = _rows(text)[4]
    assert cls == "small vehicle" and np.array_equal(canonical_quad(q).reshape(-1), q)
    assert np.abs(np.array(q).reshape(4, 2) - obb_to_quad(50.2, 40.7, 10, 4, 30)).max() <= 0.5


def test_vertex_order_is_recomputed_after_rounding() -> None:
    # before rounding the top vertex is (20.3, 5.2); after rounding (10, 5) and (20, 5) tie
    # on y, and the tie goes to the smaller x
    quad = [20.3, 5.2, 25.0, 15.0, 15.0, 20.0, 10.4, 5.4]
    ((_, q),) = _rows(serialise_detections([("x", quad)]))
    assert q[:2] == [10, 5] and np.array_equal(canonical_quad(q).reshape(-1), q)


def test_horizontal_boxes_and_conversions() -> None:
    quad = obb_to_quad(20, 20, 10, 4, 90)  # upright: x 18..22, y 15..25
    assert serialise_detections([("plane", quad)], fmt="hbox") == "18,15,22,25 plane"
    assert serialise_detections([("plane", [1.5, 2.49, 3.5, 4.5])], fmt="hbox") == "2,2,4,5 plane"
    assert serialise_detections([("plane", [1, 2, 3, 4])]) == "1,2,3,2,3,4,1,4 plane"


@pytest.mark.parametrize(
    "objects",
    [
        [("ship", [1, 2, 3])],
        [("ship", [1, 2, 3, float("nan")])],
        [("", [1, 2, 3, 4])],
        [(" ship", [1, 2, 3, 4])],
        [("two\nlines", [1, 2, 3, 4])],
    ],
)
def test_bad_input_is_refused(objects) -> None:
    with pytest.raises(ValueError):
        serialise_detections(objects)


def test_an_unknown_format_or_style_is_refused() -> None:
    with pytest.raises(ValueError, match="fmt"):
        serialise_detections([("ship", [1, 2, 3, 4])], fmt="obb")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="style"):
        serialise_detections([("ship", [1, 2, 3, 4])], style="yaml")  # type: ignore[arg-type]


def test_json_style_is_the_fenced_qwen_layout() -> None:
    objects = [("ship", [5, 6, 7.4, 8]), ("plane", [1, 2, 3, 4]), ("plane", [0.6, 1, 9, 9])]
    assert serialise_detections(objects, fmt="hbox", style="json") == (
        "```json\n[\n"
        '\t{"bbox_2d": [1, 1, 9, 9], "label": "plane"},\n'
        '\t{"bbox_2d": [1, 2, 3, 4], "label": "plane"},\n'
        '\t{"bbox_2d": [5, 6, 7, 8], "label": "ship"}\n'
        "]\n```"
    )
    assert serialise_detections([("plane", [1, 2, 3, 4])], style="json") == (
        '```json\n[\n\t{"quadrant bbox": [1, 2, 3, 2, 3, 4, 1, 4], "label": "plane"}\n]\n```'
    )
    assert serialise_detections([], style="json") == NONE_TARGET
    # labels are JSON strings: quotes escaped, non-ASCII kept
    text = serialise_detections([('pier "A"', [1, 2, 3, 4]), ("môle", [1, 2, 3, 4])], style="json")
    assert '"label": "môle"' in text and '"label": "pier \\"A\\""' in text
    assert [o["label"] for o in json.loads(text[len("```json") : -3])] == ["môle", 'pier "A"']


_coord = st.floats(0, 500, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["ship", "plane", "small vehicle"]),
            _coord, _coord, st.floats(2, 80), st.floats(1, 40), st.floats(0, 360),
        ),
        max_size=8,
    )
)  # fmt: skip
def test_any_list_serialises_sorted_and_canonical(objs) -> None:
    objects = [(c, obb_to_quad(x, y, w, h, a)) for c, x, y, w, h, a in objs]
    text = serialise_detections(objects)
    if not objects:
        assert text == NONE_TARGET
        return
    rows = _rows(text)
    assert len(rows) == len(objects)
    assert rows == sorted(rows, key=lambda r: (r[0], r[1][1], r[1][0], r[1]))
    for _, q in rows:
        assert np.array_equal(canonical_quad(q).reshape(-1), q)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["ship", "plane", "small vehicle"]),
            _coord, _coord, st.floats(2, 80), st.floats(1, 40), st.floats(0, 360),
        ),
        min_size=1, max_size=8,
    ),
    st.sampled_from(["quad", "hbox"]),
)  # fmt: skip
def test_json_holds_the_plain_lines_in_the_same_order(objs, fmt) -> None:
    objects = [(c, obb_to_quad(x, y, w, h, a)) for c, x, y, w, h, a in objs]
    plain = _rows(serialise_detections(objects, fmt=fmt))
    text = serialise_detections(objects, fmt=fmt, style="json")
    assert text.startswith("```json\n[\n") and text.endswith("\n]\n```")
    body = json.loads(text[len("```json") : -3])
    assert [list(o) for o in body] == [[JSON_KEYS[fmt], "label"]] * len(objects)
    assert [(o["label"], o[JSON_KEYS[fmt]]) for o in body] == plain
