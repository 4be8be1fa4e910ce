"""Qwen-VL backbones: build a tiny one offline, save it, load any real checkpoint.

A :class:`Backbone` is the real ``transformers`` model (``Qwen3VLForConditionalGeneration``
or ``Qwen2_5_VLForConditionalGeneration``), its processor, and the conventions the rest
of earthvlm must follow for it (patch and merge size, image mean/std, the frame boxes are
written in). Tiny backbones have the real architecture at a few hundred thousand
parameters, so that tests and CPU experiments exercise the same code as a 7B model.

Sizes and config checks are in :mod:`.config`; saving and loading in :mod:`.checkpoint`
(which builds on this module; ``earthvlm.models`` exports both).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import Qwen2_5_VLForConditionalGeneration, Qwen3VLForConditionalGeneration

from .config import _config
from .pixels import install_packed_pixels
from .processor import MERGE_SIZE, build_processor, check_family, official_chat_template
from .tokenizer import TINY_VOCAB_SIZE, build_tiny_tokenizer

#: The frame grounding boxes are written in: Qwen3-VL normalises to 0-1000, Qwen2.5-VL
#: uses absolute pixels of the resized image the model saw.
BOX_FRAME = {"qwen3_vl": "norm1000", "qwen2_5_vl": "abs_px_resized"}
MODEL_CLASSES: dict[str, type] = {
    "qwen3_vl": Qwen3VLForConditionalGeneration,
    "qwen2_5_vl": Qwen2_5_VLForConditionalGeneration,
}
logger = logging.getLogger(__name__)


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
    """The :class:`Backbone` of a built or loaded model, its vision tower made to read
    packed uint8 pixels too (``earthvlm.models.pixels``), so that every path that builds
    or loads a backbone (training, evaluation, fusion, segmentation) takes both formats."""
    vision = model.config.vision_config
    ip = processor.image_processor
    try:
        install_packed_pixels(model, ip)
    except ValueError as e:  # a processor earthvlm's collator does not reproduce either
        logger.info("packed uint8 pixel_values are not available for this backbone: %s", e)
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
    "Backbone",
    "build_tiny_backbone",
    "pool_merged_tokens",
    "pooled_vision_features",
]
