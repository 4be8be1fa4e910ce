"""RSVQA LR and HR (Lobry et al. 2020): the released JSON layout -> VQA records.

Each split is three JSON files beside the image folder::

    root/
      LR_split_train_questions.json   {"questions": [{"id", "img_id", "type", "question",
                                                    "answers_ids": [..], "active"}, ...]}
      LR_split_train_answers.json     {"answers": [{"id", "question_id", "answer",
                                                  "active"}, ...]}
      LR_split_train_images.json      {"images": [{"id", "questions_ids": [..],
                                                 "active"}, ...]}
      Images_LR/<img_id>.tif

HR uses the prefix ``USGS`` and the folder ``Data/``; its splits are ``train``, ``val``,
``test`` and ``test_phili`` (test set 2, Philadelphia). The files of a split list
entries of other splits too, with ``"active": false``: the ``active`` flag is the split
membership. Every question entry is a row: inactive ones are skipped (``inactive``),
active ones become a record: the image, the question, the answer of the first active
id of ``answers_ids`` (the official loader reads ``answers_ids[0]``).

Question types as the files write them: ``presence``, ``comp``, ``rural_urban`` (LR),
``count``, ``area`` (HR); ``meta["question_type"]`` spells ``comp`` as ``comparison``,
the name the RSVQA scorer uses, and keeps the file's spelling in ``question_type_raw``.

GSD: dataset level, from the sensor table of :mod:`earthvlm.scale.sensors`: LR 10 m
(Sentinel-2), HR 0.15 m (USGS HRO).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from earthvlm.data.record import Record
from earthvlm.data.sources._base import Row, RowError, SkipRow, SourceError, SourceReader

#: File spelling -> the scorer's question type name.
QUESTION_TYPES = {"comp": "comparison"}


def _int_id(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


@dataclass(kw_only=True)
class RSVQALR(SourceReader):
    """RSVQA low resolution (Sentinel-2, 10 m): questions on 256 x 256 px tiles.

    Attributes:
        image_dir: The image folder, relative to the root.
    """

    name: ClassVar[str] = "rsvqa-lr"
    task: ClassVar[str] = "vqa"
    gsd_dataset: ClassVar[str | None] = "rsvqa-lr"
    gsd_note: ClassVar[str] = "dataset level: Sentinel-2, 10 m"
    files: ClassVar[tuple[str, ...]] = (
        "LR_split_<split>_questions.json",
        "LR_split_<split>_answers.json",
        "LR_split_<split>_images.json",
        "Images_LR/<img_id>.tif",
    )
    #: File name prefix of the split files.
    prefix: ClassVar[str] = "LR"
    #: Splits the release ships.
    splits: ClassVar[tuple[str, ...]] = ("train", "val", "test")

    image_dir: str = "Images_LR"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.split not in self.splits:
            raise ValueError(f"split={self.split!r}: {self.name} has {', '.join(self.splits)}")

    def _split_file(self, kind: str) -> str:
        return f"{self.prefix}_split_{self.split}_{kind}.json"

    def _entries(self, kind: str) -> list[Any]:
        rel = self._split_file(kind)
        data = self._load_json(rel)
        if not isinstance(data, dict) or not isinstance(data.get(kind), list):
            raise SourceError(f"{rel}: expected an object with a {kind!r} list (RSVQA layout)")
        return data[kind]

    def _rows(self, root: Path) -> Iterator[Row]:
        questions = self._entries("questions")
        answers = {_int_id(a.get("id")): a for a in self._entries("answers") if isinstance(a, dict)}
        images = {
            _int_id(im.get("id")): im for im in self._entries("images") if isinstance(im, dict)
        }
        rel = self._split_file("questions")
        for i, q in enumerate(questions):
            yield Row(rel, i, q, lambda q=q: self._record(q, answers, images))

    def _record(self, q: Any, answers: dict[Any, Any], images: dict[Any, Any]) -> Record:
        if not isinstance(q, dict):
            raise RowError(
                "not_an_object", f"a question must be an object, got {type(q).__name__}",
                "write each question as a JSON object",
            )  # fmt: skip
        if q.get("active", True) is False:
            raise SkipRow("inactive")
        qid, img_id = _int_id(q.get("id")), _int_id(q.get("img_id"))
        text, qtype, answer_ids = q.get("question"), q.get("type"), q.get("answers_ids")
        if (
            qid is None
            or img_id is None
            or not isinstance(text, str)
            or not text.strip()
            or not isinstance(qtype, str)
            or not isinstance(answer_ids, list)
            or not answer_ids
        ):
            raise RowError(
                "bad_question",
                "a question needs an integer id and img_id, a question text, a type and "
                f"a non-empty answers_ids; got {sorted(q)}",
                "restore the question entry from the release",
            )
        image_entry = images.get(img_id)
        if image_entry is None:
            raise RowError(
                "unknown_image",
                f"img_id {img_id} is not in {self._split_file('images')}",
                "use the images file of the same split and release",
            )
        if image_entry.get("active", True) is False:
            raise RowError(
                "image_not_in_split",
                f"question {qid} is active but its image {img_id} is not",
                "use the questions and images files of the same split",
            )
        answer = self._answer(qid, answer_ids, answers)
        image = self._image(f"{self.image_dir}/{img_id}.tif")
        return self._one_turn(
            str(qid),
            image,
            text.strip(),
            answer,
            meta={
                "question_id": qid,
                "image_id": img_id,
                "question_type": QUESTION_TYPES.get(qtype, qtype),
                "question_type_raw": qtype,
            },
        )

    def _answer(self, qid: int, answer_ids: list[Any], answers: dict[Any, Any]) -> str:
        for aid in answer_ids:
            a = answers.get(_int_id(aid))
            if a is None or a.get("active", True) is False:
                continue
            value = a.get("answer")
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                break
            text = str(value).strip()
            if text:
                return text
            break
        raise RowError(
            "missing_answer",
            f"question {qid}: no active answer with a text among answers_ids {answer_ids}",
            f"use the answers file of the same split ({self._split_file('answers')})",
        )


@dataclass(kw_only=True)
class RSVQAHR(RSVQALR):
    """RSVQA high resolution (USGS HRO aerial, 0.15 m): questions on 512 x 512 px tiles.

    Attributes:
        image_dir: The image folder, relative to the root.
    """

    name: ClassVar[str] = "rsvqa-hr"
    gsd_dataset: ClassVar[str | None] = "rsvqa-hr"
    gsd_note: ClassVar[str] = "dataset level: USGS HRO aerial, 0.15 m"
    files: ClassVar[tuple[str, ...]] = (
        "USGS_split_<split>_questions.json",
        "USGS_split_<split>_answers.json",
        "USGS_split_<split>_images.json",
        "Data/<img_id>.tif",
    )
    prefix: ClassVar[str] = "USGS"
    splits: ClassVar[tuple[str, ...]] = ("train", "val", "test", "test_phili")

    image_dir: str = "Data"
