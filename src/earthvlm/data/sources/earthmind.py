"""EarthMind-Bench (paired optical + SAR) -> MCQ, open-ended and referring-segmentation records.

The release's layout (EarthMind's ``scripts_eval/earrthmind-bench.sh`` and
``infer_earthmindbench_*.py``; the paper, sec. 4 and App. E, names the ten tasks)::

    root/
      formal_data_test/<task>_all_unmatched.json   one JSON list per task (annotations)
      sar/img/<stem>.png                           the SAR view  (image_dir: the release's
      rgb/img/<stem>.png                           the optical view   data/pair_data/test)
      Refer_Segm/sarnew/instances.json             referring segmentation (REFER layout)
      Refer_Segm/sarnew/refs(unc).p
      Refer_Segm/sarnew/sar/<file_name>, Refer_Segm/sarnew/rgb/<file_name>

A task row is ``{"file_name", "question", "candidate": [...], "answer", "task_type"}``;
its images are ``{sar,rgb}/img/<file_name>`` with a ``.json`` suffix read as ``.png``
(what the release's inference does). Assumptions where neither paper nor release says:

* the kind of a row: **multiple choice** when ``candidate`` is a non-empty list (the
  release's MCQ tasks: hallucination detection, object counting, object existence, scene
  classification, spatial relationship), **open-ended** when it is empty or absent
  (caption, disaster forecasting, route planning, which the release files as
  ``Navigation``, urban development, traffic flow). The release also runs its open-ended
  script on the spatial-relationship file; a row with candidates is MCQ here.
* the task: ``task_type`` (else the file name without ``_all_unmatched``), lower-cased
  with spaces as ``_`` and the release's short names mapped (:data:`TASK_ALIASES`).
* the MCQ answer is one of the candidates (with or without its label, case aside), or
  its label (``A``, ``(A)`` or ``a.`` for ``"A. forest"``); a row whose answer is none of
  these is quarantined (``answer_not_a_candidate``).

Prompts: the question then the candidates one per line, as the release's inference
builds it, plus :data:`MCQ_INSTRUCTION` (added here: strict matching needs the model to
answer with an option, and the release's prompt never says so); open-ended rows ask the
question as written.

Referring segmentation follows the REFER layout the release evaluates (``RESDataset_Multi``
in ``evaluation/dataset/RES.py``): ``instances.json`` (COCO images and annotations with
polygon or RLE masks) and ``refs(unc).p`` (refs with ``ref_id``, ``ann_id``, ``image_id``,
``split``, ``sentences``). One record per sentence, prompted as the release does ("Please
segment {sentence} in this image."); the reference mask is the record's mask (of its
first image; uncompressed COCO RLE, what the collator reads; an ``ann_id`` list is the
union, ``-1`` an empty mask); the assistant turn is the polygons as JSON
``[[[x, y], ...], ...]`` (or the RLE), a form the benchmark reads predictions in. The refs
file is read as plain data only (:func:`~earthvlm.data.sources._masks.load_plain_pickle`:
no code runs); one that is damaged or names a class is quarantined as one item
(``bad_pickle``) and the other tasks are still read.

Settings (paper sec. 5.3): ``optical`` (the RGB view only), ``sar`` (the SAR view only,
``modality="sar"``: a one- or two-band file, which the collator frames with zero padding
as the paper does; a three-band file is quarantined, or fed as RGB with
``sar_modality="optical"`` as the release does), ``fused`` (optical then SAR), or ``all``
(each row once per setting, the setting in the id and ``meta["setting"]``; a malformed
row is then quarantined once per setting). GSD: unknown (the six source datasets range
from 0.15 m to 10 m and the release records none) unless the options give one.
"""

from __future__ import annotations

import functools
import json
import pickle
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from PIL import Image

from earthvlm.data.record import ImagePart, ImageRef, Mask, Message, Record, TextPart
from earthvlm.data.sources._base import (
    Row,
    RowError,
    SkipRow,
    SourceError,
    SourceReader,
    check_choice,
    skip,
)
from earthvlm.data.sources._masks import (
    MaskFormatError,
    decode_segmentation,
    encode_rle,
    load_plain_pickle,
)

#: Evaluation settings, one image set each.
SETTINGS = ("optical", "sar", "fused")
#: Multiple-choice tasks (paper, Table 1).
MCQ_TASKS = (
    "scene_classification",
    "object_existence",
    "hallucination_detection",
    "object_counting",
    "spatial_relationship",
)
#: Open-ended tasks judged 1-5 (paper Table 1; traffic flow is in the release only).
OPEN_TASKS = (
    "caption",
    "disaster_forecasting",
    "route_planning",
    "urban_development",
    "traffic_flow",
)
#: The segmentation task.
SEG_TASK = "referring_segmentation"
#: The release's short task names -> the names used here.
TASK_ALIASES = {
    "navigation": "route_planning",
    "route_plan": "route_planning",
    "disaster": "disaster_forecasting",
    "disaster_forecast": "disaster_forecasting",
    "urban": "urban_development",
    "urban_assessment": "urban_development",
    "urban_development_assessment": "urban_development",
    "image_caption": "caption",
    "image_captioning": "caption",
    "captioning": "caption",
    "traffic": "traffic_flow",
    "hallucination": "hallucination_detection",
    "counting": "object_counting",
    "existence": "object_existence",
    "scene": "scene_classification",
    "spatial": "spatial_relationship",
    "spatial_relation": "spatial_relationship",
}
#: Appended to an MCQ question and its candidates.
MCQ_INSTRUCTION = "Answer with the correct option only, exactly as it is written above."
#: The release's segmentation prompt.
SEG_PROMPT = "Please segment {} in this image."
#: How the mask is asked for (our text models answer with polygons).
SEG_INSTRUCTION = (
    "Give the mask as a JSON list of polygons [[[x1, y1], [x2, y2], ...], ...] in pixels "
    "of the image."
)

_LABEL = re.compile(r"^\(?([A-Za-z])[).:]\s")
_BARE_LABEL = re.compile(r"\(?([A-Za-z])[).:]?")


def task_name(task_type: str) -> str:
    """The task name of a ``task_type`` or file stem (``"Navigation"`` ->
    ``"route_planning"``)."""
    key = re.sub(r"[\s\-]+", "_", str(task_type).strip().lower())
    key = re.sub(r"(_all)?_unmatched$", "", key)
    return TASK_ALIASES.get(key, key)


def candidate_label(candidate: str) -> str | None:
    """The label of a candidate written ``"A. ..."``, ``"A) ..."`` or ``"(A) ..."``."""
    m = _LABEL.match(candidate.strip())
    return m.group(1).upper() if m else None


def release_image_name(file_name: str) -> str:
    """The image a row names: ``x.json`` -> ``x.png`` (the release's rule); other names as is."""
    p = PurePosixPath(file_name)
    return str(p.with_suffix(".png")) if p.suffix.lower() == ".json" else str(p)


@dataclass(kw_only=True)
class EarthMindBench(SourceReader):
    """EarthMind-Bench rows (an evaluation set: split ``test`` by default).

    Attributes:
        setting: ``optical``, ``sar``, ``fused`` or ``all`` (every row once per setting).
        annotations: The folder of the per-task JSON files, relative to the root.
        image_dir: The folder holding ``sar/img/`` and ``rgb/img/`` (empty: the root).
        segmentation: The REFER folder of the segmentation task (read when it exists).
        seg_split: The ``split`` of the refs to read.
        tasks: Read only these tasks (names as :func:`task_name` gives them); None: all.
        sar_modality: The modality of the SAR views: ``sar`` (one- or two-band files,
            framed by the collator with zero padding) or ``optical`` (three-band files fed
            as RGB, what the release does with its PNGs).
    """

    name: ClassVar[str] = "earthmind-bench"
    task: ClassVar[str] = "mcq"
    files: ClassVar[tuple[str, ...]] = (
        "formal_data_test/<task>_all_unmatched.json",
        "sar/img/<stem>.png",
        "rgb/img/<stem>.png",
        "Refer_Segm/sarnew/{instances.json,refs(unc).p,sar/,rgb/} (optional)",
    )
    gsd_note: ClassVar[str] = "unknown (mixed sources, none recorded) unless the options give one"

    split: str = "test"
    setting: str = "fused"
    annotations: str = "formal_data_test"
    image_dir: str = ""
    segmentation: str = "Refer_Segm/sarnew"
    seg_split: str = "test"
    tasks: tuple[str, ...] | None = None
    sar_modality: str = "sar"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.setting not in (*SETTINGS, "all"):
            raise ValueError(f"setting={self.setting!r}: choose one of {', '.join(SETTINGS)}, all")
        check_choice("sar_modality", self.sar_modality, ("sar", "optical"))
        self._bands: dict[Path, int] = {}
        if self.tasks is not None:
            self.tasks = tuple(task_name(t) for t in self.tasks)

    @property
    def settings(self) -> tuple[str, ...]:
        """The settings read, in order."""
        return SETTINGS if self.setting == "all" else (self.setting,)

    def _wanted(self, task: str) -> bool:
        return self.tasks is None or task in self.tasks

    # -- the walk -----------------------------------------------------------------------

    def _rows(self, root: Path) -> Iterator[Row]:
        ann_dir = self._dir(self.annotations)
        files = sorted(ann_dir.glob("*.json"))
        seg_dir = self._root / self.segmentation
        if not files and not seg_dir.is_dir():
            raise SourceError(
                f"{ann_dir}: no <task>.json files; put the EarthMind-Bench annotations there"
            )
        tables = [(self._rel(p), self._task_rows(self._rel(p))) for p in files]
        seg = self._seg_tables() if seg_dir.is_dir() and self._wanted(SEG_TASK) else None
        for setting in self.settings:
            for rel, rows in tables:
                for i, row in enumerate(rows):
                    yield Row(rel, i, row, functools.partial(self._record, rel, i, row, setting))
            if seg is not None:
                yield from self._seg_rows(seg, setting)

    def _task_rows(self, rel: str) -> list[Any]:
        rows = self._load_json(rel)
        if not isinstance(rows, list):
            raise SourceError(f"{self._root / rel}: expected a JSON list of rows")
        return rows

    def _views(self, rgb: str, sar: str, setting: str) -> list[ImageRef]:
        views: list[ImageRef] = []
        if setting in ("optical", "fused"):
            views.append(self._image(rgb))
        if setting in ("sar", "fused"):
            view = self._image(sar)
            if self.sar_modality == "sar":
                self._check_sar_bands(sar)
            views.append(view.model_copy(update={"modality": self.sar_modality}))
        return views

    def _check_sar_bands(self, rel: str) -> None:
        """Refuse a SAR file of three or more bands: the collator builds the pseudo-RGB
        frame from one or two polarisations itself (EarthMind App. H, zero padding)."""
        p = self._root / rel
        if p not in self._bands:
            try:
                with Image.open(p) as im:
                    self._bands[p] = len(im.getbands())
            except (OSError, ValueError):
                self._bands[p] = 0  # not readable by Pillow (a GeoTIFF): the collator decides
        if self._bands[p] > 2:
            raise RowError(
                "sar_not_one_or_two_bands",
                f"{rel} has {self._bands[p]} bands; a SAR view is one or two polarisations",
                "store the SAR views as single-band images (Pillow mode L) or pass "
                "sar_modality='optical' to feed them as RGB, as the release does",
            )

    def _record(self, rel: str, i: int, row: Any, setting: str) -> Record:
        if not isinstance(row, dict):
            raise RowError(
                "not_an_object",
                f"a row must be a JSON object, got {type(row).__name__}",
                "write each row as an object",
            )
        for key in ("file_name", "question", "answer"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise RowError(
                    f"missing_field:{key}",
                    f"{key} = {row.get(key)!r}",
                    f"give the row its {key} string",
                )
        stem = Path(rel).stem
        task = task_name(row.get("task_type") or stem)
        if not self._wanted(task):
            raise SkipRow("other_task")
        candidates = row.get("candidate") or []
        if not isinstance(candidates, list) or not all(isinstance(c, str) for c in candidates):
            raise RowError(
                "bad_candidate",
                f"candidate = {candidates!r}",
                "give candidate as a list of option strings",
            )
        answer = row["answer"].strip()
        if candidates:
            kind, prompt = "mcq", "\n".join([row["question"].strip(), *candidates, MCQ_INSTRUCTION])
            texts = {c.strip().lower() for c in candidates}
            texts |= {_LABEL.sub("", c.strip()).lower() for c in candidates}
            labels = {candidate_label(c) for c in candidates} - {None}
            bare = _BARE_LABEL.fullmatch(answer)
            if answer.lower() not in texts and not (bare and bare[1].upper() in labels):
                raise RowError(
                    "answer_not_a_candidate",
                    f"answer {answer!r}, candidates {candidates}",
                    "make the answer one of the candidates (or its letter)",
                )
        else:
            kind, prompt = "open", row["question"].strip()
        image = release_image_name(row["file_name"])
        base = f"{self.image_dir}/" if self.image_dir else ""
        views = self._views(f"{base}rgb/img/{image}", f"{base}sar/img/{image}", setting)
        meta = {
            "setting": setting,
            "task": task,
            "kind": kind,
            "file_name": row["file_name"],
            "question": row["question"].strip(),
            "candidates": list(candidates),
        }
        return self._record_of(f"{setting}-{stem}-{i}", kind, views, prompt, answer, meta)

    def _record_of(
        self,
        key: str,
        kind: str,
        views: list[ImageRef],
        prompt: str,
        answer: str,
        meta: dict[str, Any],
    ) -> Record:
        task = {"mcq": "mcq", "open": "vqa", "seg": "segmentation"}[kind]
        return Record(
            id=f"{self.source_name}-{key}",
            task=task,
            source=self.source_name,
            split=self.split,
            images=views,
            messages=[
                Message(
                    role="user",
                    content=[
                        *(ImagePart(index=k) for k in range(len(views))),
                        TextPart(text=prompt),
                    ],
                ),
                Message(role="assistant", content=answer),
            ],
            meta=meta,
        )

    # -- referring segmentation ---------------------------------------------------------

    def _seg_tables(self) -> tuple[str, list[Any], dict[Any, Any], dict[Any, Any]] | None:
        """The referring-segmentation tables; ``None`` when the refs file is quarantined."""
        inst_rel = f"{self.segmentation}/instances.json"
        inst = self._load_json(inst_rel)
        if (
            not isinstance(inst, dict)
            or not isinstance(inst.get("images"), list)
            or not isinstance(inst.get("annotations"), list)
        ):
            raise SourceError(f"{self._root / inst_rel}: expected COCO images and annotations")
        refs_rel = f"{self.segmentation}/refs(unc).p"
        refs_path = self._file(refs_rel)
        try:
            refs = load_plain_pickle(refs_path)
        except pickle.UnpicklingError as e:
            problem = ("bad_pickle", str(e))
        else:
            problem = None if isinstance(refs, list) else ("bad_refs", "not a list of refs")
        if problem is not None:
            # the file is one item: quarantined, and the other tasks are still read
            reason, detail = problem
            raw = f"<{refs_path.stat().st_size:,} bytes of pickle>"
            fix = "re-download the refs file (a plain-data pickle: a list of ref dicts)"
            self._quarantine(Row(refs_rel, 0, raw, skip(reason)), reason, detail, fix)
            return None
        images = {im.get("id"): im for im in inst["images"] if isinstance(im, dict)}
        anns = {a.get("id"): a for a in inst["annotations"] if isinstance(a, dict)}
        return refs_rel, refs, images, anns

    def _seg_rows(
        self, seg: tuple[str, list[Any], dict[Any, Any], dict[Any, Any]], setting: str
    ) -> Iterator[Row]:
        refs_rel, refs, images, anns = seg
        for i, ref in enumerate(refs):
            if isinstance(ref, dict) and ref.get("split") not in (None, self.seg_split):
                yield Row(refs_rel, i, ref, skip("other_split"))
                continue
            sentences = ref.get("sentences") if isinstance(ref, dict) else None
            if not isinstance(sentences, list) or not sentences:
                yield Row(refs_rel, i, ref, self._bad_ref(ref))
                continue
            for k, sent in enumerate(sentences):
                yield Row(
                    refs_rel,
                    f"{i}.{k}",
                    ref,
                    functools.partial(self._seg_record, ref, k, sent, images, anns, setting),
                )

    @staticmethod
    def _bad_ref(ref: Any) -> Any:
        def make() -> Record:
            raise RowError(
                "bad_ref",
                f"a ref needs a dict with sentences, got {ref!r}"[:200],
                "restore the ref from the release",
            )

        return make

    def _seg_record(
        self,
        ref: dict[str, Any],
        k: int,
        sent: Any,
        images: dict[Any, Any],
        anns: dict[Any, Any],
        setting: str,
    ) -> Record:
        if not self._wanted(SEG_TASK):
            raise SkipRow("other_task")
        text = sent.get("sent") if isinstance(sent, dict) else sent
        if not isinstance(text, str) or not text.strip():
            raise RowError("missing_sentence", f"sentence {sent!r}", "give the sentence its 'sent'")
        info = images.get(ref.get("image_id"))
        if info is None or not isinstance(info.get("file_name"), str):
            raise RowError(
                "unknown_image_id",
                f"image_id {ref.get('image_id')!r}",
                "make image_id name an image of instances.json",
            )
        h, w = info.get("height"), info.get("width")
        if not (isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0):
            raise RowError(
                "bad_image_size", f"height {h!r}, width {w!r}", "restore the image entry"
            )
        ids = ref.get("ann_id")
        ids = ids if isinstance(ids, list) else [ids]
        parts: list[Any] = []
        for a in ids:
            if a == -1:
                continue  # the release's empty target
            ann = anns.get(a)
            if ann is None:
                raise RowError("unknown_ann_id", f"ann_id {a!r}", "make ann_id name an annotation")
            seg = ann.get("segmentation")
            parts.extend(seg if isinstance(seg, list) else [seg])
        try:
            mask = decode_segmentation(parts, h, w)
        except MaskFormatError as e:
            raise RowError("bad_mask", str(e), "restore the annotation's segmentation") from None
        views = self._views(
            f"{self.segmentation}/rgb/{info['file_name']}",
            f"{self.segmentation}/sar/{info['file_name']}",
            setting,
        )
        if any((v.width, v.height) != (w, h) for v in views):
            raise RowError(
                "image_size_mismatch",
                f"instances.json says {w} x {h}",
                "check the image entry's width and height",
            )
        prompt = SEG_PROMPT.format(text.strip()) + "\n" + SEG_INSTRUCTION
        answer = reference_text(parts)
        meta = {
            "setting": setting,
            "task": SEG_TASK,
            "kind": "seg",
            "ref_id": ref.get("ref_id"),
            "sentence": text.strip(),
            "question": SEG_PROMPT.format(text.strip()),
        }
        key = f"{setting}-seg-{ref.get('ref_id', ref.get('ann_id'))}-{k}"
        rec = self._record_of(key, "seg", views, prompt, answer, meta)
        # the mask of the first view (the views of a pair share one pixel grid)
        return rec.model_copy(update={"masks": [Mask(label=text.strip(), rle=encode_rle(mask))]})


def reference_text(parts: list[Any]) -> str:
    """The target text of a mask: polygons as ``[[[x, y], ...], ...]`` JSON when every part
    is a polygon, else the parts (RLE) as JSON."""
    if all(isinstance(p, list) for p in parts):
        polys = [[[p[j], p[j + 1]] for j in range(0, len(p) - 1, 2)] for p in parts]
        return json.dumps(polys, separators=(", ", ": "))
    return json.dumps(parts)


__all__ = [
    "MCQ_TASKS",
    "OPEN_TASKS",
    "SEG_TASK",
    "SETTINGS",
    "TASK_ALIASES",
    "EarthMindBench",
    "candidate_label",
    "reference_text",
    "release_image_name",
    "task_name",
]
