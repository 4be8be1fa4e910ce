"""The fixture generators of the source-reader and benchmark tests, loaded once each.

Each ``fixtures.py`` (also runnable as a script) is loaded under a unique module name, so
that the two cannot clash with each other or with another ``fixtures`` module. Both test
folders use both: some formats are read by a source reader and a benchmark alike.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

_TESTS = Path(__file__).parent


def _load(path: Path, name: str) -> ModuleType:
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def source_generators() -> ModuleType:
    """``tests/data/sources/fixtures.py``."""
    return _load(_TESTS / "data" / "sources" / "fixtures.py", "earthvlm_source_fixtures")


def benchmark_generators() -> ModuleType:
    """``tests/eval/benchmarks/fixtures.py``."""
    return _load(_TESTS / "eval" / "benchmarks" / "fixtures.py", "earthvlm_benchmark_fixtures")
