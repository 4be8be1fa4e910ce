"""XLRS-Bench-lite: the release's rows and prompt, its extraction rule, micro and macro."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from earthvlm.data.record import ImagePart
from earthvlm.eval.benchmarks import BenchmarkError, build_benchmark


def test_rows_become_records_with_the_release_prompt(
    bench_data: dict[str, Path], gen: ModuleType
) -> None:
    bench = build_benchmark("xlrs_lite")
    recs = list(bench.examples(bench_data["xlrs_lite"]))
    assert [r.id for r in recs] == ["xlrs-0", "xlrs-1", "xlrs-2", "xlrs-3"]
    led = bench.ledger
    assert (led.read, led.ok) == (9, 4) and led.balanced
    assert dict(led.skipped) == {"blank_line": 1}
    assert dict(led.failed) == {"invalid_json": 1, "not_an_object": 1,
                                "missing_field:answer": 1, "no_answer_letters": 1}  # fmt: skip
    # one image, two images (a change task), and a bare string read as a list of one
    assert [len(r.images) for r in recs] == [1, 2, 1, 1]
    assert recs[2].images[0].path == "images/0003.png"
    user = recs[1].messages[0].content
    assert [type(p) for p in user[:2]] == [ImagePart, ImagePart]
    # the release's prompt, spacing and all (lmms-eval xlrs_doc_to_text)
    assert recs[0].messages[0].text() == (
        "How many cars are parked in the marked region?The choices are listed below:\n"
        "(A) 3\n(B) 5\n(C) 7\n(D) 9\n"
        "\nSelect the best answer for the multiple-choice question based on the image. Only "
        "respond with the letter corresponding to the correct answer (A, B, C, D).\n"
        "The answer is:"
    )
    assert "There may be more than one correct option" in recs[2].messages[0].text()
    assert [bench.reference(r) for r in recs] == ["B", "C", "AC", "A"]
    assert bench.category(recs[0]) == "Counting/Regional counting"
    assert recs[0].meta["options"] == gen.XLRS_ROWS[0]["multi-choice options"]


def test_micro_macro_and_set_equality(bench_data: dict[str, Path]) -> None:
    bench = build_benchmark("xlrs_lite")
    recs = list(bench.examples(bench_data["xlrs_lite"]))
    preds = ["The answer is B", "(B) 1", "A C", "<|image_pad|>"]
    result = bench.score(recs, preds)
    assert result.item_scores == (1.0, 0.0, 1.0, 0.0)  # "A C" equals the set {A, C}
    assert result.metric == "micro" and result.headline == 0.5
    assert result.metrics["macro"] == 0.5  # four subtasks of one item each: 1, 0, 1, 0
    assert result.metrics["abstain_rate"] == 0.25  # no upper-case letter in the pad token
    # a partial answer to the multi-answer question is wrong
    assert bench.reward(recs[2], "A") == 0.0
    assert bench.reward(recs[0], "B. Forest") == 1.0
    # the release's regex reads every a-e letter: "B. Forest" becomes {B, E}
    release = build_benchmark("xlrs_lite", release_extraction=True)
    assert release.reward(recs[0], "B. Forest") == 0.0


def test_garbage_scores_zero_and_a_missing_file_says_where(
    bench_data: dict[str, Path], tmp_path: Path
) -> None:
    bench = build_benchmark("xlrs_lite")
    recs = list(bench.examples(bench_data["xlrs_lite"], limit=3))
    assert len(recs) == 3
    result = bench.score(recs, ["", None, "ponds= or<tool_response>ak"])
    assert result.item_scores == (0.0, 0.0, 0.0) and result.metrics["abstain_rate"] == 1.0
    with pytest.raises(BenchmarkError, match=r"none of xlrs_lite\.jsonl, xlrs_lite\.json found"):
        list(bench.examples(tmp_path))
    (tmp_path / "rows.json").write_text("{}", encoding="utf-8")
    with pytest.raises(BenchmarkError, match="expected a JSON list of rows"):
        list(build_benchmark("xlrs_lite", annotation="rows.json").examples(tmp_path))
