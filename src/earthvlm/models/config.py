"""Qwen-VL configs for built backbones: size presets and the checks transformers lacks.

Sizes (``size=``): ``"tiny"`` (text hidden 64, 2 layers, 4 heads / 2 KV, MLP 128; vision
depth 2, hidden 32; about 0.2M parameters plus 0.13M of embeddings), ``"small"`` (a few M
parameters), or a dict of config fields applied over ``"tiny"`` (or over the preset named
by its ``"base"`` key), e.g. ``{"text_config": {"num_hidden_layers": 4}}``.

Configs are checked for the traps transformers does not catch: ``mrope_section`` must sum
to ``head_dim / 2`` (and, for Qwen3-VL's interleaved layout, fit in it), deepstack indexes
must lie inside the vision tower, the vision output width must equal the text width, and
Qwen2.5-VL's window must be a whole number of merged patches.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from transformers import Qwen2_5_VLConfig, Qwen3VLConfig

CONFIG_CLASSES: dict[str, type] = {"qwen3_vl": Qwen3VLConfig, "qwen2_5_vl": Qwen2_5_VLConfig}

# Presets. The mrope sections scale the official ones (Qwen3-VL [24, 20, 20] interleaved,
# Qwen2.5-VL [16, 24, 24]) to head_dim / 2; the Qwen2.5-VL window keeps the official 112 px
# (4x4 merged patches) with the last block of each pair attending globally.
_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {
        "text_config": {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
        },
        "vision_config": {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2},
        "qwen3_vl": {
            "text_config": {"head_dim": 16, "mrope_section": [4, 2, 2]},
            "vision_config": {
                "patch_size": 16,
                "num_position_embeddings": 256,
                "deepstack_visual_indexes": [0],
            },
        },
        "qwen2_5_vl": {
            "text_config": {"mrope_section": [2, 3, 3]},
            "vision_config": {"patch_size": 14, "window_size": 112, "fullatt_block_indexes": [1]},
        },
    },
    "small": {
        "text_config": {
            "hidden_size": 256,
            "intermediate_size": 768,
            "num_hidden_layers": 4,
            "num_attention_heads": 8,
            "num_key_value_heads": 4,
            "max_position_embeddings": 8192,
        },
        "vision_config": {"depth": 4, "hidden_size": 128, "intermediate_size": 256, "num_heads": 4},
        "qwen3_vl": {
            "text_config": {"head_dim": 32, "mrope_section": [6, 5, 5]},
            "vision_config": {
                "patch_size": 16,
                "num_position_embeddings": 1024,
                "deepstack_visual_indexes": [1, 2],
            },
        },
        "qwen2_5_vl": {
            "text_config": {"mrope_section": [4, 6, 6]},
            "vision_config": {
                "patch_size": 14,
                "window_size": 112,
                "fullatt_block_indexes": [1, 3],
            },
        },
    },
}
_ROPE_THETA = {"qwen3_vl": 5_000_000.0, "qwen2_5_vl": 1_000_000.0}
_EXTRA_TEXT_KEYS = {"mrope_section", "bos_token_id", "eos_token_id"}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _fields(config_cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(config_cls)}


def _spec(family: str, size: str | dict[str, Any]) -> dict[str, Any]:
    """The config dict (text_config, vision_config, top-level keys) for ``size``."""
    if isinstance(size, str):
        name, over = size, {}
    elif isinstance(size, dict):
        over = dict(size)
        name = over.pop("base", "tiny")
    else:
        raise ValueError(f"size={size!r}: pass 'tiny', 'small' or a dict of config fields")
    if name not in _PRESETS:
        raise ValueError(f"size base {name!r} is unknown; choose one of {sorted(_PRESETS)}")
    preset = _PRESETS[name]
    spec = _merge(
        {k: v for k, v in preset.items() if k in ("text_config", "vision_config")}, preset[family]
    )
    config_cls = CONFIG_CLASSES[family]
    text_cls = config_cls.sub_configs["text_config"]
    vision_cls = config_cls.sub_configs["vision_config"]
    allowed = {
        "text_config": _fields(text_cls) | _EXTRA_TEXT_KEYS,
        "vision_config": _fields(vision_cls),
    }
    for key, value in over.items():
        if key in allowed:
            if not isinstance(value, dict):
                raise ValueError(f"size[{key!r}] must be a dict of fields, got {value!r}")
            unknown = sorted(set(value) - allowed[key])
            if unknown:
                raise ValueError(
                    f"size[{key!r}] has unknown field(s) {unknown} for {family}; "
                    f"valid fields: {sorted(allowed[key])}"
                )
        elif key not in _fields(config_cls):
            raise ValueError(
                f"size has unknown field {key!r} for {family}; use 'base', 'text_config', "
                f"'vision_config' or one of {sorted(_fields(config_cls))}"
            )
    return _merge(spec, over)


def _check_config(family: str, config: Any) -> None:
    """Raise ``ValueError`` for configs that transformers accepts but runs wrongly."""
    text, vision = config.text_config, config.vision_config
    heads, kv = text.num_attention_heads, text.num_key_value_heads
    if text.hidden_size % heads or heads % kv:
        raise ValueError(
            f"text_config: hidden_size={text.hidden_size}, num_attention_heads={heads}, "
            f"num_key_value_heads={kv}: heads must divide hidden_size and KV heads divide heads"
        )
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    half = head_dim // 2
    section = list(text.rope_parameters["mrope_section"])
    if len(section) != 3 or sum(section) != half:
        raise ValueError(
            f"text_config.mrope_section={section} must be 3 numbers (t, h, w) summing to "
            f"head_dim / 2 = {half}"
        )
    if family == "qwen3_vl" and (3 * section[1] - 2 >= half or 3 * section[2] > half):
        # Interleaved mrope gives h the frequencies 1, 4, 7, ... and w 2, 5, 8, ... below
        # 3 * section; those past head_dim / 2 are silently dropped.
        raise ValueError(
            f"text_config.mrope_section={section}: Qwen3-VL interleaves t/h/w, so h and w "
            f"need 3 * h - 2 < {half} and 3 * w <= {half}; e.g. [{half - 2 * (half // 4)}, "
            f"{half // 4}, {half // 4}]"
        )
    depth, vheads = vision.depth, vision.num_heads
    if vision.hidden_size % vheads or (vision.hidden_size // vheads) % 4:
        raise ValueError(
            f"vision_config: hidden_size={vision.hidden_size}, num_heads={vheads}: the "
            "vision head dim must be a multiple of 4 (2-D rotary embedding)"
        )
    if vision.out_hidden_size != text.hidden_size:
        raise ValueError(
            f"vision_config.out_hidden_size={vision.out_hidden_size} must equal "
            f"text_config.hidden_size={text.hidden_size}"
        )
    if family == "qwen3_vl":
        idx = list(vision.deepstack_visual_indexes)
        if any(not 0 <= i < depth for i in idx) or len(set(idx)) != len(idx):
            raise ValueError(
                f"vision_config.deepstack_visual_indexes={idx} must be distinct block "
                f"indexes in [0, depth={depth}) (others silently disable deepstack)"
            )
        if len(idx) > text.num_hidden_layers:
            raise ValueError(
                f"vision_config.deepstack_visual_indexes={idx}: {len(idx)} deepstack levels "
                f"but only {text.num_hidden_layers} text layers to inject them into"
            )
        n_pos = vision.num_position_embeddings
        if round(n_pos**0.5) ** 2 != n_pos:
            raise ValueError(f"vision_config.num_position_embeddings={n_pos} must be a square")
    else:
        unit = vision.patch_size * vision.spatial_merge_size
        if vision.window_size < unit or vision.window_size % unit:
            raise ValueError(
                f"vision_config.window_size={vision.window_size} must be a positive "
                f"multiple of patch_size * spatial_merge_size = {unit}"
            )
        full = list(vision.fullatt_block_indexes)
        if any(not 0 <= i < depth for i in full):
            raise ValueError(
                f"vision_config.fullatt_block_indexes={full} must lie in [0, depth={depth})"
            )


def _config(family: str, size: str | dict[str, Any], tokenizer: Any):
    spec = _spec(family, size)
    text = dict(spec.pop("text_config"))
    vision = dict(spec.pop("vision_config"))
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>")}
    token_ids = {
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        "vision_end_token_id": tokenizer.convert_tokens_to_ids("<|vision_end|>"),
    }
    for key, value in token_ids.items():
        if spec.get(key, value) != value:
            raise ValueError(f"size[{key!r}]={spec[key]} disagrees with the tokenizer ({value})")
    if text.get("vocab_size", len(tokenizer)) != len(tokenizer):
        raise ValueError(
            f"text_config.vocab_size={text['vocab_size']} disagrees with the tokenizer "
            f"({len(tokenizer)} tokens); leave it out"
        )
    pad_id, eos_id = tokenizer.pad_token_id, tokenizer.eos_token_id
    section = text.pop("mrope_section")
    rope = {"rope_type": "default", "rope_theta": _ROPE_THETA[family], "mrope_section": section}
    if family == "qwen3_vl":
        rope["mrope_interleaved"] = True
    text["rope_parameters"] = _merge(rope, text.get("rope_parameters") or {})
    text.update(vocab_size=len(tokenizer), pad_token_id=pad_id)
    if family == "qwen2_5_vl":
        text.setdefault("bos_token_id", pad_id)
        text.setdefault("eos_token_id", eos_id)
    vision.setdefault("out_hidden_size", text["hidden_size"])
    config = CONFIG_CLASSES[family](text_config=text, vision_config=vision, **token_ids, **spec)
    _check_config(family, config)
    return config
