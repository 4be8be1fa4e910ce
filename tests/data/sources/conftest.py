"""Fixtures of the source readers' tests: each writes one tiny dataset in its real format.

The generators live in ``fixtures.py`` beside this file (also runnable as a script); it is
loaded under a unique module name so that it cannot clash with another ``fixtures``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

_NAME = "earthvlm_source_fixtures"


def load_generators() -> ModuleType:
    """The ``fixtures.py`` module beside this file."""
    if _NAME not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            _NAME, Path(__file__).with_name("fixtures.py")
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[_NAME] = module
        spec.loader.exec_module(module)
    return sys.modules[_NAME]


def load_benchmark_generators() -> ModuleType:
    """The benchmark tests' fixture generators (``tests/eval/benchmarks/fixtures.py``), for
    the sources whose format a benchmark also reads (one generator per format)."""
    name = "earthvlm_benchmark_fixtures"
    if name not in sys.modules:
        path = Path(__file__).parents[2] / "eval" / "benchmarks" / "fixtures.py"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def bench_gen() -> ModuleType:
    """The benchmark tests' fixture generators."""
    return load_benchmark_generators()


@pytest.fixture(scope="session")
def gen() -> ModuleType:
    """The fixture generators (``gen.write_dota(path)``, ``gen.png(path, w, h)``, ...)."""
    return load_generators()


@pytest.fixture
def dota_root(tmp_path: Path, gen: ModuleType) -> Path:
    return gen.write_dota(tmp_path / "dota")


@pytest.fixture
def coco_root(tmp_path: Path, gen: ModuleType) -> Path:
    return gen.write_coco(tmp_path / "coco")


@pytest.fixture
def rsvqa_lr_root(tmp_path: Path, gen: ModuleType) -> Path:
    return gen.write_rsvqa_lr(tmp_path / "rsvqa-lr")


@pytest.fixture
def rsvqa_hr_root(tmp_path: Path, gen: ModuleType) -> Path:
    return gen.write_rsvqa_hr(tmp_path / "rsvqa-hr")


@pytest.fixture
def patternnet_root(tmp_path: Path, gen: ModuleType) -> Path:
    return gen.write_patternnet(tmp_path / "patternnet", tmp_path / "outside.jpg")


@pytest.fixture
def refgeo_root(tmp_path: Path, gen: ModuleType) -> Path:
    return gen.write_refgeo(tmp_path / "refgeo")


@pytest.fixture
def geochat_root(tmp_path: Path, gen: ModuleType) -> Path:
    return gen.write_geochat(tmp_path / "geochat")


@pytest.fixture
def vhm_root(tmp_path: Path, gen: ModuleType) -> Path:
    return gen.write_vhm(tmp_path / "vhm")


@pytest.fixture
def llava_root(tmp_path: Path, gen: ModuleType) -> Path:
    return gen.write_llava(tmp_path / "llava")


@pytest.fixture
def lrs_vqa_root(tmp_path: Path, gen: ModuleType) -> Path:
    return gen.write_lrs_vqa(tmp_path / "lrs-vqa")


@pytest.fixture
def earthmind_root(tmp_path: Path, gen: ModuleType) -> Path:
    return gen.write_earthmind(tmp_path / "earthmind")


@pytest.fixture
def vrsbench_root(tmp_path: Path, gen: ModuleType) -> Path:
    return gen.write_vrsbench(tmp_path / "vrsbench")
