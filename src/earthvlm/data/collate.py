"""Records -> one model batch for a Qwen-VL backbone, for training or for generation.

:class:`Collator` turns a list of :class:`~earthvlm.data.record.Record` into the
processor's inputs (``input_ids``, ``attention_mask``, ``mm_token_type_ids``,
``pixel_values``, ``image_grid_thw`` and, for training, ``labels``) plus the per-image
GSD list ScaleEarth needs, in batch order.

* Images are read safely: every path goes through
  :func:`~earthvlm.data.paths.resolve_within` against the dataset root, then
  :func:`~earthvlm.geo.raster.open_raster` / :func:`~earthvlm.geo.raster.read_pixels`
  (magic-byte driver, no VRTs, a pixel budget). 3-band uint8 optical images become PIL
  RGB images; other modalities are refused with a clear error for now.
* Messages are rendered with the backbone's chat template: the TRL ``_training``
  variant, whose ``{% generation %}`` markers give the assistant-token mask. Labels are
  the input ids on assistant turns only; everything else (system and user turns, image
  tokens, padding) is -100.
* Each sample is encoded on its own, so a bad sample is attributed to its record, then
  the batch is padded: right for training, left for generation (``padding_side``).
  ``mm_token_type_ids`` is kept (transformers 5 requires it with ``image_grid_thw``).
* Every record is counted in the batch's :class:`~earthvlm.data.ledger.Ledger`: ok, or
  failed with a short reason (``path_escape``, ``missing_image``, ``unreadable_image``,
  ``unsupported_modality``, ``unsupported_image``, ``stale_resize``, ``control_token``,
  ``too_long``, ``no_target``). With ``on_error="drop"`` (training) a failed sample is
  left out of the batch but counted; with ``"raise"`` the first failure raises.

Dataset text may not contain the tokenizer's special tokens (``<|im_start|>``,
``<|image_pad|>``, ...): rendered verbatim they would forge turns or image slots. The
processor's ``sanitize_control_tokens`` cannot be combined with the assistant mask, so
such samples are refused (``control_token``).

This module stays torch-free (the ``data`` layer's rule): samples are encoded as NumPy
arrays and the processor's own ``BatchFeature`` class converts the padded batch to
tensors.
"""

from __future__ import annotations

import copy
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from PIL import Image
from rasterio.errors import NotGeoreferencedWarning

from earthvlm.data.augment import apply_resize
from earthvlm.data.ledger import Ledger
from earthvlm.data.paths import resolve_within
from earthvlm.data.pixels import PixelProcessor
from earthvlm.data.record import ImagePart, ImageRef, Message, Record
from earthvlm.errors import EarthVLMError, PathEscapeError, RasterError, RecordError
from earthvlm.geo.raster import DEFAULT_MAX_READ_PIXELS, open_raster, read_pixels
from earthvlm.scale.gsd import GSD

#: Label value the loss ignores (PyTorch's cross-entropy default).
IGNORE_INDEX = -100
#: Processor outputs with one entry per token (padded) and per image (concatenated).
_SEQ_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "labels")
_IMAGE_KEYS = ("pixel_values", "image_grid_thw")


class BackboneLike(Protocol):
    """What the collator needs of a :class:`earthvlm.models.backbone.Backbone`."""

    processor: Any

    @property
    def tokenizer(self) -> Any: ...

    def chat_template(self, *, training: bool = False) -> str: ...


class SampleError(EarthVLMError):
    """One record cannot become a training sample; ``reason`` is the ledger key."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class CollatedBatch:
    """A padded batch and what became of each record.

    Attributes:
        inputs: The processor's ``BatchFeature`` (``input_ids``, ``attention_mask``,
            ``mm_token_type_ids``, ``pixel_values``, ``image_grid_thw``, and ``labels``
            in training mode); ``None`` when every record failed.
        gsds: One GSD per image, in the order the images appear in the batch (the
            order ScaleEarth's ``gsd=`` argument expects).
        ids: The ids of the records in the batch, in order.
        targets: Generation mode: each record's reference answer (its last assistant
            turn); training mode: ``None``.
        ledger: This batch's counts (merge it into the run's ledger).
        failures: ``(record id, reason, message)`` for each record left out.
    """

    inputs: Any
    gsds: list[GSD]
    ids: list[str]
    targets: list[str] | None
    ledger: Ledger
    failures: list[tuple[str, str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


class Collator:
    """Build model batches from records for one backbone.

    Args:
        backbone: A :class:`~earthvlm.models.backbone.Backbone` (its processor, tokenizer
            and chat templates are used; the model is not touched).
        root: The dataset root; image paths are resolved inside it.
        mode: ``"train"`` (the whole conversation, labels on assistant turns) or
            ``"generate"`` (the conversation up to its last assistant turn, a generation
            prompt, that turn's text kept as the target).
        padding_side: ``"right"`` or ``"left"``; default right for training, left for
            generation (so that every sample's prompt ends at the last column).
        max_length: Samples with more tokens are refused (``too_long``) rather than
            truncated: a cut through an image's tokens breaks the vision alignment.
        on_error: ``"drop"``: leave a failed sample out (counted); ``"raise"``: raise
            its :class:`SampleError`.
        return_tensors: ``"pt"`` (default) or ``"np"``.
        max_read_pixels: Pixel budget per image read (decompression bombs).
        image_cache: Keep this many decoded images (by path) for reuse: evaluation that
            asks many questions of one image (closed-set candidates, GSD sweeps) then
            decodes it once. 0 (default) keeps none, as training wants.

    Raises:
        ValueError: For a bad argument, naming it.
    """

    def __init__(
        self,
        backbone: BackboneLike,
        root: str | Path,
        *,
        mode: Literal["train", "generate"] = "train",
        padding_side: Literal["right", "left"] | None = None,
        max_length: int | None = None,
        on_error: Literal["drop", "raise"] = "drop",
        return_tensors: Literal["pt", "np"] = "pt",
        max_read_pixels: int = DEFAULT_MAX_READ_PIXELS,
        image_cache: int = 0,
    ) -> None:
        if mode not in ("train", "generate"):
            raise ValueError(f"mode={mode!r}: choose 'train' or 'generate'")
        padding_side = padding_side or ("right" if mode == "train" else "left")
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side={padding_side!r}: choose 'right' or 'left'")
        if max_length is not None and max_length < 1:
            raise ValueError(f"max_length={max_length}: must be >= 1 (or None for no limit)")
        if on_error not in ("drop", "raise"):
            raise ValueError(f"on_error={on_error!r}: choose 'drop' or 'raise'")
        if return_tensors not in ("pt", "np"):
            raise ValueError(f"return_tensors={return_tensors!r}: choose 'pt' or 'np'")
        if image_cache < 0:
            raise ValueError(f"image_cache={image_cache}: must be >= 0 (0 disables it)")
        # keep the processor, not the backbone: DataLoader workers need no model copy
        # images go through earthvlm's numpy image processor: pixel_values identical to
        # transformers' (tests/data/test_pixels.py), 1.6-3x faster (BENCHMARKS.md); a
        # shallow copy, so the backbone's own processor (saved with checkpoints) is untouched
        self.processor, self.root = copy.copy(backbone.processor), Path(root)
        self.processor.image_processor = PixelProcessor.from_image_processor(
            backbone.processor.image_processor, max_read_pixels=max_read_pixels
        )
        self.mode, self.padding_side, self.max_length = mode, padding_side, max_length
        self.on_error, self.return_tensors = on_error, return_tensors
        self.max_read_pixels = max_read_pixels
        self.image_cache = image_cache
        self._images: OrderedDict[tuple[str, str], Image.Image] = OrderedDict()
        self.template = backbone.chat_template(training=mode == "train")
        tok = backbone.tokenizer
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.media_ids = {
            i
            for t in ("<|image_pad|>", "<|video_pad|>")
            if (i := tok.convert_tokens_to_ids(t)) is not None and i != tok.unk_token_id
        }
        self._feature_type: Any = None
        self.control = sorted(
            {str(t) for t in tok.added_tokens_decoder.values() if getattr(t, "special", False)}
            | {str(t) for t in getattr(tok, "all_special_tokens", [])}
        )

    # -- one record -----------------------------------------------------------------------

    def load_image(self, ref: ImageRef) -> Image.Image:
        """Read one image of a record as a PIL RGB image (from the cache when enabled).

        Raises:
            SampleError: With reason ``path_escape``, ``missing_image``,
                ``unreadable_image``, ``unsupported_modality`` or ``unsupported_image``.
        """
        if not self.image_cache:
            return self._read_image(ref)
        key = (ref.path, ref.modality)
        if key in self._images:
            self._images.move_to_end(key)
            return self._images[key]
        image = self._read_image(ref)
        self._images[key] = image
        if len(self._images) > self.image_cache:
            self._images.popitem(last=False)
        return image

    def _read_image(self, ref: ImageRef) -> Image.Image:
        try:
            path = resolve_within(self.root, ref.path)
        except PathEscapeError as e:
            raise SampleError("path_escape", str(e)) from None
        if not path.is_file():
            raise SampleError("missing_image", f"{ref.path}: no such file under {self.root}")
        if ref.modality != "optical":
            raise SampleError(
                "unsupported_modality",
                f"{ref.path}: modality {ref.modality!r} is not supported by the collator yet "
                "(3-band uint8 optical only); leave these records out or convert them to RGB",
            )
        try:
            with warnings.catch_warnings():  # plain PNG/JPEG chips have no georeferencing
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with open_raster(path) as ds:
                    pixels = read_pixels(ds, max_pixels=self.max_read_pixels)
        except RasterError as e:
            raise SampleError("unreadable_image", str(e)) from None
        if pixels.shape[0] != 3 or pixels.dtype != np.uint8:
            raise SampleError(
                "unsupported_image",
                f"{ref.path}: {pixels.shape[0]} band(s) of {pixels.dtype}; the collator takes "
                "3-band uint8 RGB optical images for now",
            )
        return Image.fromarray(np.ascontiguousarray(pixels.transpose(1, 2, 0)), mode="RGB")

    def _check_text(self, rec: Record) -> None:
        for m in rec.messages:
            text = m.text()
            for token in self.control:
                if token in text:
                    raise SampleError(
                        "control_token",
                        f"record {rec.id}: a {m.role} turn contains the special token "
                        f"{token!r}; remove it from the data (it would forge turns or images)",
                    )

    def _conversation(self, rec: Record) -> tuple[list[dict[str, Any]], list[GSD], str | None]:
        """HF-style messages with images loaded, the GSDs in image order, the target."""
        messages: list[Message] = list(rec.messages)
        target = None
        if self.mode == "generate":
            last = max((i for i, m in enumerate(messages) if m.role == "assistant"), default=None)
            if last is not None:
                target = messages[last].text()
                messages = messages[:last]
        elif not any(m.role == "assistant" for m in messages):
            raise SampleError("no_target", f"record {rec.id}: no assistant turn to learn from")
        conv, gsds = [], []
        for m in messages:
            if isinstance(m.content, str):
                conv.append({"role": m.role, "content": m.content})
                continue
            parts: list[dict[str, Any]] = []
            for p in m.content:
                if isinstance(p, ImagePart):
                    ref = rec.images[p.index]
                    try:  # a random resize (earthvlm.data.augment) is applied here
                        image = apply_resize(self.load_image(ref), rec, p.index)
                    except RecordError as e:
                        raise SampleError("stale_resize", str(e)) from None
                    parts.append({"type": "image", "image": image})
                    gsds.append(ref.gsd)
                else:
                    parts.append({"type": "text", "text": p.text})
            conv.append({"role": m.role, "content": parts})
        return conv, gsds, target

    def encode(self, rec: Record) -> tuple[dict[str, np.ndarray], list[GSD], str | None]:
        """One record as unpadded arrays (sequence keys 1-D), its GSDs and its target.

        Raises:
            SampleError: If the record cannot become a sample (see the module docstring).
        """
        self._check_text(rec)
        conv, gsds, target = self._conversation(rec)
        train = self.mode == "train"
        out = self.processor.apply_chat_template(
            conv,
            chat_template=self.template,
            tokenize=True,
            return_dict=True,
            return_tensors="np",
            return_assistant_tokens_mask=train,
            add_generation_prompt=not train,
        )
        self._feature_type = type(out)
        sample: dict[str, np.ndarray] = {}
        for key, value in out.items():
            arr = np.asarray(value)
            sample[key] = arr[0] if key in _SEQ_KEYS or key == "assistant_masks" else arr
        ids = sample["input_ids"]
        if self.max_length is not None and len(ids) > self.max_length:
            raise SampleError(
                "too_long",
                f"record {rec.id}: {len(ids)} tokens > max_length={self.max_length} (images "
                "included); raise max_length or lower the image pixel budget",
            )
        if train:
            keep = sample.pop("assistant_masks").astype(bool) & ~np.isin(ids, list(self.media_ids))
            if not keep.any():
                raise SampleError("no_target", f"record {rec.id}: no assistant token to learn")
            sample["labels"] = np.where(keep, ids, IGNORE_INDEX)
        unknown = set(sample) - set(_SEQ_KEYS) - set(_IMAGE_KEYS)
        if unknown:
            raise EarthVLMError(
                f"the processor returned {sorted(unknown)}, which the collator does not know "
                "how to batch; extend earthvlm.data.collate"
            )
        return sample, gsds, target

    # -- a batch --------------------------------------------------------------------------

    def __call__(self, records: Sequence[Record]) -> CollatedBatch:
        ledger = Ledger(stage=f"collate:{self.mode}")
        samples, gsds, ids, targets, failures = [], [], [], [], []
        for rec in records:
            try:
                sample, g, target = self.encode(rec)
            except SampleError as e:
                if self.on_error == "raise":
                    raise
                ledger.count_failed(e.reason)
                failures.append((rec.id, e.reason, str(e)))
                continue
            ledger.count_ok()
            samples.append(sample)
            gsds.extend(g)
            ids.append(rec.id)
            targets.append(target if target is not None else "")
        ledger.check()
        inputs = self._pad(samples) if samples else None
        if inputs is not None:
            # the processor's own BatchFeature converts to tensors: no torch import here
            inputs = self._feature_type(data=inputs, tensor_type=self.return_tensors)
        return CollatedBatch(
            inputs=inputs,
            gsds=gsds,
            ids=ids,
            targets=targets if self.mode == "generate" else None,
            ledger=ledger,
            failures=failures,
        )

    def _pad(self, samples: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        width = max(len(s["input_ids"]) for s in samples)
        fill = {"input_ids": self.pad_id, "attention_mask": 0, "mm_token_type_ids": 0,
                "labels": IGNORE_INDEX}  # fmt: skip
        out: dict[str, np.ndarray] = {}
        for key in _SEQ_KEYS:
            if not any(key in s for s in samples):
                continue
            rows = np.full((len(samples), width), fill[key], dtype=np.int64)
            for i, s in enumerate(samples):
                if key not in s:  # e.g. no mm_token_type_ids for a text-only sample: all 0
                    s = {key: np.full(len(s["input_ids"]), fill[key])}
                n = len(s[key])
                if self.padding_side == "right":
                    rows[i, :n] = s[key]
                else:
                    rows[i, width - n :] = s[key]
            out[key] = rows
        for key in _IMAGE_KEYS:
            parts = [s[key] for s in samples if key in s]
            if parts:
                out[key] = np.concatenate(parts, axis=0)
        return out


__all__ = ["IGNORE_INDEX", "BackboneLike", "CollatedBatch", "Collator", "SampleError"]
