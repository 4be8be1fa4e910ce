"""The zoom_in tool: schema, parsing damaged calls (never raises), boxes in either
backbone frame mapped back to source pixels through several zoom steps, and
observations instead of exceptions for anything a model writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from uhr_rasters import HEIGHT, RESOLUTION, SOURCE_GSD, WIDTH, coded_pixels

from _work import growth
from earthvlm.data.resolution import MAX_ASPECT_RATIO
from earthvlm.geo.boxes import (
    BOX_DEGENERATE,
    BOX_NOT_FINITE,
    BOX_NOT_NUMERIC,
    BOX_OUT_OF_IMAGE,
    BOX_WRONG_LENGTH,
)
from earthvlm.uhr import (
    ToolCallError,
    UHRReader,
    ZoomCall,
    ZoomConfig,
    execute,
    format_tool_call,
    parse_tool_call,
    zoom_tool_schema,
    zoom_window,
)
from earthvlm.uhr import tool as T


@pytest.fixture(scope="module")
def reader(coded_tif: Path):
    with UHRReader(coded_tif, RESOLUTION, gsd=SOURCE_GSD) as r:
        yield r


@pytest.fixture(scope="module")
def overview(reader: UHRReader):
    return reader.global_view()


def call(bbox, **extra) -> str:
    return T.CALL_OPEN + json.dumps({"name": "zoom_in", "arguments": {"bbox_2d": bbox, **extra}})


# -- schema and format --------------------------------------------------------------------


@pytest.mark.parametrize(("frame", "words"), [("norm1000", "0-1000"), ("abs_px_resized", "pixel")])
def test_schema_names_the_tool_and_the_frame(frame: str, words: str) -> None:
    schema = zoom_tool_schema(frame)
    fn = schema["function"]
    assert schema["type"] == "function" and fn["name"] == "zoom_in"
    assert fn["parameters"]["required"] == ["bbox_2d"]
    assert words in fn["parameters"]["properties"]["bbox_2d"]["description"]
    assert json.loads(json.dumps(schema)) == schema
    with pytest.raises(ValueError, match="box_frame"):
        zoom_tool_schema("pixels")


def test_format_and_parse_round_trip() -> None:
    text = "Let me look closer.\n" + format_tool_call([10, 20.257, 300, 400], view=0, label="ship")
    assert '"bbox_2d": [10, 20.26, 300, 400]' in text
    got = parse_tool_call(text)
    assert got == ZoomCall((10.0, 20.26, 300.0, 400.0), view=0, label="ship")


# -- parsing damaged calls -------------------------------------------------------------------

GOOD = '{"name": "zoom_in", "arguments": {"bbox_2d": [1, 2, 3, 4]}}'
Z = '<tool_call>{"name": "zoom_in", "arguments": '  # a call up to its arguments


@pytest.mark.parametrize(
    ("text", "repairs", "extra_calls"),
    [
        (f"<tool_call>\n{GOOD}\n</tool_call>", (), 0),
        (f"<tool_call>{GOOD}", ("unclosed_tool_call",), 0),  # stop string dropped
        (f"<tool_call>{GOOD} I hope this helps</tool_call>", ("trailing_text",), 0),
        (f"<tool_call>```json\n{GOOD}\n```</tool_call>", (), 0),
        (
            '<tool_call>{"name": "zoom_in", "arguments": "{\\"bbox_2d\\": [1, 2, 3, 4]}"}',
            ("unclosed_tool_call", "arguments_as_string"),
            0,
        ),
        (
            '<tool_call>{"name": "zoom_in", "parameters": {"bbox_2d": [1,2,3,4]}}',
            ("unclosed_tool_call", "parameters_key"),
            0,
        ),
        (Z + '{"bbox_2d": "[1,2,3,4]"}}</tool_call>', None, 0),
        (Z + '{"bbox_2d": ["1", 2, 3, "4"]}}</tool_call>', None, 0),
        (Z + '{"bbox_2d": [[1, 2], [3, 4]]}}</tool_call>', None, 0),
        (Z + '{"bbox_2d": [1,2,3,4], "k": 1}}</tool_call>', None, 0),
        (Z + '{"bbox_2d": [1,2,3,4], "label": 7}}</tool_call>', ("label_not_text",), 0),
        (f"<tool_call>{GOOD}</tool_call> and <tool_call>{GOOD}</tool_call>", (), 1),
        (f"<tool_call>{GOOD}" + " " * 5000 + "x</tool_call>", ("trailing_text",), 0),
    ],
)
def test_repairable_calls_are_read(text: str, repairs, extra_calls: int) -> None:
    got = parse_tool_call(text)
    assert isinstance(got, ZoomCall), got
    assert got.bbox_2d == (1.0, 2.0, 3.0, 4.0) and got.extra_calls == extra_calls
    if repairs is not None:
        assert got.repairs == repairs
    else:
        assert len(got.repairs) == 1


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("The answer is B.", T.NO_TOOL_CALL),
        ("<tool_call></tool_call>", T.INVALID_JSON),
        (Z + '{"bbox_2d": [1, 2,</tool_call>', T.INVALID_JSON),
        ("<tool_call>{'name': 'zoom_in'}</tool_call>", T.INVALID_JSON),
        ("<tool_call>[1, 2, 3, 4]</tool_call>", T.NOT_AN_OBJECT),
        ('<tool_call>"zoom_in"</tool_call>', T.NOT_AN_OBJECT),
        ('<tool_call>{"name": "crop", "arguments": {}}</tool_call>', T.UNKNOWN_TOOL),
        ('<tool_call>{"name": "zoom_in"}</tool_call>', T.BAD_ARGUMENTS),
        ('<tool_call>{"name": "zoom_in", "arguments": [1, 2]}</tool_call>', T.BAD_ARGUMENTS),
        ('<tool_call>{"name": "zoom_in", "arguments": "{bbox"}</tool_call>', T.BAD_ARGUMENTS),
        ('<tool_call>{"name": "zoom_in", "arguments": {"box": [1,2,3,4]}}', T.MISSING_BBOX),
        (Z + '{"bbox_2d": [true, 2, 3, 4]}}', BOX_NOT_NUMERIC),
        (Z + '{"bbox_2d": ["a", 2, 3, 4]}}', BOX_NOT_NUMERIC),
        ('<tool_call>{"name": "zoom_in", "arguments": {"bbox_2d": {"x": 1}}}', BOX_NOT_NUMERIC),
        ('<tool_call>{"name": "zoom_in", "arguments": {"bbox_2d": "top left"}}', BOX_NOT_NUMERIC),
        (call([1, 2, 3, 4], view=-1), T.BAD_VIEW),
        (call([1, 2, 3, 4], view=True), T.BAD_VIEW),
        (call([1, 2, 3, 4], view="last"), T.BAD_VIEW),
        ("<tool_call>" + "[" * 5000 + "</tool_call>", T.CALL_TOO_LONG),
        ("<tool_call>" + "[" * 3000 + "</tool_call>", T.INVALID_JSON),  # too deep
        ('<tool_call>{"name": "zoom_in", "arguments": {"bbox_2d": [' + "9" * 5000, T.CALL_TOO_LONG),
    ],
)
def test_damaged_calls_give_a_reason_and_an_observation(text: str, reason: str) -> None:
    got = parse_tool_call(text)
    assert isinstance(got, ToolCallError) and got.reason == reason, got
    assert got.observation.startswith("zoom_in was not run: ")
    assert '<tool_call>{"name": "zoom_in"' in got.observation  # says what to write


def test_a_trailing_text_call_is_still_read_after_padding() -> None:
    # whitespace after a complete object is fine (json.loads tolerates it)
    got = parse_tool_call(call([1, 2, 3, 4]) + " " * 100)
    assert isinstance(got, ZoomCall)


def test_huge_integers_become_not_finite_not_an_exception() -> None:
    got = parse_tool_call(call([1, 2, 3, 10**400]))
    assert isinstance(got, ZoomCall) and got.bbox_2d[3] == float("inf")


@given(st.text(max_size=400))
@settings(max_examples=300, deadline=None)
def test_parsing_any_text_never_raises(text: str) -> None:
    for candidate in (text, "<tool_call>" + text, "<tool_call>" + text + "</tool_call>"):
        got = parse_tool_call(candidate)
        assert isinstance(got, ZoomCall | ToolCallError)


@given(cut=st.integers(0, 80), junk=st.text(max_size=5), where=st.integers(0, 80))
@settings(max_examples=300, deadline=None)
def test_mutated_calls_never_raise(cut: int, junk: str, where: int) -> None:
    text = call([100, 200, 300, 400], view=0)
    for mutated in (text[:cut], text[:where] + junk + text[where:], text.replace(",", junk, 1)):
        assert isinstance(parse_tool_call(mutated), ZoomCall | ToolCallError)


#: Pathological model outputs as a function of their length in characters (about ``n``).
PATHOLOGICAL = {
    "open tags": lambda n: "<tool_call>" * (n // 11),
    "braces": lambda n: "<tool_call>" + "{" * n,
    "plain": lambda n: "x" * n,
}


@pytest.mark.parametrize("name", list(PATHOLOGICAL))
def test_pathological_inputs_take_time_linear_in_their_length(name: str) -> None:
    assert isinstance(parse_tool_call(PATHOLOGICAL[name](2_000_000)), ToolCallError)
    ratio = growth(parse_tool_call, PATHOLOGICAL[name], 50_000)
    # ten times the text: about ten times the work; a quadratic scan would be ~100x
    assert ratio < 30, f"{name}: 10x the text took {ratio:.0f}x the CPU time"


# -- running: boxes to source pixels --------------------------------------------------------


def test_a_zoom_in_norm1000_reads_the_native_source(reader, overview) -> None:
    got = execute(parse_tool_call(call([500, 500, 625, 625])), [overview], reader)
    assert got.ok and got.reason is None
    # 0-1000 of a 3072 x 2048 raster: x 1536-1920, y 1024-1280
    assert got.box_xyxy_px == (1536.0, 1024.0, 1920.0, 1280.0)
    assert got.view.window_xyxy_px == (1536, 1024, 1920, 1280)
    assert got.view.is_native and got.view.gsd == SOURCE_GSD
    np.testing.assert_array_equal(got.view.pixels, coded_pixels(1536, 1024, 1920, 1280))
    # no GSD in the text by default: it would be an extra input to models not trained on it
    assert got.observation == (
        "Image 1: zoom into image 0 at [500, 500, 625, 625]; 384 x 256 px, native resolution."
    )
    with_gsd = execute(
        parse_tool_call(call([500, 500, 625, 625])), [overview], reader,
        ZoomConfig(observation_gsd=True),
    )  # fmt: skip
    assert with_gsd.observation == got.observation.removesuffix(".") + ", GSD 0.5 m."
    assert "GSD" not in zoom_tool_schema()["function"]["description"]
    assert "(GSD)" in zoom_tool_schema(gsd=True)["function"]["description"]


def test_multi_step_zoom_maps_back_to_source_pixels_norm1000(reader, overview) -> None:
    views = [overview]
    first = execute(parse_tool_call(call([250, 250, 750, 750])), views, reader)
    assert first.view.window_xyxy_px == (768, 512, 2304, 1536)
    assert first.view.hw == (256, 384) and first.view.gsd.point_m == 2.0  # downsampled 4x
    views.append(first.view)
    second = execute(parse_tool_call(call([500, 0, 750, 250])), views, reader)  # in view 1
    assert second.box_xyxy_px == (1536.0, 512.0, 1920.0, 768.0)
    assert second.view.window_xyxy_px == (1536, 512, 1920, 768)
    np.testing.assert_array_equal(second.view.pixels, coded_pixels(1536, 512, 1920, 768))
    views.append(second.view)
    # a third step inside the native crop: 0-1000 of a 384 x 256 window
    third = execute(parse_tool_call(call([0, 0, 500, 500])), views, reader)
    assert third.box_xyxy_px == (1536.0, 512.0, 1728.0, 640.0)
    # grown to whole tokens around the box, native, and still covering it
    x1, y1, x2, y2 = third.view.window_xyxy_px
    assert (x2 - x1) % 32 == 0 and (y2 - y1) % 32 == 0
    assert x1 <= 1536 and y1 <= 512 and x2 >= 1728 and y2 >= 640
    np.testing.assert_array_equal(third.view.pixels, coded_pixels(x1, y1, x2, y2))
    # "view" goes back to the global view's frame
    back = execute(parse_tool_call(call([0, 0, 125, 125], view=0)), views, reader)
    assert back.view.window_xyxy_px == (0, 0, 384, 256)


def test_multi_step_zoom_in_resized_pixel_frame(reader, overview) -> None:
    config = ZoomConfig(box_frame="abs_px_resized")
    views = [overview]  # 384 x 256 px showing 3072 x 2048: 8 source px per view px
    first = execute(parse_tool_call(call([96, 64, 288, 192])), views, reader, config)
    assert first.box_xyxy_px == (768.0, 512.0, 2304.0, 1536.0)
    assert first.view.hw == (256, 384)  # 4 source px per view px
    views.append(first.view)
    second = execute(parse_tool_call(call([192, 0, 288, 64])), views, reader, config)
    assert second.view.window_xyxy_px == (1536, 512, 1920, 768)
    np.testing.assert_array_equal(second.view.pixels, coded_pixels(1536, 512, 1920, 768))
    # the view maps its own frame both ways
    box = np.array([10.0, 20.0, 30.0, 40.0])
    there = second.view.to_source_px(box, "abs_px_resized")
    np.testing.assert_allclose(second.view.from_source_px(there, "abs_px_resized"), box)


def test_small_boxes_grow_to_the_minimum_and_stay_inside_the_image(reader, overview) -> None:
    got = execute(parse_tool_call(call([999, 999, 1000, 1000])), [overview], reader)
    assert got.ok and got.view.window_xyxy_px == (WIDTH - 64, HEIGHT - 64, WIDTH, HEIGHT)
    big_min = execute(
        parse_tool_call(call([0, 0, 1, 1])), [overview], reader, ZoomConfig(min_side_px=100)
    )
    assert big_min.view.window_xyxy_px == (0, 0, 128, 128)  # 100 rounded up to tokens
    assert big_min.view.is_native


@pytest.mark.parametrize(
    ("bbox", "reason", "fragment"),
    [
        ([100, 100, 100, 300], BOX_DEGENERATE, "no area"),
        ([1, 2, 3], BOX_WRONG_LENGTH, "exactly four"),
        ([1, 2, 3, 4, 5], BOX_WRONG_LENGTH, "exactly four"),
        ([], BOX_WRONG_LENGTH, "exactly four"),
        ([1100, 0, 1200, 500], BOX_OUT_OF_IMAGE, "x 0-1000, y 0-1000"),
        ([-300, -300, -1, -1], BOX_OUT_OF_IMAGE, "outside the image"),
    ],
)
def test_bad_boxes_give_observations(reader, overview, bbox, reason: str, fragment: str) -> None:
    got = execute(parse_tool_call(call(bbox)), [overview], reader)
    assert not got.ok and got.reason == reason and got.view is None
    assert fragment in got.observation and got.observation.startswith("zoom_in was not run")


def test_not_finite_values_give_an_observation(reader, overview) -> None:
    text = '<tool_call>{"name": "zoom_in", "arguments": {"bbox_2d": [NaN, 1, 2, Infinity]}}'
    got = execute(parse_tool_call(text), [overview], reader)
    assert got.reason == BOX_NOT_FINITE and "not finite" in got.observation


def test_swapped_and_overhanging_boxes_are_repaired(reader, overview) -> None:
    got = execute(parse_tool_call(call([625, 625, 500, 500])), [overview], reader)
    assert got.ok and "swapped_corners" in got.repairs
    assert got.view.window_xyxy_px == (1536, 1024, 1920, 1280)
    over = execute(parse_tool_call(call([900, 900, 1100, 1100])), [overview], reader)
    assert over.ok and "clipped" in over.repairs and over.box_xyxy_px[2:] == (WIDTH, HEIGHT)


def test_missing_views_and_errors_become_observations(reader, overview) -> None:
    got = execute(parse_tool_call(call([1, 2, 300, 400], view=3)), [overview], reader)
    assert got.reason == T.BAD_VIEW and "images 0-0 have been shown" in got.observation
    passed = execute(parse_tool_call("no call here"), [overview], reader)
    assert passed.reason == T.NO_TOOL_CALL and passed.view is None
    two = execute(parse_tool_call(call([1, 2, 300, 400]) + "</tool_call>" + call([5, 6, 7, 8])),
                  [overview], reader)  # fmt: skip
    assert two.ok and "1 more ignored" in two.observation


def test_caller_errors_raise(reader, overview, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="global view first"):
        execute(parse_tool_call(call([1, 2, 3, 4])), [], reader)
    other = type(overview)(overview.pixels, (0, 0, 10, 10), overview.gsd, (10, 10))
    with pytest.raises(ValueError, match="another raster"):
        execute(parse_tool_call(call([1, 2, 3, 4])), [other], reader)
    with pytest.raises(ValueError, match="box_frame"):
        ZoomConfig(box_frame="xyxy")


# -- the window ---------------------------------------------------------------------------


def test_zoom_window_keeps_the_aspect_ratio_limit() -> None:
    x1, y1, x2, y2 = zoom_window([0, 10, 20000, 10.5], (20000, 20000), min_side_px=16, factor=32)
    assert (x2 - x1) == 20000 and (x2 - x1) <= MAX_ASPECT_RATIO * (y2 - y1)
    assert y1 <= 10 and y2 >= 11


_box_value = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-200, 1300),
    st.integers(-(10**20), 10**20),
    st.text(max_size=4),
    st.booleans(),
    st.none(),
)
_box_text = st.one_of(
    st.lists(_box_value, max_size=6).map(json.dumps),
    st.lists(st.floats(-100, 1100), min_size=4, max_size=4).map(json.dumps),
    st.text(max_size=30),
)


@given(box_text=_box_text, view=st.one_of(st.none(), st.integers(-1, 3)))
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_box_text_yields_a_view_or_an_observation(reader, overview, box_text, view) -> None:
    args = f'"bbox_2d": {box_text}' + ("" if view is None else f', "view": {view}')
    text = '<tool_call>{"name": "zoom_in", "arguments": {' + args + "}}</tool_call>"
    got = execute(parse_tool_call(text), [overview], reader)
    assert got.observation
    if got.view is None:
        assert got.reason and got.observation.startswith("zoom_in was not run")
        return
    x1, y1, x2, y2 = got.view.window_xyxy_px
    assert 0 <= x1 < x2 <= WIDTH and 0 <= y1 < y2 <= HEIGHT
    assert x2 - x1 >= 64 and y2 - y1 >= 64
    bx1, by1, bx2, by2 = got.box_xyxy_px
    assert x1 <= bx1 + 1e-9 and y1 <= by1 + 1e-9 and x2 >= bx2 - 1e-9 and y2 >= by2 - 1e-9
    if got.view.is_native:
        np.testing.assert_array_equal(got.view.pixels, coded_pixels(x1, y1, x2, y2))
    else:  # resized to the budget: the GSD says so
        assert got.view.gsd.point_m == pytest.approx(0.5 * got.view.downsample)
