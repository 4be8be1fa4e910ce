"""GRPO on the zoom loop: a CPU smoke run on a tiny Qwen3-VL (tool calls, rewards,
checkpoints that reload), the environment, the config."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from earthvlm.data.resolution import Resolution
from earthvlm.errors import EarthVLMError
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
def one_thread():
    """One torch thread: a tiny model gains nothing from intra-op threads, and on a
    loaded 2-core machine their spinning made the smoke run ~5x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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


def test_grpo_smoke_policy_zooms_rewards_are_logged_and_the_policy_reloads(
    uhr_task: dict, tmp_path: Path, one_thread: None
) -> None:
    """The CI smoke run: a warmed tiny Qwen3-VL, 2 GRPO steps of 2 rollouts; the policy
    calls zoom_in, the environment reads native crops, every reward term is logged, and
    the saved checkpoint loads back with the trained weights."""
    from earthvlm.models import EarthVLM
    from earthvlm.train.checkpoint import COMPLETE_FILE, load_state
    from earthvlm.train.rewards import region_guided_reward, roi_iou_reward

    torch.manual_seed(0)
    bb = build_tiny_backbone("qwen3_vl")
    _warm(bb, uhr_task)
    cfg = grpo_config_from_dict({
        "output_dir": str(tmp_path), "name": "smoke",
        "grpo": {"num_generations": 2, "batch_size": 2, "max_steps": 2,
                 "max_completion_length": 64, "lr": 1e-4, "temperature": 0.5},
    })  # fmt: skip
    result = train_grpo(cfg, backbone=bb, tasks=[uhr_task])
    logs = [h for h in result.log_history if "reward" in h]
    assert len(logs) == 2
    for h in logs:
        for term in ("iou", "region", "answer", "format"):
            assert f"rewards/{term}/mean" in h
    # the policy called zoom_in and the environment ran the calls on native crops
    assert min(h["tools/call_frequency"] for h in logs) > 0
    envs = result.trainer.environments
    zoomed = [e for e in envs if e.requested_xyxy_px]
    assert zoomed and all(e.calls for e in zoomed)
    source = np.asarray(_scene(uhr_task["source"]))
    for env in zoomed:
        crop = env.views[1]
        x1, y1, x2, y2 = crop.window_xyxy_px
        assert crop.is_native and crop.hw == (y2 - y1, x2 - x1)
        np.testing.assert_array_equal(crop.pixels, source[y1:y2, x1:x2])
        assert "GSD" not in env.observations[0]  # GSD text is off unless configured
    # the last logged means are the rewards of what the last step's environments did
    roi, hw = uhr_task["roi_xyxy_px"], (512, 512)
    first = [e.requested_xyxy_px[0] if e.requested_xyxy_px else None for e in envs]
    iou = np.mean([roi_iou_reward(b, roi).value for b in first])
    region = np.mean([region_guided_reward(b, roi, hw).value for b in first])
    assert logs[-1]["rewards/iou/mean"] == pytest.approx(iou, abs=1e-6) and iou > 0
    assert logs[-1]["rewards/region/mean"] == pytest.approx(region, abs=1e-6)

    # the checkpoint: complete, atomic, with config and provenance; loads as a run
    run = tmp_path / "smoke"
    ckpt = result.checkpoint
    assert ckpt == run / "checkpoint-2" and (ckpt / COMPLETE_FILE).is_file()
    assert (run / "final").resolve() == ckpt.resolve()
    assert sorted(p.name for p in (ckpt / "model").glob("*.safetensors"))
    state = load_state(ckpt)
    assert state["step"] == 2 and state["provenance"]["earthvlm"]
    assert state["metrics"]["rewards/iou/mean"] == logs[-1]["rewards/iou/mean"]
    assert load_grpo_config(ckpt / "grpo_config.yaml") == cfg
    loaded = EarthVLM.load(run)
    assert loaded.recipe.stage == 1 and not loaded.gsd_as_text
    trained = bb.model.state_dict()
    for name, value in loaded.hf_model.state_dict().items():
        torch.testing.assert_close(value, trained[name], rtol=0, atol=0, msg=name)
    with pytest.raises(EarthVLMError, match="already holds checkpoints"):
        train_grpo(cfg, backbone=bb, tasks=[uhr_task])


def _scene(path: str):
    import rasterio

    with rasterio.open(path) as src:
        return src.read().transpose(1, 2, 0)


def test_grpo_lora_policy_saves_an_adapter_that_reloads(
    uhr_task: dict, tmp_path: Path, one_thread: None
) -> None:
    """policy.kind=lora on a saved base: the checkpoint holds the adapter alone, and the
    loaded run gives the trained policy's logits (not the base's)."""
    from earthvlm.models import EarthVLM, save_backbone
    from earthvlm.train.checkpoint import complete_checkpoints

    base = tmp_path / "base"
    save_backbone(build_tiny_backbone("qwen3_vl", seed=3), base)
    cfg = grpo_config_from_dict({
        "output_dir": str(tmp_path), "name": "lora", "model": {"path": str(base)},
        "policy": {"kind": "lora", "r": 4, "alpha": 8}, "save_every": 1, "keep_last": 1,
        "grpo": {"num_generations": 2, "batch_size": 2, "max_steps": 2,
                 "max_completion_length": 12, "lr": 5e-2},
    })  # fmt: skip

    def by_length(row: dict, prediction: str) -> float:  # rewards that differ in a group
        return float(len(prediction) % 2)

    result = train_grpo(cfg, tasks=[uhr_task], score_fn=by_length)
    policy = result.trainer.model
    # saved after steps 1 and 2; keep_last=1 left the newest, which "final" points at
    assert [p.name for p in complete_checkpoints(tmp_path / "lora")] == ["checkpoint-2"]
    assert (tmp_path / "lora" / "final").resolve() == result.checkpoint.resolve()
    adapter = result.checkpoint / "adapter"
    assert (adapter / "adapter_model.safetensors").is_file()
    assert not (result.checkpoint / "model").exists()
    trained_b = [p for n, p in policy.named_parameters() if "lora_B" in n]
    assert trained_b and any(p.abs().sum() > 0 for p in trained_b)  # the policy moved
    loaded = EarthVLM.load(tmp_path / "lora")
    assert loaded.variant == "lora"
    ids = torch.tensor([[5, 17, 42, 99, 7]])
    policy.eval()
    with torch.no_grad():
        want = policy(input_ids=ids).logits
        with policy.disable_adapter():
            base_logits = policy(input_ids=ids).logits
        got = loaded.net(input_ids=ids).logits
    torch.testing.assert_close(got, want)
    assert not torch.allclose(got, base_logits)
    other = dataclasses.replace(cfg, name="lora-in-memory")
    with pytest.raises(ValueError, match=r"policy\.kind=full only"):
        train_grpo(other, backbone=build_tiny_backbone("qwen3_vl"), tasks=[uhr_task])


def test_shipped_recipe_parses() -> None:
    cfg = load_grpo_config(ROOT / "configs" / "grpo_tiny_cpu.yaml")
    assert isinstance(cfg, GRPORunConfig)
    assert cfg.model.family == "qwen3_vl" and cfg.model.path is None
    assert cfg.rewards.format == 0.05
    assert cfg.grpo.batch_size % cfg.grpo.num_generations == 0


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"grpo\.batch_size=3 is not a multiple"):
        grpo_config_from_dict({"grpo": {"batch_size": 3, "num_generations": 2}})
    with pytest.raises(ValueError, match=r"did you mean 'grpo\.num_generations'"):
        grpo_config_from_dict({"grpo": {"num_generation": 2}})
    with pytest.raises(ValueError, match=r"model\.family"):
        grpo_config_from_dict({"model": {"family": "qwen2_5_vl"}})
    with pytest.raises(ValueError, match=r"policy\.kind='cshlora'"):
        grpo_config_from_dict({"policy": {"kind": "cshlora"}})
    data = {"grpo": {"lr": "1e-6"}}
    assert grpo_config_from_dict(data).grpo.lr == 1e-6 and data == {"grpo": {"lr": "1e-6"}}


def test_recipes_take_overrides_and_errors_name_the_file() -> None:
    from earthvlm.errors import EarthVLMError

    recipe = ROOT / "configs" / "grpo_tiny_cpu.yaml"
    cfg = load_grpo_config(recipe, ["grpo.lr=2e-6", "policy.kind=lora"])
    assert cfg.grpo.lr == 2e-6 and cfg.policy.kind == "lora"
    with pytest.raises(
        EarthVLMError, match=r"grpo_tiny_cpu\.yaml: grpo\.max_steps=2\.5: expected an int"
    ):
        load_grpo_config(recipe, ["grpo.max_steps=2.5"])
    with pytest.raises(EarthVLMError, match=r"policy\.kind='dora': choose one of \['full'"):
        load_grpo_config(recipe, ["policy.kind=dora"])


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
