"""Fixtures of the benchmark tests: tiny folders in the real formats and a synthetic world.

The format generators live in ``fixtures.py`` beside this file (also runnable as a
script); it is loaded under a unique module name so that it cannot clash with another
``fixtures`` module.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from _generators import benchmark_generators, source_generators
from earthvlm.synth.dataset import SynthConfig, generate_dataset


@pytest.fixture(scope="session")
def source_gen() -> ModuleType:
    """The source readers' fixture generators."""
    return source_generators()


@pytest.fixture(scope="session")
def gen() -> ModuleType:
    """The fixture generators (and their expected rows)."""
    return benchmark_generators()


@pytest.fixture(scope="session")
def bench_data(tmp_path_factory: pytest.TempPathFactory, gen: ModuleType) -> dict[str, Path]:
    """Benchmark name -> its tiny folder in the release's format."""
    return gen.write_all(tmp_path_factory.mktemp("bench"))


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic world: 6 scenes (VQA, counting, grounding, detection) and 6 chips."""
    out = tmp_path_factory.mktemp("synth")
    generate_dataset(out, SynthConfig(n_scenes=6, n_chips=6, size_px=128, seed=0))
    return out
