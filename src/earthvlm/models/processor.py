"""Image-only Qwen-VL processors (no torchvision) and the official chat templates.

``Qwen3VLProcessor(..., video_processor=None)`` fails in transformers 5 (the processor
looks the video processor up in ``VIDEO_PROCESSOR_MAPPING``), and every video processor
needs torchvision. The subclasses here drop ``video_processor`` from ``__init__``; since
``ProcessorMixin`` derives its sub-processors from that signature, they save, load and
process images exactly as the parent classes do.

Chat templates are the official Qwen ones that TRL ships (``trl/chat_templates/``), read
from the installed package at run time and never copied here: TRL recognises a template
by exact string (tool-call parsing, swapping in the ``_training`` variant with
``{% generation %}`` markers for assistant-only loss).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessorPil, Qwen3VLProcessor

from earthvlm.errors import EarthVLMError

#: Backbone families this package builds and loads (``config.json`` ``model_type`` values).
FAMILIES = ("qwen3_vl", "qwen2_5_vl")

#: Image normalisation per family: Qwen3-VL's SigLIP-2 tower uses 0.5; Qwen2.5-VL uses CLIP's.
IMAGE_MEAN = {"qwen3_vl": (0.5, 0.5, 0.5), "qwen2_5_vl": (0.48145466, 0.4578275, 0.40821073)}
IMAGE_STD = {"qwen3_vl": (0.5, 0.5, 0.5), "qwen2_5_vl": (0.26862954, 0.26130258, 0.27577711)}
PATCH_SIZE = {"qwen3_vl": 16, "qwen2_5_vl": 14}
MERGE_SIZE = 2
TEMPORAL_PATCH_SIZE = 2


class EarthQwen3VLProcessor(Qwen3VLProcessor):
    """``Qwen3VLProcessor`` for images and text only (no video processor, no torchvision)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


class EarthQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
    """``Qwen2_5_VLProcessor`` for images and text only (no video processor, no torchvision)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


PROCESSOR_CLASSES: dict[str, type] = {
    "qwen3_vl": EarthQwen3VLProcessor,
    "qwen2_5_vl": EarthQwen2_5_VLProcessor,
}


def check_family(family: str) -> str:
    """Return ``family`` if it is supported, else raise naming the choices."""
    if family not in FAMILIES:
        raise ValueError(f"family={family!r} is not supported; choose one of {list(FAMILIES)}")
    return family


def default_pixel_range(family: str) -> tuple[int, int]:
    """Small default ``(min_pixels, max_pixels)``: 2x2 to 8x8 merged tokens per side."""
    factor = PATCH_SIZE[check_family(family)] * MERGE_SIZE
    return (2 * factor) ** 2, (8 * factor) ** 2


def build_image_processor(
    family: str, *, min_pixels: int | None = None, max_pixels: int | None = None
) -> Qwen2VLImageProcessorPil:
    """The PIL image processor with ``family``'s patch size, merge size and mean/std.

    Args:
        family: ``"qwen3_vl"`` or ``"qwen2_5_vl"``.
        min_pixels: smallest resized area in pixels (default: 2x2 merged tokens).
        max_pixels: largest resized area in pixels (default: 8x8 merged tokens).
    """
    lo, hi = default_pixel_range(family)
    min_pixels = lo if min_pixels is None else int(min_pixels)
    max_pixels = hi if max_pixels is None else int(max_pixels)
    factor = PATCH_SIZE[family] * MERGE_SIZE
    if not factor**2 <= min_pixels <= max_pixels:
        raise ValueError(
            f"min_pixels={min_pixels}, max_pixels={max_pixels}: need "
            f"{factor**2} <= min_pixels <= max_pixels ({factor}x{factor} px is one token)"
        )
    return Qwen2VLImageProcessorPil(
        patch_size=PATCH_SIZE[family],
        merge_size=MERGE_SIZE,
        temporal_patch_size=TEMPORAL_PATCH_SIZE,
        image_mean=list(IMAGE_MEAN[family]),
        image_std=list(IMAGE_STD[family]),
        min_pixels=min_pixels,
        max_pixels=max_pixels,
    )


def official_chat_template(family: str, *, training: bool = False) -> str:
    """The official chat template of ``family`` as shipped by the installed TRL.

    Args:
        family: ``"qwen3_vl"`` or ``"qwen2_5_vl"``.
        training: the ``_training`` variant, whose ``{% generation %}`` markers let
            ``return_assistant_tokens_mask=True`` mask everything but assistant turns.
    """
    check_family(family)
    spec = importlib.util.find_spec("trl")  # locate without importing trl (slow, heavy)
    if spec is None or not spec.submodule_search_locations:
        raise EarthVLMError(
            "the official Qwen chat templates ship with TRL, which is not installed: "
            "pip install 'earthvlm[train]' (or pip install 'trl>=1.16')"
        )
    name = f"{family}_training.jinja" if training else f"{family}.jinja"
    path = Path(next(iter(spec.submodule_search_locations))) / "chat_templates" / name
    if not path.is_file():
        raise EarthVLMError(
            f"{path} not found: the installed TRL is too old; pip install 'trl>=1.16'"
        )
    return path.read_text(encoding="utf-8")


def build_processor(
    family: str,
    tokenizer: Any,
    *,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    chat_template: str | None = None,
):
    """The image+text processor of ``family`` around ``tokenizer``.

    The chat template defaults to the official one (TRL's file); it is set on the
    tokenizer too, so that tokenizer-only code renders the same text.
    """
    template = official_chat_template(family) if chat_template is None else chat_template
    tokenizer.chat_template = template
    image_processor = build_image_processor(family, min_pixels=min_pixels, max_pixels=max_pixels)
    return PROCESSOR_CLASSES[family](
        image_processor=image_processor, tokenizer=tokenizer, chat_template=template
    )
