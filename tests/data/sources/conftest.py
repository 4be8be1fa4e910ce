"""Fixtures of the source readers' tests: each writes one tiny dataset in its real format.

The generators live in ``fixtures.py`` beside this file (also runnable as a script); it is
loaded under a unique module name so that it cannot clash with another ``fixtures``.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from _generators import benchmark_generators, source_generators


@pytest.fixture(scope="session")
def bench_gen() -> ModuleType:
    """The benchmark tests' fixture generators."""
    return benchmark_generators()


@pytest.fixture(scope="session")
def gen() -> ModuleType:
    """The fixture generators (``gen.write_dota(path)``, ``gen.png(path, w, h)``, ...)."""
    return source_generators()


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
