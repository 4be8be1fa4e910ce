"""EarthMind-Bench: MCQ strict match and M-Avg over tasks, the open-ended judge through a
real local server (paper and release rubrics), segmentation mIoU / cIoU / gIoU and the
release's fg/bg mIoU, per-setting tables."""

from __future__ import annotations

import math
import re
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from _chat import fast_client
from earthvlm.data.record import Record
from earthvlm.eval.benchmarks import BenchmarkError, build_benchmark
from earthvlm.eval.benchmarks.earthmind import (
    earthmind_table,
    parse_mask,
    read_earthmind,
    score_earthmind,
)
from earthvlm.teacher import ChatClient
from earthvlm.teacher.fake_server import ChatCall, FakeChatServer, Reply, completion


@pytest.fixture
def root(tmp_path: Path, source_gen: ModuleType) -> Path:
    return source_gen.write_earthmind(tmp_path / "earthmind")


ANSWER = re.compile(r"<<<ANSWER\n(.*?)\nANSWER>>>", re.DOTALL)
REPLIES = {
    "A river with a bridge.": '{"accuracy": 4, "relevance": 5}',
    "Go north.": "Accuracy: 2\nRelevance: 3",
}


def judge_script(call: ChatCall) -> Reply:
    if "a single integer" in call.last_user_text:  # the release's one-score rubric
        return Reply(body=completion("3 - somewhat similar, though 4 would be generous"))
    m = ANSWER.search(call.last_user_text)
    return Reply(body=completion(REPLIES.get(m[1] if m else "", "Score: 1")))


def client(server: FakeChatServer, cache: Path) -> ChatClient:
    return fast_client(server.url, cache)


def predictions(recs: list[Record]) -> list[str | None]:
    """MCQ: existence right (both), counting wrong; caption and route answered; masks:
    exact, half, missing."""
    out: list[str | None] = []
    for r in recs:
        task, kind = r.meta["task"], r.meta["kind"]
        if kind == "mcq":
            out.append(f" {r.messages[1].content}\n" if task == "object_existence" else "C. 4")
        elif task == "caption":
            out.append("A river with a bridge.")
        elif kind == "open":
            out.append("Go north.")
        elif r.meta["ref_id"] == 2:
            out.append(None)
        elif r.meta["sentence"] == "the pond":
            out.append("The mask: [[1, 1], [5, 1], [5, 4], [1, 4]]")
        else:
            out.append("```json\n[[[1, 1], [3, 1], [3, 4], [1, 4]]]\n```")
    return out


def test_mcq_open_and_segmentation_scores(root: Path, tmp_path: Path) -> None:
    with FakeChatServer(judge_script) as server:
        bench = build_benchmark("earthmind", judge=client(server, tmp_path / "cache"))
        recs = list(bench.examples(root))
        result = bench.score(recs, predictions(recs))
        assert server.n_calls == 2  # one request per open-ended answer, none repeated
    by_id = dict(zip([r.id for r in recs], result.item_scores, strict=True))
    assert by_id["earthmind-bench-fused-object_existence_all_unmatched-0"] == 1.0  # stripped
    assert by_id["earthmind-bench-fused-object_counting_all_unmatched-0"] == 0.0
    assert by_id["earthmind-bench-fused-caption_all_unmatched-0"] == 0.75  # (4 - 1) / 4
    assert by_id["earthmind-bench-fused-Navigation_all_unmatched-0"] == 0.25
    assert by_id["earthmind-bench-fused-seg-1-1"] == 0.5  # 6 of 12 pixels
    m = result.metrics
    # M-Avg is the mean of per-task accuracies (1.0 and 0.0), not the 2/3 of all items
    assert result.metric == "m_avg" and result.headline == 0.5 and m["fused/m_avg"] == 0.5
    assert m["o_avg"] == pytest.approx((4 + 2) / 2)
    assert m["seg_miou"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert m["seg_ciou"] == pytest.approx((12 + 6 + 0) / (12 + 12 + 3))
    assert m["seg_giou"] == pytest.approx(0.5)
    assert m["seg_miou_fg_bg"] == pytest.approx((1 + (0.5 + 36 / 42) / 2 + 0) / 3)
    cats = result.categories
    assert cats["fused/caption"].score == 4 and cats["fused/route_planning"].score == 2
    assert cats["fused/object_existence"].score == 1.0 and cats["fused/object_existence"].n == 2
    relevances = [i["relevance"] for i in result.details["judge"]["items"]]
    assert relevances == [3, 5]  # record order: Navigation, then caption
    table = earthmind_table(result)
    assert table.splitlines()[0].startswith("| setting | M-Avg | O-Avg | object_existence")
    assert "| fused | 50.0 | 3.00 | 100.0 | 0.0 | 50.0 | 4.00 | 2.00 |" in table


def test_release_rubric_reads_the_first_digit(root: Path, tmp_path: Path) -> None:
    with FakeChatServer(judge_script) as server:
        # the judge as plain options, as a config file or the command line gives it
        bench = build_benchmark(
            "earthmind", judge_url=server.url, judge_model="judge", judge_key_env=None,
            judge_cache=str(tmp_path / "c"), rubric="single", rule="first_digit",
            tasks=("caption",),
        )  # fmt: skip
        recs = list(bench.examples(root))
        result = bench.score(recs, ["A river with a bridge."])
        assert "a single integer" in server.calls[0].last_user_text
        assert bench.reward(recs[0], "A river with a bridge.") == 0.5
        assert server.n_calls == 1  # the reward reuses the verdict
    assert result.metrics["o_avg"] == 3 and math.isnan(result.headline)
    assert bench.options()["judge"] == "judge"


def test_judge_options_are_checked() -> None:
    with pytest.raises(ValueError, match="needs judge_model"):
        build_benchmark("earthmind", judge_url="http://127.0.0.1:9/v1")
    with pytest.raises(ValueError, match="need judge_url"):
        build_benchmark("vrsbench_vqa", judge_model="gpt")


def test_without_a_judge_open_answers_are_not_scored(root: Path) -> None:
    recs = read_earthmind(root, setting="all")
    result = score_earthmind(recs, predictions(recs))
    opened = [s for r, s in zip(recs, result.item_scores, strict=True) if r.meta["kind"] == "open"]
    assert opened == [None] * 6 and result.metrics["o_avg"] is None
    assert result.metrics["judged"] is False
    assert [k for k in result.metrics if k.endswith("/m_avg")] == [
        "optical/m_avg",
        "sar/m_avg",
        "fused/m_avg",
    ]
    assert len(earthmind_table(result).splitlines()) == 2 + 3
    with pytest.raises(BenchmarkError, match="cannot be scored"):
        build_benchmark("earthmind").reward(next(r for r in recs if r.meta["kind"] == "open"), "x")


def test_parse_mask_never_raises() -> None:
    full = parse_mask('{"size": [2, 3], "counts": [0, 6]}', 2, 3)
    assert full is not None and full.all()
    flat = parse_mask("polygon: [0, 0, 3, 0, 3, 2, 0, 2] done", 2, 3)
    assert flat is not None and flat.sum() == 6
    assert parse_mask("[]", 2, 3).sum() == 0  # type: ignore[union-attr]
    big = parse_mask("[[-5, -5], [50, -5], [50, 50], [-5, 50]]", 2, 3)  # clipped to the image
    assert big is not None and big.all()
    for junk in (
        None,
        "",
        "no mask",
        "[1, 2",
        "[[1, 2], [3]]",
        '{"counts": "x"}',
        "[[true]]",
        '{"size": [9, 9], "counts": [81]}',
    ):
        assert parse_mask(junk, 2, 3) is None
    rng = np.random.default_rng(1)
    for _ in range(50):
        text = "".join(rng.choice(list('[]{}0123456789,. -"counts:size')) for _ in range(30))
        parse_mask(text, 4, 4)


def test_bad_options_and_folders(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="setting"):
        build_benchmark("earthmind", setting="rgb")
    with pytest.raises(ValueError, match="rubric"):
        build_benchmark("earthmind", rubric="gpt")
    with pytest.raises(BenchmarkError, match="formal_data_test"):
        list(build_benchmark("earthmind").examples(tmp_path))


def _record(i: int, task: str, kind: str, answer: str) -> Record:
    return Record(
        id=f"t-{task}-{i}", task="mcq" if kind == "mcq" else "vqa", source="t", split="test",
        messages=[{"role": "user", "content": f"question {i}"},
                  {"role": "assistant", "content": answer}],
        meta={"setting": "optical", "task": task, "kind": kind, "question": f"q{i}"},
    )  # fmt: skip


def test_table_1_arithmetic(tmp_path: Path) -> None:
    """EarthMind, Table 1, optical rows: M-Avg = (64.3 + 77.5 + 83.6 + 50.1 + 33.1) / 5
    = 61.7 and O-Avg = (3.35 + 3.37 + 2.01 + 2.55) / 4 = 2.82, means of task means."""
    recs, preds = [], []
    accuracies = {"scene_classification": 643, "object_existence": 775,
                  "hallucination_detection": 836, "object_counting": 501,
                  "spatial_relationship": 331}  # fmt: skip
    for task, acc in accuracies.items():
        for i in range(1000):
            recs.append(_record(i, task, "mcq", "A"))
            preds.append("A" if i < acc else "B")
    # judge scores per task: (count of 4s, 3s, 2s) out of 100
    mixes = {"caption": (35, 65, 0), "disaster_forecasting": (37, 63, 0),
             "route_planning": (0, 1, 99), "urban_development": (0, 55, 45)}  # fmt: skip
    for task, (n4, n3, n2) in mixes.items():
        for i, s in enumerate([4] * n4 + [3] * n3 + [2] * n2):
            recs.append(_record(i, task, "open", f"reference {task} {i}"))
            preds.append(f"answer worth {s}")

    def script(call: ChatCall) -> Reply:
        return Reply(
            body=completion(f'{{"accuracy": {ANSWER.search(call.last_user_text)[1][-1]}}}')
        )

    with FakeChatServer(script) as server:
        result = score_earthmind(recs, preds, judge=client(server, tmp_path / "c"))
    assert round(100 * result.metrics["m_avg"], 1) == 61.7
    assert result.metrics["m_avg"] == pytest.approx((0.643 + 0.775 + 0.836 + 0.501 + 0.331) / 5)
    assert round(result.metrics["o_avg"], 2) == 2.82
    assert result.categories["optical/caption"].score == pytest.approx(3.35)
