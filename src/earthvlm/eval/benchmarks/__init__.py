"""Benchmarks: one task object per benchmark for evaluation, SFT examples and RL reward.

One file per benchmark; each is a :class:`Benchmark` whose ``examples(root)`` yields
records with the prompt, whose ``score(records, predictions)`` scores raw outputs through
:mod:`earthvlm.eval.metrics`, and whose ``reward(record, prediction)`` is the same
per-item score for RL. The registry maps a name to ``"module:attr"``; a benchmark's module
is imported only when the name is used::

    from earthvlm.eval.benchmarks import build_benchmark
    bench = build_benchmark("synth_vqa", count_rel_tol=0.0)
    records = list(bench.examples("data/synth-test", limit=100))
    result = bench.score(records, predictions)
    print(result.metric, result.headline)

Benchmarks import no torch; :mod:`earthvlm.eval.runner` runs a model on them.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from collections.abc import Sequence
from typing import Any

from earthvlm.eval.benchmarks.base import (
    Benchmark,
    BenchmarkError,
    BenchmarkResult,
    CategoryScore,
)

_BUILTIN: tuple[tuple[str, str], ...] = (
    ("synth_chips", "earthvlm.eval.benchmarks.synth_chips:SynthChips"),
    ("synth_vqa", "earthvlm.eval.benchmarks.synth_vqa:SynthVQA"),
    ("synth_grounding", "earthvlm.eval.benchmarks.synth_grounding:SynthGrounding"),
    ("synth_detection", "earthvlm.eval.benchmarks.synth_detection:SynthDetection"),
    ("xlrs_lite", "earthvlm.eval.benchmarks.xlrs:XLRSBenchLite"),
    ("rsvqa_lr", "earthvlm.eval.benchmarks.rsvqa:RSVQALowRes"),
    ("rsvqa_hr", "earthvlm.eval.benchmarks.rsvqa:RSVQAHighRes"),
)

#: Benchmark name -> ``"module:attr"`` of its class.
BENCHMARKS: dict[str, str] = {}


def _key(name: str) -> str:
    """Names are compared lower-case with ``-`` read as ``_`` (``synth-vqa`` works)."""
    return name.strip().lower().replace("-", "_")


def register_benchmark(name: str, target: str) -> None:
    """Register a benchmark class under ``name`` (``target`` is ``"module:attr"``).

    Raises:
        BenchmarkError: If the name is taken or the target is not ``module:attr``.
    """
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise BenchmarkError(f"benchmark {name!r}: target {target!r} is not 'module:attr'")
    key = _key(name)
    if not key:
        raise BenchmarkError("a benchmark needs a non-empty name")
    if key in BENCHMARKS:
        raise BenchmarkError(
            f"benchmark {key!r} is already registered as {BENCHMARKS[key]!r}; pick another name"
        )
    BENCHMARKS[key] = target


for _name, _target in _BUILTIN:
    register_benchmark(_name, _target)


def list_benchmarks() -> list[str]:
    """The registered benchmark names, sorted."""
    return sorted(BENCHMARKS)


def _unknown(name: str) -> BenchmarkError:
    near = difflib.get_close_matches(_key(name), BENCHMARKS, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(near)}?" if near else ""
    return BenchmarkError(f"unknown benchmark {name!r}{hint} Known: {', '.join(list_benchmarks())}")


def get_benchmark(name: str) -> type[Benchmark]:
    """The benchmark class registered under ``name`` (its module imported now).

    Raises:
        BenchmarkError: For an unknown name (with "did you mean ...?") or a target that
            does not import to a :class:`Benchmark` subclass.
    """
    key = _key(name)
    if key not in BENCHMARKS:
        raise _unknown(name)
    module, _, attr = BENCHMARKS[key].partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise BenchmarkError(f"benchmark {key!r}: cannot import {BENCHMARKS[key]} ({e})") from None
    if not (isinstance(cls, type) and issubclass(cls, Benchmark)):
        raise BenchmarkError(f"benchmark {key!r}: {BENCHMARKS[key]} is not a Benchmark subclass")
    if cls.name != key:
        raise BenchmarkError(
            f"benchmark {key!r}: {BENCHMARKS[key]} calls itself {cls.name!r}; register it "
            "under the name it declares"
        )
    return cls


def build_benchmark(name: str, **options: Any) -> Benchmark:
    """An instance of benchmark ``name`` with ``options`` (its dataclass fields).

    Raises:
        BenchmarkError: For an unknown benchmark or option (with "did you mean ...?").
        ValueError: For an option value the benchmark refuses (the message names it).
    """
    cls = get_benchmark(name)
    known = [f.name for f in dataclasses.fields(cls) if f.init]
    for key in options:
        if key not in known:
            near = difflib.get_close_matches(key, known, n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            listed = ", ".join(sorted(known)) or "none"
            raise BenchmarkError(f"{cls.name}: unknown option {key!r}{hint} Options: {listed}")
    return cls(**options)


def parse_names(text: str | Sequence[str]) -> list[str]:
    """Benchmark names from ``"a,b"`` (or a list), checked, in order, without repeats.

    Raises:
        BenchmarkError: For no name or an unknown one (with "did you mean ...?").
    """
    parts = text.split(",") if isinstance(text, str) else list(text)
    names: list[str] = []
    for part in parts:
        if not part.strip():
            continue
        key = _key(part)
        if key not in BENCHMARKS:
            raise _unknown(part.strip())
        if key not in names:
            names.append(key)
    if not names:
        raise BenchmarkError(f"no benchmark named; choose from {', '.join(list_benchmarks())}")
    return names


__all__ = [
    "BENCHMARKS",
    "Benchmark",
    "BenchmarkError",
    "BenchmarkResult",
    "CategoryScore",
    "build_benchmark",
    "get_benchmark",
    "list_benchmarks",
    "parse_names",
    "register_benchmark",
]
