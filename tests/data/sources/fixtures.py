"""Generators of tiny datasets in the real public formats, for the source readers' tests.

Each ``write_*`` function writes one dataset under a folder (the tests' ``tmp_path``):
tiny images, the annotation files laid out as the public release lays them out, a
deliberate empty case and deliberately malformed rows. The tests assert the exact
records and ledger counts these files must give, so a change here is a change of the
tests' expectations.

Run as a script to write every fixture under a folder, e.g. to try the CLI by hand::

    python tests/data/sources/fixtures.py /tmp/earthvlm-sources
    earthvlm data convert dota /tmp/earthvlm-sources/dota --out /tmp/out
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def _pixels(w: int, h: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def png(path: Path, w: int, h: int, seed: int = 0) -> Path:
    """A tiny RGB PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_pixels(w, h, seed)).save(path, format="PNG")
    return path


def grey_png(path: Path, w: int, h: int, seed: int = 0) -> Path:
    """A tiny single-band (``L``) PNG, as SAR backscatter quicklooks are stored."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_pixels(w, h, seed)[..., 0]).save(path, format="PNG")
    return path


def jpeg(path: Path, w: int, h: int, seed: int = 0) -> Path:
    """A tiny RGB JPEG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_pixels(w, h, seed)).save(path, format="JPEG", quality=80)
    return path


def tiff(path: Path, w: int, h: int, seed: int = 0) -> Path:
    """A tiny RGB TIFF without georeferencing (as the RSVQA releases ship them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_pixels(w, h, seed)).save(path, format="TIFF")
    return path


def geotiff(path: Path, w: int, h: int, gsd_m: float, seed: int = 0) -> Path:
    """A tiny RGB GeoTIFF in UTM 33N with square ``gsd_m`` pixels."""
    import rasterio
    from affine import Affine

    path.parent.mkdir(parents=True, exist_ok=True)
    data = _pixels(w, h, seed).transpose(2, 0, 1)
    profile = {
        "driver": "GTiff", "width": w, "height": h, "count": 3, "dtype": "uint8",
        "crs": "EPSG:32633", "transform": Affine(gsd_m, 0, 500_000.0, 0, -gsd_m, 4_500_000.0),
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
    return path


def _text(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _json(path: Path, obj: Any) -> Path:
    return _text(path, json.dumps(obj, indent=1))


def _jsonl(path: Path, rows: list[Any]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    return _text(path, "\n".join(lines) + "\n")


# -- DOTA ----------------------------------------------------------------------------------


def write_dota(root: Path) -> Path:
    """DOTA v1.0 train split: ``images/*.png`` and ``labelTxt/*.txt``.

    * P0001: GoogleEarth, ``gsd:0.146343590398``; a small vehicle, a difficult plane,
      and a small vehicle reaching 2 px past the right border (clipped).
    * P0002: ``imagesource:GF2`` with ``gsd:null`` (GSD from the sensor table); one ship.
    * P0003: headers only (the empty case: "There is none."), ``gsd:null``, GoogleEarth.
    * P0004: an object line without the difficult flag (read as 0), then a line with
      three coordinates (bad_object_line, line 4).
    * P0005: a plane, then a degenerate quad (all vertices equal: dropped, image kept).
    * P0006: ``gsd:abc`` (bad_gsd_header).
    * P0007: a label file without its image (missing_image).
    * P0008: an image without a label file (skipped: no_label_file).
    * P0009: ``airport``, a v2.0 class (unknown_class in v1.0).
    * ``labelTxt/readme.md``: not a label file (skipped).
    """
    png(root / "images/P0001.png", 100, 80, 1)
    png(root / "images/P0002.png", 64, 64, 2)
    png(root / "images/P0003.png", 50, 40, 3)
    png(root / "images/P0004.png", 32, 32, 4)
    png(root / "images/P0005.png", 32, 32, 5)
    png(root / "images/P0006.png", 32, 32, 6)
    png(root / "images/P0008.png", 32, 32, 8)
    png(root / "images/P0009.png", 32, 32, 9)
    labels = root / "labelTxt"
    _text(
        labels / "P0001.txt",
        "imagesource:GoogleEarth\ngsd:0.146343590398\n"
        "10 10 30 10 30 20 10 20 small-vehicle 0\n"
        "60 50 90 45 95 70 65 75 plane 1\n"
        "95 60 102 60 102 70 95 70 small-vehicle 0\n",
    )
    _text(
        labels / "P0002.txt",
        "imagesource:GF2\ngsd:null\n5.0 5.0 20.0 5.0 20.0 15.0 5.0 15.0 ship 0\n",
    )
    _text(labels / "P0003.txt", "imagesource:GoogleEarth\ngsd:null\n")
    _text(
        labels / "P0004.txt",
        "imagesource:GoogleEarth\ngsd:null\n1 1 10 1 10 10 1 10 plane\n1 2 3 plane 0\n",
    )
    _text(labels / "P0005.txt", "1 1 10 1 10 10 1 10 plane 0\n5 5 5 5 5 5 5 5 ship 0\n")
    _text(labels / "P0006.txt", "imagesource:GoogleEarth\ngsd:abc\n1 1 10 1 10 10 1 10 plane 0\n")
    _text(labels / "P0007.txt", "1 1 10 1 10 10 1 10 plane 0\n")
    _text(labels / "P0009.txt", "2 2 20 2 20 20 2 20 airport 0\n")
    _text(labels / "readme.md", "not a label\n")
    return root


# -- COCO ----------------------------------------------------------------------------------


def write_coco(root: Path) -> Path:
    """A COCO detection export: ``annotations.json`` and ``images/*.jpg``.

    * image 1 (64 x 48): two airplanes (one reaching past the corner: clipped), a storage
      tank, and a crowd region (left out of the target).
    * image 2: no annotation (the empty case: "There is none.").
    * image 3: a box of zero width (box_degenerate).
    * image 4: the entry says 100 x 100, the file is 32 x 32 (image_size_mismatch).
    * image 5: its file is missing (missing_image).
    * image 6: an annotation with category 9 (unknown_category).
    * two entries with id 7 (duplicate_image_id, both), and the annotation naming it.
    * a string in ``images`` (not_an_object); an annotation of image 99 (orphan).
    """
    jpeg(root / "images/0001.jpg", 64, 48, 1)
    for k in (2, 3, 4, 6, 7):
        jpeg(root / f"images/000{k}.jpg", 32, 32, k)
    jpeg(root / "images/0007b.jpg", 32, 32, 77)

    def im(i: int, name: str, w: int = 32, h: int = 32) -> dict[str, Any]:
        return {"id": i, "file_name": name, "width": w, "height": h}

    def ann(i: int, image_id: int, cat: int, bbox: list[Any], crowd: int = 0) -> dict[str, Any]:
        return {"id": i, "image_id": image_id, "category_id": cat, "bbox": bbox,
                "area": 0.0, "iscrowd": crowd}  # fmt: skip

    _json(
        root / "annotations.json",
        {
            "info": {"description": "fixture"},
            "images": [
                im(1, "0001.jpg", 64, 48), im(2, "0002.jpg"), im(3, "0003.jpg"),
                im(4, "0004.jpg", 100, 100), im(5, "0005.jpg"), im(6, "0006.jpg"),
                im(7, "0007.jpg"), im(7, "0007b.jpg"), "not an image entry",
            ],
            "annotations": [
                ann(1, 1, 1, [10, 5, 20, 10]),
                ann(2, 1, 2, [40, 20, 10, 10]),
                ann(3, 1, 2, [0, 0, 64, 48], crowd=1),
                ann(4, 3, 1, [5, 5, 0, 10]),
                ann(5, 6, 9, [1, 1, 5, 5]),
                ann(6, 99, 1, [1, 1, 5, 5]),
                ann(7, 7, 1, [1, 1, 5, 5]),
                ann(8, 1, 1, [60, 40, 10, 10]),
            ],
            "categories": [
                {"id": 1, "name": "airplane", "supercategory": "vehicle"},
                {"id": 2, "name": "storage tank", "supercategory": "facility"},
            ],
        },
    )  # fmt: skip
    return root


# -- RSVQA ---------------------------------------------------------------------------------


def write_rsvqa_lr(root: Path) -> Path:
    """RSVQA-LR: ``LR_split_{train,val}_{questions,answers,images}.json``, ``Images_LR/``.

    train, question by question id:

    * 0 presence -> "yes", 1 count -> "0" (a falsy answer that must survive), 3 comp -> "no";
    * 2 inactive (another split's): skipped;
    * 4 names image 7, not in the images file (unknown_image);
    * 5 lacks answers_ids (bad_question);
    * 6 names image 2, active but without a file (missing_image);
    * 7 rural_urban whose only answer is inactive (missing_answer);
    * 9 names image 3, which is inactive (image_not_in_split);
    * and a string in the list (not_an_object).

    val: every question inactive (the empty case: no record, all skipped).
    """
    tiff(root / "Images_LR/0.tif", 16, 16, 0)
    tiff(root / "Images_LR/1.tif", 16, 16, 1)
    tiff(root / "Images_LR/3.tif", 16, 16, 3)

    def q(i: int, img: int, qtype: str, text: str, answers: list[int] | None, active: bool = True):
        row = {"id": i, "date_added": 1.0, "img_id": img, "people_id": 0, "type": qtype,
               "question": text, "active": active}  # fmt: skip
        if answers is not None:
            row["answers_ids"] = answers
        return row

    def a(i: int, answer: str, active: bool = True) -> dict[str, Any]:
        return {"id": i, "date_added": 1.0, "question_id": i, "people_id": 0,
                "answer": answer, "active": active}  # fmt: skip

    questions = [
        q(0, 0, "presence", "Is there a road?", [0]),
        q(1, 0, "count", "How many buildings are there?", [1]),
        q(2, 1, "presence", "Is there a water area?", [2], active=False),
        q(3, 1, "comp", "Are there more roads than water areas?", [3]),
        q(4, 7, "presence", "Is there a farmland?", [4]),
        q(5, 0, "presence", "Is there a building?", None),
        q(6, 2, "presence", "Is there a forest?", [6]),
        q(7, 0, "rural_urban", "Is it a rural or an urban area", [7]),
        "not a question",
        q(9, 3, "presence", "Is there a road?", [9]),
    ]
    answers = [a(0, "yes"), a(1, "0"), a(2, "no", False), a(3, "no"), a(4, "yes"),
               a(6, "no"), a(7, "rural", False), a(9, "yes")]  # fmt: skip
    images = [
        {"id": 0, "date_added": 1.0, "people_id": 0, "questions_ids": [0, 1, 5, 7], "active": True},
        {"id": 1, "date_added": 1.0, "people_id": 0, "questions_ids": [2, 3], "active": True},
        {"id": 2, "date_added": 1.0, "people_id": 0, "questions_ids": [6], "active": True},
        {"id": 3, "date_added": 1.0, "people_id": 0, "questions_ids": [9], "active": False},
    ]
    _json(root / "LR_split_train_questions.json", {"questions": questions})
    _json(root / "LR_split_train_answers.json", {"answers": answers})
    _json(root / "LR_split_train_images.json", {"images": images})
    _json(
        root / "LR_split_val_questions.json",
        {"questions": [q(0, 0, "presence", "Is there a road?", [0], active=False),
                       q(1, 0, "count", "How many buildings?", [1], active=False)]},
    )  # fmt: skip
    _json(root / "LR_split_val_answers.json", {"answers": [a(0, "yes", False), a(1, "0", False)]})
    _json(root / "LR_split_val_images.json", {"images": [dict(images[0], active=False)]})
    return root


def write_rsvqa_hr(root: Path) -> Path:
    """RSVQA-HR test set 2 (``USGS_split_test_phili_*``, ``Data/``): one area question."""
    tiff(root / "Data/10.tif", 24, 24, 10)
    _json(
        root / "USGS_split_test_phili_questions.json",
        {"questions": [{"id": 40, "img_id": 10, "type": "area", "active": True,
                        "question": "What is the area covered by buildings?",
                        "answers_ids": [40]}]},
    )  # fmt: skip
    _json(
        root / "USGS_split_test_phili_answers.json",
        {"answers": [{"id": 40, "question_id": 40, "answer": "between 10m2 and 100m2",
                      "active": True}]},
    )  # fmt: skip
    _json(
        root / "USGS_split_test_phili_images.json",
        {"images": [{"id": 10, "questions_ids": [40], "active": True}]},
    )
    return root


# -- PatternNet / class folders ------------------------------------------------------------


def write_patternnet(root: Path, outside: Path) -> Path:
    """PatternNet as unpacked: ``PatternNet/images/<class>/<class><nnn>.jpg``.

    * airplane: two images, and ``escape.jpg``, a symlink to ``outside`` (path_escape);
    * beach: an empty class folder (the empty case: no record, the class still listed);
    * tennis_court: one image, a zero-byte ``tennis_court002.jpg`` (unreadable_image)
      and a ``Thumbs.db`` (skipped: not_an_image);
    * volcano: not a PatternNet class (unknown_class; fine for class-folders);
    * ``images/readme.txt``: outside any class folder (skipped).
    """
    base = root / "PatternNet/images"
    jpeg(base / "airplane/airplane001.jpg", 16, 16, 1)
    jpeg(base / "airplane/airplane002.jpg", 16, 16, 2)
    jpeg(outside, 16, 16, 99)
    (base / "airplane/escape.jpg").symlink_to(outside)
    (base / "beach").mkdir(parents=True)
    jpeg(base / "tennis_court/tennis_court001.jpg", 16, 16, 3)
    _text(base / "tennis_court/tennis_court002.jpg", b"")
    _text(base / "tennis_court/Thumbs.db", b"\x00\x01")
    jpeg(base / "volcano/volcano001.jpg", 16, 16, 4)
    _text(base / "readme.txt", "PatternNet\n")
    return root


# -- refGeo --------------------------------------------------------------------------------


def write_refgeo(root: Path) -> Path:
    """refGeo: ``metainfo/dior_rsvg_test.jsonl`` + ``images/dior_rsvg/``, and
    ``metainfo/geochat_test.jsonl`` whose ``.jpg`` image is stored as ``.png``.

    dior_rsvg_test lines: 1 one box; 2 two boxes (a generalised row); 3 ``bbox: []``
    (the empty case); 4 blank; 5 broken JSON; 6 a zero-width box; 7 an image path
    climbing out of the root; 8 a missing image; 9 no image_id; 10 a non-numeric
    coordinate; 11 a box reaching past the border (clipped) with an extra ``obb`` field.
    """
    jpeg(root / "images/dior_rsvg/00001.jpg", 64, 64, 1)
    jpeg(root / "images/dior_rsvg/00002.jpg", 48, 48, 2)
    png(root / "images/geochat_test/g1.png", 40, 40, 3)
    _jsonl(
        root / "metainfo/dior_rsvg_test.jsonl",
        [
            {"image_id": "00001.jpg", "question": "the storage tank on the left",
             "bbox": [4, 10, 20, 30]},
            {"image_id": "00002.jpg", "question": "two vehicles  near the road",
             "bbox": [[1, 1, 10, 10], [20, 20, 30, 40]]},
            {"image_id": "00001.jpg", "question": "a ship", "bbox": []},
            "",
            "{not json",
            {"image_id": "00001.jpg", "question": "x", "bbox": [5, 5, 5, 9]},
            {"image_id": "../../../secret.jpg", "question": "x", "bbox": [1, 1, 2, 2]},
            {"image_id": "00003.jpg", "question": "x", "bbox": [1, 1, 2, 2]},
            {"question": "no image"},
            {"image_id": "00001.jpg", "question": "the plane", "bbox": [1, "a", 3, 4]},
            {"image_id": "00001.jpg", "question": "the bridge", "bbox": [60, 50, 70, 60],
             "obb": [65, 55, 10, 10, 0]},
        ],
    )  # fmt: skip
    _jsonl(
        root / "metainfo/geochat_test.jsonl",
        [{"image_id": "g1.jpg", "question": "the tennis court", "bbox": [2, 4, 12, 20]}],
    )
    return root


# -- GeoChat / VHM / LLaVA -----------------------------------------------------------------


def _turns(*pairs: str) -> list[dict[str, str]]:
    return [{"from": "human" if i % 2 == 0 else "gpt", "value": v} for i, v in enumerate(pairs)]


def write_geochat(root: Path) -> Path:
    """GeoChat-Instruct: ``GeoChat_Instruct.json`` and ``images/``.

    Rows: 0 ``[refer]`` with a 0-100 box and an angle; 1 ``[grounding]`` with two boxes
    (its id repeats row 0's); 2 ``[identify]``; 3 an untagged multi-turn chat without
    an ``<image>`` token; then malformed: 4 an unknown tag, 5 a box outside 0-100,
    6 a missing image, 7 no conversations, 8 two ``<image>`` tokens for one image,
    9 a turn from ``bot``; and 10 ``[refer]`` with the ``<image>`` token after the text.
    """
    png(root / "images/P0001_0000.png", 200, 100, 1)
    png(root / "images/P0002.png", 100, 100, 2)
    rows: list[Any] = [
        {"id": "P0001_0000", "image": "P0001_0000.png", "conversations": _turns(
            "<image>\n[refer] where is <p>silver plane</p> ?", "{<16><55><24><63>|<11>}")},
        {"id": "P0001_0000", "image": "P0001_0000.png", "conversations": _turns(
            "<image>\n[grounding] describe the image in detail",
            "There are <p>2 planes</p> {<10><10><20><20>|<0>}{<30><30><40><40>|<0>} "
            "parked on the apron.")},
        {"id": "P0001_0001", "image": "P0001_0000.png", "conversations": _turns(
            "[identify] what is this {<50><50><60><60>}\n<image>", "It is a storage tank.")},
        {"id": "P0002", "image": "P0002.png", "conversations": _turns(
            "How many buildings are there?", "There are 4 buildings.",
            "Is there a road?", "Yes.")},
        {"id": "bad_tag", "image": "P0002.png", "conversations": _turns(
            "<image>\n[detect] find the planes", "None.")},
        {"id": "bad_grid", "image": "P0002.png", "conversations": _turns(
            "<image>\n[refer] where is <p>the ship</p>", "{<10><10><120><20>}")},
        {"id": "no_file", "image": "P9999.png", "conversations": _turns(
            "<image>\nWhat is this?", "A port.")},
        {"id": "no_turns", "image": "P0002.png"},
        {"id": "two_tokens", "image": "P0002.png", "conversations": _turns(
            "<image>\n<image>\nCompare.", "Same.")},
        {"id": "bad_role", "image": "P0002.png", "conversations": [
            {"from": "human", "value": "<image>\nHi"}, {"from": "bot", "value": "Hello"}]},
        {"id": "P0001_0002", "image": "P0001_0000.png", "conversations": _turns(
            "[refer] give me the location of <p>the ship</p>\n<image>", "{<0><0><50><50>}")},
    ]  # fmt: skip
    _json(root / "GeoChat_Instruct.json", rows)
    return root


def write_vhm(root: Path) -> Path:
    """VHM evaluation layout: ``cls_ucm.json`` whose rows name their folder in
    ``image_path``; one good row, one whose folder climbs out of the root."""
    jpeg(root / "cls_ucm/a.jpg", 20, 20, 1)
    rows = [
        {"id": "v1", "image": "a.jpg", "image_path": "cls_ucm", "conversations": _turns(
            "<image>\nWhat is the scene? Answer with one word or short phrase.", "beach")},
        {"id": "v2", "image": "a.jpg", "image_path": "../elsewhere", "conversations": _turns(
            "<image>\nWhat is the scene?", "beach")},
    ]  # fmt: skip
    _json(root / "cls_ucm.json", rows)
    return root


def write_llava(root: Path) -> Path:
    """Generic LLaVA JSONL: a two-image row with interleaved tokens, a text-only row, a
    row whose answer is empty, and a broken line."""
    png(root / "images/t1.png", 12, 10, 1)
    png(root / "images/t2.png", 12, 10, 2)
    _jsonl(
        root / "chat.jsonl",
        [
            {"id": "m1", "image": ["t1.png", "t2.png"], "conversations": _turns(
                "Before: <image> After: <image> What changed?", "A new building.")},
            {"id": "t1", "conversations": _turns("What is a GSD?", "Metres per pixel.")},
            {"id": "e1", "conversations": _turns("Anything?", "  ")},
            "[1, 2",
        ],
    )  # fmt: skip
    return root


# -- LRS-VQA -------------------------------------------------------------------------------


def write_lrs_vqa(root: Path) -> Path:
    """LRS-VQA: ``LRS_VQA/LRS_VQA_merged.jsonl`` and ``LRS_VQA/image/*.tif``.

    ``1.tif`` is a 40 x 30 GeoTIFF at 0.5 m (GSD from georeferencing), ``2.tif`` a
    30 x 20 TIFF without georeferencing (GSD unknown unless an option gives one).
    Lines: 1 a colour question with hbox and rbox; 2 a count row without boxes whose
    ground truth is the integer 0; 3 image_size [31, 20] for a 30 x 20 file; 4 an
    inverted hbox; 5 a missing image; 6 blank; 7 a JSON list; 8 an rbox of 6 values.
    """
    geotiff(root / "LRS_VQA/image/1.tif", 40, 30, 0.5, 1)
    tiff(root / "LRS_VQA/image/2.tif", 30, 20, 2)
    suffix = "\n Answer the question using a single word or phrase."

    def row(qid: str, image: str, category: str, question: str, gt: Any, **extra: Any):
        return {"question_id": qid, "image": f"LRS_VQA/image/{image}", "category": category,
                "text": question + suffix, "ground_truth": gt, **extra}  # fmt: skip

    _jsonl(
        root / "LRS_VQA/LRS_VQA_merged.jsonl",
        [
            row("FAIR_1", "1.tif", "color", "What color is the car?", "white",
                hbox=[2, 3, 10, 12], rbox=[2, 3, 10, 3, 10, 12, 2, 12], abs_size=72,
                image_size=[40, 30], size_bin="small"),
            row("STAR_7", "2.tif", "count", "How many ships are there?", 0,
                image_size=[30, 20]),
            row("GLH_3", "2.tif", "background", "Is it urban?", "yes", image_size=[31, 20]),
            row("FAIR_2", "1.tif", "shape", "What shape?", "round", hbox=[10, 12, 2, 3]),
            row("FAIR_3", "9.tif", "color", "What color?", "red"),
            "",
            "[1, 2]",
            row("FAIR_4", "1.tif", "status", "Is it moving?", "no",
                hbox=[2, 3, 10, 12], rbox=[2, 3, 10, 3, 10, 12]),
        ],
    )  # fmt: skip
    return root


# -- EarthMind-Bench -----------------------------------------------------------------------


def coco_rle_string(counts: list[int]) -> str:
    """COCO's compressed RLE string of run lengths (``maskApi.c``'s ``rleToString``)."""
    out = []
    for i, run in enumerate(counts):
        x = run - counts[i - 2] if i > 2 else run
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            out.append(chr((c | 0x20 if more else c) + 48))
    return "".join(out)


def plain_pickle(path: Path, obj: Any) -> Path:
    """A pickle of plain data (the REFER ``refs(unc).p`` form)."""
    import pickle

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=2))
    return path


#: The segmentation fixture's RLE mask of ann 51: a 6 x 8 image, column 6 rows 2-4.
EARTHMIND_RLE_COUNTS = [6 * 6 + 2, 3, 1 + 6]


def write_earthmind(root: Path) -> Path:
    """EarthMind-Bench as released: ``formal_data_test/*.json``, ``{rgb,sar}/img/*.png``
    (SAR as single-band PNGs), and the REFER segmentation folder ``Refer_Segm/sarnew/``.

    ``object_existence_all_unmatched.json``: 0 lettered candidates, answer ``A``; 1 plain
    candidates, answer ``No``; 2 an answer that is no candidate; 3 no question.
    ``object_counting_all_unmatched.json``: 0 answer written as the candidate; 1 an image
    that is missing. ``Navigation_all_unmatched.json``: 0 an open question (route
    planning). ``caption_all_unmatched.json``: 0 a caption without a ``candidate`` key;
    1 a string, not an object. Segmentation: image 5 (8 x 6); ref 1 (two sentences, a
    polygon covering 4 x 3 pixels), ref 2 (a compressed RLE, 3 pixels), ref 3 (train
    split), ref 4 (an ann_id that does not exist).
    """
    for stem, seed in (("0001", 1), ("0002", 2)):
        png(root / "rgb" / "img" / f"{stem}.png", 16, 12, seed)
        grey_png(root / "sar" / "img" / f"{stem}.png", 16, 12, seed + 10)
    ann = root / "formal_data_test"
    _json(ann / "object_existence_all_unmatched.json", [
        {"file_name": "0001.json", "question": "Is there a bridge in the image?",
         "candidate": ["A. Yes", "B. No"], "answer": "A", "task_type": "object existence"},
        {"file_name": "0002.json", "question": "Is there a ship?", "candidate": ["Yes", "No"],
         "answer": "No", "task_type": "object existence"},
        {"file_name": "0002.json", "question": "Is there a dam?", "candidate": ["Yes", "No"],
         "answer": "Maybe", "task_type": "object existence"},
        {"file_name": "0001.json", "candidate": ["Yes", "No"], "answer": "Yes",
         "task_type": "object existence"},
    ])  # fmt: skip
    _json(ann / "object_counting_all_unmatched.json", [
        {"file_name": "0001.json", "question": "How many buildings are there?",
         "candidate": ["A. 2", "B. 3", "C. 4"], "answer": "B. 3", "task_type": "object counting"},
        {"file_name": "0009.json", "question": "How many ships?", "candidate": ["1", "2"],
         "answer": "2", "task_type": "object counting"},
    ])  # fmt: skip
    _json(ann / "Navigation_all_unmatched.json", [
        {"file_name": "0002.json", "question": "Plan a route from the port to the bridge.",
         "candidate": [], "answer": "Follow the river road north.", "task_type": "Navigation"},
    ])  # fmt: skip
    _json(ann / "caption_all_unmatched.json", [
        {"file_name": "0001.json", "question": "Describe the image.",
         "answer": "A bridge crosses a river between fields.", "task_type": "caption"},
        "not a row",
    ])  # fmt: skip
    seg = root / "Refer_Segm" / "sarnew"
    png(seg / "rgb" / "0005.png", 8, 6, 5)
    grey_png(seg / "sar" / "0005.png", 8, 6, 6)
    _json(seg / "instances.json", {
        "images": [{"id": 5, "file_name": "0005.png", "height": 6, "width": 8}],
        "annotations": [
            {"id": 50, "image_id": 5, "segmentation": [[1, 1, 5, 1, 5, 4, 1, 4]]},
            {"id": 51, "image_id": 5,
             "segmentation": {"size": [6, 8], "counts": coco_rle_string(EARTHMIND_RLE_COUNTS)}},
        ],
    })  # fmt: skip
    plain_pickle(seg / "refs(unc).p", [
        {"ref_id": 1, "ann_id": 50, "image_id": 5, "split": "test",
         "sentences": [{"sent": "the pond"}, {"sent": "the water body"}]},
        {"ref_id": 2, "ann_id": 51, "image_id": 5, "split": "test",
         "sentences": [{"sent": "the road"}]},
        {"ref_id": 3, "ann_id": 50, "image_id": 5, "split": "train",
         "sentences": [{"sent": "the pond"}]},
        {"ref_id": 4, "ann_id": 99, "image_id": 5, "split": "test",
         "sentences": [{"sent": "the lake"}]},
    ])  # fmt: skip
    return root


# -- VRSBench -------------------------------------------------------------------------------


def write_vrsbench(root: Path) -> Path:
    """VRSBench evaluation files and ``Images_val/`` (two 20 x 10 PNGs).

    ``VRSBench_EVAL_vqa.json``: 0 object quantity; 1 ``rural or urban`` (grouped as scene
    type); 2 object color; 3 no type; 4 a missing image. ``VRSBench_EVAL_referring.json``:
    0 a unique referral {<10><20><50><60>}; 1 a non-unique one (``is_unique``: 0);
    2 an inverted box; 3 not an object. ``VRSBench_EVAL_Cap.json``: one caption.
    """
    png(root / "Images_val" / "P0001_0000.png", 20, 10, 1)
    png(root / "Images_val" / "00011.png", 20, 10, 2)

    def q(qid: int, image: str, question: str, gt: str, qtype: str | None) -> dict[str, Any]:
        row = {"image_id": image, "question": question, "ground_truth": gt,
               "dataset": "RSBench", "question_id": qid}  # fmt: skip
        return row if qtype is None else {**row, "type": qtype}

    _json(root / "VRSBench_EVAL_vqa.json", [
        q(0, "P0001_0000.png", "How many ships are there?", "3", "object quantity"),
        q(1, "P0001_0000.png", "Is this a rural or urban area?", "urban", "rural or urban"),
        q(2, "00011.png", "What color is the roof?", "gray", "object color"),
        q(3, "00011.png", "What is it?", "a dam", None),
        q(4, "P9999_0000.png", "Is there a harbor?", "yes", "object existence"),
    ])  # fmt: skip
    ref = {"dataset": "RSBench", "type": "ref", "obj_ids": [0], "size_group": "medium"}
    _json(root / "VRSBench_EVAL_referring.json", [
        {**ref, "image_id": "P0001_0000.png", "question": "The ship at the top left.",
         "ground_truth": "{<10><20><50><60>}", "question_id": 0, "unique": True,
         "obj_cls": "ship", "obj_corner": [0.1, 0.2, 0.5, 0.2, 0.5, 0.6, 0.1, 0.6]},
        {**ref, "image_id": "00011.png", "question": "A small vehicle.",
         "ground_truth": "{<0><0><20><20>}", "question_id": 1, "is_unique": 0,
         "obj_cls": "vehicle"},
        {**ref, "image_id": "00011.png", "question": "The dam.",
         "ground_truth": "{<50><50><40><60>}", "question_id": 2, "unique": True},
        ["not", "an", "object"],
    ])  # fmt: skip
    _json(root / "VRSBench_EVAL_Cap.json", [
        {"image_id": "00011.png", "ground_truth": "A dam holds back a reservoir.",
         "question": "Describe the image in detail", "dataset": "RSBench", "question_id": 0,
         "type": "caption"},
    ])  # fmt: skip
    return root


# -- all -------------------------------------------------------------------------------------


def write_all(out: Path) -> dict[str, Path]:
    """Every fixture under ``out/<source>``; returns source name -> root."""
    return {
        "dota": write_dota(out / "dota"),
        "coco": write_coco(out / "coco"),
        "rsvqa-lr": write_rsvqa_lr(out / "rsvqa-lr"),
        "rsvqa-hr": write_rsvqa_hr(out / "rsvqa-hr"),
        "patternnet": write_patternnet(out / "patternnet", out / "outside.jpg"),
        "refgeo": write_refgeo(out / "refgeo"),
        "geochat": write_geochat(out / "geochat"),
        "vhm": write_vhm(out / "vhm"),
        "llava": write_llava(out / "llava"),
        "lrs-vqa": write_lrs_vqa(out / "lrs-vqa"),
        "earthmind-bench": write_earthmind(out / "earthmind-bench"),
        "vrsbench": write_vrsbench(out / "vrsbench"),
    }


if __name__ == "__main__":  # pragma: no cover
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/data/sources/fixtures.py OUT_DIR")
    for name, path in write_all(Path(sys.argv[1])).items():
        print(f"{name:12s} {path}")
