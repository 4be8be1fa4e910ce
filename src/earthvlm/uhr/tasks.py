"""GRPO tasks from records: a source raster, a question, its answer and the ROI.

GRPO on the zoom loop (:mod:`earthvlm.train.grpo`, ZoomEarth sec. 3.3) reads one task a
line::

    {"id": ..., "source": "../scenes/uhr-000.tif", "question": ..., "answer": ...,
     "roi_xyxy_px": [x1, y1, x2, y2] or null, "roi_from": "roi", "task": "counting",
     "source_gsd": {"kind": "exact", "m": 0.3, ...} or null, "record": {...}}

:func:`build_tasks` makes them from records with the same rules as the Zoom-in Chains of
:mod:`earthvlm.uhr.chain` (one source image, one question and one final answer, an
optical image inside the dataset root, the ROI from :func:`~earthvlm.uhr.chain.record_roi`),
so SFT chains and RL tasks come from the same records: the synthetic UHR scenes'
questions, converted public formats with boxes, and the LRS-VQA-Zoom-style template
questions of :func:`~earthvlm.uhr.chain.template_questions`. Unlike a chain, a task needs
no zoom gain: whether a zoom helps is the policy's decision. A question with a ``global``
ROI becomes a task with ``roi_xyxy_px: null`` (both box rewards are then 0 for the whole
group, and only the answer and format rewards decide: the policy learns when not to zoom).

The ROI is checked against the raster's size (read from its header) and clipped to it;
``source`` is written relative to the tasks file's folder (what
:func:`~earthvlm.train.grpo.load_tasks` resolves against), and ``record`` carries the
record so a benchmark's reward can score the answer on it (``earthvlm train-grpo
--bench``). Every record is counted in a ledger: ok, skipped (``task_skipped``,
``not_single_image``, ``not_single_turn``, ``unsupported_modality``, ``no_roi``,
``bad_roi``) or failed (``missing_image``, ``unreadable_image``), each with its message.

NumPy and rasterio only (no torch).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from earthvlm.data.ledger import Ledger
from earthvlm.data.record import Record
from earthvlm.errors import RasterError
from earthvlm.geo.boxes import normalise_box
from earthvlm.geo.raster import open_raster
from earthvlm.io import atomic_writer
from earthvlm.uhr.chain import (
    BAD_ROI,
    FAILED_REASONS,
    NO_ROI,
    TASK_SKIPPED,
    UNREADABLE_IMAGE,
    ChainError,
    collect,
    question_answer,
    record_roi,
    source_path,
)


@dataclass(frozen=True)
class TaskConfig:
    """Which records become GRPO tasks."""

    skip_tasks: tuple[str, ...] = ("detection",)
    """Record tasks left out (``task_skipped``): a detection record's answer is a list of
    boxes in source pixels, the frame of no view the policy sees."""
    global_questions: bool = True
    """Keep questions whose ROI is the whole scene (``roi_type: global``) as tasks with no
    ROI; ``False`` skips them (``no_roi``)."""
    keep_record: bool = True
    """Write the record under ``"record"`` (for benchmark rewards)."""


@dataclass
class TaskResult:
    """What :func:`build_tasks` made.

    Attributes:
        rows: The task rows, in input order (``source`` absolute until written).
        ledger: Every record counted: ok, skipped or failed with a reason.
        failures: ``(record id, reason, message)`` per record left out.
    """

    rows: list[dict[str, Any]]
    ledger: Ledger
    failures: list[tuple[str, str, str]] = field(default_factory=list)


def task_row(
    record: Record,
    root: str | Path,
    config: TaskConfig | None = None,
    *,
    sizes: dict[Path, tuple[int, int]] | None = None,
) -> dict[str, Any]:
    """The GRPO task of one record (``source`` an absolute path).

    Args:
        record: A single-image, single-question record.
        root: The dataset root its image path is relative to.
        config: What is kept.
        sizes: A cache of raster sizes ``(height, width)`` by path, filled as rasters are
            read (many questions share one scene).

    Raises:
        ChainError: With the reason (a ledger key) the record is left out.
    """
    cfg = config or TaskConfig()
    if record.task in cfg.skip_tasks:
        raise ChainError(
            TASK_SKIPPED,
            f"record {record.id}: task {record.task!r} is in skip_tasks {list(cfg.skip_tasks)}",
        )
    question, answer = question_answer(record)
    path = source_path(record, root)
    ref_gsd = record.images[0].gsd
    try:
        roi, roi_from = record_roi(record)
    except (TypeError, ValueError) as e:  # meta holding non-numbers
        raise ChainError(
            BAD_ROI, f"record {record.id}: the ROI is not four numbers ({e})"
        ) from None
    if roi is None and not (roi_from == "global" and cfg.global_questions):
        what = "no region of interest (meta roi_xyxy_px / cell_xyxy_px, or boxes on image 0)"
        if roi_from == "global":
            what = "a whole-scene question (roi_type global) and global_questions is off"
        raise ChainError(NO_ROI, f"record {record.id}: {what}")
    roi_px = None
    if roi is not None:
        height, width = _size(path, record.id, sizes)
        fixed = normalise_box(list(roi), "xyxy", width=width, height=height)
        if fixed.values is None:
            raise ChainError(
                BAD_ROI,
                f"record {record.id}: ROI {list(roi)} is not a box inside the {width} x "
                f"{height} px image ({fixed.problem})",
            )
        roi_px = [round(float(v), 3) for v in fixed.values]
    row: dict[str, Any] = {
        "id": record.id,
        "source": str(path),
        "question": question,
        "answer": answer,
        "roi_xyxy_px": roi_px,
        "roi_from": roi_from,
        "task": record.task,
        # the record's GSD, as a chain's reader takes it (else the raster's georeferencing)
        "source_gsd": ref_gsd.to_dict() if ref_gsd.is_known else None,
    }
    if cfg.keep_record:
        row["record"] = record.model_dump(mode="json")
    return row


def _size(path: Path, record_id: str, sizes: dict[Path, tuple[int, int]] | None) -> tuple[int, int]:
    if sizes is not None and path in sizes:
        return sizes[path]
    try:
        with open_raster(path) as ds:
            hw = (int(ds.height), int(ds.width))
    except RasterError as e:
        raise ChainError(UNREADABLE_IMAGE, f"record {record_id}: {e}") from None
    if sizes is not None:
        sizes[path] = hw
    return hw


def build_tasks(
    records: Iterable[Record],
    root: str | Path,
    config: TaskConfig | None = None,
    *,
    progress: Callable[[Ledger], None] | None = None,
) -> TaskResult:
    """GRPO tasks of many records; each record is counted as ok, skipped or failed.

    Args:
        records: The records.
        root: The dataset root their image paths are relative to.
        config: What is kept.
        progress: Called with the ledger after each record.
    """
    sizes: dict[Path, tuple[int, int]] = {}

    def make(record: Record) -> dict[str, Any]:
        return task_row(record, root, config, sizes=sizes)

    return TaskResult(*collect(records, make, "grpo_tasks", progress=progress))


def write_tasks(rows: Iterable[dict[str, Any]], path: str | Path) -> int:
    """Write task rows as JSONL (atomically), ``source`` relative to the file's folder;
    returns how many were written."""
    target = Path(path)
    folder = target.parent.resolve()
    n = 0
    with atomic_writer(target) as f:
        for row in rows:
            out = {**row, "source": os.path.relpath(Path(row["source"]).resolve(), folder)}
            f.write(json.dumps(out, ensure_ascii=False) + "\n")
            n += 1
    return n


__all__ = ["FAILED_REASONS", "TaskConfig", "TaskResult", "build_tasks", "task_row", "write_tasks"]
