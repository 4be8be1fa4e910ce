"""The assembled model and its parts: one home for what earthvlm runs.

* :class:`EarthVLM`: a Qwen-VL backbone with earthvlm's adapter, SSE-U head, fusion and
  mask decoder; ``forward`` (training losses), ``generate`` and ``score`` with a GSD per
  view; :meth:`EarthVLM.build` from a :class:`ModelRecipe`, :meth:`EarthVLM.load` from
  a run folder, a Hugging Face Qwen-VL folder, a peft LoRA or an earthvlm adapter
  folder (:mod:`.saved` says what is on disk).

* :func:`build_tiny_backbone`: a real ``Qwen3VLForConditionalGeneration`` /
  ``Qwen2_5_VLForConditionalGeneration`` at a few hundred thousand parameters, with an
  offline BPE tokenizer and an image-only processor (no torchvision).
* :func:`save_backbone` / :func:`load_backbone`: safetensors checkpoints with provenance;
  loading also accepts downloaded Qwen3-VL and Qwen2.5-VL folders, optionally in NF4.
* :func:`pooled_vision_features`: per-image mean of the vision tower's merged tokens.
* :func:`install_packed_pixels`: the vision tower reads packed uint8 ``pixel_values``
  (installed on every backbone built or loaded here).

This layer imports torch and transformers; the layers below it do not.
"""

from .backbone import (
    BOX_FRAME,
    Backbone,
    build_tiny_backbone,
    pool_merged_tokens,
    pooled_vision_features,
)
from .checkpoint import META_FILE, load_backbone, save_backbone
from .earthvlm import EarthVLM, Losses
from .pixels import PackedPixels, PackedPixelsError, install_packed_pixels, installed_packed_pixels
from .processor import (
    FAMILIES,
    EarthQwen2_5_VLProcessor,
    EarthQwen3VLProcessor,
    build_image_processor,
    build_processor,
    official_chat_template,
)
from .recipe import ModelRecipe
from .saved import load_model
from .tokenizer import ADDED_TOKENS, SPECIAL_TOKENS, build_tiny_tokenizer

__all__ = [
    "ADDED_TOKENS",
    "BOX_FRAME",
    "FAMILIES",
    "META_FILE",
    "SPECIAL_TOKENS",
    "Backbone",
    "EarthQwen2_5_VLProcessor",
    "EarthQwen3VLProcessor",
    "EarthVLM",
    "Losses",
    "ModelRecipe",
    "PackedPixels",
    "PackedPixelsError",
    "build_image_processor",
    "build_processor",
    "build_tiny_backbone",
    "build_tiny_tokenizer",
    "install_packed_pixels",
    "installed_packed_pixels",
    "load_backbone",
    "load_model",
    "official_chat_template",
    "pool_merged_tokens",
    "pooled_vision_features",
    "save_backbone",
]
