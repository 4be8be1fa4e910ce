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

from collections.abc import Sequence
from typing import Any

from earthvlm.eval.benchmarks.base import (
    Benchmark,
    BenchmarkError,
    BenchmarkResult,
    CategoryScore,
)
from earthvlm.registry import Registry

#: The benchmarks, by name (lower-case, ``-`` read as ``_``: ``synth-vqa`` works). A
#: benchmark class must declare the name it is registered under.
REGISTRY: Registry[type[Benchmark]] = Registry(
    "benchmark", error=BenchmarkError, base=Benchmark, declares_name=True
)
#: Benchmark name -> ``"module:attr"`` of its class.
BENCHMARKS: dict[str, str] = REGISTRY.entries

for _name, _target in (
    ("synth_chips", "earthvlm.eval.benchmarks.synth_chips:SynthChips"),
    ("synth_vqa", "earthvlm.eval.benchmarks.synth_vqa:SynthVQA"),
    ("synth_grounding", "earthvlm.eval.benchmarks.synth_grounding:SynthGrounding"),
    ("synth_detection", "earthvlm.eval.benchmarks.synth_detection:SynthDetection"),
    ("xlrs_lite", "earthvlm.eval.benchmarks.xlrs:XLRSBenchLite"),
    ("rsvqa_lr", "earthvlm.eval.benchmarks.rsvqa:RSVQALowRes"),
    ("rsvqa_hr", "earthvlm.eval.benchmarks.rsvqa:RSVQAHighRes"),
    ("omniearth", "earthvlm.eval.benchmarks.omniearth:OmniEarthBench"),
    ("aid", "earthvlm.eval.benchmarks.scene:AID"),
    ("ucmerced", "earthvlm.eval.benchmarks.scene:UCMerced"),
    ("nwpu_resisc45", "earthvlm.eval.benchmarks.scene:NWPURESISC45"),
    ("whu_rs19", "earthvlm.eval.benchmarks.scene:WHURS19"),
    ("meter_ml", "earthvlm.eval.benchmarks.scene:METERML"),
    ("dior_rsvg", "earthvlm.eval.benchmarks.rsvg:DIORRSVG"),
    ("rsvg", "earthvlm.eval.benchmarks.rsvg:RSVG"),
    ("dota", "earthvlm.eval.benchmarks.dota:DOTADetection"),
    ("lrs_vqa", "earthvlm.eval.benchmarks.lrs_vqa:LRSVQABench"),
    ("lrs_gro", "earthvlm.eval.benchmarks.lrs_gro:LRSGROBench"),
    ("earthmind", "earthvlm.eval.benchmarks.earthmind:EarthMindBenchmark"),
    ("vrsbench_vqa", "earthvlm.eval.benchmarks.vrsbench:VRSBenchVQA"),
    ("vrsbench_grounding", "earthvlm.eval.benchmarks.vrsbench:VRSBenchGrounding"),
):
    REGISTRY.register(_name, _target)


def register_benchmark(name: str, target: str) -> None:
    """Register a benchmark class under ``name`` (``target`` is ``"module:attr"``).

    Raises:
        BenchmarkError: If the name is taken or the target is not ``module:attr``.
    """
    REGISTRY.register(name, target)


def list_benchmarks() -> list[str]:
    """The registered benchmark names, sorted."""
    return REGISTRY.names()


def get_benchmark(name: str) -> type[Benchmark]:
    """The benchmark class registered under ``name`` (its module imported now).

    Raises:
        BenchmarkError: For an unknown name (with "did you mean ...?") or a target that
            does not import to a :class:`Benchmark` subclass declaring that name.
    """
    return REGISTRY.get(name)


def build_benchmark(name: str, **options: Any) -> Benchmark:
    """An instance of benchmark ``name`` with ``options`` (its dataclass fields).

    Raises:
        BenchmarkError: For an unknown benchmark or option (with "did you mean ...?").
        ValueError: For an option value the benchmark refuses (the message names it).
    """
    bench: Benchmark = REGISTRY.build(name, **options)
    return bench


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
        key = REGISTRY.resolve(part.strip())
        if key not in names:
            names.append(key)
    if not names:
        raise BenchmarkError(f"no benchmark named; choose from {', '.join(list_benchmarks())}")
    return names


__all__ = [
    "BENCHMARKS",
    "REGISTRY",
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
