"""One observation text in SFT chains, the inference loop and GRPO rollouts: the GRPO
environment writes exactly the chain's tool turn, with the crop's GSD only for a
GSD-as-text (B3) policy, and the GRPO prompt states the global view's GSD only then.
(Chain == loop is tested in ``tests/uhr/test_loop.py``.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from earthvlm.data.record import ImagePart, ImageRef, Message, Record, TextPart
from earthvlm.data.resolution import Resolution
from earthvlm.models import build_tiny_backbone
from earthvlm.scale.gsd import GSD
from earthvlm.synth.uhr import UHRScene, write_uhr_scene
from earthvlm.train.grpo import (
    GSDTextZoomEnvironment,
    build_dataset,
    grpo_config_from_dict,
    zoom_environment,
)
from earthvlm.uhr.chain import ChainConfig, ChainWriter, tool_system_prompt
from earthvlm.uhr.tool import ZoomConfig, zoom_tool_schema

SIZE_PX = 1024
QUESTION = "How many small vehicles are there?"


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> UHRScene:
    path = tmp_path_factory.mktemp("obs") / "scene.tif"
    return write_uhr_scene(path, size_px=SIZE_PX, gsd_m=0.3, kind="farmland", seed=1)


@pytest.fixture(scope="module")
def resolution() -> Resolution:
    return Resolution.from_processor(build_tiny_backbone("qwen3_vl").processor.image_processor)


@pytest.mark.parametrize("gsd_text", [False, True], ids=["no-gsd-text", "gsd-as-text"])
def test_rollout_observation_is_the_chain_observation(
    scene: UHRScene, resolution: Resolution, tmp_path: Path, gsd_text: bool
) -> None:
    gsd = GSD.exact(scene.gsd_m, "metadata", "synthetic scene")
    rec = Record(
        id="q", task="vqa", source="test",
        images=[ImageRef(path=scene.path.name, width=SIZE_PX, height=SIZE_PX, gsd=gsd)],
        messages=[
            Message(role="user", content=[ImagePart(index=0), TextPart(text=QUESTION)]),
            Message(role="assistant", content="1"),
        ],
        meta={"roi_xyxy_px": [float(v) for v in scene.labels[0].xyxy_px]},
    )  # fmt: skip
    cfg = ChainConfig(observation_gsd=gsd_text)
    with ChainWriter(scene.path.parent, tmp_path, resolution, cfg) as writer:
        chain = writer.chain(rec)
    box = chain.meta["zoom"]["call_bbox_2d"]

    env = zoom_environment(resolution, ZoomConfig("norm1000", 64, gsd_text), None)
    env.reset(source=str(scene.path))
    out = env.zoom_in(box)
    assert isinstance(out, list) and out[1]["text"] == env.observations[0]
    assert env.observations[0] == chain.messages[3].text()
    assert ("GSD 0.3 m" in env.observations[0]) is gsd_text
    assert env.views[1].window_xyxy_px == tuple(chain.meta["zoom"]["window_xyxy_px"])
    with pytest.raises(ValueError, match="zoom_environment"):  # tool text vs observations
        type(env)(resolution, ZoomConfig("norm1000", 64, not gsd_text), None)


@pytest.mark.parametrize("gsd_text", [False, True], ids=["no-gsd-text", "gsd-as-text"])
def test_rollouts_render_the_tool_the_chains_train_on(gsd_text: bool) -> None:
    """TRL renders the environment's zoom_in method; the chains and the loop render
    zoom_tool_schema (as the template's tools or as a system turn): the same prompt."""
    bb = build_tiny_backbone("qwen3_vl")
    res = Resolution.from_processor(bb.processor.image_processor)
    env = zoom_environment(res, ZoomConfig("norm1000", 64, gsd_text), None)
    assert isinstance(env, GSDTextZoomEnvironment) is gsd_text
    schema = zoom_tool_schema("norm1000", gsd=gsd_text)
    conv = [{"role": "user", "content": [{"type": "text", "text": QUESTION}]}]

    def render(conversation: list, tools: list | None) -> str:
        return bb.processor.apply_chat_template(
            conversation, tools=tools, chat_template=bb.chat_template(), tokenize=False
        )

    rollout = render(conv, [env.zoom_in])  # what TRL passes
    assert rollout == render(conv, [schema])  # the loop (Qwen3-VL: the template's tools)
    chain = [{"role": "system", "content": tool_system_prompt([schema])}, *conv]
    assert rollout == render(chain, None)  # a chain record's system turn
    assert ("(GSD)" in rollout) is gsd_text


@pytest.mark.parametrize("gsd_text", [False, True], ids=["no-gsd-text", "gsd-as-text"])
def test_grpo_prompt_states_the_global_gsd_only_for_gsd_as_text(
    scene: UHRScene, resolution: Resolution, gsd_text: bool
) -> None:
    cfg = grpo_config_from_dict({"loop": {"gsd_as_text": gsd_text}})
    task = {"source": str(scene.path), "question": QUESTION, "answer": "1"}
    (prompt,) = build_dataset([task], resolution, cfg)["prompt"]
    texts = [p["text"] for p in prompt[0]["content"] if p["type"] == "text"]
    # the global view is 4x coarser than the 0.3 m source (1024 px into 256 px)
    sentence = "The ground sampling distance of this image is 1.2 m per pixel. "
    assert (texts[0] == sentence) is gsd_text
    assert texts[-1].startswith(QUESTION)


def test_a_task_gsd_reaches_the_rollout_as_a_chain_record_gsd_reaches_the_chain(
    scene: UHRScene, resolution: Resolution
) -> None:
    """``source_gsd`` (the record's GSD, written by ``earthvlm data grpo-tasks``) wins over
    the raster's georeferencing, as the record's GSD does for chains."""
    from earthvlm.errors import EarthVLMError
    from earthvlm.train.grpo import task_gsd

    spoofed = GSD.exact(0.5, "dataset", "record").to_dict()  # the file says 0.3 m
    task = {"source": str(scene.path), "question": QUESTION, "answer": "1", "id": "t"}
    cfg = grpo_config_from_dict({"loop": {"gsd_as_text": True}})
    (prompt,) = build_dataset([{**task, "source_gsd": spoofed}], resolution, cfg)["prompt"]
    assert "2 m per pixel" in prompt[0]["content"][1]["text"]  # 4x the record's 0.5 m
    env = zoom_environment(resolution, ZoomConfig("norm1000", 64, True), None)
    env.reset(**task, source_gsd=json.dumps(spoofed))  # as the dataset column holds it
    env.zoom_in([0, 0, 100, 100])
    assert env.observations[0].endswith("GSD 0.5 m.") and env.views[1].is_native
    env.reset(**task)
    assert env.views[0].gsd.point_m == pytest.approx(4 * scene.gsd_m)  # georeferencing
    assert task_gsd({"source_gsd": None}) is None
    with pytest.raises(EarthVLMError, match="source_gsd"):
        task_gsd({"id": "t", "source_gsd": {"m": -1}})
