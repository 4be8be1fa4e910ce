"""GRPO rewards: worked numbers, the weighted total, and garbage that scores 0 with a reason."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest

from earthvlm.train import rewards as R
from earthvlm.uhr.tool import format_tool_call

CALL = format_tool_call([100, 200, 300, 400])


def test_iou_worked_numbers() -> None:
    assert R.roi_iou_reward([0, 0, 100, 100], [50, 0, 150, 100]).value == pytest.approx(1 / 3)
    assert R.roi_iou_reward([10, 10, 20, 20], [10, 10, 20, 20]).value == 1.0
    # a box inside another: 100 / 400
    assert R.roi_iou_reward([0, 0, 10, 10], [0, 0, 20, 20]).value == pytest.approx(0.25)
    assert R.roi_iou_reward([0, 0, 10, 10], [20, 20, 30, 30]) == R.Reward(0.0, R.NO_OVERLAP)


def test_region_guided_worked_numbers() -> None:
    hw = (5000, 5000)  # alpha = 0.04 * 5000 = 200 px, the release's constant
    gt = [1000, 1000, 1100, 1100]  # centre (1050, 1050)
    same_centre = R.region_guided_reward([1040, 1040, 1060, 1060], gt, hw)
    assert same_centre == R.Reward(1.0)
    near = R.region_guided_reward(
        [1170, 1090, 1330, 1170], gt, hw
    )  # centre (1250, 1130): d = 215.4
    assert near.value == pytest.approx(math.tanh(200 / math.hypot(200, 80)))
    d200 = R.region_guided_reward([1200, 1000, 1300, 1100], gt, hw)  # d = 200
    assert d200.value == pytest.approx(math.tanh(1.0)) == pytest.approx(0.761594, abs=1e-6)
    far = R.region_guided_reward([3000, 1000, 3100, 1100], gt, hw)  # d = 2000
    assert far.value == pytest.approx(math.tanh(0.1)) == pytest.approx(0.099668, abs=1e-6)
    # dense where IoU is 0, and monotone in the distance
    assert R.roi_iou_reward([1200, 1000, 1300, 1100], gt).value == 0.0
    assert 1.0 > d200.value > far.value > 0.0


def test_region_guided_scales_with_resolution() -> None:
    gt = [0, 0, 10, 10]
    pred = [200, 0, 210, 10]  # d = 200 px
    small = R.region_guided_reward(pred, gt, (1000, 1000)).value  # alpha 40
    large = R.region_guided_reward(pred, gt, (10000, 10000)).value  # alpha 400
    assert small == pytest.approx(math.tanh(0.2))
    assert large == pytest.approx(math.tanh(2.0))
    doubled = R.region_guided_reward(pred, gt, (1000, 1000), region_scale=0.08).value
    assert doubled == pytest.approx(math.tanh(0.4))


@pytest.mark.parametrize(
    ("pred", "gt", "hw", "reason"),
    [
        (None, [0, 0, 1, 1], (10, 10), R.NO_BOX),
        ([0, 0, 1, 1], None, (10, 10), R.NO_GT_ROI),
        ("garbage", [0, 0, 1, 1], (10, 10), R.BAD_BOX),
        ([5, 5, 1, 1], [0, 0, 1, 1], (10, 10), R.BAD_BOX),
        ([0, 0, float("nan"), 1], [0, 0, 1, 1], (10, 10), R.BAD_BOX),
        ([0, 0, 1], [0, 0, 1, 1], (10, 10), R.BAD_BOX),
        ([0, 0, 1, 1], [0, 0, 0, 1], (10, 10), R.BAD_GT_ROI),
        ([0, 0, 1, 1], [0, 0, 1, 1], (0, 0), R.BAD_IMAGE_HW),
        ([0, 0, 1, 1], [0, 0, 1, 1], None, R.BAD_IMAGE_HW),
    ],
)
def test_box_rewards_never_raise(pred, gt, hw, reason) -> None:
    r = R.region_guided_reward(pred, gt, hw)
    assert r == R.Reward(0.0, reason)
    if reason != R.BAD_IMAGE_HW:
        assert R.roi_iou_reward(pred, gt) == R.Reward(0.0, reason)


def test_answer_reward_uses_the_injected_scorer() -> None:
    record = {"answer": "three"}

    def exact(rec, pred):
        return float(pred.strip().lower() == rec["answer"])

    assert R.answer_reward(record, "Three", exact) == R.Reward(1.0)
    assert R.answer_reward(record, "two", exact) == R.Reward(0.0)
    assert R.answer_reward(record, "  ", exact) == R.Reward(0.0, R.EMPTY_ANSWER)
    assert R.answer_reward(record, None, exact) == R.Reward(0.0, R.EMPTY_ANSWER)
    assert R.answer_reward(record, "x", lambda r, p: 1 / 0) == R.Reward(0.0, R.SCORE_ERROR)
    assert R.answer_reward(record, "x", lambda r, p: float("nan")) == R.Reward(0.0, R.BAD_SCORE)
    assert R.answer_reward(record, "x", lambda r, p: "n/a") == R.Reward(0.0, R.SCORE_ERROR)
    assert R.answer_reward(record, "x", lambda r, p: 3.0).value == 1.0  # clipped


def test_format_reward() -> None:
    assert R.format_reward([CALL, "<answer>3</answer>"]) == R.Reward(1.0)
    assert R.format_reward(["There are 3."]) == R.Reward(1.0)  # no zoom: fine
    assert R.format_reward(["<think>a</think><answer>B</answer>"]) == R.Reward(1.0)
    assert R.format_reward([]) == R.Reward(0.0, R.NO_TURNS)
    assert R.format_reward(["<tool_call>{bad json</tool_call>", "3"]).reason == R.BAD_CALL
    unclosed = '<tool_call>{"name": "zoom_in", "arguments": {"bbox_2d": [1, 2, 3, 4]}}'
    assert R.format_reward([unclosed, "3"]).reason == R.REPAIRED_CALL
    assert R.format_reward([CALL]).reason == R.CALL_IN_ANSWER
    assert R.format_reward(["<answer>3"]).reason == R.UNCLOSED_TAG
    assert R.format_reward(["<think>hm</think>"]).reason == R.EMPTY_ANSWER
    assert R.format_reward([None, 3]).value == 0.0  # type: ignore[list-item]


def test_zoom_reward_total_uses_weights() -> None:
    gt = [1000, 1000, 1100, 1100]
    out = R.zoom_reward(
        [CALL, "<answer>three</answer>"],
        [[1000, 1000, 1100, 1100], [0, 0, 10, 10]],  # the first zoom is scored
        gt,
        (5000, 5000),
        record={"answer": "three"},
        score_fn=lambda rec, pred: float(pred == rec["answer"]),
    )
    assert out.values() == {"iou": 1.0, "region": 1.0, "format": 1.0, "answer": 1.0}
    assert out.total == pytest.approx(3.05)  # 1 + 1 + 1 + 0.05: the paper's beta
    assert out.reasons() == {}

    w = R.RewardWeights(iou=0.0, region=2.0, answer=1.0, format=1.0)
    miss = R.zoom_reward(["<answer>four</answer>"], [], gt, (5000, 5000),
                         record={"answer": "three"},
                         score_fn=lambda rec, pred: float(pred == rec["answer"]),
                         weights=w)  # fmt: skip
    assert miss.total == pytest.approx(1.0)  # format only
    assert miss.reasons() == {"iou": R.NO_BOX, "region": R.NO_BOX}
    d200 = R.zoom_reward([CALL, "x"], [[1200, 1000, 1300, 1100]], gt, (5000, 5000), weights=w)
    assert "answer" not in d200.terms  # no scorer: no answer term
    assert d200.total == pytest.approx(2 * math.tanh(1.0) + 1.0)


def test_zoom_reward_on_garbage_never_raises() -> None:
    for turns, boxes in [(None, None), ("\x00" * 50, [None]), ([b"bytes"], [["a"]]), ([], 7)]:
        out = R.zoom_reward(turns, boxes, [0, 0, 5, 5], (10, 10),
                            score_fn=lambda r, p: 1.0)  # fmt: skip
        assert 0.0 <= out.total <= 3.05


def test_weights_are_validated() -> None:
    with pytest.raises(ValueError, match=r"rewards\.format"):
        R.RewardWeights(format=-0.1)
    with pytest.raises(ValueError, match=r"rewards\.iou"):
        R.RewardWeights(iou=float("nan"))
    with pytest.raises(ValueError, match="region_scale"):
        R.RewardWeights(region_scale=0.0)


def test_rewards_module_imports_no_torch() -> None:
    tree = ast.parse(Path(R.__file__).read_text())
    modules = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not {m for m in modules if m.split(".")[0] == "torch"}
    assert not {m for m in modules if m.startswith("earthvlm.eval")}
