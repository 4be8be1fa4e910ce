"""Dynamic batching: requests of different GSDs gathered for a few ms and decoded in one
``generate``, each sample under its own GSD gates.

One model thread owns the model. Requests arrive as :class:`Job` objects (already
encoded by the processor, one per request) on a queue; the thread takes the oldest job,
waits up to ``batch_wait_ms`` *from that job's arrival* for others with the same
decoding settings (:meth:`Job.key`: greedy jobs all batch together; sampled jobs by
temperature and top-p; a seeded job runs alone, so its seed means something), up to
``max_batch_size`` rows, and runs them as one :meth:`EarthVLM.generate` with one GSD per
image in batch order: ScaleEarth sets each sample's gates before the language model
runs (per token: each token under the GSD of the latest image before it), so requests at
0.3 m and at 10 m share the forward.

Why the batched answers equal the answers one at a time: the prompts are left-padded
(decoder-only batching; Qwen-VL's rotary positions are computed from the attention
mask), images are packed into one ``pixel_values`` in sample order, and a row never
attends to another. ``tests/serve`` checks equality of greedy answers.

Per row, a :class:`RowTracker` (a transformers ``StoppingCriteria`` called once per
decoding step with every row's new token) collects the tokens, stops the row at EOS,
at its own ``max_tokens`` (the batch decodes to the longest), at a stop sequence, when
the request was cancelled (client gone) or past its deadline, and streams text deltas
(held back while they could still become a stop sequence or are half a UTF-8
character). ``n`` > 1 with sampling is ``n`` rows; with greedy decoding one row answers
all ``n``.

A zoom job (the ``zoom_in`` tool run server-side) runs alone through
:func:`earthvlm.uhr.loop.run_zoom_loop` on the native image.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from earthvlm.models.earthvlm import EarthVLM
from earthvlm.scale.gsd import GSD
from earthvlm.serve.protocol import APIError

log = logging.getLogger(__name__)

#: Finish reasons a row can end with (``cancelled`` / ``timeout`` never reach a client
#: as a choice: the request gets an error instead).
STOP, LENGTH, CANCELLED, TIMEOUT = "stop", "length", "cancelled", "timeout"


@dataclass
class Prepared:
    """One request encoded by the processor (a batch of one) and its images' GSDs."""

    inputs: dict[str, torch.Tensor]
    gsds: list[GSD | None]

    @property
    def n_prompt(self) -> int:
        return int(self.inputs["input_ids"].shape[1])


@dataclass
class ZoomTask:
    """A request the zoom loop answers: one image file, its GSD, the question."""

    path: Path
    gsd: GSD | None
    question: str
    max_zooms: int
    workdir: tempfile.TemporaryDirectory | None = None


@dataclass
class Choice:
    """One answer: its text, why it ended and how many tokens it took."""

    text: str
    finish_reason: str
    n_tokens: int


@dataclass
class JobResult:
    """What the model thread hands back for one job.

    Attributes:
        choices: ``n`` answers.
        n_prompt: Prompt tokens (all turns, for a zoom job).
        decisions: Per image, ``(gsd, branch)`` of the scale path, or ``None`` for a model
            without one.
        batch_rows: Rows in the ``generate`` this job was part of.
        batch_jobs: Requests in it.
        zoom: The zoom trace (``ZoomTrace.to_dict()``), for a zoom job.
    """

    choices: list[Choice]
    n_prompt: int
    decisions: list[tuple[GSD, str]] | None
    batch_rows: int = 1
    batch_jobs: int = 1
    zoom: dict[str, Any] | None = None


@dataclass(eq=False)
class Job:
    """One request waiting for (or in) the model thread."""

    prepared: Prepared | None
    greedy: bool
    temperature: float
    top_p: float
    seed: int | None
    max_new_tokens: int
    stop: tuple[str, ...] = ()
    n: int = 1
    deadline: float = float("inf")
    zoom: ZoomTask | None = None
    on_text: Callable[[int, str], None] | None = None
    """Streaming: called from the model thread with ``(choice index, text delta)``."""
    future: cf.Future = field(default_factory=cf.Future)
    cancelled: bool = False
    """Set by the server when the client is gone or the request timed out."""
    arrived: float = field(default_factory=time.monotonic)

    def key(self) -> tuple[Any, ...]:
        """Jobs with equal keys can share one ``generate``."""
        if self.zoom is not None:
            return ("zoom", id(self))
        if self.greedy:
            return ("greedy",)
        if self.seed is not None:
            return ("seeded", id(self))
        return ("sample", self.temperature, self.top_p)

    @property
    def rows(self) -> int:
        return 1 if self.greedy or self.zoom is not None else self.n

    def emit(self, row_choice: int, delta: str) -> None:
        if self.on_text is None or not delta:
            return
        if self.greedy:  # one row answers every choice
            for c in range(self.n):
                self.on_text(c, delta)
        else:
            self.on_text(row_choice, delta)


def _resolve(future: cf.Future, value: Any = None, error: BaseException | None = None) -> None:
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)
    except cf.InvalidStateError:  # cancelled by the server meanwhile
        pass


# -- per-row decoding state ----------------------------------------------------------------


class _Row:
    def __init__(self, job: Job, choice: int, max_new: int) -> None:
        self.job, self.choice, self.max_new = job, choice, max_new
        self.tokens: list[int] = []
        self.n_tokens = 0
        self.text = ""
        self.sent = 0
        self.finish: str | None = None


class RowTracker(StoppingCriteria):
    """Each row's tokens, its end (EOS, its ``max_tokens``, a stop sequence, cancelled,
    timed out) and its streamed text; called by ``generate`` once per step.

    Args:
        rows: ``(job, choice index)`` per batch row.
        decode: Token ids -> text (special tokens dropped).
        eos_ids: End-of-sequence ids.
    """

    def __init__(
        self,
        rows: Sequence[tuple[Job, int]],
        decode: Callable[[list[int]], str],
        eos_ids: set[int],
    ) -> None:
        self.rows = [_Row(job, c, job.max_new_tokens) for job, c in rows]
        self.decode, self.eos_ids = decode, eos_ids
        self.hold = max((len(s) for job, _ in rows for s in job.stop), default=1) - 1

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        last = input_ids[:, -1].tolist()
        now = time.monotonic()
        for row, token in zip(self.rows, last, strict=True):
            if row.finish is None:
                self._step(row, int(token), now)
        return torch.tensor([r.finish is not None for r in self.rows], device=input_ids.device)

    def _step(self, row: _Row, token: int, now: float) -> None:
        job = row.job
        row.n_tokens += 1
        if token in self.eos_ids:
            row.finish = STOP
        else:
            row.tokens.append(token)
            if job.stop or job.on_text is not None:
                row.text = self.decode(row.tokens)
                cut = _first_stop(row.text, job.stop)
                if cut is not None:
                    row.text, row.finish = row.text[:cut], STOP
            if row.finish is None and row.n_tokens >= row.max_new:
                row.finish = LENGTH
        if row.finish is None and job.cancelled:
            row.finish = CANCELLED
        elif row.finish is None and now > job.deadline:
            row.finish = TIMEOUT
        if job.on_text is not None:
            self._stream(row)

    def _stream(self, row: _Row) -> None:
        text = row.text
        if row.finish is None:
            # hold back what could still become a stop sequence or half a character
            safe = len(text) - (self.hold if row.job.stop else 0)
            while safe > row.sent and text[safe - 1] == "\ufffd":
                safe -= 1
        else:
            safe = len(text)
        if safe > row.sent:
            row.job.emit(row.choice, text[row.sent : safe])
            row.sent = safe

    def finish(self) -> None:
        """Rows ``generate`` left unfinished (every row reached the batch's limit)."""
        for row in self.rows:
            if row.finish is None:
                row.finish = LENGTH
            if not (row.job.stop or row.job.on_text is not None):
                row.text = self.decode(row.tokens)
            elif row.job.on_text is not None:
                self._stream(row)


def _first_stop(text: str, stops: Sequence[str]) -> int | None:
    cuts = [i for s in stops if (i := text.find(s)) >= 0]
    return min(cuts) if cuts else None


# -- batching -------------------------------------------------------------------------------


def collate(samples: Sequence[dict[str, torch.Tensor]], pad_id: int) -> dict[str, torch.Tensor]:
    """Processor outputs of single samples as one left-padded batch: sequences padded on
    the left (``pad_id``, attention 0), images' patches and grids concatenated in sample
    order (what the processor itself does for a batch)."""
    width = max(int(s["input_ids"].shape[1]) for s in samples)
    out: dict[str, torch.Tensor] = {}
    for key, fill in (("input_ids", pad_id), ("attention_mask", 0), ("mm_token_type_ids", 0)):
        if not any(key in s for s in samples):
            continue
        rows = []
        for s in samples:
            seq = s.get(key)
            if seq is None:  # a sample without that key: zeros of its length
                seq = torch.zeros_like(s["input_ids"])
            pad = torch.full((1, width - seq.shape[1]), fill, dtype=seq.dtype)
            rows.append(torch.cat([pad, seq], dim=1))
        out[key] = torch.cat(rows, dim=0)
    for key in ("pixel_values", "image_grid_thw"):
        parts = [s[key] for s in samples if key in s]
        if parts:
            out[key] = torch.cat(parts, dim=0)
    return out


class Engine:
    """The model thread and its queue.

    Args:
        model: The model (put in eval mode, parameters frozen).
        max_batch_size: Most rows per ``generate``.
        batch_wait_ms: How long the oldest job waits for others.
        tokenizer_lock: Held around tokenizer calls (the server's preparation threads
            share the tokenizer).
    """

    def __init__(
        self,
        model: EarthVLM,
        *,
        max_batch_size: int = 8,
        batch_wait_ms: float = 5.0,
        tokenizer_lock: threading.Lock | None = None,
    ) -> None:
        self.model = model.inference()
        self.max_batch_size = int(max_batch_size)
        self.batch_wait_s = float(batch_wait_ms) / 1000.0
        self.tokenizer = model.backbone.tokenizer
        self.lock = tokenizer_lock or threading.Lock()
        gen = model.hf_model.generation_config
        eos = gen.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        tok = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else gen.pad_token_id
        self.pad_id = int(pad if pad is not None else next(iter(self.eos_ids), 0))
        self._cond = threading.Condition()
        self._pending: list[Job] = []
        self._stopping = False
        self._thread: threading.Thread | None = None
        #: Batches run, rows decoded, and the largest batch, for /health and logs.
        self.stats = {"batches": 0, "rows": 0, "jobs": 0, "largest_batch": 0}

    # -- life -------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="earthvlm-model", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Refuse new jobs, fail the queued ones (503), let the running batch finish."""
        with self._cond:
            self._stopping = True
            pending, self._pending = self._pending, []
            self._cond.notify_all()
        for job in pending:
            _resolve(
                job.future,
                error=APIError(
                    503, "the server is shutting down", type="server_error", code="shutting_down"
                ),
            )
        if self._thread is not None:
            self._thread.join(timeout_s)

    @property
    def queued(self) -> int:
        with self._cond:
            return len(self._pending)

    def submit(self, job: Job) -> None:
        """Queue a job; its ``future`` resolves to a :class:`JobResult` or an error.

        Raises:
            APIError: 503 when the server is shutting down.
        """
        with self._cond:
            if self._stopping:
                raise APIError(
                    503, "the server is shutting down", type="server_error", code="shutting_down"
                )
            self._pending.append(job)
            self._cond.notify_all()

    # -- the model thread -----------------------------------------------------------------

    def _take(self) -> list[Job]:
        """The next batch: the oldest job and those that may join it (FIFO)."""
        with self._cond:
            while not self._pending and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return []
            first = self._pending[0]
            key = first.key()
            until = first.arrived + self.batch_wait_s
            while True:
                same = [j for j in self._pending if j.key() == key]
                rows = sum(j.rows for j in same)
                left = until - time.monotonic()
                if key[0] in ("zoom", "seeded") or rows >= self.max_batch_size or left <= 0:
                    break
                self._cond.wait(left)
                if self._stopping:
                    return []
            batch, rows = [], 0
            for j in same:
                if batch and rows + j.rows > self.max_batch_size:
                    break
                batch.append(j)
                rows += j.rows
            taken = set(map(id, batch))
            self._pending = [j for j in self._pending if id(j) not in taken]
        # a job the server gave up on (timeout, client gone) is dropped here
        return [j for j in batch if j.future.set_running_or_notify_cancel() and not j.cancelled]

    def _loop(self) -> None:
        while True:
            jobs = self._take()
            if not jobs:
                with self._cond:
                    if self._stopping:
                        return
                continue
            try:
                if jobs[0].zoom is not None:
                    self._run_zoom(jobs[0])
                else:
                    self._run_batch(jobs)
            except Exception as e:
                log.exception("generation failed for a batch of %d request(s)", len(jobs))
                for job in jobs:
                    _resolve(
                        job.future,
                        error=APIError(
                            500,
                            f"generation failed ({type(e).__name__}); see the server log",
                            type="server_error",
                            code="internal_error",
                        ),
                    )

    def _decode(self, ids: list[int]) -> str:
        with self.lock:
            return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _decisions(self) -> list[tuple[GSD, str]] | None:
        scale = self.model.scale
        if scale is None:
            return None
        return [(d.gsd, d.branch.value) for d in scale.last.decisions if d is not None]

    @torch.inference_mode()
    def _run_batch(self, jobs: list[Job]) -> None:
        rows = [(job, c) for job in jobs for c in range(job.rows)]
        samples = [job.prepared.inputs for job, _ in rows]
        gsds = [g for job, _ in rows for g in job.prepared.gsds]
        inputs = collate(samples, self.pad_id)
        tracker = RowTracker(rows, self._decode, self.eos_ids)
        first = jobs[0]
        kwargs: dict[str, Any] = {
            "max_new_tokens": max(job.max_new_tokens for job in jobs),
            "pad_token_id": self.pad_id,
            "stopping_criteria": StoppingCriteriaList([tracker]),
            "num_beams": 1,
        }
        if first.greedy:
            kwargs["do_sample"] = False
        else:
            kwargs.update(do_sample=True, temperature=first.temperature, top_p=first.top_p, top_k=0)
            if first.seed is not None:
                torch.manual_seed(first.seed)
        t0 = time.perf_counter()
        self.model.generate(inputs, gsds, **kwargs)
        tracker.finish()
        decisions = self._decisions()
        self.stats["batches"] += 1
        self.stats["rows"] += len(rows)
        self.stats["jobs"] += len(jobs)
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(rows))
        log.debug(
            "batch of %d rows (%d requests) in %.3f s",
            len(rows),
            len(jobs),
            time.perf_counter() - t0,
        )
        k = 0  # images before this row, in batch order
        by_job: dict[int, list[_Row]] = {}
        for row in tracker.rows:
            by_job.setdefault(id(row.job), []).append(row)
        for job in jobs:
            mine = by_job[id(job)]
            n_images = len(job.prepared.gsds)
            ends = {r.finish for r in mine}
            if TIMEOUT in ends:
                _resolve(
                    job.future,
                    error=APIError(
                        504,
                        "the request timed out while generating",
                        type="timeout_error",
                        code="timeout",
                    ),
                )
            elif CANCELLED in ends:
                _resolve(job.future, error=APIError(499, "cancelled", code="cancelled"))
            else:
                choices = [Choice(r.text, r.finish or LENGTH, r.n_tokens) for r in mine]
                if job.greedy and job.n > 1:
                    choices = choices * job.n
                mine_decisions = decisions[k : k + n_images] if decisions is not None else None
                _resolve(
                    job.future,
                    JobResult(choices, job.prepared.n_prompt, mine_decisions, len(rows), len(jobs)),
                )
            k += n_images * job.rows

    @torch.inference_mode()
    def _run_zoom(self, job: Job) -> None:
        from earthvlm.data.resolution import Resolution
        from earthvlm.uhr.loop import LoopConfig, run_zoom_loop
        from earthvlm.uhr.reader import UHRReader

        task = job.zoom
        if task is None:
            raise RuntimeError("_run_zoom needs a zoom job")
        prompt_tokens = 0

        def generate(inputs: Any, gsds: list[GSD], max_new: int) -> list[int]:
            nonlocal prompt_tokens
            prompt_tokens += int(inputs["input_ids"].shape[1])
            tracker = RowTracker([(job, 0)], self._decode, self.eos_ids)
            tracker.rows[0].max_new = max_new
            out, _ = self.model.generate(
                inputs,
                list(gsds),
                max_new_tokens=max_new,
                do_sample=False,
                pad_token_id=self.pad_id,
                stopping_criteria=StoppingCriteriaList([tracker]),
            )
            if tracker.rows[0].finish in (CANCELLED, TIMEOUT):
                raise _Abandoned(tracker.rows[0].finish)
            return out[0, inputs["input_ids"].shape[1] :].tolist()

        processor = self.model.backbone.processor.image_processor
        config = LoopConfig(max_zooms=task.max_zooms, max_new_tokens=job.max_new_tokens)
        on_text, job.on_text = job.on_text, None  # the loop's turns are not streamed
        try:
            with UHRReader(task.path, Resolution.from_processor(processor), gsd=task.gsd) as r:
                trace = run_zoom_loop(self.model, r, task.question, config, generate=generate)
        except _Abandoned as e:
            code = 504 if e.args[0] == TIMEOUT else 499
            _resolve(
                job.future, error=APIError(code, f"the request {e.args[0]}", code=str(e.args[0]))
            )
            return
        except Exception as e:
            from earthvlm.errors import EarthVLMError

            if not isinstance(e, EarthVLMError):
                raise
            _resolve(job.future, error=APIError(400, f"zoom: {e}", code="bad_image"))
            return
        finally:
            job.on_text = on_text
            if task.workdir is not None:
                task.workdir.cleanup()
        last = trace.turns[-1]
        finish = LENGTH if last.n_tokens >= job.max_new_tokens else STOP
        n_tokens = sum(t.n_tokens for t in trace.turns)
        decisions = self._decisions()  # of the last turn: every view, in order
        self.stats["batches"] += 1
        self.stats["rows"] += 1
        self.stats["jobs"] += 1
        self.stats["largest_batch"] = max(self.stats["largest_batch"], 1)
        _resolve(
            job.future,
            JobResult(
                [Choice(trace.answer, finish, n_tokens)],
                prompt_tokens,
                decisions,
                1,
                1,
                trace.to_dict(),
            ),
        )


class _Abandoned(Exception):
    """The zoom loop's request was cancelled or timed out."""


__all__ = [
    "Choice",
    "Engine",
    "Job",
    "JobResult",
    "Prepared",
    "RowTracker",
    "ZoomTask",
    "collate",
]
