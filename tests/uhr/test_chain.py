"""Zoom-in Chain records (RSCoVLM sec. III-D) from a generated UHR scene: the format,
views written as files with their own GSD, crops equal to what inference reads, loss on
both assistant turns, skips counted with reasons, and LRS-VQA-Zoom template questions
that agree with the labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from earthvlm.data.collate import IGNORE_INDEX, Collator
from earthvlm.data.jsonl import read_records
from earthvlm.data.record import Box, ImagePart, ImageRef, Message, Record, TextPart
from earthvlm.data.resolution import Resolution
from earthvlm.models import build_tiny_backbone
from earthvlm.scale.gsd import GSD
from earthvlm.synth.dataset import SynthConfig, generate_dataset
from earthvlm.uhr import UHRReader, ZoomCall, ZoomConfig, execute, parse_tool_call
from earthvlm.uhr.chain import (
    CHAIN_TASK,
    ChainConfig,
    ChainWriter,
    TemplateConfig,
    build_chains,
    extract_answer,
    label_records,
    record_roi,
    template_questions,
    tool_system_prompt,
    user_text,
)
from earthvlm.uhr.tool import zoom_tool_schema

UHR_PX = 2048


@pytest.fixture(scope="module")
def backbone():
    return build_tiny_backbone("qwen3_vl", seed=0)


@pytest.fixture(scope="module")
def resolution(backbone) -> Resolution:
    return Resolution.from_processor(backbone.processor.image_processor)


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Record]]:
    root = tmp_path_factory.mktemp("synth-uhr")
    generate_dataset(root, SynthConfig(n_scenes=0, n_uhr=1, uhr_size_px=UHR_PX, seed=0))
    return root, read_records(root / "records.jsonl").records


@pytest.fixture(scope="module")
def chains(synth, resolution, tmp_path_factory: pytest.TempPathFactory):
    root, records = synth
    out = tmp_path_factory.mktemp("chains")
    return out, build_chains(records, root, out, resolution, ChainConfig())


def _by_source(result, source_id: str) -> Record:
    return next(r for r in result.records if r.meta["zoom"]["source_id"] == source_id)


def test_chain_format_views_and_gsds(synth, chains) -> None:
    _, records = synth
    out, result = chains
    obj = next(r for r in records if r.meta.get("roi_type") == "object")
    rec = _by_source(result, obj.id)
    assert rec.task == CHAIN_TASK and rec.id == f"{obj.id}-zoom"
    assert [m.role for m in rec.messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert rec.messages[0].text() == tool_system_prompt([zoom_tool_schema("norm1000")])
    assert rec.messages[1].text() == user_text(obj.messages[0].text())
    assert rec.messages[-1].text() == obj.messages[-1].text()
    call = parse_tool_call(rec.messages[2].text())
    assert isinstance(call, ZoomCall) and not call.repairs
    # the call's box (0-1000 on the global view) contains the ROI
    roi = obj.meta["roi_xyxy_px"]
    x1, y1, x2, y2 = (v * UHR_PX / 1000 for v in call.bbox_2d)
    assert x1 <= roi[0] and y1 <= roi[1] and x2 >= roi[2] and y2 >= roi[3]
    # views are files of the size their ImageRef says, each with its own GSD
    source_gsd = obj.images[0].gsd.point_m
    global_ref, crop_ref = rec.images
    for ref in rec.images:
        with Image.open(out / ref.path) as im:
            assert im.size == (ref.width, ref.height) and im.mode == "RGB"
    assert global_ref.gsd.point_m == pytest.approx(source_gsd * UHR_PX / global_ref.width)
    assert crop_ref.gsd.point_m == pytest.approx(source_gsd)  # a small object: native crop
    zoom = rec.meta["zoom"]
    assert zoom["zoom_gain"] == pytest.approx(UHR_PX / global_ref.width)
    assert rec.meta["scene_kind"] == obj.meta["scene_kind"]  # the source's meta is kept


def test_crop_is_what_inference_reads(synth, chains, resolution) -> None:
    root, records = synth
    out, result = chains
    rec = next(r for r in result.records if r.meta["zoom"]["action"] == "zoom")
    call = parse_tool_call(rec.messages[2].text())
    path = root / records[0].images[0].path
    with UHRReader(path, resolution, gsd=records[0].images[0].gsd) as reader:
        overview = reader.global_view()
        done = execute(call, [overview], reader, ZoomConfig("norm1000"))
    assert done.view is not None
    assert list(done.view.window_xyxy_px) == rec.meta["zoom"]["window_xyxy_px"]
    assert done.observation == rec.messages[3].text()
    crop = np.asarray(Image.open(out / rec.images[1].path))
    assert np.array_equal(crop, done.view.pixels)
    assert np.array_equal(np.asarray(Image.open(out / rec.images[0].path)), overview.pixels)


def test_loss_on_both_assistant_turns(backbone, chains) -> None:
    out, result = chains
    rec = next(r for r in result.records if r.meta["zoom"]["action"] == "zoom")
    batch = Collator(backbone, out, mode="train", on_error="raise", return_tensors="np")([rec])
    ids, labels = batch.inputs["input_ids"][0], batch.inputs["labels"][0]
    kept = labels != IGNORE_INDEX
    edges = np.flatnonzero(np.diff(np.r_[0, kept.astype(int), 0]))
    spans = [
        backbone.tokenizer.decode(ids[a:b]) for a, b in zip(edges[::2], edges[1::2], strict=True)
    ]
    assert spans == [
        rec.messages[2].text() + "<|im_end|>\n",
        rec.messages[4].text() + "<|im_end|>\n",
    ]
    assert np.array_equal(labels[kept], ids[kept])
    # nothing of the system, user or tool turns (nor an image token) is a target
    image_pad = backbone.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert not np.isin(labels, [image_pad]).any()
    assert len(batch.gsds) == 2 and batch.gsds[0].point_m > batch.gsds[1].point_m


def test_global_questions_are_answered_without_zooming(synth, chains) -> None:
    _, records = synth
    _, result = chains
    glob = next(r for r in records if r.meta.get("roi_type") == "global")
    rec = _by_source(result, glob.id)
    assert rec.id.endswith("-direct") and len(rec.images) == 1
    assert [m.role for m in rec.messages] == ["system", "user", "assistant"]
    assert rec.meta["zoom"]["action"] == "answer"


def test_every_record_is_counted_and_large_rois_are_skipped(synth, chains) -> None:
    _, records = synth
    _, result = chains
    ledger = result.ledger
    assert ledger.balanced and ledger.read == len(records)
    assert ledger.ok == len(result.records) and ledger.n_failed == 0
    assert ledger.skipped["no_roi"] >= 1  # e.g. "is there open water?"
    assert ledger.skipped["task_skipped"] == 1  # detection: its answer is in source pixels
    reasons = {rid: reason for rid, reason, _ in result.failures}
    count = next(r for r in records if r.meta.get("question_kind") == "count")
    roi, where = record_roi(count)
    assert where == "boxes" and roi is not None
    # this scene's objects of the class spread over the image: the crop of their union
    # would be the global view again
    assert (roi[2] - roi[0]) * (roi[3] - roi[1]) > 0.5 * UHR_PX**2
    assert reasons[count.id] == "no_zoom_gain"


def test_missing_images_fail_and_bad_records_are_skipped(synth, resolution, tmp_path) -> None:
    root, records = synth
    base = next(r for r in records if r.meta.get("roi_type") == "object")
    missing = base.model_copy(
        update={
            "id": "gone",
            "images": [base.images[0].model_copy(update={"path": "images/none.tif"})],
        }
    )
    two_q = base.model_copy(update={"id": "two", "messages": [*base.messages, *base.messages]})
    result = build_chains([missing, two_q, base], root, tmp_path, resolution)
    assert result.ledger.failed == {"missing_image": 1}
    assert result.ledger.skipped == {"not_single_turn": 1} and result.ledger.ok == 1
    assert [f[0] for f in result.failures] == ["gone", "two"]


def test_qwen2_5_chains_use_pixel_boxes_and_user_turns(synth, tmp_path) -> None:
    root, records = synth
    bb = build_tiny_backbone("qwen2_5_vl", seed=0)
    res = Resolution.from_processor(bb.processor.image_processor)
    cfg = ChainConfig(box_frame=bb.box_frame, observation_role="user")
    obj = next(r for r in records if r.meta.get("roi_type") == "object")
    with ChainWriter(root, tmp_path, res, cfg) as writer:
        rec = writer.chain(obj)
    assert [m.role for m in rec.messages] == ["system", "user", "assistant", "user", "assistant"]
    call = parse_tool_call(rec.messages[2].text())
    width = rec.images[0].width
    assert isinstance(call, ZoomCall) and max(call.bbox_2d) <= width
    roi = obj.meta["roi_xyxy_px"]
    assert call.bbox_2d[0] <= roi[0] * width / UHR_PX <= call.bbox_2d[2]
    batch = Collator(bb, tmp_path, mode="train", on_error="raise", return_tensors="np")([rec])
    assert batch.ledger.ok == 1 and (batch.inputs["labels"] != IGNORE_INDEX).any()


def _labels(width: int = 900, height: int = 900) -> Record:
    boxes = [  # 3 cars in the top-left cell, 1 in the centre; 2 tanks, one per row
        Box(label="car", xyxy_px=(10, 10, 20, 20)),
        Box(label="car", xyxy_px=(100, 100, 110, 110)),
        Box(label="car", xyxy_px=(200, 50, 210, 60)),
        Box(label="car", xyxy_px=(440, 440, 460, 460)),
        Box(label="storage tank", xyxy_px=(700, 100, 740, 140)),
        Box(label="storage tank", xyxy_px=(700, 700, 740, 740)),
    ]
    return Record(
        id="scene",
        task="detection",
        source="test",
        images=[ImageRef(path="scene.tif", width=width, height=height, gsd=GSD.exact(0.3))],
        messages=[
            Message(role="user", content=[ImagePart(index=0), TextPart(text="Detect.")]),
            Message(role="assistant", content="..."),
        ],
        boxes=boxes,
    )


def test_template_questions_agree_with_the_labels() -> None:
    cfg = TemplateConfig(cell_counts=9, comparisons=2, mcq_prob=1.0)
    qs = template_questions(_labels(), np.random.default_rng(0), cfg)
    by_kind: dict[str, list[Record]] = {}
    for q in qs:
        by_kind.setdefault(q.meta["template"], []).append(q)
    image_counts = {q.meta["classes"][0]: q.messages[1].text() for q in by_kind["count_image"]}
    assert image_counts == {"car": "4", "storage tank": "2"}
    cells = {
        (q.meta["classes"][0], q.meta["cell"]): q.messages[1].text() for q in by_kind["count_cell"]
    }
    assert cells[("car", "top-left")] == "3" and cells[("car", "centre")] == "1"
    assert cells.get(("storage tank", "top-right"), "1") == "1"
    assert all(
        v == "0"
        for (c, cell), v in cells.items()
        if c == "car" and cell not in ("top-left", "centre")
    )
    for q in by_kind["count_cell"]:  # the ROI is the cell
        x1, y1, x2, y2 = q.meta["roi_xyxy_px"]
        assert x2 - x1 == pytest.approx(300) and y2 - y1 == pytest.approx(300)
    for q in by_kind.get("compare_image", []) + by_kind.get("compare_cell", []):
        na, nb = q.meta["counts"]
        assert q.messages[1].text() == ("yes" if na > nb else "no")
    assert len(by_kind["mcq"]) == len(by_kind["count_image"]) + len(by_kind["count_cell"])
    for q in by_kind["mcq"]:
        letter = q.messages[1].text()
        options = dict(line[1:].split(") ", 1) for line in q.meta["options"])
        assert len(options) == 4 and len(set(options.values())) == 4
        assert options[letter] == q.meta["answer_value"]
        assert q.messages[0].text().endswith("Answer with the letter of the correct option.")
    for q in qs:
        roi, where = record_roi(q)
        assert where == "roi" and 0 <= roi[0] < roi[2] <= 900 and 0 <= roi[1] < roi[3] <= 900


def test_template_questions_are_deterministic_and_skip_straddled_cells() -> None:
    labels = _labels()
    straddle = labels.model_copy(
        update={"boxes": [*labels.boxes, Box(label="car", xyxy_px=(290, 400, 310, 420))]}
    )
    a = template_questions(straddle, np.random.default_rng(3), TemplateConfig(cell_counts=9))
    b = template_questions(straddle, np.random.default_rng(3), TemplateConfig(cell_counts=9))
    assert [q.model_dump() for q in a] == [q.model_dump() for q in b]
    car_cells = {
        q.meta["cell"]
        for q in a
        if q.meta["template"] == "count_cell" and q.meta["classes"] == ["car"]
    }
    # the car at x 290-310 straddles the middle-left / centre border: neither is asked
    assert car_cells and not car_cells & {"middle-left", "centre"}


def test_templates_from_the_synthetic_scene_become_chains(synth, resolution, tmp_path) -> None:
    root, records = synth
    (labels,) = label_records(records)
    assert labels.task == "detection" and labels.boxes
    qs = template_questions(labels, np.random.default_rng(0))
    result = build_chains(qs, root, tmp_path, resolution)
    assert result.ledger.balanced and result.ledger.read == len(qs)
    assert result.records, result.ledger.summary()
    for rec in result.records:  # a cell or a small union: a real zoom
        assert rec.meta["zoom"]["zoom_gain"] >= 2.0
    lines = [json.dumps(r.model_dump(mode="json")) for r in result.records]
    assert [Record.model_validate_json(line) for line in lines] == result.records


def test_tool_text_renders_like_the_templates_tools_argument(backbone) -> None:
    schema = zoom_tool_schema(backbone.box_frame)
    conv = [{"role": "user", "content": [{"type": "text", "text": "Where?"}]}]
    template = backbone.chat_template()
    via_tools = backbone.processor.apply_chat_template(
        conv, tools=[schema], chat_template=template, tokenize=False
    )
    via_system = backbone.processor.apply_chat_template(
        [{"role": "system", "content": tool_system_prompt([schema])}, *conv],
        chat_template=template,
        tokenize=False,
    )
    assert via_tools == via_system


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("3", "3"),
        ("<think>count them</think> 4 cars", "4 cars"),
        ("<think>x</think><answer> yes </answer>", "yes"),
        ('<tool_call>{"name": "zoom_in"}</tool_call> two', "two"),
        ("<tool_call> never closed", ""),
        ("<think>unclosed", ""),
    ],
)
def test_extract_answer(text: str, answer: str) -> None:
    assert extract_answer(text) == answer


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="box_frame"):
        ChainConfig(box_frame="pixels")
    with pytest.raises(ValueError, match="min_zoom_gain"):
        ChainConfig(min_zoom_gain=0.5)
    with pytest.raises(ValueError, match="observation_role"):
        ChainConfig(observation_role="system")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mcq_options"):
        TemplateConfig(mcq_options=9)
