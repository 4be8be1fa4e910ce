"""What every benchmark shares: examples, scoring through the metrics package, RL reward.

A :class:`Benchmark` is one task object that serves three uses (nanochat's pattern):

* :meth:`Benchmark.examples` reads the benchmark's files under a folder and yields
  :class:`~earthvlm.data.record.Record` rows whose last user turn is the prompt the model
  answers and whose last assistant turn is the reference (the collator's generation mode
  keeps it as the target);
* :meth:`Benchmark.score` scores raw model outputs for those records with the scorers of
  :mod:`earthvlm.eval.metrics` (never a metric of its own) and returns a
  :class:`BenchmarkResult`: the headline, the summary metrics, a score per category and
  a score per item;
* :meth:`Benchmark.reward` is the per-item score of one output, the same number
  :meth:`score` puts in :attr:`BenchmarkResult.item_scores`, for RL.

A subclass sets the class attributes and implements :meth:`Benchmark._read` (its files ->
records), :meth:`Benchmark._item` (one record and output -> a score in [0, 1], or None
when the record cannot be scored) and :meth:`Benchmark._summary` (the corpus-level
metrics). Its dataclass fields are its options (a split, a tolerance). Benchmarks import
no torch: an RL loop or a report can score without loading a model.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, ClassVar

from earthvlm.data.jsonl import read_records
from earthvlm.data.ledger import Ledger
from earthvlm.data.record import Record
from earthvlm.errors import EarthVLMError
from earthvlm.io import UntrustedJSONError, loads_untrusted


class BenchmarkError(EarthVLMError, ValueError):
    """A benchmark cannot run: unknown name, missing files, a record it cannot score."""


def _json_float(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


@dataclass(frozen=True)
class CategoryScore:
    """The headline metric within one category (question type, class, subtask).

    Attributes:
        n: Items (or objects, for detection) the score rests on.
        score: The value, NaN when nothing was scored.
    """

    n: int
    score: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"n": self.n, "score": _json_float(self.score)}


@dataclass(frozen=True)
class BenchmarkResult:
    """Scores of one benchmark run.

    Attributes:
        benchmark: The benchmark's registered name.
        version: Its version (scores of different versions do not compare).
        metric: Name of the headline metric (a key of :attr:`metrics`).
        metrics: Summary metrics, JSON-ready (None for undefined values).
        categories: Category -> its score under the headline metric, sorted by name.
        item_scores: Per record, in input order: its score in [0, 1], or None when the
            record could not be scored (no usable reference; counted in the details).
        details: The ``to_dict()`` of the metric results the summary came from.
    """

    benchmark: str
    version: str
    metric: str
    metrics: Mapping[str, Any]
    categories: Mapping[str, CategoryScore]
    item_scores: tuple[float | None, ...]
    details: Mapping[str, Any]

    @property
    def headline(self) -> float:
        """The headline metric (NaN when undefined)."""
        v = self.metrics.get(self.metric)
        return math.nan if v is None else float(v)

    @property
    def n(self) -> int:
        """Items scored (those with a score)."""
        return sum(s is not None for s in self.item_scores)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "benchmark": self.benchmark,
            "version": self.version,
            "metric": self.metric,
            "headline": _json_float(self.headline),
            "n": self.n,
            "n_items": len(self.item_scores),
            "metrics": dict(self.metrics),
            "categories": {k: v.to_dict() for k, v in self.categories.items()},
            "details": dict(self.details),
        }


def mean_score(scores: Sequence[float | None]) -> float:
    """The mean of the scored items (None left out), NaN when none was scored."""
    kept = [s for s in scores if s is not None]
    return math.fsum(kept) / len(kept) if kept else math.nan


def records_file(root: str | Path, name: str = "records.jsonl") -> tuple[Path, Path]:
    """``(jsonl, image root)`` for a folder holding ``name``, or for the JSONL file itself.

    Raises:
        BenchmarkError: If neither exists.
    """
    p = Path(root)
    if p.is_file():
        return p, p.parent
    if (p / name).is_file():
        return p / name, p
    raise BenchmarkError(
        f"{p}: no {name} here; pass --data a folder with {name} and its images "
        "(e.g. one written by `earthvlm synth`) or the JSONL file itself"
    )


def read_jsonl_records(path: Path, root: Path, ledger: Ledger) -> list[Record]:
    """Valid records of a JSONL file (paths contained in ``root``). Invalid rows and blank
    lines are counted in ``ledger`` (failed, skipped); the caller counts the valid ones."""
    read = read_records(path, root=root)
    ledger.merge_left_out(read.ledger)
    return read.records


class BadRow(Exception):
    """A release row that cannot become a record; ``reason`` is its ledger reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def release_rows(path: Path, ledger: Ledger) -> list[Any]:
    """The rows of a release annotation file: a JSON list (``.json``) or JSON lines.

    Blank lines are counted as skipped; a line that is not JSON becomes a :class:`BadRow`
    so that :func:`unique_records` counts it as failed, in file order.

    Raises:
        BenchmarkError: If a ``.json`` file is not a JSON list.
    """
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix == ".json":
        try:
            # walked row by row when each becomes a record (records check themselves)
            rows = loads_untrusted(text, max_depth=None)
        except UntrustedJSONError as e:
            raise BenchmarkError(f"{path}: not usable JSON ({e.reason}: {e.detail})") from None
        if not isinstance(rows, list):
            raise BenchmarkError(f"{path}: expected a JSON list of rows")
        return rows
    out: list[Any] = []
    for line in text.splitlines():
        if not line.strip():
            ledger.count_skipped("blank_line")
            continue
        try:
            out.append(loads_untrusted(line))
        except UntrustedJSONError as e:  # not JSON, too deep, huge int, lone surrogate
            out.append(BadRow(e.reason))
    return out


def unique_records(
    rows: Iterable[Any],
    make: Callable[[Any], Record],
    ledger: Ledger,
    *,
    duplicate_reason: str = "duplicate_id",
) -> Iterator[Record]:
    """Records made from release rows, each counted in ``ledger``: ok, or failed with the
    reason of the :class:`BadRow` that ``make`` raised (a row may also arrive as a
    ``BadRow``, e.g. a line that is not JSON), or ``duplicate_reason`` for a repeated id."""
    seen: set[str] = set()
    for row in rows:
        try:
            if isinstance(row, BadRow):
                raise row
            rec = make(row)
            if rec.id in seen:
                raise BadRow(duplicate_reason)
        except BadRow as e:
            ledger.count_failed(e.reason)
            continue
        seen.add(rec.id)
        ledger.count_ok()
        yield rec


@dataclass(kw_only=True)
class Benchmark:
    """Base class of the benchmarks under :mod:`earthvlm.eval.benchmarks`.

    Class attributes describe the benchmark; dataclass fields are its options.

    Attributes:
        ledger: What the last :meth:`examples` read: ok, skipped (not this benchmark's
            task), failed (invalid rows).
    """

    #: Registered name.
    name: ClassVar[str] = ""
    #: Version of the examples and the scoring rule; bump it when either changes.
    version: ClassVar[str] = "1"
    #: The headline metric (a key of the summary metrics).
    metric: ClassVar[str] = "accuracy"
    #: New tokens generated per answer unless the run says otherwise.
    max_new_tokens: ClassVar[int] = 32
    #: What :meth:`examples` reads under its folder (for messages and docs).
    files: ClassVar[tuple[str, ...]] = ()

    ledger: Ledger = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.ledger = Ledger(self.name)

    # -- examples -------------------------------------------------------------------------

    def examples(self, root: str | Path, limit: int | None = None) -> Iterator[Record]:
        """The benchmark's records under ``root``, in a fixed order, at most ``limit``.

        Raises:
            BenchmarkError: If ``root`` or a file the benchmark needs is missing, or
                ``limit`` is below 1.
        """
        if limit is not None and limit < 1:
            raise BenchmarkError(f"limit={limit}: give a positive number of examples or None")
        if not Path(root).exists():
            raise BenchmarkError(
                f"{root}: no such folder; give the {self.name} data folder, which holds "
                + ", ".join(self.files or ("the benchmark files",))
            )
        self.ledger = Ledger(self.name)
        return islice(self._read(Path(root)), limit)

    def image_root(self, root: str | Path) -> Path:
        """The folder the records' image paths are relative to (the collator's root)."""
        p = Path(root)
        return p.parent if p.is_file() else p

    def _read(self, root: Path) -> Iterator[Record]:
        """All records under ``root``, counting every row in :attr:`ledger`. Check the
        files before returning the iterator, so that :meth:`examples` fails early."""
        raise NotImplementedError

    # -- what a record asks ---------------------------------------------------------------

    def reference(self, record: Record) -> str:
        """The reference answer: the text of the record's last assistant turn."""
        for m in reversed(record.messages):
            if m.role == "assistant":
                return m.text()
        raise BenchmarkError(f"record {record.id}: no assistant turn holds the reference answer")

    def category(self, record: Record) -> str:
        """The category a record is reported under (default: its task)."""
        return record.task

    # -- scoring --------------------------------------------------------------------------

    def _item(self, record: Record, prediction: str | None) -> float | None:
        """One record's score in [0, 1] (None: the record cannot be scored)."""
        raise NotImplementedError

    def _summary(
        self,
        records: Sequence[Record],
        predictions: Sequence[str | None],
        item_scores: Sequence[float | None],
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(metrics, details)`` over the whole run; ``metrics`` holds :attr:`metric`."""
        raise NotImplementedError

    def _categories(
        self,
        records: Sequence[Record],
        predictions: Sequence[str | None],
        item_scores: Sequence[float | None],
    ) -> dict[str, CategoryScore]:
        """Category -> mean item score (override where the headline is not a mean)."""
        groups: dict[str, list[float | None]] = {}
        for rec, s in zip(records, item_scores, strict=True):
            groups.setdefault(self.category(rec), []).append(s)
        return {
            k: CategoryScore(sum(s is not None for s in v), mean_score(v))
            for k, v in sorted(groups.items())
        }

    def score(
        self, records: Sequence[Record], predictions: Sequence[str | None]
    ) -> BenchmarkResult:
        """Score raw model outputs (None for a missing one: wrong, never dropped).

        Raises:
            ValueError: On a length mismatch or a prediction that is not a string or None.
            BenchmarkError: If ``records`` is empty.
        """
        records, predictions = list(records), list(predictions)
        if len(records) != len(predictions):
            raise ValueError(
                f"one prediction per record is needed: {len(records)} records, "
                f"{len(predictions)} predictions"
            )
        if not records:
            raise BenchmarkError(f"{self.name}: no records to score")
        for i, p in enumerate(predictions):
            if p is not None and not isinstance(p, str):
                raise ValueError(
                    f"predictions[{i}] must be the model's text (or None), got {type(p).__name__}"
                )
        items = tuple(self._item(r, p) for r, p in zip(records, predictions, strict=True))
        metrics, details = self._summary(records, predictions, items)
        if self.metric not in metrics:
            raise EarthVLMError(f"{self.name}: the summary lacks its headline {self.metric!r}")
        return BenchmarkResult(
            benchmark=self.name,
            version=self.version,
            metric=self.metric,
            metrics={k: _json_float(v) if isinstance(v, float) else v for k, v in metrics.items()},
            categories=self._categories(records, predictions, items),
            item_scores=items,
            details=details,
        )

    def reward(self, record: Record, prediction: str | None) -> float:
        """The score of one output, for RL: equal to its entry in ``score(...).item_scores``.

        Raises:
            BenchmarkError: If the record cannot be scored (no usable reference): leave
                it out of RL rather than reward it with an arbitrary value.
        """
        s = self._item(record, prediction)
        if s is None:
            raise BenchmarkError(
                f"{self.name}: record {record.id} cannot be scored (no usable reference); "
                "leave it out of the RL data"
            )
        return float(s)

    def options(self) -> dict[str, Any]:
        """The benchmark's options (its dataclass fields), for reports and cache keys."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}


__all__ = [
    "BadRow",
    "Benchmark",
    "BenchmarkError",
    "BenchmarkResult",
    "CategoryScore",
    "mean_score",
    "read_jsonl_records",
    "records_file",
    "release_rows",
    "unique_records",
]
