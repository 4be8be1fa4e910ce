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


#: OmniEarth-Bench rows of the fixture that are valid, in file order.
OMNIEARTH_ROWS: list[dict[str, Any]] = [
    {"index": 0, "image": ["images/o0.png"], "question": "Which cloud type dominates?",
     "multi-choice options": ["(A) cumulus", "(B) stratus", "(C) cirrus",
                              "(D) unable to decide"],
     "answer": "B", "question_type": "Single Choice", "L1-task": "atmosphere",
     "L2-task": "cloud", "L3-task": "cloud type", "L4-task": "cloud type"},
    {"index": 1, "image": ["images/o1.png"], "question": "Which land covers are present?",
     "multi-choice options": ["(A) forest", "(B) water", "(C) glacier", "(D) desert",
                              "(E) cropland", "(F) unable to decide"],
     "answer": "AB", "question_type": "Multiple Choice", "L1-task": "biosphere",
     "L2-task": "land cover", "L3-task": "land cover", "L4-task": "land cover"},
    {"index": 2, "image": "images/o2.png", "question": "Is the ice shelf retreating?",
     "multi-choice options": ["(A) yes", "(B) no", "(C) unable to decide"],
     "answer": "A", "question_type": "Chain-of-Thought", "L1-task": "cryosphere",
     "L2-task": "ice", "L3-task": "change", "L4-task": "change"},
]  # fmt: skip


def write_omniearth(root: Path) -> Path:
    """``omniearth.jsonl`` with the three valid rows of :data:`OMNIEARTH_ROWS`, a blank
    line, a row whose last option is not "unable to decide" and a row whose answer names
    no option of the row; the images under ``images/``."""
    for k, row in enumerate(OMNIEARTH_ROWS):
        for rel in row["image"] if isinstance(row["image"], list) else [row["image"]]:
            _image(root / rel, 16, 16, seed=100 + k)
    no_unable = {**OMNIEARTH_ROWS[0], "index": 97,
                 "multi-choice options": ["(A) cumulus", "(B) stratus"]}  # fmt: skip
    bad_answer = {**OMNIEARTH_ROWS[0], "index": 98, "answer": "G"}
    lines = [json.dumps(OMNIEARTH_ROWS[0]), "", json.dumps(no_unable),
             json.dumps(OMNIEARTH_ROWS[1]), json.dumps(bad_answer),
             json.dumps(OMNIEARTH_ROWS[2])]  # fmt: skip
    (root / "omniearth.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def write_aid(root: Path) -> Path:
    """AID as released (``AID/<Class>/<class>_<n>.jpg``): two airports, one bare land,
    a ``Thumbs.db`` (not an image), a folder outside the class list, and ``test.txt``
    naming three of the images."""
    for rel, seed in (
        ("Airport/airport_1.jpg", 1),
        ("Airport/airport_2.jpg", 2),
        ("BareLand/bareland_1.jpg", 3),
        ("Volcano/volcano_1.jpg", 4),
    ):
        _image(root / "AID" / rel, 12, 12, seed=seed, fmt="JPEG")
    (root / "AID" / "Airport" / "Thumbs.db").write_bytes(b"\0")
    (root / "test.txt").write_text(
        "Airport/airport_1.jpg\nBareLand/bareland_1.jpg\nVolcano/volcano_1.jpg\n",
        encoding="utf-8",
    )
    return root


def write_ucmerced(root: Path) -> Path:
    """UC Merced as released (``UCMerced_LandUse/Images/<class>/<class><nn>.tif``)."""
    for rel, seed in (("denseresidential/denseresidential00.tif", 5),
                      ("tenniscourt/tenniscourt00.tif", 6)):  # fmt: skip
        _image(root / "UCMerced_LandUse" / "Images" / rel, 12, 12, seed=seed, fmt="TIFF")
    return root


#: DIOR-RSVG fixture lines that are valid: (image_id, expression, bbox).
DIOR_RSVG_ROWS = [
    ("00001.jpg", "the storage tank on the left", [2, 4, 12, 14]),
    ("00002.jpg", "a vehicle at the top", [10, 0, 20, 8]),
]


def write_dior_rsvg(root: Path) -> Path:
    """refGeo's DIOR-RSVG test file: :data:`DIOR_RSVG_ROWS`, a line without a question and
    a line whose box lies outside its 32 x 24 image."""
    lines = [json.dumps({"image_id": i, "question": q, "bbox": b}) for i, q, b in DIOR_RSVG_ROWS]
    lines.insert(1, json.dumps({"image_id": "00001.jpg", "bbox": [0, 0, 4, 4]}))
    lines.append(json.dumps({"image_id": "00002.jpg", "question": "x", "bbox": [40, 30, 50, 40]}))
    for k, (image_id, _, _) in enumerate(DIOR_RSVG_ROWS):
        _image(root / "images" / "dior_rsvg" / image_id, 32, 24, seed=200 + k, fmt="JPEG")
    (root / "metainfo").mkdir(parents=True, exist_ok=True)
    (root / "metainfo" / "dior_rsvg_test.jsonl").write_text("\n".join(lines) + "\n", "utf-8")
    return root


def write_dota(root: Path) -> Path:
    """A DOTA v1.0 split: ``P0001`` (two planes, one difficult, and a small vehicle),
    ``P0002`` (no objects) and an image without a label file; 64 x 64 images."""
    labels = {
        "P0001": "imagesource:GoogleEarth\ngsd:null\n"
                 "4 4 20 4 20 20 4 20 plane 0\n30 30 40 30 40 40 30 40 plane 1\n"
                 "44 4 54 4 54 10 44 10 small-vehicle 0\n",
        "P0002": "imagesource:GoogleEarth\ngsd:0.5\n",
    }  # fmt: skip
    for k, name in enumerate(("P0001", "P0002", "P0003")):
        _image(root / "images" / f"{name}.png", 64, 64, seed=300 + k)
    (root / "labelTxt").mkdir(parents=True, exist_ok=True)
    for name, text in labels.items():
        (root / "labelTxt" / f"{name}.txt").write_text(text, encoding="utf-8")
    return root


#: LRS-VQA fixture rows that are valid, in file order (image ``LRS_VQA/image/<n>.tif``).
LRS_VQA_ROWS: list[dict[str, Any]] = [
    {"question_id": "FAIR_1", "image": "LRS_VQA/image/1.tif", "category": "color",
     "text": "What color is the plane?\n Answer the question using a single word or phrase.",
     "ground_truth": "white", "hbox": [2, 2, 10, 10], "rbox": [2, 2, 10, 2, 10, 10, 2, 10],
     "abs_size": 64, "image_size": [40, 30], "size_bin": "small"},
    {"question_id": "FAIR_2", "image": "LRS_VQA/image/1.tif", "category": "count",
     "text": "How many planes are there?\n Answer the question using a single word or phrase.",
     "ground_truth": 3, "image_size": [40, 30]},
    {"question_id": "FAIR_3", "image": "LRS_VQA/image/1.tif", "category": "category",
     "text": "What is parked at the gate?\n Answer the question using a single word or phrase.",
     "ground_truth": "car", "hbox": [20, 5, 30, 15], "image_size": [40, 30]},
    {"question_id": "STAR_1", "image": "LRS_VQA/image/2.tif", "category": "category",
     "text": "What is in the harbour?\n Answer the question using a single word or phrase.",
     "ground_truth": "ship", "hbox": [1, 1, 8, 8], "image_size": [24, 20]},
    {"question_id": "GLH_1", "image": "LRS_VQA/image/2.tif", "category": "background",
     "text": "What is the background?\n Answer the question using a single word or phrase.",
     "ground_truth": "farmland", "image_size": [24, 20]},
]  # fmt: skip


def write_lrs_vqa(root: Path) -> Path:
    """``LRS_VQA/LRS_VQA_merged.jsonl`` with :data:`LRS_VQA_ROWS`, a row whose
    ``image_size`` disagrees with its file and a row without ``ground_truth``; two tiny
    TIFFs (40 x 30 and 24 x 20) under ``LRS_VQA/image/``."""
    _image(root / "LRS_VQA" / "image" / "1.tif", 40, 30, seed=400, fmt="TIFF")
    _image(root / "LRS_VQA" / "image" / "2.tif", 24, 20, seed=401, fmt="TIFF")
    wrong_size = {**LRS_VQA_ROWS[0], "question_id": "FAIR_9", "image_size": [41, 30]}
    no_answer = {k: v for k, v in LRS_VQA_ROWS[3].items() if k != "ground_truth"}
    no_answer["question_id"] = "STAR_9"
    rows = [*LRS_VQA_ROWS[:2], wrong_size, *LRS_VQA_ROWS[2:4], no_answer, LRS_VQA_ROWS[4]]
    text = "\n".join(json.dumps(r) for r in rows) + "\n"
    (root / "LRS_VQA" / "LRS_VQA_merged.jsonl").write_text(text, encoding="utf-8")
    return root


#: LRS-GRO fixture rows that are valid, in file order (the last is a train row).
LRS_GRO_ROWS: list[dict[str, Any]] = [
    {"question_id": "G1", "image_name": "a.png", "category": "scene",
     "question": "Is this area rural or urban?", "higher_level": "scene",
     "ground_truth": "urban", "bbox": [], "type": "global", "split": "test"},
    {"question_id": "R1", "image_name": "a.png", "category": "land use",
     "question": "What is the land use south of the river?", "higher_level": "land",
     "ground_truth": "farmland", "bbox": [100, 200, 400, 500], "type": "region",
     "split": "test"},
    {"question_id": "O1", "image_name": "b.png", "category": "category",
     "question": "What is parked by the gate?", "higher_level": "object",
     "ground_truth": "car", "bbox": [0, 0, 100, 100], "type": "object", "split": "test"},
    {"question_id": "O2", "image_name": "b.png", "category": "color",
     "question": "What colour is the roof?", "higher_level": "object",
     "ground_truth": "white", "bbox": [500, 500, 600, 700], "type": "object",
     "split": "test"},
    {"question_id": "T1", "image_name": "b.png", "category": "color",
     "question": "What colour is the tank?", "higher_level": "object",
     "ground_truth": "grey", "bbox": [10, 10, 20, 20], "type": "object", "split": "RL"},
]  # fmt: skip


def write_lrs_gro(root: Path) -> Path:
    """``LRS-GRO.jsonl`` (the release's name) with :data:`LRS_GRO_ROWS`, a blank line, a row
    of an unknown type and a row whose box has its corners swapped; two tiny images under
    ``image/`` (where the release's inference reads them)."""
    _image(root / "image" / "a.png", 32, 24, seed=500)
    _image(root / "image" / "b.png", 24, 32, seed=501)
    bad_type = {**LRS_GRO_ROWS[0], "question_id": "X1", "type": "scene"}
    bad_box = {**LRS_GRO_ROWS[1], "question_id": "X2", "bbox": [400, 500, 100, 200]}
    rows = [json.dumps(r) for r in LRS_GRO_ROWS]
    lines = [*rows[:2], "", json.dumps(bad_type), *rows[2:4], json.dumps(bad_box), rows[4]]
    (root / "LRS-GRO.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def write_meter_ml_vhm(root: Path) -> Path:
    """METER-ML's VHM evaluation split: ``cls_METER_ML.json`` (LLaVA rows whose
    ``image_path`` names the folder) and ``cls_METER_ML/*.png``. Answers: ``CAFOs`` (a
    folder name in other case), ``Coal Mines``, ``wastewater treatment plants`` and
    ``volcano`` (no METER-ML class); one row names an image that is missing."""
    for k in range(4):
        _image(root / "cls_METER_ML" / f"{k}.png", 16, 16, seed=700 + k)
    ask = "<image>\nClassify the image into one of the methane source categories."

    def row(k: int, answer: str) -> dict[str, Any]:
        return {"id": f"m{k}", "image": f"{k}.png", "image_path": "cls_METER_ML",
                "conversations": [{"from": "human", "value": ask},
                                  {"from": "gpt", "value": answer}]}  # fmt: skip

    rows = [row(0, "CAFOs"), row(1, "Coal Mines"), row(2, "wastewater treatment plants"),
            row(3, "volcano"), row(9, "Landfills")]  # fmt: skip
    _json(root / "cls_METER_ML.json", rows)
    return root


def write_all(out: Path) -> dict[str, Path]:
    """Every fixture under ``out``, one folder per benchmark (named as registered)."""
    return {
        "xlrs_lite": write_xlrs_lite(out / "xlrs_lite"),
        "rsvqa_lr": write_rsvqa_lr(out / "rsvqa_lr"),
        "rsvqa_hr": write_rsvqa_hr(out / "rsvqa_hr"),
        "omniearth": write_omniearth(out / "omniearth"),
        "aid": write_aid(out / "aid"),
        "ucmerced": write_ucmerced(out / "ucmerced"),
        "dior_rsvg": write_dior_rsvg(out / "dior_rsvg"),
        "dota": write_dota(out / "dota"),
        "lrs_vqa": write_lrs_vqa(out / "lrs_vqa"),
        "lrs_gro": write_lrs_gro(out / "lrs_gro"),
        "meter_ml": write_meter_ml_vhm(out / "meter_ml"),
    }


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/eval/benchmarks/fixtures.py OUT_DIR")
    for name, path in write_all(Path(sys.argv[1])).items():
        print(f"{name}: {path}")
