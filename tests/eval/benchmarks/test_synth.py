"""The synthetic world's benchmarks: worked scoring examples, examples read from a dataset,
rewards equal to the per-item scores, and garbage answers scored as wrong."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import pytest

from earthvlm.data.record import Box, ImagePart, ImageRef, Message, Record, TextPart
from earthvlm.eval.benchmarks import BenchmarkError, build_benchmark

SYNTH = ["synth_chips", "synth_vqa", "synth_grounding", "synth_detection"]
#: What a random tiny model writes, and worse.
GARBAGE = [
    "",
    "<|image_pad|><|image_pad|>",
    "\x00\ufffd\u200b",
    "ponds= or<tool_response>akseball",
    "9" * 300,
    "[[1, 2",
    "1,2,3,4,5,6,7,8 unicorn",
    None,
]


def record(rid: str, question: str, answer: str, *, task: str = "vqa", source: str = "synth",
           size: tuple[int, int] | None = None, boxes: list[Box] | None = None,
           **meta: Any) -> Record:  # fmt: skip
    """A one-turn record; with ``size`` (width, height) it shows one image of that size."""
    images = [ImageRef(path="images/x.tif", width=size[0], height=size[1])] if size else []
    content: Any = [ImagePart(index=0), TextPart(text=question)] if size else question
    return Record(id=rid, task=task, source=source, images=images,
                  messages=[Message(role="user", content=content),
                            Message(role="assistant", content=answer)],
                  boxes=boxes or [], meta=meta)  # fmt: skip


def test_chips_are_exact_matches_within_the_closed_set() -> None:
    bench = build_benchmark("synth_chips")
    recs = [record(f"c{i}", "What is the object in the centre of this image?", cls,
                   task="classification", source="synth-chips")
            for i, cls in enumerate(["building", "small vehicle", "plane", "ship"])]  # fmt: skip
    result = bench.score(recs, ["A building.", "building", "Plane", "boat"])
    assert result.item_scores == (1.0, 0.0, 1.0, 0.0)
    assert result.metric == "accuracy" and result.headline == 0.5
    m = result.metrics
    assert m["pair_accuracy"] == 0.5  # building right, small vehicle taken for a building
    assert m["out_of_set_rate"] == 0.25  # "boat" is no chip class
    assert {k: v.score for k, v in result.categories.items()} == {
        "building": 1.0, "plane": 1.0, "ship": 0.0, "small vehicle": 0.0}  # fmt: skip


def _vqa_records() -> tuple[list[Record], list[str]]:
    rows = [  # (kind, answer type, reference, prediction)
        ("existence", "yes_no", "yes", "Yes, there are two."),
        ("existence", "yes_no", "no", "There is no airplane."),
        ("existence", "yes_no", "no", "maybe"),
        ("count", "count", "10", "11"),
        ("count", "count", "3", "three"),
        ("count", "count", "3", "4"),
        ("identification", "class", "building", "The building."),
        ("colour", "colour", "white", "red"),
    ]
    recs = [record(f"q{i}", "?", ref, task="counting" if t == "count" else "vqa",
                   question_kind=k, answer_type=t)
            for i, (k, t, ref, _) in enumerate(rows)]  # fmt: skip
    return recs, [r[3] for r in rows]


def test_vqa_scores_each_answer_type_by_its_rule() -> None:
    recs, preds = _vqa_records()
    result = build_benchmark("synth_vqa").score(recs, preds)
    # 11 for 10 is within 10 %; "three" reads as 3; 4 for 3 is not within 10 %
    assert result.item_scores == (1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0)
    m = result.metrics
    assert m["accuracy"] == 5 / 8
    assert m["yes_no_accuracy"] == pytest.approx(2 / 3)
    assert m["count_within_tolerance"] == pytest.approx(2 / 3)
    assert m["count_exact"] == pytest.approx(1 / 3)
    assert m["count_mae"] == pytest.approx(2 / 3)
    assert m["short_answer_accuracy"] == 0.5
    cats = {k: (v.n, v.score) for k, v in result.categories.items()}
    assert cats == {"colour": (1, 0.0), "count": (3, pytest.approx(2 / 3)),
                    "existence": (3, pytest.approx(2 / 3)), "identification": (1, 1.0)}  # fmt: skip
    # the tolerance is an option: +-1 accepts 4 for 3, no tolerance refuses 11 for 10
    wide = build_benchmark("synth_vqa", count_abs_tol=1.0).score(recs, preds)
    assert wide.item_scores[3:6] == (1.0, 1.0, 1.0)
    strict = build_benchmark("synth_vqa", count_rel_tol=0.0).score(recs, preds)
    assert strict.item_scores[3:6] == (0.0, 1.0, 0.0)


def test_grounding_brings_norm1000_boxes_to_pixels_and_needs_iou_above_half() -> None:
    # a 200 x 100 image; the object at x 20-60, y 10-50 px is [100, 100, 300, 500] in 0-1000
    recs = [record(f"g{i}", "Locate the plane.", "[100, 100, 300, 500]", task="grounding",
                   size=(200, 100), box_format="xyxy_norm1000",
                   answer_xyxy_px=[20.0, 10.0, 60.0, 50.0], classes=["plane"])
            for i in range(4)]  # fmt: skip
    preds = [
        "[100, 100, 300, 500]",  # exact
        "The box is [100, 100, 300, 300].",  # the top half: IoU 0.5, not above it
        "<|image_pad|>",  # no box: a miss
        "[300, 500, 100, 100]",  # corners out of order: a miss
    ]
    result = build_benchmark("synth_grounding").score(recs, preds)
    assert result.item_scores == (1.0, 0.0, 0.0, 0.0)
    assert result.metric == "acc@0.5" and result.headline == 0.25
    assert result.metrics["mean_iou"] == pytest.approx((1.0 + 0.5) / 4)
    assert result.metrics["acc@0.3"] == 0.5
    assert result.details["grounding"]["ledger"]["failed"] == {
        "box corners out of order (x2 < x1 or y2 < y1)": 1, "no box in the answer": 1}  # fmt: skip


def _quad(x1: float, y1: float, x2: float, y2: float) -> tuple[float, ...]:
    return (x1, y1, x2, y1, x2, y2, x1, y2)


DETECT = "Detect all objects in this image."
TWO_BUILDINGS = [Box(label="building", quad_px=_quad(10, 10, 30, 20)),
                 Box(label="building", quad_px=_quad(50, 50, 70, 60))]  # fmt: skip
HIT = "10,10,30,10,30,20,10,20 building"
MISS = "80,80,95,80,95,95,80,95 building"


def test_detection_is_ap_nc_in_the_order_written() -> None:
    bench = build_benchmark("synth_detection")
    objects = record("d1", DETECT, "...", task="detection", size=(100, 100), boxes=TWO_BUILDINGS)
    empty = record("d2", DETECT, "There is none.", task="detection", size=(100, 100))
    # constant confidence: the hit written first gives AP 0.5, written second 0.25
    assert bench.reward(objects, f"{HIT}\n{MISS}") == 0.5
    assert bench.reward(objects, f"{MISS}\n{HIT}") == 0.25
    # the JSON variant, hbox written for a quad, class in capitals: both found
    as_json = json.dumps([{"bbox_2d": [10, 10, 30, 20], "label": "Building"},
                          {"bbox_2d": [50, 50, 70, 60], "label": "buildings"}])  # fmt: skip
    assert bench.reward(objects, as_json) == 1.0
    # an empty image: right only when the answer says there is nothing
    assert [bench.reward(empty, p) for p in ("There is none.", "There are none", "", "[]")] == [
        1.0, 1.0, 0.0, 1.0]  # fmt: skip
    assert bench.reward(empty, HIT) == 0.0 and bench.reward(empty, "no idea") == 0.0

    result = bench.score([objects, empty], [f"{HIT}\n{MISS}", "There is none."])
    assert result.metric == "ap50_nc" and result.headline == 0.5
    assert result.metrics["mean_image_score"] == 0.75
    assert result.metrics["empty_image_accuracy"] == 1.0
    assert result.metrics["objects_predicted"] == 2
    assert {k: (v.n, v.score) for k, v in result.categories.items()} == {"building": (2, 0.5)}
    with pytest.raises(BenchmarkError, match="needs the image size"):
        bench.reward(record("d3", DETECT, "x", task="detection", boxes=[]), HIT)


def test_examples_come_from_a_synthetic_dataset_with_a_ledger(synth_root: Path) -> None:
    counts = {}
    for name in SYNTH:
        bench = build_benchmark(name)
        recs = list(bench.examples(synth_root))
        assert recs and all(bench.wants(r) for r in recs)
        assert bench.ledger.balanced and bench.ledger.ok == len(recs)
        assert bench.image_root(synth_root) == synth_root
        assert bench.image_root(synth_root / "records.jsonl") == synth_root
        counts[name] = len(recs)
        assert len(list(bench.examples(synth_root, limit=2))) == min(2, len(recs))
    total = sum(1 for line in (synth_root / "records.jsonl").open() if line.strip())
    assert counts["synth_chips"] == 6 and sum(counts.values()) < total  # mcq left out
    # questions on UHR scenes are asked (the direct arm reads them reduced; --zoom zooms)
    uhr = record("u1", "How many planes are there?", "3", task="counting", mode="uhr")
    assert build_benchmark("synth_vqa").skip_reason(uhr) is None
    roi = record("r1", "What colour is the car?", "red", task="roi", roi_type="object")
    assert build_benchmark("synth_vqa").skip_reason(roi) is None
    with pytest.raises(BenchmarkError, match=r"no records\.jsonl"):
        next(build_benchmark("synth_vqa").examples(synth_root / "images"))
    with pytest.raises(BenchmarkError, match="no such folder"):
        build_benchmark("synth_vqa").examples(synth_root / "nope")
    with pytest.raises(BenchmarkError, match="limit=0"):
        build_benchmark("synth_vqa").examples(synth_root, limit=0)


@pytest.mark.parametrize("name", SYNTH)
def test_reward_equals_the_per_item_score(name: str, synth_root: Path) -> None:
    bench = build_benchmark(name)
    recs = list(bench.examples(synth_root))
    # right answers, garbage, and right answers damaged in a way the scorer must notice
    preds: list[str | None] = []
    for i, r in enumerate(recs):
        ref = bench.reference(r)
        preds.append([ref, GARBAGE[i % len(GARBAGE)], ref.upper() + " maybe"][i % 3])
    result = bench.score(recs, preds)
    assert len(result.item_scores) == len(recs)
    for r, p, s in zip(recs, preds, result.item_scores, strict=True):
        assert s is not None and 0.0 <= s <= 1.0
        assert bench.reward(r, p) == s
    if name != "synth_detection":  # the headline of the others is the mean item score
        assert result.headline == pytest.approx(sum(result.item_scores) / len(recs))
    else:
        assert result.metrics["mean_image_score"] == pytest.approx(
            sum(result.item_scores) / len(recs)
        )
    assert result.to_dict()["n"] == len(recs)
    json.dumps(result.to_dict())  # JSON-ready, NaN as null


@pytest.mark.parametrize("name", SYNTH)
def test_garbage_is_wrong_and_never_crashes(name: str, synth_root: Path) -> None:
    bench = build_benchmark(name)
    recs = list(bench.examples(synth_root))
    preds = list(itertools.islice(itertools.cycle(GARBAGE), len(recs)))
    result = bench.score(recs, preds)
    assert all(s == 0.0 for s in result.item_scores), list(
        zip(preds, result.item_scores, strict=True)
    )
    assert result.headline == 0.0 or math.isnan(result.headline)
    perfect = bench.score(recs, [bench.reference(r) for r in recs])
    assert perfect.headline > 0.9  # integer-pixel targets of tiny objects lose a little AP
    with pytest.raises(ValueError, match="one prediction per record"):
        bench.score(recs, preds[:-1])
    with pytest.raises(ValueError, match=r"predictions\[0\] must be the model's text"):
        bench.score(recs[:1], [3])  # type: ignore[list-item]
