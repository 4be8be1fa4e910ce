"""Run a trained model on benchmarks: batched greedy generation, a resumable cache, reports.

:func:`run_benchmark` asks a :class:`~earthvlm.models.EarthVLM` every example of
one :class:`~earthvlm.eval.benchmarks.Benchmark` and scores the answers:

* **Generation.** Records go through the model's :meth:`~EarthVLM.prepare` (B3 states
  the GSD in the prompt) and the collator in generation mode (left padding), ``batch_size``
  at a time; decoding is greedy (``do_sample=False``, one beam) for the benchmark's
  ``max_new_tokens`` unless the run sets it. Runs with a scale path decode through
  :meth:`earthvlm.models.ScaleEarth.generate`, which keeps each sample's gates fixed for
  the whole answer. Special tokens (image pads included) are dropped from the text; what
  is left, garbage or not, is the prediction the scorer sees.
* **Cache.** Every batch's raw outputs are appended to a JSONL shard keyed by record id
  (``<out>/<bench>/shards/rank-NNN.jsonl``, one per process, one ``write`` and an
  ``fsync`` per batch). A rerun reads every shard, skips the ids already answered and
  generates only the rest, so a crash costs at most one batch; a torn last line is cut
  off before appending. ``generation.json`` records what the cached answers depend on
  (checkpoint, benchmark version and options, ``max_new_tokens``, greedy decoding): a
  rerun with a different setup is refused rather than mixed.
* **Processes.** Under ``accelerate launch`` (or ``torchrun``; without CUDA the processes
  share the CPU over gloo, and ``torchrun --nproc_per_node k`` is the launcher: ``accelerate
  launch --cpu`` starts one process without an mpirun hostfile) process *i* of *k* takes
  every *k*-th example
  (``records[i::k]``) and writes its own shard; after a barrier the main process merges
  the shards, scores and writes the reports. On one process (CPU included) the same code
  runs with *k* = 1. The number of processes may change between resumed runs.
* **Reports.** ``predictions.jsonl`` (per record: prediction, reference, score,
  failure), ``scores.json`` (the result, the run's settings, the examples' ledger and
  provenance: package versions, git commit, model checkpoint), ``scores.csv`` (summary
  metrics and one row per category) and ``report.md``; ``COMPLETE`` is written last.
  :func:`run_benchmarks` adds ``summary.md`` and ``summary.csv`` over several benchmarks.

* **Endpoints.** In place of a local model the runner takes an :class:`AnswerSource`
  (:class:`~earthvlm.eval.endpoint.EndpointModel`: any OpenAI-compatible server); the
  cache, sharding and reports above are the same, only the answers come over HTTP.
* **Arms.** ``RunConfig.zoom`` asks every example through the zoom loop
  (:class:`~earthvlm.eval.zoom.ZoomAnswers`: global view, crops read natively, one GSD
  per view) instead of in one view (the direct arm). The arm and its settings key the
  cache's setup and name the folder (``<out>/<bench>-zoom<K>/``), so both arms of one
  model live side by side and a direct cache is never resumed as a zoom run; the zoom
  arm's report adds the traces and :mod:`earthvlm.eval.zoom_report`'s summary, and
  ``arms.md`` compares the arms found under ``out``.

A record the collator refuses (missing image, too long, ...) is counted as a failure with
its reason, kept in the cache and scored as wrong (prediction None); it is tried again on
the next run.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import torch

from earthvlm.data.collate import Collator
from earthvlm.data.record import Record
from earthvlm.errors import EarthVLMError
from earthvlm.eval.benchmarks import Benchmark, BenchmarkResult, build_benchmark
from earthvlm.eval.diagnostics.report import markdown_table
from earthvlm.eval.zoom import ZoomAnswers, ZoomEvalConfig
from earthvlm.eval.zoom_report import (
    arms_report,
    summary_fields,
    visual_token_stats,
    with_crop_apo,
    zoom_markdown,
    zoom_summary,
)
from earthvlm.geo.raster import DEFAULT_MAX_READ_PIXELS, DEFAULT_MAX_SCAN_PIXELS
from earthvlm.io import UntrustedJSONError, atomic_write_text, loads_untrusted
from earthvlm.models.earthvlm import EarthVLM
from earthvlm.provenance import provenance
from earthvlm.uhr.reader import ReaderConfig

#: Written last in a benchmark's folder: its reports are complete.
COMPLETE_FILE = "COMPLETE"
SHARD_DIR = "shards"


class EvalError(EarthVLMError):
    """An evaluation cannot run or resume (stale cache, duplicate record ids, no data)."""


@dataclass(frozen=True)
class RunConfig:
    """How benchmarks are run.

    Attributes:
        batch_size: Records per generation call (per process).
        max_new_tokens: New tokens per answer; None: each benchmark's own.
        limit: Ask at most this many examples per benchmark (the first ones).
        image_cache: Decoded images kept by the collator (questions share images).
        max_decode_pixels: Images with more pixels than this are never decoded whole:
            they are read reduced to the size the model sees (GeoTIFF overviews, JPEG
            draft, PNG strips; :mod:`earthvlm.data.pixels`) and counted in the report.
        max_scan_pixels: The most pixels a reduced read may scan (a raster without a
            coarse enough overview beyond this is refused with a reason).
        zoom: Ask through the zoom loop with these settings (the zoom arm); None: in one
            view (the direct arm).
    """

    batch_size: int = 8
    max_new_tokens: int | None = None
    limit: int | None = None
    image_cache: int = 64
    max_decode_pixels: int = DEFAULT_MAX_READ_PIXELS
    max_scan_pixels: int = DEFAULT_MAX_SCAN_PIXELS
    zoom: ZoomEvalConfig | None = None

    @property
    def arm(self) -> str:
        """``direct``, or ``zoom<K>`` for the zoom arm."""
        return "direct" if self.zoom is None else self.zoom.arm

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size}: must be >= 1")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={self.max_new_tokens}: must be >= 1 or None")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit={self.limit}: must be >= 1 or None (all examples)")
        if self.image_cache < 0:
            raise ValueError(f"image_cache={self.image_cache}: must be >= 0")
        for name in ("max_decode_pixels", "max_scan_pixels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 1")


def _no_wait() -> None:
    return None


@dataclass
class Processes:
    """This process's share of the work and how processes wait for each other.

    Attributes:
        index: This process's rank.
        count: Processes in the run.
        device: Where this process runs the model.
        barrier: Blocks until every process reaches it.
        gather: Every process's value, in rank order (one process: ``[value]``).
    """

    index: int = 0
    count: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    barrier: Callable[[], None] = _no_wait
    gather: Callable[[Any], list[Any]] = lambda value: [value]

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"process index {self.index} is outside 0..{self.count - 1}")

    @property
    def is_main(self) -> bool:
        return self.index == 0

    @classmethod
    def from_accelerate(cls) -> Processes:
        """The processes ``accelerate launch`` (or ``torchrun``) started; one process when
        run plainly. Without CUDA, several processes share the work on CPU (gloo), as with
        ``ACCELERATE_USE_CPU=true``."""
        from accelerate import PartialState
        from accelerate.utils import parse_flag_from_env

        several = int(os.environ.get("WORLD_SIZE", "1")) > 1
        cpu = parse_flag_from_env("ACCELERATE_USE_CPU") or (
            several and not torch.cuda.is_available()
        )
        state = PartialState(cpu=cpu)
        if state.num_processes == 1:
            return cls(state.process_index, 1, state.device, state.wait_for_everyone)
        from accelerate.utils import gather_object

        def gather(value: Any) -> list[Any]:
            return list(gather_object([value]))

        return cls(
            state.process_index, state.num_processes, state.device, state.wait_for_everyone, gather
        )


# -- the cache -----------------------------------------------------------------------------


def _cut_torn_tail(path: Path) -> None:
    """Truncate a file after its last newline (a crash mid-append leaves half a line)."""
    if not path.is_file():
        return
    with open(path, "rb+") as f:
        data = f.read()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            f.truncate(end)


class PredictionCache:
    """Raw outputs of one benchmark, one JSONL shard per process, keyed by record id.

    Args:
        folder: The benchmark's output folder (shards live in ``shards/`` inside).
        rank: The shard this process appends to.
    """

    def __init__(self, folder: Path, rank: int = 0) -> None:
        self.dir = folder / SHARD_DIR
        self.path = self.dir / f"rank-{rank:03d}.jsonl"

    def load(self) -> dict[str, dict[str, Any]]:
        """Every shard's rows by id; an answered row wins over a failed one. Lines that do
        not parse (a torn last line of a shard still being written) are ignored."""
        rows: dict[str, dict[str, Any]] = {}
        for shard in sorted(self.dir.glob("rank-*.jsonl")):
            for line in shard.read_text(encoding="utf-8").splitlines():
                try:
                    row = loads_untrusted(line)
                except UntrustedJSONError:  # torn, or damaged past what json takes
                    continue
                if not isinstance(row, dict) or not isinstance(row.get("id"), str):
                    continue
                old = rows.get(row["id"])
                if old is None or old.get("prediction") is None:
                    rows[row["id"]] = row
        return rows

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        """Append rows with one write and an fsync (a crash loses at most this batch)."""
        if not rows:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        _cut_torn_tail(self.path)
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)


def _check_setup(folder: Path, setup: dict[str, Any], *, write: bool) -> None:
    """Refuse to resume a cache made under another setup; record the setup (``write``)
    when none is recorded yet."""
    path = folder / "generation.json"
    setup = json.loads(json.dumps(setup))  # compare as stored (tuples become lists)
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        old.setdefault("arm", "direct")  # written before the zoom arm existed
        if old != setup:
            diff = [k for k in sorted(set(old) | set(setup)) if old.get(k) != setup.get(k)]
            raise EvalError(
                f"{folder}: the cached predictions were made with another setup "
                f"({', '.join(diff)} differ: {[old.get(k) for k in diff]} vs "
                f"{[setup.get(k) for k in diff]}); pass another --out, or delete "
                f"{folder / SHARD_DIR} and {path.name} to recompute"
            )
        return
    if write:
        atomic_write_text(path, json.dumps(setup, indent=2, sort_keys=True) + "\n")


# -- generation ----------------------------------------------------------------------------


def _eos_ids(model: EarthVLM) -> set[int]:
    eos = model.hf_model.generation_config.eos_token_id
    return set(eos if isinstance(eos, list) else [] if eos is None else [eos])


@torch.no_grad()
def generate_answers(
    model: EarthVLM,
    collator: Collator,
    records: Sequence[Record],
    *,
    max_new_tokens: int,
) -> list[dict[str, Any]]:
    """Greedy answers for one batch: a cache row per record, in order (on the device the
    model sits on: :meth:`EarthVLM.generate` moves the batch there).

    Returns:
        ``{"id", "prediction", "truncated", "failure", "visual_tokens"}`` per record: the
        decoded new tokens (special tokens dropped), whether the answer hit
        ``max_new_tokens`` and the image tokens of its prompt; or, for a record the
        collator refused, ``prediction`` None and ``failure`` its reason.
    """
    batch = collator([model.prepare(r) for r in records])
    rows = {
        rid: {
            "id": rid,
            "prediction": None,
            "truncated": False,
            "failure": reason,
            "message": message,
            "reduced_images": 0,
        }
        for rid, reason, message in batch.failures
    }
    if batch.inputs is not None:  # model.generate moves the batch to the model's device
        kwargs = {"max_new_tokens": max_new_tokens, "do_sample": False, "num_beams": 1,
                  "pad_token_id": collator.pad_id}  # fmt: skip
        out, masks = model.generate_batch(batch, **kwargs)  # scale path, fused pairs, [SEG]
        prompt = model.model_inputs(batch)["input_ids"]
        image_token = getattr(model.hf_model.config, "image_token_id", None)
        n_visual = (prompt == image_token).sum(dim=1).tolist() if image_token is not None else None
        new = out[:, prompt.shape[1] :].cpu()
        texts = model.backbone.tokenizer.batch_decode(new, skip_special_tokens=True)
        eos = _eos_ids(model)
        by_id = {r.id: r for r in records}
        reduced = dict(zip(batch.ids, batch.reduced_images, strict=True))
        for b, (rid, tokens, text) in enumerate(zip(batch.ids, new.tolist(), texts, strict=True)):
            ended = any(t in eos for t in tokens)
            if masks is not None and masks[b] is not None:
                text = f"{text.strip()} {mask_text(masks[b], by_id[rid])}"
            rows[rid] = {
                "id": rid,
                "prediction": text.strip(),
                "truncated": not ended and len(tokens) >= max_new_tokens,
                "failure": None,
                "reduced_images": int(reduced[rid]),
                "visual_tokens": None if n_visual is None else int(n_visual[b]),
            }
    return [rows[r.id] for r in records]


def mask_text(logits: torch.Tensor, record: Record) -> str:
    """A ``[SEG]`` answer's first mask as text a benchmark reads: uncompressed COCO RLE
    (JSON) at the size of the record's segmented image (its last), the logits resized
    bilinearly from the size the model saw, foreground where they are above 0.

    The raw prediction keeps the mask this way (the cache holds text), and scorers that
    read masks from responses (:func:`earthvlm.eval.benchmarks.earthmind.parse_mask`)
    score it.
    """
    from earthvlm.data.sources._masks import encode_rle

    first = logits[:1].float()[None]  # (1, 1, h, w)
    ref = record.images[-1] if record.images else None
    if (
        ref is not None
        and ref.width
        and ref.height
        and first.shape[-2:]
        != (
            ref.height,
            ref.width,
        )
    ):
        first = torch.nn.functional.interpolate(
            first, size=(ref.height, ref.width), mode="bilinear", align_corners=False
        )
    return json.dumps(encode_rle((first[0, 0] > 0).cpu().numpy()), separators=(",", ":"))


def _place(model: EarthVLM, device: torch.device) -> None:
    module = model
    if getattr(model.hf_model, "is_loaded_in_4bit", False):
        return  # quantised weights are placed when loaded
    first = next(module.parameters(), None)
    if first is not None and first.device != torch.device(device):
        module.to(device)


# -- one benchmark -------------------------------------------------------------------------


@dataclass
class BenchmarkRun:
    """What one benchmark run did.

    Attributes:
        name: The benchmark.
        folder: Its output folder.
        n_examples: Examples asked (after ``limit``).
        n_generated: Answers generated in this call, by every process together.
        n_cached: Answers found in the cache, by every process together.
        failures: Reason -> records the collator refused (scored as wrong).
        result: The scores (main process only; None elsewhere).
        seconds: Wall time of this call.
        arm: ``direct`` or ``zoom<K>``.
        summary: The arm's columns of ``summary.csv`` (main process only).
    """

    name: str
    folder: Path
    n_examples: int
    n_generated: int = 0
    n_cached: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    result: BenchmarkResult | None = None
    seconds: float = 0.0
    arm: str = "direct"
    summary: dict[str, Any] = field(default_factory=dict)


class AnswerSource(Protocol):
    """Answers from somewhere other than a local model (an OpenAI-compatible endpoint,
    :class:`~earthvlm.eval.endpoint.EndpointModel`): the runner's cache, sharding and
    reports are the same."""

    name: str
    variant: str

    def info(self) -> dict[str, Any]:
        """The reports' ``model`` section (its ``checkpoint`` keys the cache's setup)."""
        ...

    def answers(
        self, records: Sequence[Record], image_root: Path, *, max_new_tokens: int
    ) -> list[dict[str, Any]]:
        """One cache row per record, in order (as :func:`generate_answers` returns)."""
        ...


@contextmanager
def _answer_source(
    model: EarthVLM | AnswerSource, image_root: Path, config: RunConfig, procs: Processes
) -> Iterator[Callable[[Sequence[Record], int], list[dict[str, Any]]]]:
    """``(records, max_new_tokens) -> cache rows``: the local model through the collator
    (the zoom arm: through the zoom loop), or the answer source's own ``answers``."""
    if not isinstance(model, EarthVLM):
        yield lambda records, max_new: model.answers(records, image_root, max_new_tokens=max_new)
        return
    _place(model, procs.device)
    collator = Collator(
        model.backbone,
        image_root,
        mode="generate",
        max_length=model.max_length,
        image_cache=config.image_cache,
        max_read_pixels=config.max_decode_pixels,
        max_scan_pixels=config.max_scan_pixels,
    )

    def direct(records: Sequence[Record], max_new: int) -> list[dict[str, Any]]:
        return generate_answers(model, collator, records, max_new_tokens=max_new)

    if config.zoom is None:
        yield direct
        return
    reader = ReaderConfig(
        max_decode_pixels=config.max_decode_pixels, max_scan_pixels=config.max_scan_pixels
    )
    with ZoomAnswers(model, config.zoom, image_root, reader_config=reader, direct=direct) as z:
        yield lambda records, max_new: z.answers(records, max_new_tokens=max_new)


def _arm(model: EarthVLM | AnswerSource, config: RunConfig) -> str:
    """The arm a run asks in: ``direct``, ``zoom<K>``, or ``server-zoom<K>`` for an
    endpoint that zooms server-side."""
    zoom = None if isinstance(model, EarthVLM) else model.info().get("zoom")
    return config.arm if zoom is None else f"server-zoom{zoom}"


def model_info(model: EarthVLM | AnswerSource) -> dict[str, Any]:
    """The reports' ``model`` section (its ``checkpoint`` keys the cache's setup)."""
    if not isinstance(model, EarthVLM):
        return model.info()
    return {
        "name": model.name,
        "variant": model.variant,
        "checkpoint": str(Path(model.source).resolve()) if model.source else model.name,
        "origin": model.origin,
        "base_model": model.recipe.model.path or f"tiny {model.recipe.model.family}",
        "stage": model.recipe.stage,
    }


def run_benchmark(
    model: EarthVLM | AnswerSource,
    bench: Benchmark,
    data: str | Path,
    out: str | Path,
    config: RunConfig | None = None,
    processes: Processes | None = None,
) -> BenchmarkRun:
    """Generate (or take from the cache) an answer per example, then score and report.

    Args:
        model: The model under test (moved to ``processes.device`` if elsewhere), or an
            :class:`AnswerSource` such as an endpoint.
        bench: The benchmark.
        data: Its data folder (see the benchmark's ``files``).
        out: Output folder; the benchmark writes under ``out/<name>/``.
        config: Batch size, ``max_new_tokens``, ``limit``, the arm.
        processes: This process's share (default: from ``accelerate``).

    Raises:
        EvalError: For no examples, duplicate record ids, a cache of another setup, or
            the zoom arm with an answer source (an endpoint zooms server-side).
        BenchmarkError: If the benchmark's files are missing.
    """
    t0 = time.perf_counter()
    config = config or RunConfig()
    if config.zoom is not None and not isinstance(model, EarthVLM):
        raise EvalError(
            f"{bench.name}: the zoom arm runs a local model; an endpoint zooms server-side "
            "(earthvlm serve --zoom, eval --endpoint-zoom K)"
        )
    procs = processes or Processes.from_accelerate()
    folder = Path(out) / (bench.name if config.zoom is None else f"{bench.name}-{config.arm}")
    records = list(bench.examples(data, limit=config.limit))
    if not records:
        raise EvalError(f"{bench.name}: no examples under {data} ({bench.ledger.summary()})")
    ids = Counter(r.id for r in records)
    if len(ids) != len(records):
        dup = next(k for k, v in ids.items() if v > 1)
        raise EvalError(f"{bench.name}: record id {dup!r} appears twice; ids key the cache")
    max_new = config.max_new_tokens or bench.max_new_tokens
    setup = {"benchmark": bench.name, "version": bench.version, "options": bench.options(),
             "checkpoint": model_info(model)["checkpoint"], "max_new_tokens": max_new,
             "decoding": "greedy", "arm": _arm(model, config)}  # fmt: skip
    if config.zoom is not None:
        setup["zoom"] = config.zoom.to_dict()
    _check_setup(folder, setup, write=procs.is_main)  # every process refuses a stale cache

    cache = PredictionCache(folder, procs.index)
    done = {k for k, row in cache.load().items() if row.get("prediction") is not None}
    procs.barrier()  # every process has read the cache before any appends
    mine = records[procs.index :: procs.count]
    todo = [r for r in mine if r.id not in done]
    run = BenchmarkRun(
        bench.name, folder, len(records), n_cached=len(mine) - len(todo), arm=setup["arm"]
    )
    if todo:
        with _answer_source(model, bench.image_root(data), config, procs) as answer:
            for start in range(0, len(todo), config.batch_size):
                rows = answer(todo[start : start + config.batch_size], max_new)
                cache.append(rows)
                run.n_generated += sum(r["failure"] is None for r in rows)
                run.failures.update(r["failure"] for r in rows if r["failure"] is not None)
    # the table reports the whole run, not this process's share of it
    shares = procs.gather((run.n_generated, run.n_cached, dict(run.failures)))
    run.n_generated = sum(g for g, _, _ in shares)
    run.n_cached = sum(c for _, c, _ in shares)
    run.failures = sum((Counter(f) for _, _, f in shares), Counter())
    procs.barrier()
    if procs.is_main:
        run.result, run.summary = _score_and_report(
            model, bench, records, cache.load(), folder, data, config, max_new
        )
    procs.barrier()
    run.seconds = time.perf_counter() - t0
    return run


def _score_and_report(
    model: EarthVLM | AnswerSource,
    bench: Benchmark,
    records: list[Record],
    cached: dict[str, dict[str, Any]],
    folder: Path,
    data: str | Path,
    config: RunConfig,
    max_new: int,
) -> tuple[BenchmarkResult, dict[str, Any]]:
    (folder / COMPLETE_FILE).unlink(missing_ok=True)
    rows = [cached.get(r.id, {"prediction": None, "failure": "not_generated"}) for r in records]
    predictions = [row.get("prediction") for row in rows]
    result = bench.score(records, predictions)
    zoom = None
    if config.zoom is not None:
        zoom = zoom_summary(bench, records, rows, result.item_scores)
        result = with_crop_apo(result, zoom)
    lines = []
    for rec, row, s in zip(records, rows, result.item_scores, strict=True):
        line = {
            "id": rec.id, "category": bench.category(rec), "prediction": row.get("prediction"),
            "reference": bench.reference(rec), "score": s, "failure": row.get("failure"),
            "truncated": bool(row.get("truncated")),
            "reduced_images": int(row.get("reduced_images") or 0),
            "visual_tokens": row.get("visual_tokens"),
        }  # fmt: skip
        if config.zoom is not None:  # the trace: views, source windows, GSDs, turns
            line["arm"] = row.get("arm", "zoom")
            line["zoom"] = row.get("zoom")
            line["zoom_skipped"] = row.get("zoom_skipped")
        lines.append(json.dumps(line, ensure_ascii=False))
    atomic_write_text(folder / "predictions.jsonl", "\n".join(lines) + "\n")
    failures = Counter(row["failure"] for row in rows if row.get("failure"))
    generation = {
        "n_examples": len(records),
        "n_answered": sum(p is not None for p in predictions),
        "failures": dict(sorted(failures.items())),
        "truncated": sum(bool(row.get("truncated")) for row in rows),
        # images over the decode budget, read reduced to the size the model sees
        "reduced_images": sum(int(row.get("reduced_images") or 0) for row in rows),
        "reduced_examples": sum(bool(row.get("reduced_images")) for row in rows),
        "max_new_tokens": max_new,
        "decoding": "greedy",
        "arm": _arm(model, config),
        "visual_tokens": visual_token_stats(rows),
    }
    if config.zoom is not None:  # a call (and its reasoning) needs more than a short answer
        generation["max_new_tokens_per_turn"] = config.zoom.loop_config(max_new).max_new_tokens
    report = {
        "benchmark": bench.name,
        "version": bench.version,
        "options": bench.options(),
        "data": str(data),
        "run": asdict(config),
        "generation": generation,
        "examples": bench.ledger.to_dict(),
        "model": model_info(model),
        "provenance": provenance(),
        "written": datetime.now(UTC).isoformat(timespec="seconds"),
        "result": result.to_dict(),
    }
    if zoom is not None:
        report["zoom"] = zoom
    atomic_write_text(folder / "scores.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(folder / "scores.csv", _csv(_score_rows(result)))
    atomic_write_text(folder / "report.md", _markdown(report, result))
    atomic_write_text(folder / COMPLETE_FILE, report["written"] + "\n")
    return result, summary_fields(report)


# -- reports -------------------------------------------------------------------------------

_CSV_HEADER = ("benchmark", "version", "category", "n", "metric", "value")


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _score_rows(result: BenchmarkResult) -> list[tuple[Any, ...]]:
    """Summary metrics (category ``all``), then the headline per category."""
    rows: list[tuple[Any, ...]] = [
        (result.benchmark, result.version, "all", result.n, k, v) for k, v in result.metrics.items()
    ]
    rows += [
        (result.benchmark, result.version, c, s.n, result.metric,
         None if math.isnan(s.score) else s.score)
        for c, s in result.categories.items()
    ]  # fmt: skip
    return rows


def _csv(rows: Sequence[Sequence[Any]], header: Sequence[str] = _CSV_HEADER) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(["" if v is None else v for v in r] for r in rows)
    return buf.getvalue()


def _markdown(report: dict[str, Any], result: BenchmarkResult) -> str:
    model, gen = report["model"], report["generation"]
    lines = [
        f"# {result.benchmark} (v{result.version}): {model['name']} ({model['variant']})",
        "",
        f"**{result.metric}: {_fmt(result.headline)}** over {result.n} scored of "
        f"{gen['n_examples']} examples; {gen['n_answered']} answered, "
        f"{sum(gen['failures'].values())} refused, {gen['truncated']} cut at "
        f"{gen.get('max_new_tokens_per_turn', gen['max_new_tokens'])} new tokens"
        f"{' a turn' if 'max_new_tokens_per_turn' in gen else ''}; "
        f"{gen.get('reduced_images', 0)} image(s) over "
        f"{report['run'].get('max_decode_pixels', 0):,} px read reduced, never decoded whole.",
        "",
        "## Metrics",
        "",
        markdown_table(["metric", "value"], [[k, _fmt(v)] for k, v in result.metrics.items()]),
        "",
        "## By category",
        "",
        markdown_table(
            ["category", "n", result.metric],
            [[c, s.n, _fmt(s.score)] for c, s in result.categories.items()],
        ),
        "",
        *zoom_markdown(report),
        "## Run",
        "",
        markdown_table(
            ["setting", "value"],
            [
                ["data", report["data"]],
                ["examples read", report["examples"]],
                ["options", report["options"]],
                ["run", report["run"]],
                ["failures", gen["failures"] or "none"],
                ["model", model],
                ["provenance", report["provenance"]],
                ["written", report["written"]],
            ],
        ),
        "",
        "Raw outputs: `predictions.jsonl` (one row per example, with its score); numbers: "
        "`scores.json`, `scores.csv`.",
        "",
    ]
    return "\n".join(lines)


def write_summary(
    runs: Sequence[BenchmarkRun], out: str | Path, model: EarthVLM | AnswerSource
) -> Path:
    """``summary.md`` and ``summary.csv`` (the headline of every benchmark run, its arm,
    visual tokens per question, zoom rate and depth, invalid tool calls) under ``out``;
    ``arms.md`` and ``arms.csv`` where another arm of the same benchmarks and checkpoint
    is complete there too (:func:`~earthvlm.eval.zoom_report.arms_report`)."""
    out = Path(out)
    extra = ("arm", "visual_tokens_per_question", "zoom_rate", "mean_zoom_depth", "invalid_calls")
    rows = [
        (r.name, r.result.version, r.result.n, r.result.metric,
         None if math.isnan(r.result.headline) else r.result.headline,
         *[r.summary.get(k, r.arm if k == "arm" else None) for k in extra])
        for r in runs if r.result is not None
    ]  # fmt: skip
    header = ("benchmark", "version", "n", "metric", "value", *extra)
    atomic_write_text(out / "summary.csv", _csv(rows, header))
    info = model_info(model)
    prov = provenance()
    folders = [r.folder.name for r in runs if r.result is not None]
    md = [
        f"# Evaluation: {info['name']} ({info['variant']})",
        "",
        markdown_table(
            [*header, "report"],
            [
                [*r[:4], *[_fmt(v) for v in r[4:]], f"[{f}/report.md]({f}/report.md)"]
                for r, f in zip(rows, folders, strict=True)
            ],
        ),
        "",
    ]
    arms = arms_report(out, list(dict.fromkeys(r.name for r in runs)))
    if arms is not None:
        table, arms_md = arms
        atomic_write_text(out / "arms.csv", _csv(table[1:], table[0]))
        atomic_write_text(out / "arms.md", f"# Arms: {info['name']}\n\n{arms_md}\n")
        md += ["## Arms", "", arms_md, "", "Also in `arms.md` / `arms.csv`.", ""]
    md += [
        f"Checkpoint `{info['checkpoint']}`; earthvlm {prov['earthvlm']}, git "
        f"{prov['git_commit'] or 'unknown'}.",
        "",
    ]
    atomic_write_text(out / "summary.md", "\n".join(md))
    return out / "summary.md"


def run_benchmarks(
    model: EarthVLM | AnswerSource,
    names: Sequence[str],
    data: str | Path | Callable[[str], Path],
    out: str | Path,
    config: RunConfig | None = None,
    processes: Processes | None = None,
    options: dict[str, dict[str, Any]] | None = None,
) -> list[BenchmarkRun]:
    """Run several benchmarks in turn and write the summary (main process).

    Args:
        model: The model under test.
        names: Registered benchmark names.
        data: One data folder for all, or ``name -> folder``.
        out: Output folder.
        config: How to run them.
        processes: This process's share (default: from ``accelerate``).
        options: Benchmark name -> its options.
    """
    procs = processes or Processes.from_accelerate()
    runs = []
    for name in names:
        bench = build_benchmark(name, **(options or {}).get(name, {}))
        folder = data(name) if callable(data) else data
        runs.append(run_benchmark(model, bench, folder, out, config, procs))
    if procs.is_main:
        write_summary(runs, out, model)
    return runs


__all__ = [
    "COMPLETE_FILE",
    "AnswerSource",
    "BenchmarkRun",
    "EvalError",
    "PredictionCache",
    "Processes",
    "RunConfig",
    "generate_answers",
    "model_info",
    "run_benchmark",
    "run_benchmarks",
    "write_summary",
]
