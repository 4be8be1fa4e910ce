"""Save and load backbones: safetensors checkpoints with provenance, and downloaded
Qwen3-VL / Qwen2.5-VL folders (optionally in NF4).

:func:`save_backbone` writes the model, the processor and ``earthvlm_backbone.json``
(family, size, seed, package versions, git commit) last, so a folder holding that file
is complete. :func:`load_backbone` checks the folder first and says what is missing.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from earthvlm import __version__
from earthvlm.errors import EarthVLMError
from earthvlm.io import UntrustedJSONError, atomic_dir, loads_untrusted
from earthvlm.provenance import git_commit, package_version

from .backbone import MODEL_CLASSES, Backbone, _backbone
from .processor import FAMILIES, PROCESSOR_CLASSES, official_chat_template

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


def save_backbone(backbone: Backbone, directory: str | Path, *, overwrite: bool = False) -> Path:
    """Save model (safetensors), processor and provenance to ``directory``.

    The folder loads without earthvlm too: ``transformers.AutoProcessor.from_pretrained(
    directory, trust_remote_code=True)`` gives the image-only processor (its code is saved
    as ``processing_earthvlm.py``; see :mod:`earthvlm.models.processor`), and
    ``pipeline("image-text-to-text", model=directory, trust_remote_code=True)`` runs.

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
            "transformers_version": package_version("transformers"),
            "torch_version": torch.__version__,
            "git_commit": git_commit(),
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return target


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """The JSON object in ``path``, or an EarthVLMError naming the file and ``what``."""
    try:
        data = loads_untrusted(path.read_bytes())
    except (OSError, UntrustedJSONError) as e:
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
    model_type = read_json_object(config_file, "the model config").get("model_type")
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
    in_processor = processor_file.is_file() and "image_processor" in read_json_object(
        processor_file, "the processor config"
    )
    if not in_processor and not (path / "preprocessor_config.json").is_file():
        raise EarthVLMError(
            f"{path}: the image processor config is missing (neither "
            "preprocessor_config.json nor an 'image_processor' entry in processor_config.json)"
        )
    meta: dict[str, Any] = {}
    if (path / META_FILE).is_file():
        meta = read_json_object(path / META_FILE, "earthvlm metadata")
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
        # earthvlm's own class, whatever processor_config.json names: our subclass in
        # folders saved before it named the stock class, the stock class since and on the hub.
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
