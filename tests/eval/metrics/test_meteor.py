"""METEOR 1.5 against the Java jar's own numbers (recorded by make_meteor_fixture.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from earthvlm.eval.metrics.meteor import (
    EXACT_ONLY,
    MeteorStats,
    MeteorUnavailableError,
    caption_stats,
    load_resources,
    meteor_corpus,
    normalise,
    pair_stats,
    score,
)

FIXTURE = json.loads((Path(__file__).parent / "data" / "meteor_java.json").read_text())
CAPTIONS = FIXTURE["captions"]


def java_stats(line: str) -> list[float]:
    return [float(x) for x in line.split()]


def full_resources():
    words = {w for c in CAPTIONS for s in [c["hyp"], *c["refs"]] for w in normalise(s)}
    try:
        return load_resources(words)
    except MeteorUnavailableError as e:
        pytest.skip(f"METEOR 1.5's files are not installed here: {e}")


@pytest.mark.parametrize(("line", "want"), FIXTURE["normalise"])
def test_normalisation_is_the_jars(line: str, want: str) -> None:
    assert normalise(line) == want.split()


def test_score_of_the_jars_statistics_is_the_jars_score() -> None:
    # computeMetrics on each caption's stats, and on their sum (the corpus score, which
    # does not add the chunks of identical pairs)
    for run in ("full", "exact"):
        stats = [MeteorStats.from_list(line.split()) for line in FIXTURE[run]["stats"]]
        assert [score(s) for s in stats] == pytest.approx(FIXTURE[run]["scores"], abs=1e-12)
        total = MeteorStats()
        for s in stats:
            total.add(s)
        assert score(total) == pytest.approx(FIXTURE[run]["corpus"], abs=1e-12)


def test_exact_module_alignment_is_the_jars() -> None:
    # the whole pipeline (normalisation, candidate matches, beam search, chunks, function
    # words, score) with the one module that needs no installed resources
    got = [
        caption_stats(normalise(c["hyp"]), [normalise(r) for r in c["refs"]], EXACT_ONLY)
        for c in CAPTIONS
    ]
    assert [s.to_list() for s in got] == [java_stats(x) for x in FIXTURE["exact"]["stats"]]
    corpus, per = meteor_corpus([c["hyp"] for c in CAPTIONS], [c["refs"] for c in CAPTIONS],
                                EXACT_ONLY)  # fmt: skip
    assert corpus == pytest.approx(FIXTURE["exact"]["corpus"], abs=1e-12)
    assert per == pytest.approx(FIXTURE["exact"]["scores"], abs=1e-12)


def test_full_meteor_is_the_jars() -> None:
    res = full_resources()
    got = [
        caption_stats(normalise(c["hyp"]), [normalise(r) for r in c["refs"]], res) for c in CAPTIONS
    ]
    want = [java_stats(x) for x in FIXTURE["full"]["stats"]]
    assert [s.to_list() for s in got] == want
    corpus, _ = meteor_corpus([c["hyp"] for c in CAPTIONS], [c["refs"] for c in CAPTIONS], res)
    assert corpus == pytest.approx(FIXTURE["full"]["corpus"], abs=1e-12)
    # the stem, synonym and paraphrase modules all matched something here
    total = MeteorStats()
    for s in got:
        total.add(s)
    assert all(total.test_content_matches[k] + total.test_function_matches[k] > 0
               for k in range(4))  # fmt: skip


def test_penalty_and_weights_by_hand() -> None:
    # "the cat sat on the mat" against its own words reordered: 6 exact matches in 2
    # chunks; function words (the, on) weigh 1 - delta = 0.25, content words 0.75, so
    # P = R = 1; penalty = 0.6 * (2 / 6)^0.2
    hyp, ref = "the cat sat on the mat", "on the mat the cat sat"
    st = pair_stats(hyp.split(), ref.split(), EXACT_ONLY)
    assert st.chunks == 2
    assert score(st) == pytest.approx(1 - 0.6 * (2 / 6) ** 0.2)
    # identical sentences: no penalty at all
    assert score(pair_stats(["a", "cat"], ["a", "cat"], EXACT_ONLY)) == 1.0
    # one content word of two matched on each side ("a" is a function word):
    # P = R = 0.75 / (0.75 + 0.25); Fmean = P; one chunk over one match
    st = pair_stats(["a", "cat"], ["a", "dog"], EXACT_ONLY)
    p = 0.25 / (0.75 + 0.25)
    assert score(st) == pytest.approx(p * (1 - 0.6 * 1.0**0.2))


def test_missing_resources_say_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(MeteorUnavailableError, match="pip install pycocoevalcap"):
        load_resources(meteor_dir=tmp_path)
