"""Tiny Qwen-VL backbones: build, run, save, load, pool vision features (all offline)."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("trl")

from PIL import Image  # noqa: E402
from transformers import (  # noqa: E402
    Qwen2_5_VLForConditionalGeneration,
    Qwen3VLForConditionalGeneration,
)

from earthvlm.errors import EarthVLMError  # noqa: E402
from earthvlm.models import (  # noqa: E402
    ADDED_TOKENS,
    META_FILE,
    SPECIAL_TOKENS,
    EarthQwen2_5_VLProcessor,
    EarthQwen3VLProcessor,
    build_tiny_backbone,
    load_backbone,
    pool_merged_tokens,
    pooled_vision_features,
    save_backbone,
)
from earthvlm.models.tokenizer import _train_bpe  # noqa: E402

FAMILIES = ["qwen3_vl", "qwen2_5_vl"]
MODEL_CLASS = {
    "qwen3_vl": Qwen3VLForConditionalGeneration,
    "qwen2_5_vl": Qwen2_5_VLForConditionalGeneration,
}
PROCESSOR_CLASS = {"qwen3_vl": EarthQwen3VLProcessor, "qwen2_5_vl": EarthQwen2_5_VLProcessor}
TRL_TEMPLATES = Path(importlib.util.find_spec("trl").origin).parent / "chat_templates"


def _image(height: int, width: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _messages(answer: str | None = "A storage tank.") -> list[dict]:
    msgs = [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "text", "text": "What is the object?"}],
        }
    ]
    if answer is not None:
        msgs.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return msgs


def _inputs(backbone, images, answer: str | None = "A storage tank.") -> dict:
    """Chat-templated text with one image part per image, through the processor."""
    text = backbone.processor.apply_chat_template(
        _messages(answer), tokenize=False, add_generation_prompt=answer is None
    )
    return backbone.processor(
        images=[[im] for im in images], text=[text] * len(images), return_tensors="pt", padding=True
    )


@pytest.fixture(scope="module", params=FAMILIES)
def backbone(request):
    return build_tiny_backbone(request.param)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A saved tiny Qwen3-VL backbone (read-only for the tests that use it)."""
    bb = build_tiny_backbone("qwen3_vl", seed=3)
    return bb, save_backbone(bb, tmp_path_factory.mktemp("ckpt") / "tiny")


# -- building ---------------------------------------------------------------------------


def test_both_families_build_real_models_with_their_conventions(backbone) -> None:
    fam = backbone.family
    assert type(backbone.model) is MODEL_CLASS[fam]
    assert type(backbone.processor) is PROCESSOR_CLASS[fam]
    expected = {
        "qwen3_vl": (16, "norm1000", (0.5, 0.5, 0.5)),
        "qwen2_5_vl": (14, "abs_px_resized", (0.48145466, 0.4578275, 0.40821073)),
    }[fam]
    assert (backbone.patch_size, backbone.box_frame, backbone.image_mean) == expected
    assert backbone.merge_size == 2 and backbone.factor == 2 * backbone.patch_size
    ip = backbone.processor.image_processor
    assert (ip.patch_size, ip.merge_size, tuple(ip.image_mean)) == (expected[0], 2, expected[2])
    assert tuple(ip.image_std) == backbone.image_std
    vision = backbone.model.config.vision_config
    assert vision.out_hidden_size == backbone.model.config.text_config.hidden_size == 64
    assert vision.patch_size == backbone.patch_size


def test_config_token_ids_agree_with_the_tokenizer(backbone) -> None:
    tok, config = backbone.tokenizer, backbone.model.config
    assert config.text_config.vocab_size == len(tok) == 1024
    assert config.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert config.video_token_id == tok.convert_tokens_to_ids("<|video_pad|>")
    assert config.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")
    assert config.vision_end_token_id == tok.convert_tokens_to_ids("<|vision_end|>")
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert config.text_config.pad_token_id == tok.pad_token_id
    assert backbone.model.generation_config.eos_token_id == [tok.eos_token_id, tok.pad_token_id]
    assert backbone.processor.image_token_id == config.image_token_id


@pytest.mark.parametrize("family", FAMILIES)
def test_parameter_counts_match_the_sizes(family: str) -> None:
    tiny = build_tiny_backbone(family, "tiny")
    embeddings = 2 * 1024 * 64  # input embeddings + untied lm_head
    assert 100_000 < tiny.num_parameters() - embeddings < 300_000
    small = build_tiny_backbone(family, "small")
    assert 2_000_000 < small.num_parameters() < 10_000_000
    assert small.model.config.text_config.num_hidden_layers == 4


def test_a_size_dict_overrides_fields_over_a_base() -> None:
    bb = build_tiny_backbone(
        "qwen3_vl", {"text_config": {"num_hidden_layers": 3}, "vision_config": {"depth": 3}}
    )
    assert len(bb.model.model.language_model.layers) == 3
    assert len(bb.model.model.visual.blocks) == 3
    assert bb.model.config.text_config.hidden_size == 64  # the rest is tiny's
    small = build_tiny_backbone(
        "qwen2_5_vl", {"base": "small", "vision_config": {"depth": 2, "fullatt_block_indexes": [1]}}
    )
    assert small.model.config.text_config.hidden_size == 256
    assert len(small.model.model.visual.blocks) == 2


@pytest.mark.parametrize(
    ("family", "size", "fragment"),
    [
        ("qwen3_vl", {"text_config": {"mrope_section": [3, 3, 3]}}, "summing to head_dim / 2 = 8"),
        ("qwen2_5_vl", {"text_config": {"mrope_section": [4, 4, 4]}}, "mrope_section"),
        ("qwen3_vl", {"text_config": {"mrope_section": [2, 3, 3]}}, "interleaves"),
        ("qwen3_vl", {"vision_config": {"deepstack_visual_indexes": [2]}}, "deepstack"),
        ("qwen3_vl", {"vision_config": {"out_hidden_size": 32}}, "out_hidden_size"),
        ("qwen2_5_vl", {"vision_config": {"window_size": 100}}, "window_size"),
        ("qwen2_5_vl", {"vision_config": {"fullatt_block_indexes": [5]}}, "fullatt"),
        ("qwen3_vl", {"text_config": {"hidden_sise": 32}}, "hidden_sise"),
        ("qwen3_vl", {"text_config": {"vocab_size": 2048}}, "vocab_size"),
        ("qwen3_vl", "huge", "huge"),
        ("llava", "tiny", "llava"),
    ],
)
def test_configs_that_would_run_wrongly_are_refused(family: str, size, fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        build_tiny_backbone(family, size)


def test_same_seed_same_weights_and_the_global_rng_is_untouched() -> None:
    state = torch.get_rng_state()
    a = build_tiny_backbone("qwen3_vl", seed=1).model.state_dict()
    b = build_tiny_backbone("qwen3_vl", seed=1).model.state_dict()
    c = build_tiny_backbone("qwen3_vl", seed=2).model.state_dict()
    assert torch.equal(torch.get_rng_state(), state)
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    randomised = [k for k in a if a[k].std() > 0 if a[k].numel() > 1]
    assert randomised and all(not torch.equal(a[k], c[k]) for k in randomised)


# -- running ----------------------------------------------------------------------------


def test_forward_on_a_processed_image_gives_finite_logits_and_loss(backbone) -> None:
    inputs = _inputs(backbone, [_image(100, 140)])
    assert "mm_token_type_ids" in inputs  # transformers 5 needs it with image_grid_thw
    grid = inputs["image_grid_thw"][0]
    n_image_tokens = int((inputs["input_ids"] == backbone.model.config.image_token_id).sum())
    assert n_image_tokens == int(grid.prod()) // backbone.merge_size**2 > 1
    with torch.no_grad():
        out = backbone.model(**inputs, labels=inputs["input_ids"])
    assert out.logits.shape == (*inputs["input_ids"].shape, 1024)
    assert torch.isfinite(out.logits).all()
    # A random model is close to uniform over the vocabulary.
    assert abs(out.loss.item() - math.log(1024)) < 1.0


def test_backward_reaches_vision_and_text_weights(backbone) -> None:
    model = backbone.model
    model.zero_grad()
    inputs = _inputs(backbone, [_image(64, 64)])
    model(**inputs, labels=inputs["input_ids"]).loss.backward()
    watched = {
        "patch embedding": model.model.visual.patch_embed.proj.weight,
        "vision block": model.model.visual.blocks[0].attn.qkv.weight,
        "first text layer": model.model.language_model.layers[0].self_attn.q_proj.weight,
        "lm head": model.lm_head.weight,
    }
    for name, weight in watched.items():
        assert weight.grad is not None and weight.grad.abs().sum() > 0, name
    model.zero_grad()


def test_generate_appends_greedy_tokens(backbone) -> None:
    inputs = _inputs(backbone, [_image(64, 96)], answer=None)
    kwargs = {"max_new_tokens": 4, "min_new_tokens": 4, "do_sample": False}
    with torch.no_grad():
        first = backbone.model.generate(**inputs, **kwargs)
        again = backbone.model.generate(**inputs, **kwargs)
    n = inputs["input_ids"].shape[1]
    assert first.shape == (1, n + 4)
    assert torch.equal(first[:, :n], inputs["input_ids"])
    assert torch.equal(first, again)
    assert int(first.max()) < len(backbone.tokenizer)


# -- vision features ----------------------------------------------------------------------


def test_pooled_vision_features_for_two_images_of_different_sizes(backbone) -> None:
    images = [_image(64, 128, seed=1), _image(96, 96, seed=2)]
    inputs = _inputs(backbone, images)
    grid = inputs["image_grid_thw"]
    assert grid[0].prod() != grid[1].prod()  # different token counts: the split matters
    with torch.no_grad():
        pooled = pooled_vision_features(backbone.model, inputs["pixel_values"], grid)
        assert pooled.shape == (2, backbone.model.config.text_config.hidden_size)
        # Manual: run the tower, cut the concatenation by each image's token count.
        merged = backbone.model.model.visual(inputs["pixel_values"], grid_thw=grid).pooler_output
        n0 = int(grid[0].prod()) // 4
        manual = torch.stack([merged[:n0].mean(0), merged[n0:].mean(0)])
        torch.testing.assert_close(pooled, manual)
        # Images do not attend to each other, so each one alone pools to the same vector.
        for i, im in enumerate(images):
            alone = _inputs(backbone, [im])
            single = pooled_vision_features(
                backbone.model, alone["pixel_values"], alone["image_grid_thw"]
            )
            torch.testing.assert_close(single[0], pooled[i], atol=1e-5, rtol=1e-4)


def test_pooling_the_tower_output_captured_in_a_full_forward() -> None:
    bb = build_tiny_backbone("qwen3_vl")
    inputs = _inputs(bb, [_image(64, 96), _image(128, 128)])
    captured = {}

    def keep(_module, _args, out) -> None:  # returning a value would replace the output
        captured["merged"] = out.pooler_output

    hook = bb.model.model.visual.register_forward_hook(keep)
    try:
        with torch.no_grad():
            bb.model(**inputs)
            direct = pooled_vision_features(
                bb.model, inputs["pixel_values"], inputs["image_grid_thw"]
            )
    finally:
        hook.remove()
    from_hook = pool_merged_tokens(captured["merged"], inputs["image_grid_thw"], bb.merge_size)
    torch.testing.assert_close(from_hook, direct)
    with pytest.raises(ValueError, match="merged tokens"):
        pool_merged_tokens(captured["merged"][:-1], inputs["image_grid_thw"])


# -- tokenizer and chat template ----------------------------------------------------------


def test_tokenizer_round_trips_text_and_keeps_special_tokens_atomic() -> None:
    tok = build_tiny_backbone("qwen3_vl").tokenizer
    texts = [
        "How many storage tanks are there? Answer: 3.",
        "The car is at [12, 34, 56, 78]; GSD 0.3 m/px, 45° north-east, café, 东京",
        '<tool_call>\n{"name": "zoom_in", "arguments": {"bbox_2d": [1, 2, 3, 4]}}\n</tool_call>',
        "<think>It is round, so a tank.</think>B",
    ]
    for text in texts:
        ids = tok(text)["input_ids"]
        assert tok.decode(ids) == text
    for token in SPECIAL_TOKENS + ADDED_TOKENS:
        ids = tok(f"a{token}b")["input_ids"]
        assert tok.convert_tokens_to_ids(token) in ids
        assert len(tok(token)["input_ids"]) == 1, token
    ids = tok("<|im_start|>assistant\n<think>x</think>yes<|im_end|>")["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == "assistant\n<think>x</think>yes"
    assert tok.convert_tokens_to_ids(list(SPECIAL_TOKENS)) == list(range(1011, 1018))


def test_bpe_training_is_deterministic() -> None:
    vocab_a, merges_a = _train_bpe(1011)
    vocab_b, merges_b = _train_bpe(1011)
    assert vocab_a == vocab_b and merges_a == merges_b
    with pytest.raises(ValueError, match="at most"):
        _train_bpe(50_000)


@pytest.mark.parametrize("family", FAMILIES)
def test_chat_templates_are_trl_files_verbatim(family: str) -> None:
    bb = build_tiny_backbone(family)
    official = (TRL_TEMPLATES / f"{family}.jinja").read_text(encoding="utf-8")
    training = (TRL_TEMPLATES / f"{family}_training.jinja").read_text(encoding="utf-8")
    assert bb.processor.chat_template == official == bb.tokenizer.chat_template
    assert bb.chat_template() == official and bb.chat_template(training=True) == training


def test_the_training_template_masks_all_but_the_assistant_turn() -> None:
    bb = build_tiny_backbone("qwen3_vl")
    msgs = [
        {"role": "user", "content": [{"type": "text", "text": "What is the object?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A car."}]},
    ]
    out = bb.tokenizer.apply_chat_template(
        msgs,
        chat_template=bb.chat_template(training=True),
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
    )
    kept = [i for i, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m]
    assert bb.tokenizer.decode(kept) == "A car.<|im_end|>\n"


# -- saving and loading -----------------------------------------------------------------


def test_save_load_round_trip_gives_identical_logits(saved) -> None:
    bb, path = saved
    meta = json.loads((path / META_FILE).read_text())
    assert (meta["family"], meta["size"], meta["seed"]) == ("qwen3_vl", "tiny", 3)
    assert meta["earthvlm_version"] and meta["transformers_version"]
    assert list(path.glob("*.safetensors")) and not list(path.glob("*.bin"))
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp left

    loaded = load_backbone(path)
    assert type(loaded.model) is Qwen3VLForConditionalGeneration
    assert type(loaded.processor) is EarthQwen3VLProcessor
    assert (loaded.size, loaded.seed, loaded.box_frame) == ("tiny", 3, "norm1000")
    inputs = _inputs(bb, [_image(80, 120)])
    again = _inputs(loaded, [_image(80, 120)])
    for key in inputs:
        assert torch.equal(inputs[key], again[key]), key
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(**again).logits, bb.model(**inputs).logits)


def test_the_processor_round_trips_through_save_and_from_pretrained(saved) -> None:
    bb, path = saved
    proc = EarthQwen3VLProcessor.from_pretrained(path, local_files_only=True)
    assert proc.image_processor.to_dict() == bb.processor.image_processor.to_dict()
    assert proc.chat_template == bb.processor.chat_template
    assert proc.tokenizer.get_vocab() == bb.tokenizer.get_vocab()
    text = "<|vision_start|><|image_pad|><|vision_end|>Is there a ship? <think>no</think>"
    assert proc.tokenizer(text)["input_ids"] == bb.tokenizer(text)["input_ids"]


def test_load_with_a_dtype(saved) -> None:
    loaded = load_backbone(saved[1], dtype="bfloat16")
    assert loaded.model.dtype == torch.bfloat16


def test_save_refuses_to_overwrite_unless_asked(saved, tmp_path: Path) -> None:
    bb, _ = saved
    target = save_backbone(bb, tmp_path / "ck")
    with pytest.raises(EarthVLMError, match="already exists"):
        save_backbone(bb, target)
    other = build_tiny_backbone("qwen2_5_vl", seed=5)
    save_backbone(other, target, overwrite=True)
    assert load_backbone(target).family == "qwen2_5_vl"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_loads_a_folder_laid_out_like_a_hub_download(tmp_path: Path) -> None:
    """config + safetensors + tokenizer files + preprocessor_config.json, no earthvlm files."""
    bb = build_tiny_backbone("qwen2_5_vl", seed=4)
    bb.model.save_pretrained(tmp_path)
    bb.tokenizer.save_pretrained(tmp_path)
    bb.processor.image_processor.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "preprocessor_config.json").read_text())
    cfg["image_processor_type"] = "Qwen2VLImageProcessorFast"  # what the hub folders say
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(cfg))
    loaded = load_backbone(tmp_path, max_pixels=28 * 28 * 4)
    assert (loaded.family, loaded.size, loaded.seed) == ("qwen2_5_vl", None, None)
    assert loaded.box_frame == "abs_px_resized" and loaded.patch_size == 14
    assert loaded.processor.chat_template == bb.processor.chat_template
    inputs = _inputs(loaded, [_image(200, 200)])
    assert inputs["image_grid_thw"].prod() == 16  # clamped by the max_pixels override


# -- errors -------------------------------------------------------------------------------


def test_a_folder_without_config_json_names_the_path(saved, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(saved[1], broken)
    (broken / "config.json").unlink()
    with pytest.raises(EarthVLMError, match=r"config\.json is missing") as info:
        load_backbone(broken)
    assert str(broken) in str(info.value)


def test_malformed_and_missing_folders_are_reported(saved, tmp_path: Path) -> None:
    with pytest.raises(EarthVLMError, match="no such checkpoint folder"):
        load_backbone(tmp_path / "nowhere")
    bad = tmp_path / "bad"
    shutil.copytree(saved[1], bad)
    (bad / "config.json").write_text("{not json")
    with pytest.raises(EarthVLMError, match="cannot read the model config"):
        load_backbone(bad)
    (bad / "config.json").write_text(json.dumps({"model_type": "llava"}))
    with pytest.raises(EarthVLMError, match="'llava' is not a supported backbone"):
        load_backbone(bad)
    shutil.copy(saved[1] / "config.json", bad / "config.json")
    (bad / "model.safetensors").unlink()
    with pytest.raises(EarthVLMError, match=r"no \*.safetensors weights"):
        load_backbone(bad)


@pytest.mark.skipif(
    importlib.util.find_spec("bitsandbytes") is not None, reason="bitsandbytes is installed"
)
def test_load_in_4bit_without_bitsandbytes_says_how_to_fix_it(saved) -> None:
    with pytest.raises(EarthVLMError, match="needs bitsandbytes") as info:
        load_backbone(saved[1], load_in_4bit=True)
    assert "pip install" in str(info.value)
