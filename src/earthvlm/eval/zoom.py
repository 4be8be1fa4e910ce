"""The zoom arm of ``earthvlm eval``: every example asked through the zoom loop.

:class:`ZoomAnswers` answers a batch of benchmark records the way the runner's local
model does (one cache row per record), but through :func:`earthvlm.uhr.loop.run_zoom_loop`:
the model sees a global view of the record's image at its pixel budget, may call
``zoom_in``, and each call is executed on the *native* raster through
:class:`~earthvlm.uhr.reader.UHRReader` (never on the downsampled view), with one GSD per
view, up to ``max_zooms`` steps. The runner (:func:`earthvlm.eval.runner.run_benchmark`
with ``RunConfig(zoom=ZoomEvalConfig(...))``) keeps everything else: the cache, shards,
resume and reports; :mod:`earthvlm.eval.zoom_report` summarises the traces.

A cache row carries, beside the runner's fields, ``arm`` (``zoom``), ``visual_tokens``
(the language-model tokens of every view shown, the final context's), ``visual_tokens_
processed`` (summed over turns: the loop re-encodes the conversation each turn) and
``zoom``: the :class:`~earthvlm.uhr.loop.ZoomTrace` as a dict (views with their source
windows in source pixels, GSDs and tokens, the boxes asked for, every turn's action,
reason and token count, the answer). The prediction is the trace's answer (``<think>``
and tool calls removed).

What the loop asks is :func:`~earthvlm.uhr.chain.zoom_question_answer`'s question, the
one the Zoom-in Chains train on (a benchmark may give ``meta["zoom_question"]``, as
LRS-GRO does). A record the loop cannot take (more or fewer than one image, a SAR or
multispectral view, more than one question) is answered by the direct path in the same
run and marked (``zoom: null``, ``zoom_skipped``: the reason), so both arms answer the
same examples; a missing or unreadable image is a failure, as the collator's are.

Where this departs from the papers: the crop is read natively from the source (RSCoVLM's
release crops the downsampled input); several zooms are allowed (``max_zooms``; both
papers zoom once, ``--max-zooms 1``); each turn has at least ``turn_tokens`` new tokens,
since a call (with its reasoning) needs more than a benchmark's short answer.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from earthvlm.data.record import Record
from earthvlm.data.resolution import Resolution
from earthvlm.errors import RasterError
from earthvlm.models.earthvlm import EarthVLM
from earthvlm.uhr.chain import (
    MISSING_IMAGE,
    UNREADABLE_IMAGE,
    ChainError,
    source_path,
    zoom_question_answer,
)
from earthvlm.uhr.loop import GenerateFn, LoopConfig, ZoomTrace, greedy_ids, run_zoom_loop
from earthvlm.uhr.reader import ReaderConfig, UHRReader

#: ``(records, max_new_tokens) -> cache rows``: how records the loop cannot take are
#: answered (the runner's direct path).
DirectFn = Callable[[Sequence[Record], int], list[dict[str, Any]]]

#: Source rasters kept open between records (questions of one scene come together).
OPEN_SOURCES = 2


@dataclass(frozen=True)
class ZoomEvalConfig:
    """How the zoom arm asks each example (part of the cache's setup)."""

    max_zooms: int = 2
    """Most crops per question (K); 0 answers from the global view through the loop."""
    global_max_pixels: int | None = None
    """Pixel budget of the global view; ``None``: the processor's ``max_pixels``, the
    budget the direct arm reads the image at. ZoomEarth's global view is 512 px a side:
    ``262144``."""
    max_invalid_calls: int = 1
    """Refused calls (bad JSON, bad box) answered with an observation before the final
    turn."""
    min_side_px: int = 64
    """Smallest crop side in source pixels."""
    turn_tokens: int = 128
    """New tokens per turn, at least: the benchmark's ``max_new_tokens`` (or the run's)
    when larger."""

    def __post_init__(self) -> None:
        if self.turn_tokens < 1:
            raise ValueError(f"turn_tokens={self.turn_tokens}: give >= 1")
        self.loop_config(1)  # checks max_zooms, max_invalid_calls, global_max_pixels, ...

    @property
    def arm(self) -> str:
        """The arm's name, also the suffix of its benchmark folders: ``zoom<K>``."""
        return f"zoom{self.max_zooms}"

    def loop_config(self, max_new_tokens: int) -> LoopConfig:
        """The loop's settings for a run whose answers get ``max_new_tokens``."""
        return LoopConfig(
            max_zooms=self.max_zooms,
            max_invalid_calls=self.max_invalid_calls,
            max_new_tokens=max(max_new_tokens, self.turn_tokens),
            global_max_pixels=self.global_max_pixels,
            min_side_px=self.min_side_px,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (the cache's setup and the reports)."""
        return asdict(self)


def loop_skip_reason(record: Record) -> str | None:
    """Why the zoom loop cannot ask ``record`` (it is answered directly then), or None."""
    if len(record.images) != 1:
        return "not_single_image"
    if record.images[0].modality != "optical":
        return "unsupported_modality"
    if sum(m.role == "user" for m in record.messages) != 1:
        return "not_single_turn"
    return None


class ZoomAnswers:
    """Answers of the zoom arm: one :func:`run_zoom_loop` per record, one cache row each.

    Use as a context manager (source rasters stay open between records of one scene)::

        with ZoomAnswers(model, ZoomEvalConfig(max_zooms=1), image_root) as zoom:
            rows = zoom.answers(records, max_new_tokens=32)

    Args:
        model: The model (on its device).
        config: The arm's settings.
        image_root: The folder the records' image paths are relative to.
        reader_config: How sources are read (budgets: the run's decode and scan limits).
        direct: Answers records the loop cannot take (the runner's direct path); without
            it they fail with their reason.
        generate: One generation step (tests script the model's turns with it); default
            greedy decoding.
    """

    def __init__(
        self,
        model: EarthVLM,
        config: ZoomEvalConfig,
        image_root: str | Path,
        *,
        reader_config: ReaderConfig | None = None,
        direct: DirectFn | None = None,
        generate: GenerateFn | None = None,
    ) -> None:
        self.model, self.config, self.root = model, config, Path(image_root)
        self.reader_config = reader_config or ReaderConfig()
        self.direct = direct
        self.generate = generate or partial(greedy_ids, model)
        self.resolution = Resolution.from_processor(model.backbone.processor.image_processor)
        self._open: OrderedDict[tuple[Path, str], UHRReader] = OrderedDict()

    def __enter__(self) -> ZoomAnswers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every open source raster."""
        while self._open:
            self._open.popitem()[1].close()

    def answers(self, records: Sequence[Record], *, max_new_tokens: int) -> list[dict[str, Any]]:
        """One cache row per record, in order."""
        loop = self.config.loop_config(max_new_tokens)
        rows: dict[str, dict[str, Any]] = {}
        direct: list[Record] = []
        for rec in records:
            why = loop_skip_reason(rec)
            if why is None:
                rows[rec.id] = self._ask(rec, loop)
            elif self.direct is None:
                message = f"record {rec.id}: the zoom loop needs one optical image, one question"
                rows[rec.id] = _failed(rec.id, why, message)
            else:
                direct.append(rec)
                rows[rec.id] = {"zoom_skipped": why}
        if direct and self.direct is not None:
            for row in self.direct(direct, max_new_tokens):
                rows[row["id"]] = {**row, "arm": "direct", "zoom": None, **rows[row["id"]]}
        return [rows[r.id] for r in records]

    def _ask(self, record: Record, loop: LoopConfig) -> dict[str, Any]:
        try:
            question, _ = zoom_question_answer(record)
            path = source_path(record, self.root)
            reader = self._reader(path, record)
        except ChainError as e:
            return _failed(record.id, e.reason, str(e))
        try:
            trace = run_zoom_loop(self.model, reader, question, loop, generate=self.generate)
        except RasterError as e:  # a crop the file cannot give (corrupt tile, budget)
            return _failed(record.id, UNREADABLE_IMAGE, f"record {record.id}: {e}")
        return self._row(record, trace, loop)

    def _reader(self, path: Path, record: Record) -> UHRReader:
        gsd = record.images[0].gsd
        key = (path, str(gsd.to_dict()) if gsd.is_known else "")
        if key in self._open:
            self._open.move_to_end(key)
            return self._open[key]
        try:
            reader = UHRReader(
                path,
                self.resolution,
                gsd=gsd if gsd.is_known else None,  # else from the file's georeferencing
                config=self.reader_config,
            )
        except RasterError as e:
            raise ChainError(UNREADABLE_IMAGE, f"record {record.id}: {e}") from None
        except OSError as e:
            raise ChainError(MISSING_IMAGE, f"record {record.id}: {e}") from None
        self._open[key] = reader
        while len(self._open) > OPEN_SOURCES:
            self._open.popitem(last=False)[1].close()
        return reader

    def view_tokens(self, hw: tuple[int, int]) -> int:
        """Language-model tokens of a view: its pixels over one token's square (views
        are sized to the processor's grid, so the processor keeps them as they are)."""
        f = self.resolution.factor
        return (hw[0] // f) * (hw[1] // f)

    def _row(self, record: Record, trace: ZoomTrace, loop: LoopConfig) -> dict[str, Any]:
        tokens = [self.view_tokens(v.hw) for v in trace.views]
        info = trace.to_dict()
        info["source"] = record.images[0].path  # relative: rows compare across machines
        for view, n in zip(info["views"], tokens, strict=True):
            view["visual_tokens"] = n
        h, w = trace.source_hw
        last = trace.turns[-1]
        return {
            "id": record.id,
            "prediction": trace.answer,
            "truncated": last.n_tokens >= loop.max_new_tokens,
            "failure": None,
            "reduced_images": int(h * w > self.reader_config.max_decode_pixels),
            "arm": "zoom",
            "visual_tokens": sum(tokens),
            "visual_tokens_processed": sum(sum(tokens[: t.n_images]) for t in trace.turns),
            "zoom": info,
        }


def _failed(rid: str, reason: str, message: str) -> dict[str, Any]:
    """The row of a record the loop could not ask (scored wrong, tried again next run)."""
    return {
        "id": rid,
        "prediction": None,
        "truncated": False,
        "failure": reason,
        "message": message,
        "reduced_images": 0,
        "arm": "zoom",
        "zoom": None,
    }


__all__ = ["OPEN_SOURCES", "ZoomAnswers", "ZoomEvalConfig", "loop_skip_reason"]
