"""The zoom loop on a tiny real backbone and a generated UHR scene: control flow with
scripted model turns (answer, one zoom, two zooms, invalid calls, budgets), one GSD per
view reaching the model, the prompt matching the training chains, and a random model
that writes garbage without breaking anything."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from earthvlm.adapters.cshlora import CSHLoRAConfig, inject_cshlora
from earthvlm.data.collate import Collator
from earthvlm.data.gsd_text import with_gsd_text
from earthvlm.data.record import ImagePart, ImageRef, Message, Record, TextPart
from earthvlm.data.resolution import Resolution
from earthvlm.models import EarthVLM, build_tiny_backbone
from earthvlm.models.scaleearth import ScaleEarth
from earthvlm.models.sseu import SSEUHead
from earthvlm.scale.gsd import GSD
from earthvlm.synth.uhr import UHRScene, write_uhr_scene
from earthvlm.uhr.chain import ChainConfig, ChainWriter, tool_system_prompt
from earthvlm.uhr.loop import LoopConfig, greedy_ids, run_zoom_loop
from earthvlm.uhr.tool import format_tool_call, zoom_tool_schema

QUESTION = "How many small vehicles are there?"
SIZE_PX = 1024


@pytest.fixture(scope="module")
def backbone():
    return build_tiny_backbone("qwen3_vl", seed=0)


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> UHRScene:
    path = tmp_path_factory.mktemp("loop") / "scene.tif"
    return write_uhr_scene(path, size_px=SIZE_PX, gsd_m=0.3, kind="farmland", seed=1)


@pytest.fixture(scope="module")
def source_gsd(scene: UHRScene) -> GSD:
    return GSD.exact(scene.gsd_m, "metadata", "synthetic scene")


class Script:
    """A generate function that writes the given turns, recording what the model saw."""

    def __init__(self, backbone, turns: list[str]) -> None:
        self.tok = backbone.tokenizer
        self.turns: Iterator[str] = iter(turns)
        self.grids: list[list[list[int]]] = []
        self.gsds: list[list[GSD]] = []
        self.prompts: list[str] = []
        self.inputs: list = []

    def __call__(self, inputs, gsds, max_new_tokens):
        self.inputs.append(inputs)
        self.grids.append(inputs["image_grid_thw"].tolist())
        self.gsds.append(list(gsds))
        self.prompts.append(self.tok.decode(inputs["input_ids"][0]))
        return self.tok.encode(next(self.turns))


def _norm_box(xyxy_px, size: int = SIZE_PX) -> list[int]:
    """A source-pixel box as a 0-1000 box on the global view (the whole image)."""
    x1, y1, x2, y2 = xyxy_px
    return [
        int(x1 * 1000 // size),
        int(y1 * 1000 // size),
        int(-(-x2 * 1000 // size)),
        int(-(-y2 * 1000 // size)),
    ]


def test_answer_directly(backbone, scene, source_gsd) -> None:
    script = Script(backbone, ["There are 3."])
    trace = run_zoom_loop(backbone, scene.path, QUESTION, gsd=source_gsd, generate=script)
    assert trace.answer == "There are 3." and trace.stop == "answered"
    assert [t.action for t in trace.turns] == ["answer"] and trace.n_zooms == 0
    assert trace.tokens_per_turn == [len(backbone.tokenizer.encode("There are 3."))]
    # the model saw the global view alone, with the GSD of what it shows (4x the source)
    (gsd,) = script.gsds[0]
    assert gsd.point_m == pytest.approx(4 * scene.gsd_m)
    assert trace.views[0].window_xyxy_px == (0, 0, SIZE_PX, SIZE_PX)
    # Qwen3-VL: the schema went through the template's tools argument
    assert trace.tools_via == "template" and "# Tools" in script.prompts[0]
    assert '"name": "zoom_in"' in script.prompts[0]


def test_one_zoom_reads_the_source_natively_with_its_own_gsd(backbone, scene, source_gsd) -> None:
    target = scene.labels[0]
    box = _norm_box(target.xyxy_px)
    script = Script(backbone, [format_tool_call(box), "One small vehicle."])
    trace = run_zoom_loop(backbone, scene.path, QUESTION, gsd=source_gsd, generate=script)
    assert [t.action for t in trace.turns] == ["zoom", "answer"] and trace.n_zooms == 1
    crop = trace.views[1]
    x1, y1, x2, y2 = crop.window_xyxy_px
    ox1, oy1, ox2, oy2 = target.xyxy_px
    assert x1 <= ox1 and y1 <= oy1 and x2 >= ox2 and y2 >= oy2  # the object is in the crop
    assert crop.is_native and crop.gsd.point_m == pytest.approx(scene.gsd_m)
    # turn 2 saw both images, each with its own GSD, at the size the view was read
    assert [g.point_m for g in script.gsds[1]] == pytest.approx([4 * scene.gsd_m, scene.gsd_m])
    grid = script.grids[1][1]
    assert [grid[1] * 16, grid[2] * 16] == list(crop.hw)  # the processor kept the view's size
    assert "<tool_response>" in script.prompts[1]
    assert trace.turns[0].observation in script.prompts[1]
    req = trace.requested_xyxy_px[1]
    assert req is not None and req[0] <= ox1 + 1 and req[2] >= ox2 - 1


def test_two_zooms_and_a_box_on_the_latest_view(backbone, scene, source_gsd) -> None:
    turns = [format_tool_call([0, 0, 500, 500]), format_tool_call([0, 0, 500, 500]), "Done."]
    trace = run_zoom_loop(
        backbone,
        scene.path,
        QUESTION,
        LoopConfig(max_zooms=2),
        gsd=source_gsd,
        generate=Script(backbone, turns),
    )
    assert [t.action for t in trace.turns] == ["zoom", "zoom", "answer"]
    (a1, b1, a2, b2), (c1, d1, c2, d2) = trace.windows_xyxy_px[1:]
    assert (a1, b1, a2, b2) == (0, 0, 512, 512)  # the top-left quarter of the source
    # the second box is drawn on view 1 (the latest): the top-left quarter of it
    assert c1 >= a1 and d1 >= b1 and c2 <= a2 and d2 <= b2 and (c2 - c1) < (a2 - a1)
    assert [t.view for t in trace.turns] == [1, 2, None]
    assert trace.turns[2].n_images == 3


def test_invalid_calls_become_observations(backbone, scene, source_gsd) -> None:
    turns = [
        '<tool_call>{"name": "zoom_in", "arguments": {"bbox_2d": [1, 2',
        format_tool_call([1200, 1200, 1500, 1500]),
        "Two.",
    ]
    script = Script(backbone, turns)
    cfg = LoopConfig(max_invalid_calls=2)
    trace = run_zoom_loop(backbone, scene.path, QUESTION, cfg, gsd=source_gsd, generate=script)
    assert [t.action for t in trace.turns] == ["invalid", "invalid", "answer"]
    assert [t.reason for t in trace.turns[:2]] == ["invalid_json", "box_out_of_image"]
    assert trace.n_zooms == 0 and trace.answer == "Two." and trace.stop == "answered"
    # the model read why on its next turn
    assert "zoom_in was not run" in script.prompts[1] and "outside the image" in script.prompts[2]


@pytest.mark.parametrize(
    ("cfg", "turns", "actions", "stop"),
    [
        (
            LoopConfig(max_zooms=1),
            [format_tool_call([0, 0, 500, 500])] * 2 + ["Five."],
            ["zoom", "refused", "final"],
            "max_zooms",
        ),
        (
            LoopConfig(max_invalid_calls=0),
            ["<tool_call>nonsense", "<tool_call>again"],
            ["refused", "final"],
            "max_invalid",
        ),
    ],
)
def test_budgets_end_the_loop(backbone, scene, source_gsd, cfg, turns, actions, stop) -> None:
    script = Script(backbone, turns)
    trace = run_zoom_loop(backbone, scene.path, QUESTION, cfg, gsd=source_gsd, generate=script)
    assert [t.action for t in trace.turns] == actions and trace.stop == stop
    assert trace.turns[-2].reason == "budget_spent"
    assert "budget" in script.prompts[-1]  # told to answer
    assert "<tool_call>" not in trace.answer  # a call in the final turn is not the answer


def test_max_zooms_zero_offers_no_tool(backbone, scene, source_gsd) -> None:
    script = Script(backbone, [format_tool_call([0, 0, 10, 10])])
    trace = run_zoom_loop(
        backbone, scene.path, QUESTION, LoopConfig(max_zooms=0), gsd=source_gsd, generate=script
    )
    assert "# Tools" not in script.prompts[0] and "zoom_in" not in script.prompts[0]
    assert trace.tools_via == "none" and trace.stop == "max_zooms" and trace.n_zooms == 0
    assert [t.action for t in trace.turns] == ["final"] and trace.answer == ""


def test_qwen2_5_gets_the_schema_in_a_system_turn_and_crops_in_user_turns(scene, source_gsd):
    bb = build_tiny_backbone("qwen2_5_vl", seed=0)
    turns = [format_tool_call([0, 0, 100, 100]), "Yes."]
    script = Script(bb, turns)
    trace = run_zoom_loop(bb, scene.path, QUESTION, gsd=source_gsd, generate=script)
    assert trace.tools_via == "system" and trace.n_zooms == 1
    prompt = script.prompts[1]
    assert prompt.startswith("<|im_start|>system\n# Tools") and "<|im_start|>tool" not in prompt
    assert prompt.count("<|im_start|>user") == 2 and prompt.count("<|vision_start|>") == 2
    with pytest.raises(ValueError, match="does not render a tools"):
        run_zoom_loop(bb, scene.path, QUESTION, LoopConfig(tools="template"), generate=script)
    # Qwen2.5-VL boxes are in pixels of the view: 100 px of a 256 px global view
    x1, y1, x2, _ = trace.requested_xyxy_px[1]
    assert (x1, y1) == (0, 0) and x2 == pytest.approx(100 * SIZE_PX / trace.views[0].hw[1])


def test_gsd_as_text_states_each_user_views_gsd(backbone, scene, source_gsd) -> None:
    script = Script(backbone, ["Four."])
    run_zoom_loop(
        backbone,
        scene.path,
        QUESTION,
        LoopConfig(gsd_as_text=True),
        gsd=source_gsd,
        generate=script,
    )
    sentence = "<|vision_end|>The ground sampling distance of this image is 1.2 m per pixel. "
    assert sentence + QUESTION in script.prompts[0]


def test_a_scale_conditioned_model_gets_the_gsd_of_each_view(scene, source_gsd) -> None:
    bb = build_tiny_backbone("qwen3_vl", seed=0)
    ctx = inject_cshlora(bb.model, CSHLoRAConfig(r=4))
    hidden = bb.model.config.text_config.hidden_size
    sseu = SSEUHead(hidden)
    model = EarthVLM(bb, scale=ScaleEarth(bb.model, ctx, sseu), sseu=sseu).inference()
    turns = iter([format_tool_call([0, 0, 250, 250]), "Yes."])

    def generate(inputs, gsds, n):  # the real ScaleEarth.generate, then a scripted turn
        greedy_ids(model, inputs, gsds, 2)
        return bb.tokenizer.encode(next(turns))

    trace = run_zoom_loop(model, scene.path, QUESTION, gsd=source_gsd, generate=generate)
    assert trace.n_zooms == 1
    first, second = (t.gsd_decisions for t in trace.turns)
    assert first == ((str(trace.views[0].gsd), "metadata"),)
    assert second == tuple((str(v.gsd), "metadata") for v in trace.views)
    assert trace.views[0].gsd.point_m > trace.views[1].gsd.point_m


@pytest.mark.parametrize("gsd_text", [False, True], ids=["no-gsd-text", "gsd-as-text"])
def test_the_prompt_is_the_one_the_chains_train_on(
    backbone, scene, source_gsd, tmp_path, gsd_text: bool
):
    """Turn 2 of the loop sees exactly the tokens of a chain record's context: with no GSD
    text at all by default, and for a GSD-as-text (B3) model with the GSD sentence after
    the global view and the crop's GSD in the observation (chains built with
    ``observation_gsd``, SFT with ``data.gsd_as_text``)."""
    res = Resolution.from_processor(backbone.processor.image_processor)
    src = ImageRef(path=scene.path.name, width=SIZE_PX, height=SIZE_PX, gsd=source_gsd)
    roi = [float(v) for v in scene.labels[0].xyxy_px]
    rec = Record(
        id="q",
        task="vqa",
        source="test",
        images=[src],
        messages=[
            Message(role="user", content=[ImagePart(index=0), TextPart(text=QUESTION)]),
            Message(role="assistant", content="1"),
        ],
        meta={"roi_xyxy_px": roi},
    )
    chain_cfg = ChainConfig(tools_in_system=True, observation_gsd=gsd_text)
    with ChainWriter(scene.path.parent, tmp_path, res, chain_cfg) as w:
        chain = w.chain(rec)
    call = chain.messages[2].text()
    script = Script(backbone, [call, "1"])
    loop_cfg = LoopConfig(gsd_as_text=gsd_text)
    run_zoom_loop(backbone, scene.path, QUESTION, loop_cfg, gsd=source_gsd, generate=script)
    seen = with_gsd_text(chain) if gsd_text else chain  # as SFT's data.gsd_as_text does
    batch = Collator(backbone, tmp_path, mode="generate", return_tensors="pt")([seen])
    assert batch.ledger.ok == 1
    assert torch.equal(batch.inputs["input_ids"], script.inputs[1]["input_ids"])
    assert torch.equal(batch.inputs["image_grid_thw"], script.inputs[1]["image_grid_thw"])
    assert torch.allclose(batch.inputs["pixel_values"], script.inputs[1]["pixel_values"])
    assert batch.gsds == script.gsds[1]
    schema = zoom_tool_schema("norm1000", gsd=gsd_text)
    assert chain.messages[0].text() == tool_system_prompt([schema])
    assert ("GSD" in chain.messages[3].text()) is gsd_text
    assert ("ground sampling distance" in script.prompts[1]) is gsd_text
    assert chain.meta["zoom"]["observation_gsd"] is gsd_text


def test_garbage_never_breaks_the_loop(backbone, scene, source_gsd) -> None:
    """Random token ids, with call tags and control tokens mixed in."""
    tok = backbone.tokenizer
    call_open = tok.convert_tokens_to_ids("<tool_call>")
    for seed in range(6):
        rng = np.random.default_rng(seed)

        def generate(inputs, gsds, n, rng=rng):
            ids = rng.integers(0, len(tok), size=int(rng.integers(1, 40))).tolist()
            if rng.random() < 0.7:
                ids.insert(0, call_open)
            return ids

        trace = run_zoom_loop(
            backbone,
            scene.path,
            QUESTION,
            LoopConfig(max_zooms=2),
            gsd=source_gsd,
            generate=generate,
        )
        assert trace.turns and trace.stop in ("answered", "max_zooms", "max_invalid")
        assert len(trace.turns) <= 2 + 1 + 1 + 1  # zooms + invalid + refused + final
        assert len(trace.views) == 1 + sum(t.action == "zoom" for t in trace.turns)


def test_a_random_tiny_model_runs_end_to_end(backbone, scene, tmp_path: Path) -> None:
    trace = run_zoom_loop(
        backbone, scene.path, QUESTION, LoopConfig(max_zooms=2, max_new_tokens=12)
    )
    assert trace.turns and all(0 < t.n_tokens <= 12 for t in trace.turns)
    assert trace.stop in ("answered", "max_zooms", "max_invalid")
    # the GSD came from the file's georeferencing; the global view is 4x coarser
    assert trace.views[0].gsd.point_m == pytest.approx(4 * scene.gsd_m, rel=1e-3)
    out = trace.save_png(tmp_path / "trace.png")
    with Image.open(out) as im:
        assert im.width >= 512 and im.height >= 512
    summary = json.loads(json.dumps(trace.to_dict()))
    assert summary["views"][0]["window_xyxy_px"] == [0, 0, SIZE_PX, SIZE_PX]
    assert len(summary["turns"]) == len(trace.turns)


def test_trace_picture_shows_each_zoom(backbone, scene, source_gsd, tmp_path: Path) -> None:
    turns = [format_tool_call([0, 0, 500, 500]), format_tool_call([500, 500, 1000, 1000]), "A."]
    trace = run_zoom_loop(
        backbone, scene.path, QUESTION, gsd=source_gsd, generate=Script(backbone, turns)
    )
    picture = np.asarray(trace.draw(min_side=512, thumb=128))
    assert picture.shape[1] == 512 + 128 + 16  # the global view, then a column of crops
    # the first zoom window's outline (red) runs along the global view's top-left quarter
    red = np.array([230, 57, 70])
    edge = picture[1:255, 1]  # left edge of window 1 (x = 0, y in 0..256 on the 512 px view)
    assert (np.abs(edge.astype(int) - red).sum(axis=1) < 10).mean() > 0.9
    assert picture.shape[0] >= 2 * (128 + 24)  # room for both crops and their labels


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="max_zooms"):
        LoopConfig(max_zooms=-1)
    with pytest.raises(ValueError, match="tools="):
        LoopConfig(tools="nowhere")  # type: ignore[arg-type]
