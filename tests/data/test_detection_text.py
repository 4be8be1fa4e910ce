"""Detection as plain text: one object per line, canonical quads, sorted, "There is none."."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earthvlm.data.detection_text import NONE_TARGET, serialise_detections
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


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="fmt"):
        serialise_detections([("ship", [1, 2, 3, 4])], fmt="obb")  # type: ignore[arg-type]


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
