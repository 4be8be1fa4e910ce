"""Generators of tiny benchmark folders in the real public formats, for the benchmark tests.

Each ``write_*`` function writes one benchmark's folder: tiny images and the annotation
files laid out as the release lays them out, with deliberately malformed rows. The tests
assert the exact records, ledger counts and scores these files must give, so a change
here is a change of the tests' expectations.

Run as a script to write every fixture under a folder, e.g. to try the CLI by hand::

    python tests/eval/benchmarks/fixtures.py /tmp/earthvlm-bench
    earthvlm eval --model RUN --bench xlrs_lite,rsvqa_lr --data /tmp/earthvlm-bench
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def _image(path: Path, w: int, h: int, seed: int, fmt: str = "PNG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=fmt)


def _json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1), encoding="utf-8")


#: XLRS-Bench-lite rows of the fixture that are valid, in file order.
XLRS_ROWS: list[dict[str, Any]] = [
    {"index": 0, "image": ["images/0001.png"],
     "question": "How many cars are parked in the marked region?",
     "multi-choice options": ["(A) 3", "(B) 5", "(C) 7", "(D) 9"], "answer": "B",
     "category": "Counting/Regional counting", "l2-category": "counting/regional"},
    {"index": 1, "image": ["images/0002a.png", "images/0002b.png"],
     "question": "How many new buildings appear in the second image?",
     "multi-choice options": ["(A) 0", "(B) 1", "(C) 2", "(D) 4"], "answer": "C",
     "category": "Counting/Counting with changing detection", "l2-category": "counting/change"},
    {"index": 2, "image": "images/0003.png",
     "question": "Which land uses does the image show?",
     "multi-choice options": ["(A) farmland", "(B) airport", "(C) residential", "(D) port"],
     "answer": "AC",
     "category": "Land use classification/Overall Land use classification",
     "l2-category": "land use/overall"},
    {"index": 3, "image": ["images/0004.png"],
     "question": "What colour is the largest ship?",
     "multi-choice options": ["(A) white", "(B) red", "(C) blue", "(D) black"], "answer": "A",
     "category": "Object properties/Object color", "l2-category": "object/color"},
]  # fmt: skip


def write_xlrs_lite(root: Path) -> Path:
    """``xlrs_lite.jsonl`` with the four valid rows of :data:`XLRS_ROWS` interleaved with a
    blank line, a line that is not JSON, a row that is not an object, a row without an
    answer and a row whose answer holds no letters; the images under ``images/``."""
    for k, row in enumerate(XLRS_ROWS):
        for j, rel in enumerate(row["image"] if isinstance(row["image"], list) else [row["image"]]):
            _image(root / rel, 24, 20, seed=10 * k + j)
    bad_answer = {**XLRS_ROWS[0], "index": 98, "answer": "none of them"}
    no_answer = {k: v for k, v in XLRS_ROWS[3].items() if k != "answer"} | {"index": 99}
    lines = [
        json.dumps(XLRS_ROWS[0]),
        "",
        json.dumps(XLRS_ROWS[1]),
        "{not json",
        json.dumps(XLRS_ROWS[2]),
        json.dumps(["a", "list"]),
        json.dumps(no_answer),
        json.dumps(bad_answer),
        json.dumps(XLRS_ROWS[3]),
    ]
    (root / "xlrs_lite.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def _rsvqa(
    root: Path,
    prefix: str,
    image_dir: str,
    questions: list[tuple[int, int, str, str, str]],
    inactive: tuple[int, int, str, str, str],
) -> Path:
    """One RSVQA test split: ``(qid, img_id, type, question, answer)`` rows (active), one
    inactive row (another split's), the answers and images files, the images."""
    qs, ans, imgs = [], [], {}
    for qid, img, qtype, text, answer in [*questions, inactive]:
        active = (qid, img, qtype, text, answer) != inactive
        qs.append({"id": qid, "img_id": img, "type": qtype, "question": text,
                   "answers_ids": [qid], "active": active})  # fmt: skip
        ans.append({"id": qid, "question_id": qid, "answer": answer, "active": active})
        imgs.setdefault(img, {"id": img, "questions_ids": [], "active": True})
        imgs[img]["questions_ids"].append(qid)
        _image(root / image_dir / f"{img}.tif", 16, 16, seed=img, fmt="TIFF")
    _json(root / f"{prefix}_split_test_questions.json", {"questions": qs})
    _json(root / f"{prefix}_split_test_answers.json", {"answers": ans})
    _json(root / f"{prefix}_split_test_images.json", {"images": list(imgs.values())})
    return root


#: RSVQA-LR fixture rows: (id, image, type as the files write it, question, answer).
RSVQA_LR_ROWS = [
    (1, 10, "presence", "Is there a road in the image?", "yes"),
    (2, 10, "comp", "Are there more buildings than water areas?", "no"),
    (3, 11, "rural_urban", "Is it a rural or an urban area", "rural"),
    (4, 11, "count", "How many buildings are there?", "12"),
    (5, 12, "presence", "Is there a water area?", "no"),
]
#: RSVQA-HR fixture rows.
RSVQA_HR_ROWS = [
    (21, 30, "presence", "Is there a residential building?", "yes"),
    (22, 30, "area", "What is the area of residential buildings?", "between 10m2 and 100m2"),
    (23, 31, "count", "How many roads are there?", "2"),
    (24, 31, "comp", "Is the number of roads equal to the number of parkings?", "no"),
]


def write_rsvqa_lr(root: Path) -> Path:
    """RSVQA-LR test split: :data:`RSVQA_LR_ROWS` plus one inactive (train) question."""
    return _rsvqa(root, "LR", "Images_LR", RSVQA_LR_ROWS,
                  (6, 12, "count", "How many roads are there?", "3"))  # fmt: skip


def write_rsvqa_hr(root: Path) -> Path:
    """RSVQA-HR test split: :data:`RSVQA_HR_ROWS` plus one inactive (val) question."""
    return _rsvqa(root, "USGS", "Data", RSVQA_HR_ROWS,
                  (25, 32, "presence", "Is there a parking?", "yes"))  # fmt: skip


def write_all(out: Path) -> dict[str, Path]:
    """Every fixture under ``out``, one folder per benchmark (named as registered)."""
    return {
        "xlrs_lite": write_xlrs_lite(out / "xlrs_lite"),
        "rsvqa_lr": write_rsvqa_lr(out / "rsvqa_lr"),
        "rsvqa_hr": write_rsvqa_hr(out / "rsvqa_hr"),
    }


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/eval/benchmarks/fixtures.py OUT_DIR")
    for name, path in write_all(Path(sys.argv[1])).items():
        print(f"{name}: {path}")
