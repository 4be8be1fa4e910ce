"""VRSBench: the release's VQA rule (containment, closed answers, the judge for the rest),
per-type average, and grounding Acc@0.5 / 0.7 by uniqueness, standard and as released."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from earthvlm.data.record import Record
from earthvlm.data.sources.vrsbench import VQA_TYPES
from earthvlm.eval.benchmarks import BenchmarkError, build_benchmark
from earthvlm.eval.benchmarks.vrsbench import inclusive_iou, vqa_rule
from earthvlm.teacher import ChatClient, ClientConfig
from earthvlm.teacher.fake_server import ChatCall, FakeChatServer, Reply, completion


@pytest.fixture
def root(tmp_path: Path, source_gen: ModuleType) -> Path:
    return source_gen.write_vrsbench(tmp_path / "vrsbench")


@pytest.mark.parametrize(
    ("pred", "gt", "word", "release"),
    [
        ("Yes, there is.", "yes", True, True),
        ("3 ships", "3", True, True),
        ("three", "3", False, False),  # a closed answer needs an exact match
        ("north", "no", False, True),  # the release finds "no" inside "north"
        ("grey", "gray", None, None),  # left to the judge
        ("Gray.", "gray", True, True),
        (None, "yes", False, False),
    ],
)
def test_vqa_rule(pred: str | None, gt: str, word: bool | None, release: bool | None) -> None:
    assert vqa_rule(pred, gt) is word
    assert vqa_rule(pred, gt, release_substring=True) is release


def test_average_is_the_mean_of_type_accuracies(root: Path) -> None:
    bench = build_benchmark("vrsbench_vqa")
    q0, q1, q2 = list(bench.examples(root))
    assert bench.ledger.ok == 3 and bench.ledger.n_failed == 2
    result = bench.score([q0, q0, q1, q2], ["3", "4", "It is urban.", "grey"])
    assert result.item_scores == (1.0, 0.0, 1.0, 0.0)  # no judge: "grey" is not "gray"
    assert result.metrics["acc_object_quantity"] == 0.5
    assert result.headline == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert result.metrics["overall"] == 0.5 and result.metrics["judged"] is False
    assert set(result.categories) == {"object quantity", "scene type", "object color"}


def test_the_judge_decides_open_pairs(root: Path, tmp_path: Path) -> None:
    def script(call: ChatCall) -> Reply:
        text = call.last_user_text
        assert "Synonyms are also treated as a match" in text
        return Reply(body=completion("1" if "Predicted Answer: grey" in text else "0"))

    with FakeChatServer(script) as server:
        judge = ChatClient(
            ClientConfig(
                server.url,
                "judge",
                api_key_env=None,
                max_tokens=8,
                max_retries=1,
                cache_dir=tmp_path / "c",
            )
        )
        bench = build_benchmark("vrsbench_vqa", judge=judge)
        recs = list(bench.examples(root))
        result = bench.score(recs, ["3", "rural", "Grey"])
        assert server.n_calls == 2  # "3" is settled by the rule; "rural" and "Grey" are asked
        assert bench.reward(recs[2], "Grey") == 1.0 and server.n_calls == 2
    assert result.item_scores == (1.0, 0.0, 1.0) and result.metrics["judged"] is True


def test_grounding_standard_and_release(root: Path) -> None:
    bench = build_benchmark("vrsbench_grounding")
    recs = list(bench.examples(root))
    assert [bench.category(r) for r in recs] == ["unique", "non_unique"]
    preds = ["{<10><20><50><60>}", "The box: [0, 0, 20, 10]"]
    std = bench.score(recs, preds)
    # IoU 1.0 and 0.5: a hit needs IoU > 0.5
    assert std.item_scores == (1.0, 0.0) and std.headline == 0.5
    assert std.metrics["unique_acc@0.5"] == 1.0 and std.metrics["non_unique_acc@0.5"] == 0.0
    assert std.metrics["acc@0.7"] == 0.5 and std.metrics["mean_iou"] == pytest.approx(0.75)
    rel = build_benchmark("vrsbench_grounding", release_iou=True).score(recs, preds)
    # inclusive integer boxes: (21 * 11) / (21 * 21) = 0.524 >= 0.5
    assert rel.item_scores == (1.0, 1.0) and rel.headline == 1.0
    missing = bench.score(recs, [None, "no box"])
    assert missing.headline == 0.0 and missing.details["n_with_box"] == 0


def test_inclusive_iou_and_missing_files(tmp_path: Path) -> None:
    assert inclusive_iou([0, 0, 20, 10], [0, 0, 20, 20]) == pytest.approx(231 / 441)
    assert inclusive_iou([0, 0, 1, 1], [5, 5, 6, 6]) == 0.0
    with pytest.raises(BenchmarkError, match=r"VRSBench_EVAL_referring\.json"):
        list(build_benchmark("vrsbench_grounding").examples(tmp_path))


def test_readme_average_arithmetic() -> None:
    """VRSBench README, LLaVA-1.5 row: the mean of the ten type accuracies,
    (62.8 + 89.2 + 50.4 + 57.8 + 58.5 + 52.3 + 56.9 + 50.7 + 66.0 + 64.9) / 10 = 60.9."""
    per_type = dict(zip(VQA_TYPES, (628, 892, 504, 578, 585, 523, 569, 507, 660, 649), strict=True))
    recs, preds = [], []
    for qtype, right in per_type.items():
        for i in range(1000):
            recs.append(Record(
                id=f"{qtype}-{i}", task="vqa", source="vrsbench", split="test",
                messages=[{"role": "user", "content": "q"},
                          {"role": "assistant", "content": "yes"}],
                meta={"type": qtype, "type_group": qtype, "question": "q"},
            ))  # fmt: skip
            preds.append("yes" if i < right else "no")
    result = build_benchmark("vrsbench_vqa").score(recs, preds)
    assert round(100 * result.headline, 1) == 60.9
    assert result.metrics["acc_object_category"] == pytest.approx(0.628)
