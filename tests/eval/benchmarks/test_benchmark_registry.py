"""The benchmark registry: names, lazy imports, duplicates, and errors that suggest a fix."""

from __future__ import annotations

import subprocess
import sys

import pytest

from earthvlm.eval import benchmarks
from earthvlm.eval.benchmarks import (
    BENCHMARKS,
    Benchmark,
    BenchmarkError,
    build_benchmark,
    get_benchmark,
    list_benchmarks,
    parse_names,
    register_benchmark,
)

EXPECTED = ["aid", "dior_rsvg", "dota", "earthmind", "lrs_gro", "lrs_vqa", "meter_ml",
            "nwpu_resisc45", "omniearth", "rsvg",
            "rsvqa_hr", "rsvqa_lr", "synth_chips", "synth_detection", "synth_grounding",
            "synth_vqa", "ucmerced", "vrsbench_grounding", "vrsbench_vqa", "whu_rs19",
            "xlrs_lite"]  # fmt: skip


def test_every_benchmark_is_registered_once_under_the_name_it_declares() -> None:
    assert list_benchmarks() == EXPECTED
    for name in EXPECTED:
        cls = get_benchmark(name)
        assert issubclass(cls, Benchmark) and cls.name == name
        assert cls.max_new_tokens >= 1 and cls.version and cls.metric
    assert get_benchmark("Synth-VQA") is get_benchmark("synth_vqa")  # case and dashes


def test_unknown_names_and_options_suggest_the_near_ones() -> None:
    with pytest.raises(
        BenchmarkError, match=r"unknown benchmark 'synth_vq'; did you mean synth_vqa"
    ):
        get_benchmark("synth_vq")
    with pytest.raises(BenchmarkError, match=r"did you mean lrs_vqa, rsvqa_lr, rsvqa_hr"):
        build_benchmark("rsvqa")
    with pytest.raises(BenchmarkError, match=r"Known: aid, dior_rsvg, dota, earthmind, lrs_gro"):
        get_benchmark("mmlu")
    with pytest.raises(BenchmarkError, match=r"unknown option 'count_tol'; did you mean"):
        build_benchmark("synth_vqa", count_tol=1)
    with pytest.raises(ValueError, match=r"count_rel_tol=-0\.1"):
        build_benchmark("synth_vqa", count_rel_tol=-0.1)
    with pytest.raises(ValueError, match="split='dev': rsvqa_hr has train, val, test, test_phili"):
        build_benchmark("rsvqa_hr", split="dev")
    assert build_benchmark("rsvqa_hr", split="test_phili").options()["split"] == "test_phili"


def test_parse_names_reads_a_comma_list_in_order_without_repeats() -> None:
    assert parse_names("synth-vqa, xlrs_lite,synth_vqa,") == ["synth_vqa", "xlrs_lite"]
    with pytest.raises(BenchmarkError, match="did you mean synth_chips"):
        parse_names("synth_vqa,synth_chip")
    with pytest.raises(BenchmarkError, match="no benchmark named"):
        parse_names(" , ")


def test_duplicates_and_bad_targets_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(benchmarks.REGISTRY, "entries", dict(BENCHMARKS))
    with pytest.raises(
        BenchmarkError, match=r"already registered as 'earthvlm\.eval\.benchmarks\.synth"
    ):
        register_benchmark("synth-vqa", "somewhere.else:Other")
    with pytest.raises(BenchmarkError, match="is not 'module:attr'"):
        register_benchmark("toy", "earthvlm.eval.benchmarks.synth_vqa.SynthVQA")
    register_benchmark("toy", "earthvlm.eval.benchmarks.synth_vqa:SynthVQA")
    with pytest.raises(BenchmarkError, match="calls itself 'synth_vqa'"):
        get_benchmark("toy")
    register_benchmark("ghost", "earthvlm.eval.benchmarks.nowhere:Ghost")
    with pytest.raises(BenchmarkError, match=r"cannot import earthvlm\.eval\.benchmarks\.nowhere"):
        get_benchmark("ghost")
    register_benchmark("notabench", "earthvlm.eval.benchmarks.base:CategoryScore")
    with pytest.raises(BenchmarkError, match="not a Benchmark subclass"):
        get_benchmark("notabench")


def test_the_registry_imports_lazily_and_benchmarks_need_no_torch() -> None:
    code = (
        "import sys\n"
        "import earthvlm.eval.benchmarks as b\n"
        "print(sorted(m for m in sys.modules if m.startswith('earthvlm.eval.benchmarks.')))\n"
        "for n in b.list_benchmarks():\n"
        # the LRS benchmarks load WordNet when built (nltk need not be installed here)
        "    b.build_benchmark(n, **({'wordnet': False} if n.startswith('lrs_') else {}))\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    assert lines[0] == "['earthvlm.eval.benchmarks.base']"  # no benchmark module yet
    assert lines[1] == "False"  # scoring and RL rewards never load torch
