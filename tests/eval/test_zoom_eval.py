"""The zoom arm of the benchmark runner on a synthetic UHR scene and a tiny real backbone,
with scripted model turns: traces in the report (views, source windows, GSDs, tokens),
the crops scored against each question's ROI, invalid calls by reason, a sharded and
interrupted run equal to an uninterrupted one, a direct cache never resumed as a zoom
run, and both arms compared side by side."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import earthvlm.eval.zoom as zoom_module
from earthvlm.data.record import ImagePart, ImageRef, Message, Record, TextPart
from earthvlm.eval.benchmarks import build_benchmark
from earthvlm.eval.runner import EvalError, Processes, RunConfig, run_benchmark, run_benchmarks
from earthvlm.eval.zoom import ZoomAnswers, ZoomEvalConfig
from earthvlm.geo.iou import xyxy_iou_pairs
from earthvlm.models import EarthVLM, build_tiny_backbone
from earthvlm.synth.dataset import SynthConfig, generate_dataset
from earthvlm.uhr.tool import format_tool_call

UHR_PX = 2048
ZOOM = RunConfig(batch_size=2, max_new_tokens=4, zoom=ZoomEvalConfig(max_zooms=1, turn_tokens=8))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One 2048 px UHR scene (GSD ~0.32 m, tiled with overviews) and its questions."""
    out = tmp_path_factory.mktemp("uhr")
    generate_dataset(out, SynthConfig(n_scenes=0, n_chips=0, n_uhr=1, uhr_size_px=UHR_PX, seed=0))
    return out


@pytest.fixture(scope="module")
def model() -> EarthVLM:
    """A tiny random Qwen3-VL: global views of 256 px (64 tokens), boxes on 0-1000."""
    return EarthVLM.from_backbone(build_tiny_backbone("qwen3_vl", seed=0), name="tiny")


def _norm(xyxy_px: list[float]) -> list[int]:
    """A source-pixel box on the 0-1000 grid of the global view, rounded outwards."""
    k = 1000 / UHR_PX
    x1, y1, x2, y2 = xyxy_px
    return [int(x1 * k), int(y1 * k), -int(-x2 * k), -int(-y2 * k)]


def scripted(model: EarthVLM, data: Path, fail_on_call: int | None = None) -> Callable:
    """The model's turns, decided from the question and the turn: the ROI question zooms
    on its ROI, the grid question on its cell, the colour question writes a call without
    a box (then answers), the land-use question answers at once, the rest zoom on the
    top-left quarter. Raises on call ``fail_on_call`` (a crash)."""
    records = [json.loads(line) for line in (data / "records.jsonl").open()]
    roi = next(r["meta"]["roi_xyxy_px"] for r in records if r["meta"].get("roi_type") == "object")
    cell = next(r["meta"]["cell_xyxy_px"] for r in records if "top-centre" in json.dumps(r))
    tok = model.backbone.tokenizer
    calls = [0]

    def turn(prompt: str) -> str:
        k = prompt.count("<|im_start|>assistant") - 1  # the model's turns so far
        if "land use" in prompt:
            return "water"
        if "colour" in prompt:
            return (
                '<tool_call>{"name": "zoom_in", "arguments": {}}</tool_call>' if k == 0 else "blue"
            )
        if k > 0:
            return "2"
        if "black ship" in prompt:
            return format_tool_call(_norm(roi))
        if "top-centre" in prompt:
            return format_tool_call(_norm(cell))
        return format_tool_call([0, 0, 500, 500])

    def generate(m: Any, inputs: Any, gsds: list, max_new_tokens: int) -> list[int]:
        calls[0] += 1
        if fail_on_call is not None and calls[0] == fail_on_call:
            raise RuntimeError("simulated crash")
        return tok.encode(turn(tok.decode(inputs["input_ids"][0])))

    return generate


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_traces_and_the_crops_scored_against_the_roi(
    model: EarthVLM, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(zoom_module, "greedy_ids", scripted(model, data))
    bench = build_benchmark("synth_vqa")
    run = run_benchmark(model, bench, data, tmp_path, ZOOM, Processes())
    folder = tmp_path / "synth_vqa-zoom1"
    assert run.folder == folder and run.arm == "zoom1" and run.n_examples == 9
    rows = {r["id"]: r for r in _lines(folder / "predictions.jsonl")}
    # one zoom: the global view (2048 px -> 256 px, 8x the GSD) then a native crop
    obj = rows["uhr-0000-roi-1"]
    global_view, crop = obj["zoom"]["views"]
    assert global_view["window_xyxy_px"] == [0, 0, UHR_PX, UHR_PX] and global_view["hw"] == [
        256,
        256,
    ]
    source_m = obj["zoom"]["source_gsd"]["m"]
    assert global_view["gsd"]["m"] == pytest.approx(8 * source_m)
    assert crop["native"] and crop["gsd"]["m"] == pytest.approx(source_m)
    assert (
        obj["visual_tokens"]
        == 64 + crop["visual_tokens"]
        == global_view["visual_tokens"] + (crop["hw"][0] // 32) * (crop["hw"][1] // 32)
    )
    assert [t["action"] for t in obj["zoom"]["turns"]] == ["zoom", "answer"]
    assert obj["prediction"] == "2" and obj["zoom"]["source"] == "images/uhr-0000.tif"

    scores = json.loads((folder / "scores.json").read_text())
    zoom = scores["zoom"]
    assert scores["generation"]["arm"] == "zoom1" and zoom["n_looped"] == 9
    assert zoom["depth"] == {"0": 2, "1": 7} and zoom["zoom_rate"] == pytest.approx(7 / 9)
    assert zoom["tool_calls"]["invalid_by_reason"] == {"missing_bbox": 1}
    assert rows["uhr-0000-colour-0"]["prediction"] == "blue"
    # the object ROI: the box asked for (outward-rounded ROI) and the window read
    roi = next(r for r in bench.examples(data) if r.id == "uhr-0000-roi-1").meta["roi_xyxy_px"]
    iou = xyxy_iou_pairs(np.array([crop["requested_xyxy_px"]]), np.array([roi]))[0]
    stats = zoom["roi"]["object"]
    assert stats["n"] == 1 and stats["zoom_rate"] == 1.0 and stats["coverage"] == 1.0
    assert stats["apo_iou"] == pytest.approx(iou, abs=1e-6) and iou > 0.8
    assert stats["window_iou"] < stats["apo_iou"]  # the window is grown to the token grid
    assert zoom["roi"]["cell"]["apo_iou"] > 0.99  # the grid question zoomed on its cell
    assert zoom["roi"]["global"] == {"n": 1, "zoom_rate": 0.0, "accuracy": 1.0}
    assert "apo_iou" not in zoom["roi"]["none"]  # no ROI: scored on the answer alone
    assert "## Zoom" in (folder / "report.md").read_text()


def test_a_sharded_interrupted_zoom_run_equals_an_uninterrupted_one(
    model: EarthVLM, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = build_benchmark("synth_vqa")
    monkeypatch.setattr(zoom_module, "greedy_ids", scripted(model, data))
    run_benchmark(model, bench, data, tmp_path / "one", ZOOM, Processes())
    # two processes; the second crashes in its second batch, then resumes
    monkeypatch.setattr(zoom_module, "greedy_ids", scripted(model, data, fail_on_call=5))
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_benchmark(model, bench, data, tmp_path / "two", ZOOM, Processes(index=1, count=2))
    folder = tmp_path / "two" / "synth_vqa-zoom1"
    assert len(_lines(folder / "shards" / "rank-001.jsonl")) == 2  # the first batch kept
    monkeypatch.setattr(zoom_module, "greedy_ids", scripted(model, data))
    again = run_benchmark(model, bench, data, tmp_path / "two", ZOOM, Processes(index=1, count=2))
    assert (again.n_cached, again.n_generated) == (2, 2)
    run_benchmark(model, bench, data, tmp_path / "two", ZOOM, Processes(index=0, count=2))
    one = (tmp_path / "one" / "synth_vqa-zoom1" / "predictions.jsonl").read_text()
    assert (folder / "predictions.jsonl").read_text() == one
    ids = [r["id"] for r in _lines(folder / "predictions.jsonl")]
    shards = [[r["id"] for r in _lines(folder / "shards" / f"rank-{k:03d}.jsonl")] for k in (0, 1)]
    assert shards == [ids[0::2], ids[1::2]]
    z1 = json.loads((tmp_path / "one" / "synth_vqa-zoom1" / "scores.json").read_text())
    z2 = json.loads((folder / "scores.json").read_text())
    assert z1["zoom"] == z2["zoom"] and z1["result"] == z2["result"]


def test_both_arms_side_by_side_and_a_cache_of_another_arm_is_refused(
    model: EarthVLM, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(zoom_module, "greedy_ids", scripted(model, data))
    direct = RunConfig(batch_size=9, max_new_tokens=2)
    runs = run_benchmarks(model, ["synth_vqa"], data, tmp_path, direct, Processes())
    assert runs[0].folder == tmp_path / "synth_vqa" and runs[0].arm == "direct"
    d = json.loads((tmp_path / "synth_vqa" / "scores.json").read_text())
    # the direct arm reads the scene at the model's budget: the zoom loop's global view
    assert d["generation"]["visual_tokens"]["per_question"] == 64.0
    assert d["generation"]["arm"] == "direct" and d["examples"]["ok"] == 9  # UHR not skipped
    run_benchmarks(model, ["synth_vqa"], data, tmp_path, ZOOM, Processes())
    with (tmp_path / "summary.csv").open() as f:
        summary = list(csv.DictReader(f))
    assert summary[0]["arm"] == "zoom1" and float(summary[0]["zoom_rate"]) == pytest.approx(7 / 9)
    assert summary[0]["invalid_calls"] == "1"
    arms = list(csv.reader((tmp_path / "arms.csv").open()))
    assert arms[0] == ["benchmark", "row", "direct", "zoom1"]
    rows = {r[1]: r[2:] for r in arms[1:]}
    assert rows["accuracy / roi_global"] == ["0.0", "1.0"]  # the scripted answer is right
    assert rows["visual_tokens_per_question"][0] == "64.0"
    assert "## Arms" in (tmp_path / "summary.md").read_text()
    # a direct cache under a zoom folder, or another K, is never resumed
    zoom2 = tmp_path / "synth_vqa-zoom2"
    zoom2.mkdir()
    shutil.copy(tmp_path / "synth_vqa" / "generation.json", zoom2)
    two = RunConfig(batch_size=2, max_new_tokens=4, zoom=ZoomEvalConfig(max_zooms=2))
    with pytest.raises(EvalError, match="arm"):
        run_benchmark(model, build_benchmark("synth_vqa"), data, tmp_path, two, Processes())
    shutil.copy(tmp_path / "synth_vqa-zoom1" / "generation.json", zoom2)
    with pytest.raises(EvalError, match="zoom differ"):
        run_benchmark(model, build_benchmark("synth_vqa"), data, tmp_path, two, Processes())


def test_records_the_loop_cannot_take_are_answered_directly(
    model: EarthVLM, tmp_path: Path
) -> None:
    def record(rid: str, paths: list[str]) -> Record:
        parts = [ImagePart(index=i) for i in range(len(paths))]
        return Record(
            id=rid,
            task="vqa",
            source="t",
            images=[ImageRef(path=p) for p in paths],
            messages=[
                Message(role="user", content=[*parts, TextPart(text="What changed?")]),
                Message(role="assistant", content="nothing"),
            ],
        )

    def direct(records: list[Record], max_new: int) -> list[dict[str, Any]]:
        return [{"id": r.id, "prediction": "direct", "failure": None} for r in records]

    recs = [record("pair", ["a.png", "b.png"]), record("gone", ["missing.tif"])]
    with ZoomAnswers(model, ZoomEvalConfig(), tmp_path, direct=direct) as zoom:
        pair, gone = zoom.answers(recs, max_new_tokens=4)
    assert pair == {"id": "pair", "prediction": "direct", "failure": None, "arm": "direct",
                    "zoom": None, "zoom_skipped": "not_single_image"}  # fmt: skip
    assert gone["failure"] == "missing_image" and gone["prediction"] is None
    with pytest.raises(ValueError, match="max_zooms"):
        ZoomEvalConfig(max_zooms=-1)


def test_lrs_gro_in_the_zoom_arm_scores_the_crop_and_global_rows_apart(
    model: EarthVLM, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ZoomEarth's APO IoU from the executed crop (the 1024-grid box scaled to the
    image), the box-free zoom question, and the global row scored on its answer."""
    from PIL import Image

    (tmp_path / "image").mkdir()
    pixels = np.random.default_rng(0).integers(0, 255, (768, 1024, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "image" / "scene.png")
    rows = [
        {"question_id": "O1", "image_name": "scene.png", "question": "Is the ship a tanker?",
         "ground_truth": "yes", "type": "object", "bbox": [400, 300, 460, 360], "split": "test"},
        {"question_id": "G1", "image_name": "scene.png", "question": "Urban or rural?",
         "ground_truth": "urban", "type": "global", "bbox": [], "split": "test"},
    ]  # fmt: skip
    (tmp_path / "LRS-GRO.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    tok = model.backbone.tokenizer
    box = [round(400 / 1.024), round(300 / 0.768), round(460 / 1.024), round(360 / 0.768)]

    def generate(m: Any, inputs: Any, gsds: list, max_new_tokens: int) -> list[int]:
        prompt = tok.decode(inputs["input_ids"][0])
        assert "First give the region" not in prompt  # the zoom question has no box line
        if "Urban" in prompt:
            return tok.encode("<answer>urban</answer>")
        first = prompt.count("<|im_start|>assistant") == 1
        return tok.encode(format_tool_call(box) if first else "<answer>yes</answer>")

    monkeypatch.setattr(zoom_module, "greedy_ids", generate)
    bench = build_benchmark("lrs_gro", split="test", wordnet=False)
    run_benchmark(model, bench, tmp_path, tmp_path / "out", ZOOM, Processes())
    scores = json.loads((tmp_path / "out" / "lrs_gro-zoom1" / "scores.json").read_text())
    metrics, roi = scores["result"]["metrics"], scores["zoom"]["roi"]
    assert metrics["accuracy"] == 1.0 and metrics["apo_iou_text"] == 0.0  # no box as text
    assert metrics["apo_iou"] == roi["object"]["apo_iou"] == metrics["apo_iou_object"] > 0.9
    assert roi["global"] == {"n": 1, "zoom_rate": 0.0, "accuracy": 1.0}
