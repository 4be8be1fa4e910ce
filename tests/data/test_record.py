"""The sample record: what it accepts, and the error type of each thing it refuses."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import pytest
from pydantic import ValidationError

from earthvlm.data.record import (
    BOX_BORDER_TOL_PX,
    Box,
    ImageRef,
    Mask,
    Message,
    Record,
    primary_error,
)
from earthvlm.scale.gsd import GSD, GSDKind, GSDSource


def _row(**over: Any) -> dict[str, Any]:
    """A valid one-image VQA row on a 100 x 80 image; keyword arguments replace fields."""
    row: dict[str, Any] = {
        "id": "r1",
        "task": "vqa",
        "source": "test",
        "images": [{"path": "images/a.png", "width": 100, "height": 80}],
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image", "index": 0}, {"type": "text", "text": "Planes?"}],
            },
            {"role": "assistant", "content": "3"},
        ],
    }
    row.update(over)
    return row


def _error_type(row: dict[str, Any]) -> tuple[str, str]:
    with pytest.raises(ValidationError) as ei:
        Record.model_validate(row)
    first = primary_error(ei.value)
    return first["type"], first["msg"]


def _user(*parts: Any) -> dict[str, Any]:
    return {"role": "user", "content": list(parts)}


IMG0 = {"type": "image", "index": 0}
IMG1 = {"type": "image", "index": 1}
TXT = {"type": "text", "text": "Compare."}


# -- round trip --------------------------------------------------------------------------


def _full_record() -> Record:
    return Record.model_validate(
        {
            "id": "dota-P0001-0",
            "task": "detection",
            "source": "dota",
            "split": "val",
            "images": [
                {
                    "path": "images/P0001.png",
                    "width": 1024,
                    "height": 768,
                    "bands": ["R", "G", "B"],
                    "gsd": GSD.exact(0.146, GSDSource.METADATA, "dota header").to_dict(),
                },
                {
                    "path": "s1/VV.tif",
                    "modality": "sar",
                    "bands": ["VV", "VH"],
                    "gsd": GSD.range(0.3, 2.0, GSDSource.DATASET, "mixed platforms").to_dict(),
                },
                {"path": "ms/x.tif", "modality": "multispectral", "gsd": None},
                {"path": "c.png", "gsd": GSD.exact(10.0, "sensor_table", sigma_log10=0.1)},
            ],
            "messages": [
                {"role": "system", "content": "You are a remote-sensing assistant."},
                _user(
                    IMG0,
                    IMG1,
                    {"type": "text", "text": "Same place?"},
                    {"type": "image", "index": 2},
                ),
                {"role": "assistant", "content": [{"type": "text", "text": "Yes."}]},
                _user({"type": "image", "index": 3}, {"type": "text", "text": "And this?"}),
                {"role": "assistant", "content": "No."},
            ],
            "boxes": [
                {"label": "plane", "xyxy_px": [10, 20, 30.5, 40]},
                {"label": "ship", "quad_px": [0, 0, 10, 0, 10, 10, 0, 10], "score": 0.9},
                {"label": "car", "obb_px": [500, 400, 40, 20, 30.0]},
                {"label": "pier", "image": 1, "xyxy_px": [1, 1, 5, 5]},
            ],
            "masks": [
                {"label": "water", "path": "masks/P0001.png"},
                {"image": 1, "rle": {"size": [768, 1024], "counts": "abc"}},
            ],
            "meta": {"imagesource": "GoogleEarth", "nested": {"k": [1, 2]}},
        }
    )


def test_full_record_round_trips_unchanged() -> None:
    rec = _full_record()
    again = Record.model_validate(json.loads(rec.model_dump_json()))
    assert again == rec
    assert again.model_dump_json() == rec.model_dump_json()
    # and via the JSON entry point, excluding None fields as the JSONL writer does
    assert Record.model_validate_json(rec.model_dump_json(exclude_none=True)) == rec


def test_round_trip_keeps_each_gsd_state_and_provenance() -> None:
    rec = Record.model_validate(json.loads(_full_record().model_dump_json()))
    g0, g1, g2, g3 = (im.gsd for im in rec.images)
    assert (g0.kind, g0.point_m, g0.source, g0.detail) == (
        GSDKind.EXACT,
        0.146,
        GSDSource.METADATA,
        "dota header",
    )
    assert (g1.kind, g1.bounds_m, g1.source) == (GSDKind.RANGE, (0.3, 2.0), GSDSource.DATASET)
    assert g2.kind is GSDKind.UNKNOWN and not g2.is_known
    assert (g3.point_m, g3.source, g3.sigma_log10) == (10.0, GSDSource.SENSOR_TABLE, 0.1)


def test_defaults() -> None:
    rec = Record.model_validate(_row())
    im = rec.images[0]
    assert rec.split == "train"
    assert (im.modality, im.bands) == ("optical", None)
    assert im.gsd.kind is GSDKind.UNKNOWN
    assert rec.boxes == [] and rec.masks == [] and rec.meta == {}


def test_bare_number_gsd_is_exact_metadata() -> None:
    rec = Record.model_validate(_row(images=[{"path": "a.png", "gsd": 0.3}]))
    assert rec.images[0].gsd == GSD.exact(0.3, GSDSource.METADATA)


# -- image parts -------------------------------------------------------------------------


def test_two_images_one_image_part() -> None:
    row = _row(images=[{"path": "a.png"}, {"path": "b.png"}])
    assert _error_type(row)[0] == "image_part_mismatch"


def test_image_part_index_out_of_range() -> None:
    row = _row(messages=[_user(IMG1, TXT)])
    kind, msg = _error_type(row)
    assert kind == "image_part_mismatch"
    assert "[1]" in msg and "1 image(s)" in msg


def test_image_shown_twice() -> None:
    row = _row(messages=[_user(IMG0, TXT), {"role": "assistant", "content": "ok"}, _user(IMG0)])
    assert _error_type(row)[0] == "image_part_mismatch"


def test_image_part_without_images() -> None:
    row = _row(images=[])
    assert _error_type(row)[0] == "image_part_mismatch"


def test_text_only_record_is_valid() -> None:
    rec = Record.model_validate(_row(images=[], messages=[{"role": "user", "content": "Hi"}]))
    assert rec.images == []


# -- boxes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "box",
    [
        {"label": "x", "xyxy_px": [10, 10, 102, 50]},  # x2 beyond width 100 by 2 px
        {"label": "x", "xyxy_px": [-5, 10, 20, 50]},
        {"label": "x", "xyxy_px": [10, 10, 20, 90]},  # y2 beyond height 80
        {"label": "x", "quad_px": [90, 10, 110, 10, 110, 20, 90, 20]},
        {"label": "x", "quad_px": [10, 70, 20, 70, 20, 85, 10, 85]},
        {"label": "x", "obb_px": [95, 40, 20, 10, 0]},  # right edge at x = 105
        # fits unrotated (x 5..95, y 35..45) but rotated 90 deg its 90 px side is vertical
        {"label": "x", "obb_px": [50, 40, 90, 10, 90]},
    ],
)
def test_box_outside_the_image(box: dict[str, Any]) -> None:
    kind, msg = _error_type(_row(boxes=[box]))
    assert kind == "box_out_of_image"
    assert "100 x 80" in msg


@pytest.mark.parametrize(
    "box",
    [
        {"label": "x", "xyxy_px": [0, 0, 100, 80]},
        {"label": "x", "xyxy_px": [-1, -1, 101, 81]},  # annotation tools round: 1 px allowed
        {"label": "x", "quad_px": [-0.5, 0, 100.9, 0, 100.9, 80.5, -0.5, 80.5]},
        {"label": "x", "obb_px": [50, 40, 60, 10, 0]},
        {"label": "x", "obb_px": [50, 40, 100, 80, 0]},
    ],
)
def test_box_on_the_border_within_tolerance_is_accepted(box: dict[str, Any]) -> None:
    assert BOX_BORDER_TOL_PX == 1.0
    rec = Record.model_validate(_row(boxes=[box]))
    assert len(rec.boxes) == 1


def test_box_not_checked_against_unknown_image_size() -> None:
    row = _row(images=[{"path": "a.png"}], boxes=[{"label": "x", "xyxy_px": [0, 0, 5000, 5000]}])
    assert Record.model_validate(row).boxes[0].xyxy_px == (0, 0, 5000, 5000)


def test_box_checked_against_its_own_image() -> None:
    row = _row(
        images=[
            {"path": "a.png", "width": 1000, "height": 1000},
            {"path": "b.png", "width": 10, "height": 10},
        ],
        messages=[_user(IMG0, IMG1, TXT)],
        boxes=[{"label": "x", "image": 1, "xyxy_px": [0, 0, 500, 500]}],
    )
    assert _error_type(row)[0] == "box_out_of_image"


def test_box_refers_to_missing_image() -> None:
    row = _row(boxes=[{"label": "x", "image": 3, "xyxy_px": [0, 0, 5, 5]}])
    assert _error_type(row)[0] == "box_image_index"


@pytest.mark.parametrize(
    "box",
    [
        {"label": "x", "xyxy_px": [10, 10, 10, 20]},  # x2 == x1
        {"label": "x", "xyxy_px": [20, 10, 10, 20]},  # x2 < x1
        {"label": "x", "xyxy_px": [10, 20, 20, 20]},  # y2 == y1
        {"label": "x", "quad_px": [0, 0, 10, 0, 20, 0, 30, 0]},  # collinear
        {"label": "x", "quad_px": [5, 5, 5, 5, 5, 5, 5, 5]},
        {"label": "x", "obb_px": [50, 40, 0, 10, 0]},
        {"label": "x", "obb_px": [50, 40, 10, -1, 0]},
    ],
)
def test_degenerate_box(box: dict[str, Any]) -> None:
    assert _error_type(_row(boxes=[box]))[0] == "box_degenerate"


@pytest.mark.parametrize(
    "box",
    [
        {"label": "x", "xyxy_px": [float("nan"), 0, 5, 5]},
        {"label": "x", "quad_px": [0, 0, 10, 0, 10, float("inf"), 0, 10]},
        {"label": "x", "obb_px": [5, 5, 2, 2, float("nan")]},
    ],
)
def test_box_not_finite(box: dict[str, Any]) -> None:
    assert _error_type(_row(boxes=[box]))[0] == "box_not_finite"


def test_box_not_finite_from_json_nan() -> None:
    line = json.dumps(_row(boxes=[{"label": "x", "xyxy_px": [float("nan"), 0, 5, 5]}]))
    assert "NaN" in line
    with pytest.raises(ValidationError) as ei:
        Record.model_validate(json.loads(line))
    assert ei.value.errors()[0]["type"] == "box_not_finite"


@pytest.mark.parametrize(
    "box",
    [
        {"label": "x"},
        {"label": "x", "xyxy_px": [0, 0, 5, 5], "obb_px": [2, 2, 1, 1, 0]},
        {"label": "x", "xyxy_px": [0, 0, 5, 5], "quad_px": [0, 0, 5, 0, 5, 5, 0, 5]},
    ],
)
def test_box_needs_exactly_one_geometry(box: dict[str, Any]) -> None:
    assert _error_type(_row(boxes=[box]))[0] == "box_geometry"


def test_box_corners_xyxy_and_quad() -> None:
    assert Box(label="x", xyxy_px=(1, 2, 3, 4)).corners_px() == [(1, 2), (3, 4)]
    q = (0, 0, 10, 0, 10, 5, 0, 5)
    assert Box(label="x", quad_px=q).corners_px() == [(0, 0), (10, 0), (10, 5), (0, 5)]


def _same_points(got: list[tuple[float, float]], want: set[tuple[float, float]]) -> bool:
    rounded = {(round(x, 9) + 0.0, round(y, 9) + 0.0) for x, y in got}
    return len(got) == 4 and rounded == want


def test_obb_corners_angle_0() -> None:
    got = Box(label="x", obb_px=(50, 40, 20, 10, 0)).corners_px()
    assert _same_points(got, {(40, 35), (60, 35), (60, 45), (40, 45)})


def test_obb_corners_angle_90_swap_the_extents() -> None:
    got = Box(label="x", obb_px=(50, 40, 20, 10, 90)).corners_px()
    assert _same_points(got, {(45, 30), (55, 30), (55, 50), (45, 50)})


def test_obb_corners_angle_45_turn_counter_clockwise_in_image_coordinates() -> None:
    # A w x 0+ box rotated 45 deg counter-clockwise (as seen on screen, y down): its
    # "+w/2" end goes up and to the right, i.e. to larger x and smaller y.
    box = Box(label="x", obb_px=(0, 0, 2 * math.sqrt(2), 1e-9, 45))
    xs_ys = box.corners_px()
    right = max(xs_ys, key=lambda p: p[0])
    assert right[0] == pytest.approx(1.0) and right[1] == pytest.approx(-1.0)


# -- paths, extra keys, GSD --------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["../../etc/passwd", "http://x", "/vsicurl/http://x/a.tif", "a\\b.png", ""]
)
def test_unsafe_image_path(path: str) -> None:
    kind, _ = _error_type(_row(images=[{"path": path}]))
    assert kind == "unsafe_path"


def test_unsafe_mask_path() -> None:
    kind, _ = _error_type(_row(masks=[{"path": "../../etc/passwd"}]))
    assert kind == "unsafe_path"


def test_absolute_image_path_is_left_to_the_root_check() -> None:
    # the record alone cannot tell; read_records(root=...) decides (see test_jsonl)
    rec = Record.model_validate(_row(images=[{"path": "/data/a.png"}]))
    assert rec.images[0].path == "/data/a.png"


@pytest.mark.parametrize(
    "where",
    [
        "record",
        "image",
        "message",
        "part",
        "box",
        "mask",
    ],
)
def test_unknown_key_is_refused(where: str) -> None:
    row = _row(masks=[{"path": "m.png"}], boxes=[{"label": "x", "xyxy_px": [0, 0, 1, 1]}])
    target = {
        "record": row,
        "image": row["images"][0],
        "message": row["messages"][0],
        "part": row["messages"][0]["content"][1],
        "box": row["boxes"][0],
        "mask": row["masks"][0],
    }[where]
    target["colour"] = "red"
    assert _error_type(row)[0] == "extra_forbidden"


def test_unknown_key_in_a_content_part_is_refused() -> None:
    row = _row()
    row["messages"][0]["content"][1]["colour"] = "red"
    with pytest.raises(ValidationError) as ei:
        Record.model_validate(row)
    assert "extra_forbidden" in {e["type"] for e in ei.value.errors()}


@pytest.mark.parametrize("gsd", [-1, {"kind": "exact", "m": -1}, -1.0])
def test_negative_gsd(gsd: Any) -> None:
    kind, msg = _error_type(_row(images=[{"path": "a.png", "gsd": gsd}]))
    assert kind == "value_error"
    assert "-1" in msg and "not positive" in msg


@pytest.mark.parametrize(
    "gsd",
    [
        float("nan"),
        0,
        {"kind": "range", "lo_m": 2, "hi_m": 1},
        {"kind": "exact"},
        {"kind": "exact", "m": 1, "unit": "m"},
        {"kind": "approximate", "m": 1},
        "fast",
    ],
)
def test_invalid_gsd(gsd: Any) -> None:
    assert _error_type(_row(images=[{"path": "a.png", "gsd": gsd}]))[0] == "value_error"


def test_no_user_turn() -> None:
    row = _row(images=[], messages=[{"role": "assistant", "content": "3"}])
    assert _error_type(row)[0] == "no_user_turn"


def test_empty_messages() -> None:
    assert _error_type(_row(messages=[]))[0] == "too_short"


@pytest.mark.parametrize("mask", [{}, {"path": "m.png", "rle": {"size": [1, 1], "counts": "a"}}])
def test_mask_needs_exactly_one_source(mask: dict[str, Any]) -> None:
    assert _error_type(_row(masks=[mask]))[0] == "mask_source"


def test_mask_rle_needs_size_and_counts() -> None:
    assert _error_type(_row(masks=[{"rle": {"counts": "a"}}]))[0] == "mask_rle"


def test_mask_refers_to_missing_image() -> None:
    assert _error_type(_row(masks=[{"path": "m.png", "image": 1}]))[0] == "mask_image_index"


@pytest.mark.parametrize(
    ("field", "value", "kind"),
    [
        ("id", "", "string_too_short"),
        ("task", "VQA task", "string_pattern_mismatch"),
        ("images", [{"path": "a.png", "width": 0}], "greater_than"),
        ("images", [{"path": "a.png", "modality": "lidar"}], "literal_error"),
        ("images", [{"path": "a.png", "bands": []}], "bad_bands"),
        ("messages", [{"role": "robot", "content": "x"}], "literal_error"),
    ],
)
def test_other_field_errors(field: str, value: Any, kind: str) -> None:
    assert _error_type(_row(**{field: value}))[0] == kind


def test_validation_does_not_mutate_the_input() -> None:
    row = _row(boxes=[{"label": "x", "xyxy_px": [0, 0, 1, 1]}])
    before = copy.deepcopy(row)
    Record.model_validate(row)
    assert row == before


# -- message helpers ---------------------------------------------------------------------


def test_message_text_and_image_indexes() -> None:
    m = Message.model_validate(
        {
            "role": "user",
            "content": [
                {"type": "image", "index": 1},
                {"type": "text", "text": "Left: "},
                {"type": "image", "index": 0},
                {"type": "text", "text": "right?"},
            ],
        }
    )
    assert m.text() == "Left: right?"
    assert m.image_indexes() == [1, 0]


def test_plain_string_message() -> None:
    m = Message(role="assistant", content="Three planes.")
    assert m.text() == "Three planes."
    assert m.image_indexes() == []


def test_image_ref_and_mask_direct_construction() -> None:
    assert ImageRef(path="a/b.png").gsd.kind is GSDKind.UNKNOWN
    with pytest.raises(ValidationError):
        Mask()
