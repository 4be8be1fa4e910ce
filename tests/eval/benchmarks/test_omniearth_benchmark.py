"""OmniEarth-Bench: the release's rows, set-equality scoring, the "unable to decide" rate."""

from __future__ import annotations

from pathlib import Path

import pytest

from earthvlm.eval.benchmarks import BenchmarkError, build_benchmark


def test_rows_become_records(bench_data: dict[str, Path]) -> None:
    bench = build_benchmark("omniearth")
    recs = list(bench.examples(bench_data["omniearth"]))
    assert [r.id for r in recs] == ["omniearth-0", "omniearth-1", "omniearth-2"]
    led = bench.ledger
    assert (led.ok, dict(led.skipped)) == (3, {"blank_line": 1})
    assert dict(led.failed) == {"last_option_not_unable_to_decide": 1,
                                "answer_not_an_option": 1}  # fmt: skip
    assert [bench.reference(r) for r in recs] == ["B", "AB", "A"]
    assert [bench.category(r) for r in recs] == ["atmosphere", "biosphere", "cryosphere"]
    assert recs[0].messages[0].text() == (
        "Which cloud type dominates?\n(A) cumulus\n(B) stratus\n(C) cirrus\n"
        "(D) unable to decide\nSelect the best answer. Only respond with the letter of the "
        "correct option (A, B, C, D).\nThe answer is:"
    )
    assert "Select all correct answers" in recs[1].messages[0].text()


def test_accuracy_unable_rate_and_release_letters(bench_data: dict[str, Path]) -> None:
    bench = build_benchmark("omniearth")
    recs = list(bench.examples(bench_data["omniearth"]))
    # right; "unable to decide" (F, the sixth option); no letter at all
    result = bench.score(recs, ["The answer is B", "F", "yes"])
    assert result.item_scores == (1.0, 0.0, 0.0)
    assert result.metric == "accuracy" and result.headline == pytest.approx(1 / 3)
    assert result.metrics["unable_rate"] == pytest.approx(1 / 3)
    assert result.metrics["abstain_rate"] == pytest.approx(1 / 3)
    assert {k: v.score for k, v in result.categories.items()} == {
        "atmosphere": 1.0, "biosphere": 0.0, "cryosphere": 0.0}  # fmt: skip
    assert bench.reward(recs[1], "A B") == 1.0 and bench.reward(recs[1], "A") == 0.0
    # the release searches A-E only: the F of "unable to decide" is never read
    release = build_benchmark("omniearth", release_extraction=True)
    r = release.score(recs, ["B", "F", "A"])
    assert r.metrics["unable_rate"] == 0.0 and r.metrics["abstain_rate"] == pytest.approx(1 / 3)


def test_missing_rows_file_says_where(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match=r"none of omniearth\.jsonl, omniearth\.json"):
        list(build_benchmark("omniearth").examples(tmp_path))
