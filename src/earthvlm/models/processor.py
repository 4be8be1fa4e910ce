"""Image-only Qwen-VL processors (no torchvision) and the official chat templates.

``Qwen3VLProcessor(..., video_processor=None)`` fails in transformers 5 (the processor
looks the video processor up in ``VIDEO_PROCESSOR_MAPPING``), and every video processor
needs torchvision. The subclasses here drop ``video_processor`` from ``__init__``; since
``ProcessorMixin`` derives its sub-processors from that signature, they save, load and
process images exactly as the parent classes do.

Saved folders load with stock transformers, without earthvlm. ``AutoProcessor`` resolves
the ``processor_class`` of ``processor_config.json`` by name among transformers' own classes
and, failing that, quietly returns the bare tokenizer; our subclass names made it do just
that (and ``pipeline("image-text-to-text")`` refuse the folder).
``save_pretrained`` therefore writes the stock class name, the video processor config that
the stock class needs where torchvision is installed, and an ``auto_map`` to
``processing_earthvlm.py``, a copy of these two classes that needs only transformers:

* ``AutoProcessor.from_pretrained(folder, trust_remote_code=True)`` (and ``pipeline(...,
  trust_remote_code=True)``) builds that image-only class, with or without torchvision;
* without ``trust_remote_code`` it builds the stock class, which needs torchvision (the
  video processor); without torchvision it raises an ImportError saying so.

Without torchvision the stock classes cannot be built at all: ``ProcessorMixin`` checks the
video processor against ``VideoProcessorMixin``, which transformers exports only with
torchvision, so ``trust_remote_code=True`` is the only stock route there.

Chat templates are the official Qwen ones that TRL ships (``trl/chat_templates/``), read
from the installed package at run time and never copied here: TRL recognises a template
by exact string (tool-call parsing, swapping in the ``_training`` variant with
``{% generation %}`` markers for assistant-only loss).
"""

from __future__ import annotations

import importlib.util
import json
import os
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


#: The module saved beside ``processor_config.json`` (its ``auto_map`` points into it).
HUB_MODULE = "processing_earthvlm"

#: Its text: the image-only classes below without the saving logic; only transformers.
HUB_MODULE_SOURCE = '''"""Image-only Qwen-VL processors (no video processor, hence no torchvision).

Written by earthvlm beside its checkpoints and needing only transformers: load with
``AutoProcessor.from_pretrained(folder, trust_remote_code=True)`` or
``pipeline("image-text-to-text", model=folder, trust_remote_code=True)``. The stock
``Qwen3VLProcessor`` / ``Qwen2_5_VLProcessor`` need a video processor, which needs torchvision.
"""

from transformers import Qwen2_5_VLProcessor, Qwen3VLProcessor


class EarthQwen3VLProcessor(Qwen3VLProcessor):
    """``Qwen3VLProcessor`` for images and text only."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


class EarthQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
    """``Qwen2_5_VLProcessor`` for images and text only."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)
'''

#: The stock processor and video processor classes of each family, as transformers names them.
STOCK_PROCESSOR_NAMES = {"qwen3_vl": "Qwen3VLProcessor", "qwen2_5_vl": "Qwen2_5_VLProcessor"}
STOCK_VIDEO_PROCESSOR_NAMES = {
    "qwen3_vl": "Qwen3VLVideoProcessor",
    "qwen2_5_vl": "Qwen2VLVideoProcessor",
}


class _SavesForStockTransformers:
    """Saving that stock transformers can load (see the module docstring)."""

    _family: str

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        ip = self.image_processor
        out["processor_class"] = STOCK_PROCESSOR_NAMES[self._family]
        out["auto_map"] = {
            "AutoProcessor": f"{HUB_MODULE}.{PROCESSOR_CLASSES[self._family].__name__}"
        }
        # What the stock class builds its video processor from where torchvision is
        # installed: the vision tower's patching and normalisation; frame sampling and the
        # video pixel budget stay at the stock defaults. earthvlm never reads it.
        out["video_processor"] = {
            "video_processor_type": STOCK_VIDEO_PROCESSOR_NAMES[self._family],
            "patch_size": ip.patch_size,
            "merge_size": ip.merge_size,
            "temporal_patch_size": ip.temporal_patch_size,
            "image_mean": list(ip.image_mean),
            "image_std": list(ip.image_std),
        }
        return out

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs):
        """``ProcessorMixin.save_pretrained``, plus ``processing_earthvlm.py`` and the stock
        class name in ``tokenizer_config.json`` too.

        Raises:
            ValueError: ``push_to_hub=True``; use ``processor.push_to_hub(repo_id)``, which
                saves through this method.
        """
        if push_to_hub:
            raise ValueError(
                f"{type(self).__name__}.save_pretrained(push_to_hub=True) is not supported: "
                "call processor.push_to_hub(repo_id), which saves through save_pretrained"
            )
        files = super().save_pretrained(save_directory, **kwargs)
        stock = STOCK_PROCESSOR_NAMES[self._family]
        self.tokenizer._set_processor_class(stock)  # ProcessorMixin set our subclass name
        tokenizer_config = Path(save_directory) / "tokenizer_config.json"
        if tokenizer_config.is_file():
            config = json.loads(tokenizer_config.read_text(encoding="utf-8"))
            config["processor_class"] = stock
            tokenizer_config.write_text(
                json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                encoding="utf-8",
            )
        module = Path(save_directory) / f"{HUB_MODULE}.py"
        module.write_text(HUB_MODULE_SOURCE, encoding="utf-8")
        return [*files, os.fspath(module)]


class EarthQwen3VLProcessor(_SavesForStockTransformers, Qwen3VLProcessor):
    """``Qwen3VLProcessor`` for images and text only (no video processor, no torchvision)."""

    _family = "qwen3_vl"

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


class EarthQwen2_5_VLProcessor(_SavesForStockTransformers, Qwen2_5_VLProcessor):
    """``Qwen2_5_VLProcessor`` for images and text only (no video processor, no torchvision)."""

    _family = "qwen2_5_vl"

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
