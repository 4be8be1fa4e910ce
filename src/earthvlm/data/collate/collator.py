"""The :class:`Collator`: records in, one model batch out, each record counted.

It composes the parts: :mod:`~earthvlm.data.collate.images` reads the images,
:mod:`~earthvlm.data.collate.frames` turns sensor pixels into frames,
:mod:`~earthvlm.data.collate.text` renders, tokenises and labels,
:mod:`~earthvlm.data.collate.masks` reads masks, :mod:`~earthvlm.data.collate.batch`
pads and writes the batch. ``docs/collation.md`` is the manual.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from PIL import Image

from earthvlm.data.collate.batch import PIXEL_FORMATS, BatchFormat, CollatedBatch, PlannedPixels
from earthvlm.data.collate.images import LARGE_IMAGES, ImageReader, ReadBudget
from earthvlm.data.collate.masks import MaskReader
from earthvlm.data.collate.sample import EncodedSample, SampleError
from earthvlm.data.collate.text import TextEncoder
from earthvlm.data.ledger import Ledger
from earthvlm.data.pixels import PixelPlan, PixelProcessor
from earthvlm.data.record import ImageRef, Record
from earthvlm.geo.raster import DEFAULT_MAX_READ_PIXELS, DEFAULT_MAX_SCAN_PIXELS
from earthvlm.scale.gsd import GSD


class BackboneLike(Protocol):
    """What the collator needs of a :class:`earthvlm.models.backbone.Backbone`."""

    processor: Any

    @property
    def tokenizer(self) -> Any: ...

    def chat_template(self, *, training: bool = False) -> str: ...


class Collator:
    """Build model batches from records for one backbone.

    Calling it on records gives a :class:`CollatedBatch`: the processor's inputs
    (``input_ids``, ``attention_mask``, ``mm_token_type_ids``, ``pixel_values``,
    ``image_grid_thw``, and ``labels`` for training), the per-image GSDs in batch order,
    and a ledger in which every record is ok or failed with a reason. What it does with
    images, sensors, text and masks is in ``docs/collation.md``.

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
        max_read_pixels: Most pixels of one image decoded into memory at once
            (decompression bombs); images over it are read reduced or refused.
        large_images: ``"reduce"`` (default): read an image over ``max_read_pixels`` at the
            size the model sees it, never decoded whole; ``"refuse"``: refuse it
            (``unreadable_image``).
        max_scan_pixels: Most source pixels one reduced read may go through (its time);
            about 32,768 px a side by default.
        image_cache: Decoded images kept for reuse (evaluation that asks many questions
            of one image); 0 (default) keeps none, as training wants.
        read_masks: Read each record's masks into :attr:`CollatedBatch.masks` (referring
            segmentation); off by default.
        pixel_format: ``"float32"`` (default): ``pixel_values`` as the transformers
            processor gives them; ``"uint8"``: packed uint8 patches, for a model whose
            vision tower expands them (every backbone ``earthvlm.models`` builds or loads).

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
        read_masks: bool = False,
        pixel_format: Literal["float32", "uint8"] = "float32",
        large_images: Literal["reduce", "refuse"] = "reduce",
        max_scan_pixels: int = DEFAULT_MAX_SCAN_PIXELS,
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
        if pixel_format not in PIXEL_FORMATS:
            raise ValueError(f"pixel_format={pixel_format!r}: choose one of {PIXEL_FORMATS}")
        if large_images not in LARGE_IMAGES:
            raise ValueError(f"large_images={large_images!r}: choose one of {LARGE_IMAGES}")
        if max_read_pixels < 1 or max_scan_pixels < 1:
            raise ValueError(
                f"max_read_pixels={max_read_pixels}, max_scan_pixels={max_scan_pixels}: "
                "must be >= 1"
            )
        self.mode, self.padding_side, self.max_length = mode, padding_side, max_length
        self.on_error, self.return_tensors = on_error, return_tensors
        self.max_read_pixels = max_read_pixels
        self.large_images, self.max_scan_pixels = large_images, max_scan_pixels
        self.image_cache, self.read_masks = image_cache, read_masks
        self.pixel_format = pixel_format
        # keep the processor, not the backbone: DataLoader workers need no model copy
        # images go through earthvlm's numpy image processor: pixel_values identical to
        # transformers' (tests/data/test_pixels.py), 1.6-3x faster (BENCHMARKS.md); a
        # shallow copy, so the backbone's own processor (saved with checkpoints) is untouched
        self.processor, self.root = copy.copy(backbone.processor), Path(root)
        pixels = PixelProcessor.from_image_processor(
            backbone.processor.image_processor, max_read_pixels=max_read_pixels
        )
        self.processor.image_processor = pixels
        # the same processor for batches: image grids at encoding (all the processor needs
        # to expand image tokens), patches written by BatchFormat.pad into one array
        self._planner = copy.copy(self.processor)
        self._planner.image_processor = PlannedPixels(pixels)
        budget = ReadBudget(max_read_pixels, max_scan_pixels, large_images)
        self.images = ImageReader(self.root, budget, pixels, image_cache)
        self.masks = MaskReader(self.root, pixels, max_read_pixels)
        self.text = TextEncoder(
            backbone, self.processor, train=mode == "train", max_length=max_length
        )
        self.template, self.pad_id = self.text.template, self.text.pad_id
        self.media_ids, self.control = self.text.media_ids, self.text.control
        self.batch = BatchFormat(self.pad_id, padding_side, pixel_format)

    @property
    def reduced_reads(self) -> int:
        """Image files this collator (this process) has read at reduced size."""
        return self.images.reduced_reads

    # -- one record -----------------------------------------------------------------------

    def load_image(self, ref: ImageRef, meta: Mapping[str, Any] | None = None) -> Image.Image:
        """Read one image of a record as a PIL RGB image (from the cache when enabled).

        Args:
            ref: The image.
            meta: The record's ``meta``: how its SAR images are scaled (``sar_units``,
                ``sar_scaling``); ignored for optical images.

        Raises:
            SampleError: With reason ``path_escape``, ``missing_image``,
                ``unreadable_image``, ``image_too_large``, ``unsupported_modality`` or
                ``unsupported_image``.
        """
        return self.images.load_image(ref, meta)

    def load_frames(
        self, ref: ImageRef, meta: Mapping[str, Any] | None = None
    ) -> tuple[list[Image.Image], dict[str, Any]]:
        """Read a multispectral image as its RGB-like frames and their layout (a dict).

        Raises:
            SampleError: As :meth:`load_image`; ``unsupported_image`` for bad band
                names, options or a missing ``ms_scale``.
        """
        return self.images.load_frames(ref, meta)

    def encode(self, rec: Record) -> tuple[dict[str, np.ndarray], list[GSD], str | None]:
        """One record as unpadded arrays (sequence keys 1-D), its GSDs and its target.

        :meth:`encode_sample` gives the rest (modalities, masks).

        Raises:
            SampleError: If the record cannot become a sample (``docs/collation.md``).
        """
        s = self.encode_sample(rec)
        return s.arrays, s.gsds, s.target

    def encode_sample(self, rec: Record) -> EncodedSample:
        """One record as an :class:`EncodedSample` (masks read when ``read_masks``).

        Raises:
            SampleError: If the record cannot become a sample (``docs/collation.md``).
        """
        return self._encode(rec, planned=False)

    def _encode(self, rec: Record, *, planned: bool) -> EncodedSample:
        """:meth:`encode_sample`; ``planned``: ``pixel_values`` as a
        :class:`~earthvlm.data.pixels.PixelPlan`, written by :meth:`BatchFormat.pad`."""
        self.text.check(rec)
        conv = self.text.render(rec, self.images)
        # packed pixels come from a plan (PixelProcessor.__call__ writes float32 only)
        plan = planned or self.pixel_format != "float32"
        out = self.text.tokenize(conv.messages, self._planner if plan else self.processor)
        if not planned:
            out = {
                k: self.batch.write_pixels([v]) if isinstance(v, PixelPlan) else v
                for k, v in out.items()
            }
        arrays = self.text.arrays(rec, out)
        masks, mask_image = self.masks.read(rec, conv.shown) if self.read_masks else (None, None)
        return EncodedSample(
            arrays=arrays,
            gsds=[s.ref.gsd for s in conv.shown],
            target=conv.target,
            modalities=[s.ref.modality for s in conv.shown],
            masks=masks,
            mask_image=mask_image,
            layouts=conv.layouts,
            reduced=conv.reduced,
        )

    # -- a batch --------------------------------------------------------------------------

    def __call__(self, records: Sequence[Record]) -> CollatedBatch:
        ledger = Ledger(stage=f"collate:{self.mode}")
        samples: list[EncodedSample] = []
        ids, failures = [], []
        for rec in records:
            try:
                sample = self._encode(rec, planned=True)
            except SampleError as e:
                if self.on_error == "raise":
                    raise
                ledger.count_failed(e.reason)
                failures.append((rec.id, e.reason, str(e)))
                continue
            ledger.count_ok()
            samples.append(sample)
            ids.append(rec.id)
        ledger.check()
        inputs = None
        if samples:
            # the processor's own BatchFeature converts to tensors: no torch import here
            padded = self.batch.pad([s.arrays for s in samples])
            inputs = self.text.feature_type(data=padded, tensor_type=self.return_tensors)
        return CollatedBatch.from_samples(
            samples,
            inputs=inputs,
            ids=ids,
            ledger=ledger,
            failures=failures,
            generate=self.mode == "generate",
        )
