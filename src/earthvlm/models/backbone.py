"""Qwen-VL backbones: build a tiny one offline, save it, load any real checkpoint.

A :class:`Backbone` is the real ``transformers`` model (``Qwen3VLForConditionalGeneration``
or ``Qwen2_5_VLForConditionalGeneration``), its processor, and the conventions the rest
of earthvlm must follow for it (patch and merge size, image mean/std, the frame boxes are
written in). Tiny backbones have the real architecture at a few hundred thousand
parameters, so that tests and CPU experiments exercise the same code as a 7B model.

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
import json
import logging
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import (
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
)

from earthvlm import __version__
from earthvlm.errors import EarthVLMError
from earthvlm.io import atomic_dir

from .processor import (
    FAMILIES,
    MERGE_SIZE,
    PROCESSOR_CLASSES,
    build_processor,
    check_family,
    official_chat_template,
)
from .tokenizer import TINY_VOCAB_SIZE, build_tiny_tokenizer

logger = logging.getLogger(__name__)

#: The file that marks a folder as a complete earthvlm checkpoint; written last.
META_FILE = "earthvlm_backbone.json"
META_FORMAT = 1
_META_KEYS = {
    "format",
    "family",
    "size",
    "seed",
    "box_frame",
    "earthvlm_version",
    "transformers_version",
    "torch_version",
    "git_commit",
}

#: The frame grounding boxes are written in: Qwen3-VL normalises to 0-1000, Qwen2.5-VL
#: uses absolute pixels of the resized image the model saw.
BOX_FRAME = {"qwen3_vl": "norm1000", "qwen2_5_vl": "abs_px_resized"}
MODEL_CLASSES: dict[str, type] = {
    "qwen3_vl": Qwen3VLForConditionalGeneration,
    "qwen2_5_vl": Qwen2_5_VLForConditionalGeneration,
}
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


@dataclass(eq=False)
class Backbone:
    """A Qwen-VL model, its processor, and the conventions that go with them."""

    model: Any
    """``Qwen3VLForConditionalGeneration`` or ``Qwen2_5_VLForConditionalGeneration``."""
    processor: Any
    """``EarthQwen3VLProcessor`` or ``EarthQwen2_5_VLProcessor`` (images + text)."""
    family: str
    """``"qwen3_vl"`` or ``"qwen2_5_vl"`` (the config's ``model_type``)."""
    patch_size: int
    """Vision patch side in pixels (16 for Qwen3-VL, 14 for Qwen2.5-VL)."""
    merge_size: int
    """Patches merged per side into one language token (2)."""
    temporal_patch_size: int
    """Frames per temporal patch (2; a still image is repeated)."""
    box_frame: str
    """``"norm1000"`` (Qwen3-VL) or ``"abs_px_resized"`` (Qwen2.5-VL)."""
    image_mean: tuple[float, ...]
    image_std: tuple[float, ...]
    size: str | dict[str, Any] | None = None
    """How a built backbone was sized; ``None`` for a checkpoint not built here."""
    seed: int | None = None
    """The construction seed of a built backbone; ``None`` for other checkpoints."""
    source: str | None = field(default=None, compare=False)
    """The folder it was loaded from, if any."""

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    @property
    def factor(self) -> int:
        """Side in pixels of one language token (``patch_size * merge_size``)."""
        return self.patch_size * self.merge_size

    def chat_template(self, *, training: bool = False) -> str:
        """The official chat template; ``training=True`` gives TRL's variant with
        ``{% generation %}`` markers (for ``return_assistant_tokens_mask``)."""
        return official_chat_template(self.family, training=training)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


# -- building ---------------------------------------------------------------------------


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


def build_tiny_backbone(
    family: str = "qwen3_vl",
    size: str | dict[str, Any] = "tiny",
    seed: int = 0,
    *,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
) -> Backbone:
    """Build a small, randomly initialised Qwen-VL backbone offline.

    Args:
        family: ``"qwen3_vl"`` or ``"qwen2_5_vl"``.
        size: ``"tiny"``, ``"small"``, or a dict of config fields over a preset (its
            optional ``"base"`` key names the preset, default ``"tiny"``).
        seed: weights are a function of ``(family, size, seed)``; the global torch RNG
            is left as it was.
        min_pixels: smallest resized image area (default: 2x2 language tokens).
        max_pixels: largest resized image area (default: 8x8 language tokens).

    Raises:
        ValueError: an unknown family, size or field, or a config that would run wrongly.
    """
    check_family(family)
    tokenizer = build_tiny_tokenizer(TINY_VOCAB_SIZE)
    config = _config(family, size, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MODEL_CLASSES[family](config)
    model.eval()
    generation = model.generation_config
    generation.eos_token_id = [tokenizer.eos_token_id, tokenizer.pad_token_id]
    generation.pad_token_id = tokenizer.pad_token_id
    generation.bos_token_id = tokenizer.pad_token_id
    processor = build_processor(family, tokenizer, min_pixels=min_pixels, max_pixels=max_pixels)
    return _backbone(model, processor, family, size=copy.deepcopy(size), seed=seed)


def _backbone(model: Any, processor: Any, family: str, **extra: Any) -> Backbone:
    vision = model.config.vision_config
    ip = processor.image_processor
    return Backbone(
        model=model,
        processor=processor,
        family=family,
        patch_size=int(vision.patch_size),
        merge_size=int(vision.spatial_merge_size),
        temporal_patch_size=int(vision.temporal_patch_size),
        box_frame=BOX_FRAME[family],
        image_mean=tuple(float(x) for x in ip.image_mean),
        image_std=tuple(float(x) for x in ip.image_std),
        **extra,
    )


# -- saving and loading -----------------------------------------------------------------


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def save_backbone(backbone: Backbone, directory: str | Path, *, overwrite: bool = False) -> Path:
    """Save model (safetensors), processor and provenance to ``directory``.

    Everything is written into a temporary folder beside ``directory`` that is renamed
    into place at the end, with ``earthvlm_backbone.json`` (family, size, seed, versions)
    written last, so a folder with that file is complete.

    Raises:
        EarthVLMError: ``directory`` exists and ``overwrite`` is false.
    """
    target = Path(directory)
    if target.exists() and not overwrite:
        raise EarthVLMError(f"{target} already exists; pass overwrite=True to replace it")
    with atomic_dir(target) as tmp:
        backbone.model.save_pretrained(tmp)
        backbone.processor.save_pretrained(tmp)
        meta = {
            "format": META_FORMAT,
            "family": backbone.family,
            "size": backbone.size,
            "seed": backbone.seed,
            "box_frame": backbone.box_frame,
            "earthvlm_version": __version__,
            "transformers_version": _version("transformers"),
            "torch_version": torch.__version__,
            "git_commit": _git_commit(),
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return target


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EarthVLMError(f"{path}: cannot read {what}: {e}") from e
    if not isinstance(data, dict):
        raise EarthVLMError(f"{path}: {what} is not a JSON object")
    return data


def _check_folder(path: Path) -> tuple[str, dict[str, Any]]:
    """The family and earthvlm metadata of a checkpoint folder, or a clear error."""
    if not path.is_dir():
        raise EarthVLMError(f"{path}: no such checkpoint folder")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise EarthVLMError(
            f"{path}: config.json is missing; point at a folder written by save_backbone "
            "or a downloaded Qwen3-VL / Qwen2.5-VL checkpoint"
        )
    model_type = _read_json(config_file, "the model config").get("model_type")
    if model_type not in FAMILIES:
        raise EarthVLMError(
            f"{config_file}: model_type={model_type!r} is not a supported backbone; "
            f"expected one of {list(FAMILIES)}"
        )
    if not any(path.glob("*.safetensors")):
        found = (
            "pytorch_model*.bin only (convert to safetensors)"
            if any(path.glob("pytorch_model*.bin"))
            else "no weights"
        )
        raise EarthVLMError(f"{path}: no *.safetensors weights found ({found})")
    if not (path / "tokenizer.json").is_file() and not (path / "vocab.json").is_file():
        raise EarthVLMError(f"{path}: tokenizer.json (or vocab.json + merges.txt) is missing")
    # transformers 5 keeps the image processor in processor_config.json; older
    # checkpoints (and the hub's Qwen folders) in preprocessor_config.json.
    processor_file = path / "processor_config.json"
    in_processor = processor_file.is_file() and "image_processor" in _read_json(
        processor_file, "the processor config"
    )
    if not in_processor and not (path / "preprocessor_config.json").is_file():
        raise EarthVLMError(
            f"{path}: the image processor config is missing (neither "
            "preprocessor_config.json nor an 'image_processor' entry in processor_config.json)"
        )
    meta: dict[str, Any] = {}
    if (path / META_FILE).is_file():
        meta = _read_json(path / META_FILE, "earthvlm metadata")
        unknown = sorted(set(meta) - _META_KEYS)
        if unknown:
            logger.warning("%s: ignoring unknown keys %s", path / META_FILE, unknown)
        if meta.get("family", model_type) != model_type:
            raise EarthVLMError(
                f"{path}: {META_FILE} says family={meta['family']!r} but config.json says "
                f"model_type={model_type!r}"
            )
    return model_type, meta


def _quantization(dtype: Any):
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        raise EarthVLMError(
            "load_in_4bit=True needs bitsandbytes, which is not installed: "
            "pip install bitsandbytes (on a CPU-only machine: "
            "pip install --no-deps 'bitsandbytes>=0.50', which keeps the CPU torch)"
        )
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=dtype if dtype is not None else torch.bfloat16,
        # The vision tower stays in full precision: its pooled features feed the GSD head.
        llm_int8_skip_modules=["visual", "lm_head"],
    )


def load_backbone(
    directory: str | Path,
    *,
    dtype: Any = None,
    load_in_4bit: bool = False,
    device_map: Any = None,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
) -> Backbone:
    """Load a backbone saved by :func:`save_backbone` or a downloaded Qwen-VL folder.

    Nothing is fetched (``local_files_only=True``); the family comes from config.json's
    ``model_type``.

    Args:
        directory: the checkpoint folder.
        dtype: ``torch.dtype`` or its name (``"bfloat16"``); default: as saved.
        load_in_4bit: quantise the language model to NF4 with bitsandbytes (QLoRA).
        device_map: passed to ``from_pretrained`` (``"auto"`` when 4-bit and unset).
        min_pixels, max_pixels: override the saved image processor's pixel range.

    Raises:
        EarthVLMError: the folder is missing, incomplete or malformed, or 4-bit loading
            was asked for without bitsandbytes.
    """
    path = Path(directory)
    family, meta = _check_folder(path)
    if isinstance(dtype, str):
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ValueError(f"dtype={dtype!r} is not a torch dtype name (e.g. 'bfloat16')")
        dtype = getattr(torch, dtype)
    kwargs: dict[str, Any] = {"local_files_only": True}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if load_in_4bit:
        kwargs["quantization_config"] = _quantization(dtype)
        device_map = "auto" if device_map is None else device_map
    if device_map is not None:
        kwargs["device_map"] = device_map
    try:
        model = MODEL_CLASSES[family].from_pretrained(path, **kwargs)
        processor = PROCESSOR_CLASSES[family].from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        raise EarthVLMError(f"{path}: cannot load the {family} checkpoint: {e}") from e
    model.eval()
    if not processor.chat_template:
        processor.chat_template = official_chat_template(family)
        processor.tokenizer.chat_template = processor.chat_template
    ip = processor.image_processor
    if min_pixels is not None:
        ip.size["shortest_edge"] = int(min_pixels)
    if max_pixels is not None:
        ip.size["longest_edge"] = int(max_pixels)
    _check_consistent(path, model.config, processor)
    return _backbone(
        model,
        processor,
        family,
        size=meta.get("size"),
        seed=meta.get("seed"),
        source=str(path),
    )


def _check_consistent(path: Path, config: Any, processor: Any) -> None:
    vision, ip, tok = config.vision_config, processor.image_processor, processor.tokenizer
    if (ip.patch_size, ip.merge_size) != (vision.patch_size, vision.spatial_merge_size):
        raise EarthVLMError(
            f"{path}: preprocessor_config.json has patch_size={ip.patch_size}, "
            f"merge_size={ip.merge_size} but the model expects {vision.patch_size}, "
            f"{vision.spatial_merge_size}"
        )
    vocab = config.text_config.vocab_size
    image_id = tok.convert_tokens_to_ids("<|image_pad|>")
    if len(tok) > vocab or image_id != config.image_token_id:
        raise EarthVLMError(
            f"{path}: the tokenizer ({len(tok)} tokens, <|image_pad|>={image_id}) does not "
            f"match the model (vocab_size={vocab}, image_token_id={config.image_token_id})"
        )


# -- vision features --------------------------------------------------------------------


def pool_merged_tokens(
    merged: torch.Tensor, image_grid_thw: torch.Tensor, merge_size: int = MERGE_SIZE
) -> torch.Tensor:
    """Mean of each image's merged vision tokens.

    Args:
        merged: ``(sum_i n_i, D)``, all images' merged tokens concatenated (the vision
            tower's ``pooler_output``).
        image_grid_thw: ``(n_images, 3)`` patch grid per image.
        merge_size: patches merged per side; image ``i`` has ``prod(grid_i) / merge**2``
            tokens.

    Returns:
        ``(n_images, D)``.
    """
    sizes = (image_grid_thw.prod(-1) // merge_size**2).tolist()
    if sum(sizes) != merged.shape[0]:
        raise ValueError(
            f"image_grid_thw implies {sum(sizes)} merged tokens but there are {merged.shape[0]}"
        )
    return torch.stack([chunk.mean(0) for chunk in torch.split(merged, sizes)])


def pooled_vision_features(
    model: Any, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor
) -> torch.Tensor:
    """Per-image mean of the vision tower's merged tokens, ``(n_images, D)``.

    ``D`` is the language model's hidden size. Gradients flow unless the caller disables
    them. Runs the vision tower (``model.model.visual``) once on the processor's
    ``pixel_values`` and ``image_grid_thw``.
    """
    visual = model.model.visual
    out = visual(pixel_values.to(visual.dtype), grid_thw=image_grid_thw)
    merged = out.pooler_output if hasattr(out, "pooler_output") else out
    return pool_merged_tokens(merged, image_grid_thw, visual.spatial_merge_size)


__all__ = [
    "BOX_FRAME",
    "META_FILE",
    "Backbone",
    "build_tiny_backbone",
    "load_backbone",
    "pool_merged_tokens",
    "pooled_vision_features",
    "save_backbone",
]
