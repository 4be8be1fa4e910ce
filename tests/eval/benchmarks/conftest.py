"""Fixtures of the benchmark tests: tiny folders in the real formats and a synthetic world.

The format generators live in ``fixtures.py`` beside this file (also runnable as a
script); it is loaded under a unique module name so that it cannot clash with another
``fixtures`` module.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from earthvlm.synth.dataset import SynthConfig, generate_dataset

_NAME = "earthvlm_benchmark_fixtures"


def load_generators() -> ModuleType:
    """The ``fixtures.py`` module beside this file."""
    if _NAME not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            _NAME, Path(__file__).with_name("fixtures.py")
        )
        if spec is None or spec.loader is None:
            raise ImportError("cannot load tests/eval/benchmarks/fixtures.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[_NAME] = module
        spec.loader.exec_module(module)
    return sys.modules[_NAME]


def load_source_generators() -> ModuleType:
    """The source readers' fixture generators (``tests/data/sources/fixtures.py``), for
    the benchmarks read through a source reader (one generator per format)."""
    name = "earthvlm_source_fixtures"
    if name not in sys.modules:
        path = Path(__file__).parents[2] / "data" / "sources" / "fixtures.py"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def source_gen() -> ModuleType:
    """The source readers' fixture generators."""
    return load_source_generators()


@pytest.fixture(scope="session")
def gen() -> ModuleType:
    """The fixture generators (and their expected rows)."""
    return load_generators()


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
