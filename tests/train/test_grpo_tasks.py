"""GRPO tasks made from records (with their record, of row-dependent shape) become a
training dataset, and the answer reward's scorer receives each row's record back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from earthvlm.data.jsonl import read_records
from earthvlm.data.record import Record
from earthvlm.data.resolution import Resolution
from earthvlm.models import build_tiny_backbone
from earthvlm.synth.dataset import SynthConfig, generate_dataset
from earthvlm.train.grpo import build_dataset, grpo_config_from_dict, load_tasks, reward_functions
from earthvlm.train.rewards import RewardWeights
from earthvlm.uhr.chain import label_records, template_questions
from earthvlm.uhr.tasks import build_tasks, write_tasks


def test_tasks_from_records_train_and_score_on_their_records(tmp_path: Path) -> None:
    generate_dataset(tmp_path, SynthConfig(n_scenes=0, n_chips=0, n_uhr=1, uhr_size_px=2048))
    records = read_records(tmp_path / "records.jsonl").records
    (labels,) = label_records(records)
    questions = template_questions(labels, np.random.default_rng(0))
    rows = build_tasks([*records, *questions], tmp_path).rows
    write_tasks(rows, tmp_path / "tasks.jsonl")
    tasks = load_tasks(tmp_path / "tasks.jsonl")
    mcq = [t for t in tasks if t["task"] == "mcq"]
    assert mcq and len(tasks) == len(rows)

    res = Resolution.from_processor(build_tiny_backbone("qwen3_vl").processor.image_processor)
    dataset = build_dataset(tasks, res, grpo_config_from_dict({}))  # meta shapes differ by row
    assert len(dataset) == len(tasks) and dataset[0]["roi_xyxy_px"] == tasks[0]["roi_xyxy_px"]

    seen: list[Record] = []

    def score(row: dict, prediction: str) -> float:  # as a benchmark scores a record
        record = Record.model_validate(row["record"])
        seen.append(record)
        return float(prediction == record.messages[-1].text())

    funcs, _ = reward_functions(RewardWeights(), score)
    answer = funcs[2]
    # as TRL passes them: one list per dataset column
    columns = {k: list(dataset[k]) for k in dataset.column_names if k not in ("prompt", "image")}
    completions = [[{"role": "assistant", "content": str(t["answer"])}] for t in tasks]
    assert answer(prompts=dataset["prompt"], completions=completions, **columns) == [1.0] * len(
        tasks
    )
    assert [r.id for r in seen] == [t["id"] for t in tasks]
    assert seen[tasks.index(mcq[0])].meta["options"] == mcq[0]["record"]["meta"]["options"]
    wrong = [[{"role": "assistant", "content": "no idea"}]] * len(tasks)
    assert answer(prompts=dataset["prompt"], completions=wrong, **columns) == pytest.approx(
        [0.0] * len(tasks)
    )
