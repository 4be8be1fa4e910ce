"""GRPO on the zoom loop: a CPU smoke run on a tiny Qwen3-VL, the environment, the config."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from earthvlm.data.resolution import Resolution
from earthvlm.models import build_tiny_backbone
from earthvlm.train.grpo import (
    GRPORunConfig,
    ZoomEnvironment,
    grpo_config_from_dict,
    load_grpo_config,
    reward_functions,
    train_grpo,
    turn_texts,
)
from earthvlm.train.rewards import RewardWeights
from earthvlm.uhr.tool import ZoomConfig, format_tool_call

ROOT = Path(__file__).resolve().parents[2]
CALL = format_tool_call([250, 250, 500, 500])


@pytest.fixture
def uhr_task(tmp_path: Path, write_geotiff) -> dict:
    """A 512 px scene with a bright square (the ROI) in its upper-left quarter."""
    data = np.full((3, 512, 512), 40, np.uint8)
    data[:, 140:220, 140:220] = 230
    path = write_geotiff(tmp_path / "scene.tif", data=data)
    return {"source": str(path), "question": "Is there a bright roof?", "answer": "yes",
            "roi_xyxy_px": [140, 140, 220, 220]}  # fmt: skip


def test_environment_executes_and_refuses(uhr_task: dict) -> None:
    bb = build_tiny_backbone("qwen3_vl")
    res = Resolution.from_processor(bb.processor.image_processor)
    env = ZoomEnvironment(res, ZoomConfig("norm1000", 64), None)
    env.reset(**uhr_task)
    out = env.zoom_in([250, 250, 500, 500])
    assert isinstance(out, list) and out[0]["type"] == "image"
    assert env.requested_xyxy_px == [(128.0, 128.0, 256.0, 256.0)]  # 0-1000 -> source px
    assert isinstance(env.zoom_in([2000, 2000, 3000, 3000]), str)  # outside: an observation
    assert isinstance(env.zoom_in("garbage"), str)  # type: ignore[arg-type]
    assert (env.calls, env.refused, len(env.views)) == (3, 2, 2)
    env.reset(**uhr_task)
    assert env.calls == 0 and len(env.views) == 1


def test_reward_functions_score_a_rollout(uhr_task: dict) -> None:
    bb = build_tiny_backbone("qwen3_vl")
    env = ZoomEnvironment(Resolution.from_processor(bb.processor.image_processor),
                          ZoomConfig("norm1000", 64), None)  # fmt: skip
    env.reset(**uhr_task)
    env.zoom_in([250, 250, 500, 500])  # (128, 128, 256, 256) vs the ROI (140, 140, 220, 220)
    completion = [
        {"role": "assistant", "content": "",
         "tool_calls": [{"type": "function", "function": {
             "name": "zoom_in", "arguments": {"bbox_2d": [250, 250, 500, 500]}}}]},
        {"role": "tool", "name": "zoom_in", "content": "Image 1: ..."},
        {"role": "assistant", "content": "<answer>Yes</answer>"},
    ]  # fmt: skip
    assert turn_texts(completion)[1] == "<answer>Yes</answer>"
    funcs, weights = reward_functions(RewardWeights())
    assert [f.__name__ for f in funcs] == ["iou", "region", "answer", "format"]
    assert weights == [1.0, 1.0, 1.0, 0.05]
    kw = {"environments": [env], "roi_xyxy_px": [uhr_task["roi_xyxy_px"]],
          "answer": ["yes"], "question": [uhr_task["question"]]}  # fmt: skip
    values = [f(prompts=[None], completions=[completion], **kw)[0] for f in funcs]
    assert values[0] == pytest.approx(80 * 80 / (128 * 128))  # 6400 / 16384
    # centres (192, 192) and (180, 180): d = 12 * sqrt(2); alpha = 0.04 * 512
    assert values[1] == pytest.approx(math.tanh(20.48 / (12 * math.sqrt(2))))  # 0.8357
    assert values[2:] == [1.0, 1.0]
    garbage = [f(prompts=[None], completions=[[{"role": "x"}]], **{**kw, "environments": [None]})
               for f in funcs]  # fmt: skip
    assert garbage == [[0.0], [0.0], [0.0], [0.0]]


def _warm(bb, task: dict, steps: int = 120) -> None:
    """Teach the random tiny model to open with a zoom call (it never would otherwise)."""
    from PIL import Image

    from earthvlm.uhr.chain import user_text
    from earthvlm.uhr.reader import UHRReader

    res = Resolution.from_processor(bb.processor.image_processor)
    with UHRReader(task["source"], res) as reader:
        image = Image.fromarray(reader.global_view().pixels)
    conv = [
        {
            "role": "user",
            "content": [
                {"type": "image", "image": image},
                {"type": "text", "text": user_text(task["question"])},
            ],
        }
    ]
    env = ZoomEnvironment(res, ZoomConfig("norm1000", 64), None)
    prompt = bb.processor.apply_chat_template(
        conv,
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        tools=[env.zoom_in],
    )  # as TRL renders it
    target = bb.tokenizer(CALL + "<|im_end|>", add_special_tokens=False, return_tensors="pt")
    ids = torch.cat([prompt["input_ids"], target["input_ids"]], 1)
    labels = ids.clone()
    labels[:, : prompt["input_ids"].shape[1]] = -100
    batch = {k: v for k, v in prompt.items() if k not in ("input_ids", "attention_mask")}
    for key in ("mm_token_type_ids", "token_type_ids"):  # per-token: extend over the target
        if key in batch:
            pad = torch.zeros_like(target["input_ids"])
            batch[key] = torch.cat([batch[key], pad.to(batch[key].dtype)], 1)
    opt = torch.optim.AdamW(bb.model.parameters(), lr=1e-2)
    bb.model.train()
    for _ in range(steps):
        loss = bb.model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels,
                        **batch).loss  # fmt: skip
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.slow
def test_grpo_smoke_policy_zooms_and_rewards_are_logged(uhr_task: dict, tmp_path: Path) -> None:
    torch.manual_seed(0)
    bb = build_tiny_backbone("qwen3_vl")
    _warm(bb, uhr_task)
    cfg = grpo_config_from_dict({
        "output_dir": str(tmp_path), "name": "smoke",
        "grpo": {"num_generations": 2, "batch_size": 2, "max_steps": 2,
                 "max_completion_length": 96, "lr": 1e-4, "temperature": 0.5},
    })  # fmt: skip
    result = train_grpo(cfg, backbone=bb, tasks=[uhr_task])
    logs = [h for h in result.log_history if "reward" in h]
    assert len(logs) == 2
    for h in logs:
        for term in ("iou", "region", "answer", "format"):
            assert f"rewards/{term}/mean" in h
    # the policy called zoom_in and the environment ran the calls
    assert max(h["tools/call_frequency"] for h in logs) > 0
    envs = result.trainer.environments
    assert any(e.calls for e in envs)
    assert any(e.requested_xyxy_px for e in envs)


def test_shipped_recipe_parses() -> None:
    cfg = load_grpo_config(ROOT / "configs" / "grpo_tiny_cpu.yaml")
    assert isinstance(cfg, GRPORunConfig)
    assert cfg.model.family == "qwen3_vl" and cfg.model.path is None
    assert cfg.rewards.format == 0.05
    assert cfg.grpo.batch_size % cfg.grpo.num_generations == 0


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"grpo\.batch_size=3 is not a multiple"):
        grpo_config_from_dict({"grpo": {"batch_size": 3, "num_generations": 2}})
    with pytest.raises(ValueError, match="did you mean 'num_generations'"):
        grpo_config_from_dict({"grpo": {"num_generation": 2}})
    with pytest.raises(ValueError, match=r"model\.family"):
        grpo_config_from_dict({"model": {"family": "qwen2_5_vl"}})
    data = {"grpo": {"lr": "1e-6"}}
    assert grpo_config_from_dict(data).grpo.lr == 1e-6 and data == {"grpo": {"lr": "1e-6"}}


def test_tasks_file(tmp_path: Path) -> None:
    from earthvlm.errors import EarthVLMError
    from earthvlm.train.grpo import load_tasks

    (tmp_path / "t.jsonl").write_text(
        json.dumps({"source": "a.tif", "question": "q", "answer": "a"}) + "\n"
    )
    tasks = load_tasks(tmp_path / "t.jsonl")
    assert tasks[0]["source"] == str((tmp_path / "a.tif").resolve())
    assert tasks[0]["roi_xyxy_px"] is None
    (tmp_path / "bad.jsonl").write_text(json.dumps({"source": "a.tif"}) + "\n")
    with pytest.raises(EarthVLMError, match=r"bad.jsonl:1: missing \['answer', 'question'\]"):
        load_tasks(tmp_path / "bad.jsonl")
