"""GRPO tasks from records: the synthetic UHR scene's questions and template questions
become tasks with the ROI in source pixels, the rest is counted in the ledger with a
reason, and the written file is what GRPO's ``load_tasks`` reads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from earthvlm.data.jsonl import read_records
from earthvlm.data.record import ImagePart, ImageRef, Message, Record, TextPart
from earthvlm.synth.dataset import SynthConfig, generate_dataset
from earthvlm.train.grpo import load_tasks
from earthvlm.uhr.chain import label_records, template_questions
from earthvlm.uhr.tasks import TaskConfig, build_tasks, task_row, write_tasks

UHR_PX = 2048


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Record]]:
    root = tmp_path_factory.mktemp("synth-uhr-tasks")
    generate_dataset(root, SynthConfig(n_scenes=0, n_chips=0, n_uhr=1, uhr_size_px=UHR_PX))
    return root, read_records(root / "records.jsonl").records


def _question(roi=None, *, path: str = "images/uhr-0000.tif", **meta) -> Record:
    if roi is not None:
        meta["roi_xyxy_px"] = roi
    return Record(
        id=f"q{len(meta)}-{roi}", task="vqa", source="test",
        images=[ImageRef(path=path, width=UHR_PX, height=UHR_PX)],
        messages=[
            Message(role="user", content=[ImagePart(index=0), TextPart(text="Any ships?")]),
            Message(role="assistant", content="no"),
        ],
        meta=meta,
    )  # fmt: skip


def test_scene_questions_become_tasks_and_the_rest_is_counted(synth) -> None:
    root, records = synth
    result = build_tasks(records, root)
    ledger = result.ledger
    assert ledger.read == len(records) and ledger.balanced
    assert ledger.skipped["task_skipped"] == 1  # the detection record
    by_id = {r["id"]: r for r in result.rows}
    obj = next(r for r in records if r.meta.get("roi_type") == "object")
    glob = next(r for r in records if r.meta.get("roi_type") == "global")
    row = by_id[obj.id]
    assert row["roi_xyxy_px"] == pytest.approx(obj.meta["roi_xyxy_px"], abs=1e-3)
    assert row["question"] == obj.messages[0].text() and row["answer"] == obj.messages[1].text()
    assert row["roi_from"] == "roi" and row["record"]["id"] == obj.id
    assert row["source_gsd"] == obj.images[0].gsd.to_dict()  # the record's GSD travels
    assert by_id[glob.id]["roi_xyxy_px"] is None  # a whole-scene question: no ROI
    assert ledger.ok == len(result.rows)
    # records without an ROI are skipped with a reason and a message naming the fields
    no_roi = [f for f in result.failures if f[1] == "no_roi"]
    assert len(no_roi) == ledger.skipped["no_roi"] and "roi_xyxy_px" in no_roi[0][2]
    strict = build_tasks(records, root, TaskConfig(global_questions=False))
    assert strict.ledger.skipped["no_roi"] == ledger.skipped["no_roi"] + 1


def test_bad_rows_are_skipped_or_failed_with_reasons(synth) -> None:
    root, _ = synth
    two = _question([10, 10, 50, 50]).model_copy(
        update={"images": [ImageRef(path="images/uhr-0000.tif")] * 2}
    )
    records = [
        _question([-10, 5, 50, 60]),  # reaches past the left edge: clipped
        _question([3000, 3000, 3100, 3100]),  # outside the 2048 px image
        _question([10, 10, 10, 50]),  # no area
        _question([10, 10, 50, 50], path="images/missing.tif"),
        _question(["a", 1, 2, 3]),
        two,
    ]
    result = build_tasks(records, root)
    assert result.rows[0]["roi_xyxy_px"] == [0.0, 5.0, 50.0, 60.0]
    assert result.rows[0]["source_gsd"] is None  # unknown: the raster's georeferencing
    assert dict(result.ledger.skipped) == {"bad_roi": 3, "not_single_image": 1}
    assert dict(result.ledger.failed) == {"missing_image": 1}
    out_of_image = next(f for f in result.failures if f[0] == records[1].id)
    assert "not a box inside the 2048 x 2048 px image" in out_of_image[2]


def test_written_tasks_are_what_grpo_reads(synth, tmp_path: Path) -> None:
    root, records = synth
    rows = build_tasks(records, root).rows
    path = tmp_path / "sub" / "tasks.jsonl"
    path.parent.mkdir()
    assert write_tasks(rows, path) == len(rows)
    first = json.loads(path.read_text().splitlines()[0])
    assert not Path(first["source"]).is_absolute()  # portable: relative to the file
    tasks = load_tasks(path)
    assert [t["id"] for t in tasks] == [r["id"] for r in rows]
    assert Path(tasks[0]["source"]) == (root / "images" / "uhr-0000.tif").resolve()
    assert tasks[0]["roi_xyxy_px"] == rows[0]["roi_xyxy_px"]


def test_template_questions_become_tasks(synth) -> None:
    root, records = synth
    (labels,) = label_records(records)
    questions = template_questions(labels, np.random.default_rng(0))
    result = build_tasks(questions, root)
    assert result.ledger.ok == len(questions) > 0
    for q, row in zip(questions, result.rows, strict=True):
        assert row["roi_xyxy_px"] == pytest.approx(q.meta["roi_xyxy_px"], abs=1e-3)
        assert row["answer"] == q.messages[-1].text()
    assert task_row(questions[0], root, TaskConfig(keep_record=False)).get("record") is None
