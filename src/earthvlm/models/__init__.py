"""Model parts: Qwen-VL backbones (built tiny offline or loaded from a local folder).

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
from .pixels import PackedPixels, PackedPixelsError, install_packed_pixels, installed_packed_pixels
from .processor import (
    FAMILIES,
    EarthQwen2_5_VLProcessor,
    EarthQwen3VLProcessor,
    build_image_processor,
    build_processor,
    official_chat_template,
)
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
    "PackedPixels",
    "PackedPixelsError",
    "build_image_processor",
    "build_processor",
    "build_tiny_backbone",
    "build_tiny_tokenizer",
    "install_packed_pixels",
    "installed_packed_pixels",
    "load_backbone",
    "official_chat_template",
    "pool_merged_tokens",
    "pooled_vision_features",
    "save_backbone",
]
