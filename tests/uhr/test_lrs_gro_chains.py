"""LRS-GRO SFT rows as Zoom-in Chains: the teacher's reasoning in ``<think>`` blocks
(locate before the call, reason on the crop before the answer), global rows as direct
answers rather than ``no_roi`` skips, and the question the zoom loop asks at inference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from earthvlm.data.resolution import Resolution
from earthvlm.data.sources import build_reader
from earthvlm.models import build_tiny_backbone
from earthvlm.uhr import ZoomCall, parse_tool_call
from earthvlm.uhr.chain import ChainConfig, build_chains, extract_answer, user_text

STAGE_1 = (
    "  \n\nQuestion Intent: the type of the right-side ship.\n\nReasoning Result:  \n"
    "I need to pay attention to the reference object at  \n```json\n[\n    "
    '{"bbox_2d": [200, 150, 230, 180], "label": "ship"}\n]\n```  \n'
)
ROWS = [
    {"question_id": "O1", "image_name": "scene.png", "category": "Object category",
     "question": "Is the right-side ship a tanker?", "ground_truth": "tanker",
     "type": "object", "bbox": [400, 300, 460, 360], "scale": 1.0, "split": "sft",
     "global": "  \nA port with two ships.  \n", "stage_1_reasoning": STAGE_1,
     "stage_2_reasoning": "  \n\nThe deck shows pipes, not containers.  \n"},
    {"question_id": "G1", "image_name": "scene.png", "category": "Urban or rural",
     "question": "Is this area urban or rural?", "ground_truth": "urban", "type": "global",
     "bbox": [], "split": "sft", "global": "Dense buildings everywhere.",
     "stage_1_reasoning": "This question is about the whole scene.",
     "stage_2_reasoning": "Buildings cover most of the image."},
    {"question_id": "R1", "image_name": "scene.png", "category": "Land use",
     "question": "What is the land use at the top left?", "ground_truth": "farmland",
     "type": "region", "bbox": [100, 100, 400, 400], "split": "sft"},
    {"question_id": "X1", "image_name": "scene.png", "question": "q", "ground_truth": "a",
     "type": "region", "bbox": [0, 0, 50, 50], "split": "sft", "stage_2_reasoning": 3},
]  # fmt: skip


@pytest.fixture(scope="module")
def gro(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An LRS-GRO folder: the rows above and one 1024 x 768 image (grid = pixels)."""
    root = tmp_path_factory.mktemp("gro")
    (root / "image").mkdir()
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (768, 1024, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(root / "image" / "scene.png")
    (root / "LRS-GRO.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    return root


@pytest.fixture(scope="module")
def resolution() -> Resolution:
    bb = build_tiny_backbone("qwen3_vl", seed=0)
    return Resolution.from_processor(bb.processor.image_processor)


def test_the_reader_keeps_reasoning_rois_and_global_rows(gro: Path) -> None:
    reader = build_reader("lrs-gro", split="sft")
    recs = {r.meta["question_id"]: r for r in reader.read(gro)}
    assert sorted(recs) == ["G1", "O1", "R1"]
    assert [p.reason for p in reader.problems] == ["bad_reasoning"]
    obj, glob = recs["O1"], recs["G1"]
    assert obj.meta["roi_type"] == "object" and obj.meta["roi_xyxy_px"] == [400, 300, 460, 360]
    assert glob.meta["roi_type"] == "global" and glob.meta["roi_xyxy_px"] == []
    why = obj.meta["reasoning"]
    assert why["global"] == "A port with two ships."
    assert why["locate"].endswith("I need to pay attention to the reference object at")
    assert "bbox_2d" not in why["locate"] and "```" not in why["locate"]
    assert why["answer"] == "The deck shows pipes, not containers."
    assert "reasoning" not in recs["R1"].meta  # a row without it
    # the direct record is unchanged: the box line, then the answer
    assert obj.messages[1].content == "[400, 300, 460, 360]\n<answer>tanker</answer>"


def test_chains_carry_the_reasoning_and_global_rows_answer_directly(
    gro: Path, resolution: Resolution, tmp_path: Path
) -> None:
    recs = list(build_reader("lrs-gro", split="sft").read(gro))
    result = build_chains(recs, gro, tmp_path, resolution, ChainConfig())
    assert result.ledger.ok == 3 and not result.failures  # no no_roi for the global row
    chains = {r.meta["question_id"]: r for r in result.records}
    obj = chains["O1"]
    assert [m.role for m in obj.messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert obj.messages[1].text() == user_text(recs[0].meta["zoom_question"])
    call = obj.messages[2].text()
    assert call.startswith("<think>A port with two ships. Question Intent:")
    assert "</think>\n<tool_call>" in call and isinstance(parse_tool_call(call), ZoomCall)
    final = obj.messages[4].text()
    assert final == "<think>The deck shows pipes, not containers.</think>\n<answer>tanker</answer>"
    assert extract_answer(final) == "tanker"  # what the zoom loop reads at inference
    glob = chains["G1"]
    assert glob.id.endswith("-direct") and [m.role for m in glob.messages][-1] == "assistant"
    assert glob.messages[-1].text() == (
        "<think>Dense buildings everywhere. This question is about the whole scene. "
        "Buildings cover most of the image.</think>\n<answer>urban</answer>"
    )
    region = chains["R1"]  # no reasoning: the call and the answer alone
    assert region.messages[2].text().startswith("<tool_call>")
    assert region.messages[-1].text() == "<answer>farmland</answer>"
    plain = build_chains(recs, gro, tmp_path / "plain", resolution, ChainConfig(reasoning=False))
    assert not any("<think>" in m.text() for r in plain.records for m in r.messages)
