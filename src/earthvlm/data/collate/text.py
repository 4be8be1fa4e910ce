"""Text and labels: a record's turns rendered with the backbone's chat template, tokenised,
image placeholders expanded, and labels on assistant tokens only.

Training uses the template's TRL ``_training`` variant, whose ``{% generation %}``
markers give the assistant-token mask. The prompt is tokenised before its image
placeholders are expanded (each ``<|image_pad|>`` is then repeated in NumPy); the first
sample is also encoded by the processor and the shortcut is kept only if every array
agrees. Samples over ``max_length`` are refused, never truncated.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from earthvlm.data.collate.sample import SampleError, Shown
from earthvlm.data.pixels import PixelPlan, PixelProcessor
from earthvlm.data.record import ImagePart, Message, Record
from earthvlm.errors import EarthVLMError

if TYPE_CHECKING:
    from earthvlm.data.collate.images import ImageReader

#: Label value the loss ignores (PyTorch's cross-entropy default).
IGNORE_INDEX = -100
#: Processor outputs with one entry per token (padded) and per image (concatenated).
SEQ_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "labels")
IMAGE_KEYS = ("pixel_values", "image_grid_thw")


@dataclass
class Conversation:
    """A record's turns as HF-style messages with its images loaded, the images in the
    order shown, the frame layouts of its multispectral images and the target."""

    messages: list[dict[str, Any]]
    target: str | None
    shown: list[Shown] = field(default_factory=list)
    layouts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def reduced(self) -> int:
        """How many of the images shown were read at reduced size."""
        return sum(s.reduced for s in self.shown)


class TextEncoder:
    """Renders, tokenises and labels conversations for one backbone.

    Args:
        backbone: Its tokenizer and chat templates are used.
        processor: The collator's processor (its image processor a
            :class:`~earthvlm.data.pixels.PixelProcessor`).
        train: Training (whole conversations, labels) or generation (a prompt, a target).
        max_length: Most tokens of a sample (``None``: no limit).
    """

    def __init__(
        self, backbone: Any, processor: Any, *, train: bool, max_length: int | None
    ) -> None:
        self.processor, self.train, self.max_length = processor, train, max_length
        self.template = backbone.chat_template(training=train)
        tok = backbone.tokenizer
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.media_ids = {
            i
            for t in ("<|image_pad|>", "<|video_pad|>")
            if (i := tok.convert_tokens_to_ids(t)) is not None and i != tok.unk_token_id
        }
        image_token = getattr(backbone.processor, "image_token", "<|image_pad|>")
        self.image_pad = tok.convert_tokens_to_ids(image_token)
        self.control = sorted(
            {str(t) for t in tok.added_tokens_decoder.values() if getattr(t, "special", False)}
            | {str(t) for t in getattr(tok, "all_special_tokens", [])}
        )
        #: The processor's ``BatchFeature`` class (set by the first :meth:`tokenize`).
        self.feature_type: Any = None
        #: Whether :meth:`shortcut` gives the processor's arrays; ``None``: not yet checked.
        self.fast: bool | None = None

    def check(self, rec: Record) -> None:
        """Refuse text that holds a special token (``control_token``): rendered verbatim
        it would forge turns or image slots."""
        for m in rec.messages:
            text = m.text()
            for token in self.control:
                if token in text:
                    raise SampleError(
                        "control_token",
                        f"record {rec.id}: a {m.role} turn contains the special token "
                        f"{token!r}; remove it from the data (it would forge turns or images)",
                    )

    def render(self, rec: Record, images: ImageReader) -> Conversation:
        """HF-style messages with images loaded, the shown images in order, the target
        (generation: the last assistant turn, cut from the messages)."""
        messages: list[Message] = list(rec.messages)
        target = None
        if not self.train:
            last = max((i for i, m in enumerate(messages) if m.role == "assistant"), default=None)
            if last is not None:
                target = messages[last].text()
                messages = messages[:last]
        elif not any(m.role == "assistant" for m in messages):
            raise SampleError("no_target", f"record {rec.id}: no assistant turn to learn from")
        out = Conversation(messages=[], target=target)
        for m in messages:
            if isinstance(m.content, str):
                out.messages.append({"role": m.role, "content": m.content})
                continue
            parts: list[dict[str, Any]] = []
            for p in m.content:
                if isinstance(p, ImagePart):
                    shown_images, shown, layout = images.show(rec, p.index)
                    if layout is not None:
                        out.layouts.append(layout)
                    parts += [{"type": "image", "image": image} for image in shown_images]
                    out.shown += shown
                else:
                    parts.append({"type": "text", "text": p.text})
            out.messages.append({"role": m.role, "content": parts})
        return out

    def tokenize(self, messages: list[dict[str, Any]], processor: Any) -> Mapping[str, Any]:
        """``processor.apply_chat_template``'s output for ``messages`` (sequences as
        ``(1, n)``), by :meth:`shortcut` once the first sample showed it gives the same."""
        out = self.shortcut(messages) if self.fast is not False else None
        if out is None or self.fast is None:
            ref = processor.apply_chat_template(
                messages,
                chat_template=self.template,
                tokenize=True,
                return_dict=True,
                # lists, made arrays below: with "np" transformers flattens every token list
                # (twice with the assistant mask) only to test it for emptiness
                return_tensors=None,
                return_assistant_tokens_mask=self.train,
                add_generation_prompt=not self.train,
            )
            self.feature_type = type(ref)
            if out is not None:  # the first sample: the shortcut must give the same arrays
                self.fast = _same_text(out, ref)
                if not self.fast:
                    warnings.warn(
                        "the collator's text shortcut differs from the processor for this "
                        "backbone's tokenizer or template; using the processor (slower)",
                        stacklevel=3,  # the line in Collator.__call__ / encode_sample
                    )
            out = ref
        return out

    def shortcut(self, messages: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The processor's ``apply_chat_template`` output (sequences as ``(1, n)``), from the
        unexpanded prompt: tokenised by the tokenizer's chat template call (assistant mask
        included), each ``<|image_pad|>`` then repeated ``grid / merge**2`` times. ``None``
        when the prompt's placeholders do not match the images (the processor decides)."""
        images = [
            part["image"]
            for m in messages
            if isinstance(m["content"], list)
            for part in m["content"]
            if part.get("type") == "image"
        ]
        enc = self.processor.tokenizer.apply_chat_template(
            messages,
            chat_template=self.template,
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=self.train,
            add_generation_prompt=not self.train,
        )
        ids = np.asarray(enc["input_ids"], dtype=np.int64)
        pads = np.flatnonzero(ids == self.image_pad)
        if len(pads) != len(images):
            return None
        out: dict[str, Any] = {}
        repeats = None
        if images:
            pixels = cast(PixelProcessor, self.processor.image_processor)
            plan = pixels.plan(images)
            repeats = np.ones(len(ids), dtype=np.int64)
            repeats[pads] = plan.grids.prod(axis=1) // pixels.merge_size**2
            out["pixel_values"], out["image_grid_thw"] = plan, plan.grids

        def expand(values: Any) -> np.ndarray:
            arr = np.asarray(values, dtype=np.int64)
            return (arr if repeats is None else np.repeat(arr, repeats))[None]

        out["input_ids"] = expand(ids)
        out["attention_mask"] = expand(enc["attention_mask"])
        if getattr(self.processor, "return_mm_token_type_ids", False):
            out["mm_token_type_ids"] = np.asarray(
                self.processor.create_mm_token_type_ids(out["input_ids"]), dtype=np.int64
            )
        if self.train:
            out["assistant_masks"] = expand(enc["assistant_masks"])
        return out

    def arrays(self, rec: Record, out: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """:meth:`tokenize`'s output as one sample's arrays (sequences 1-D), with labels
        in training.

        Raises:
            SampleError: ``too_long`` or ``no_target`` (no assistant token to learn).
        """
        sample: dict[str, np.ndarray] = {}
        for key, value in out.items():
            arr = value if isinstance(value, PixelPlan) else np.asarray(value)
            sample[key] = arr[0] if key in SEQ_KEYS or key == "assistant_masks" else arr
        ids = sample["input_ids"]
        if self.max_length is not None and len(ids) > self.max_length:
            raise SampleError(
                "too_long",
                f"record {rec.id}: {len(ids)} tokens > max_length={self.max_length} (images "
                "included); raise max_length or lower the image pixel budget",
            )
        if self.train:
            keep = sample.pop("assistant_masks").astype(bool) & ~np.isin(ids, list(self.media_ids))
            if not keep.any():
                raise SampleError("no_target", f"record {rec.id}: no assistant token to learn")
            sample["labels"] = np.where(keep, ids, IGNORE_INDEX)
        unknown = set(sample) - set(SEQ_KEYS) - set(IMAGE_KEYS)
        if unknown:
            raise EarthVLMError(
                f"the processor returned {sorted(unknown)}, which the collator does not know "
                "how to batch; extend earthvlm.data.collate"
            )
        return sample


def _same_text(fast: Mapping[str, Any], ref: Mapping[str, Any]) -> bool:
    """Whether the text shortcut's arrays equal the processor's (pixels aside: both are
    planned or written by the same :class:`~earthvlm.data.pixels.PixelProcessor`)."""
    if set(fast) != set(ref):
        return False
    for key in set(ref) - {"pixel_values"}:
        a, b = np.asarray(fast[key]), np.asarray(ref[key])
        if a.shape != b.shape or not np.array_equal(a, b):
            return False
    return True
