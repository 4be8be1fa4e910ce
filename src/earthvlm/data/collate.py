"""Records -> one model batch for a Qwen-VL backbone, for training or for generation.

:class:`Collator` turns a list of :class:`~earthvlm.data.record.Record` into the
processor's inputs (``input_ids``, ``attention_mask``, ``mm_token_type_ids``,
``pixel_values``, ``image_grid_thw`` and, for training, ``labels``) plus the per-image
GSD list ScaleEarth needs, in batch order.

* Images are read safely: every path goes through
  :func:`~earthvlm.data.paths.resolve_within` against the dataset root, then
  :func:`~earthvlm.geo.raster.open_raster` / :func:`~earthvlm.geo.raster.read_pixels`
  (magic-byte driver, no VRTs, a pixel budget). 3-band uint8 optical images become PIL
  RGB images (JPEG and PNG files are decoded by PIL, as the transformers processor
  decodes them: GDAL's JPEG decoder gives other pixels); SAR images (one or two
  polarisations) become one pseudo-RGB frame through
  :func:`~earthvlm.data.sensors.sar_frames`, zero-padded (EarthMind App. H); multispectral
  images are refused for now (``unsupported_modality``).
* Images over the decode budget (``max_read_pixels``, per collator) are read at the size
  the model will see them at (the image processor's resized size), never decoded whole
  (``large_images="reduce"``, the default): JPEGs by libjpeg's DCT scaling, PNGs in row
  strips (:func:`~earthvlm.data.pixels.decode_reduced`), GeoTIFF and the other GDAL
  formats from their coarsest fitting overview or by GDAL's decimated read
  (:func:`~earthvlm.geo.raster.read_reduced`); a read that would decode more than
  ``max_scan_pixels`` source pixels, or cannot be reduced (progressive JPEG, interlaced
  PNG, ...), is refused (``image_too_large``). The image handed on is then exactly the
  processor's size, so the model sees the same number of tokens as for a full decode;
  images within the budget are read as before, pixel for pixel. Such images are counted
  per sample (:attr:`CollatedBatch.reduced_images`) and per collator
  (:attr:`Collator.reduced_reads`). ``large_images="refuse"`` refuses them instead
  (``unreadable_image``), as before.
* SAR values: uint8 files are dB written through a linear map (``uint8_db``, as the
  synthetic world writes them); float files are dB. A record says otherwise in its
  ``meta``: ``sar_units`` (``uint8_db``, ``db`` or ``linear_power``) and ``sar_scaling``
  (the map as :meth:`~earthvlm.data.sensors.DbScale.formula` writes it, e.g.
  ``"dB = value / 255 * 40 + -30"``; default :class:`~earthvlm.data.sensors.DbScale`).
* Multispectral frames: the record's ``meta`` may set ``ms_order`` (bands to use, in
  frame order; default file order, band names from the image's ``bands``),
  ``ms_grouping`` (``three_band``, the paper's default, or ``single_band``), ``ms_fill``
  (``zero`` or ``replicate`` for a last frame short of three bands) and ``ms_scale``
  (``{dn_per_unit, offset_dn, max_reflectance}`` of
  :class:`~earthvlm.data.sensors.ReflectanceScale`; required unless the file holds
  integers wider than 8 bits, read as Sentinel-2-style DN = reflectance x 10000). The
  frames are shown as consecutive *images*, each with the view's GSD and modality
  ``multispectral``, and the :class:`~earthvlm.data.sensors.FrameLayout` (band of every
  channel, value scaling) is recorded per sample (:attr:`CollatedBatch.layouts`). Why
  images and not Qwen's video path: the video patch embedding merges every two frames
  into one token (``temporal_patch_size`` 2), which would blend two band groups into
  one feature; EarthMind's InternVL base shows video frames as consecutive images too.
  The fusion, segmentation and scale paths, which work on image slots, then take
  multispectral samples unchanged (frames pass through fusion as single images).
* Per sample the batch lists its images' modalities in image order
  (:attr:`CollatedBatch.modalities`), what ``EarthFusion(..., modalities=...)`` pairs.
* With ``read_masks=True`` each record's :class:`~earthvlm.data.record.Mask` entries (PNG
  files inside the root, binary or instance-id maps, or uncompressed COCO RLE) are read
  and resized to the size the model sees their image at (:attr:`CollatedBatch.masks`,
  what ``EarthSeg(masks=..., mask_images=...)`` takes).
* Messages are rendered with the backbone's chat template: the TRL ``_training``
  variant, whose ``{% generation %}`` markers give the assistant-token mask. Labels are
  the input ids on assistant turns only; everything else (system and user turns, image
  tokens, padding) is -100.
* Each sample is encoded on its own, so a bad sample is attributed to its record, then
  the batch is padded: right for training, left for generation (``padding_side``).
  ``mm_token_type_ids`` is kept (transformers 5 requires it with ``image_grid_thw``).
* Every record is counted in the batch's :class:`~earthvlm.data.ledger.Ledger`: ok, or
  failed with a short reason (``path_escape``, ``missing_image``, ``unreadable_image``,
  ``image_too_large``, ``unsupported_modality``, ``unsupported_image``, ``stale_resize``,
  ``control_token``, ``too_long``, ``no_target`` and, with masks, ``unreadable_mask``,
  ``mask_image``). With ``on_error="drop"`` (training) a failed sample is left out of the
  batch but counted; with ``"raise"`` the first failure raises.

Dataset text may not contain the tokenizer's special tokens (``<|im_start|>``,
``<|image_pad|>``, ...): rendered verbatim they would forge turns or image slots. The
processor's ``sanitize_control_tokens`` cannot be combined with the assistant mask, so
such samples are refused (``control_token``).

This module stays torch-free (the ``data`` layer's rule): samples are encoded as NumPy
arrays and the processor's own ``BatchFeature`` class converts the padded batch to
tensors. In a batch, each image's patches are written straight into the batch's
``pixel_values`` (:class:`~earthvlm.data.pixels.PixelPlan`), not into a per-sample array
that padding would then concatenate (a copy of the whole float32 batch).

The text is tokenised before the image placeholders are expanded, by the tokenizer's
own chat template call, and each ``<|image_pad|>`` is then repeated in NumPy (what the
processor does by expanding the text and tokenising it again, with a Python loop over
every token for the assistant mask: 0.6-2.7 ms more per sample at 512-1024 px,
``BENCHMARKS.md``). The first sample a collator encodes is also encoded by the
processor, and the shortcut is kept only if every array is identical (else a warning,
and the processor path from then on).

``pixel_format="uint8"`` makes ``pixel_values`` the packed patches instead: ``(patches,
3 * p * p)`` uint8, the same rows in the same order, neither normalised nor repeated over
the temporal patch (an eighth of the float32 bytes). A backbone built or loaded by
``earthvlm.models`` expands them in its vision tower to exactly the float32 rows
(``earthvlm.models.pixels``); a model without that hook cannot read them.
"""

from __future__ import annotations

import copy
import re
import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, cast

import numpy as np
from PIL import Image
from rasterio.errors import NotGeoreferencedWarning

from earthvlm.data.augment import apply_resize, resize_instruction
from earthvlm.data.ledger import Ledger
from earthvlm.data.paths import resolve_within
from earthvlm.data.pixels import (
    BICUBIC,
    SOURCE_SIZE_KEY,
    ImageDecodeError,
    ImageTooLargeError,
    PixelPlan,
    PixelProcessor,
    decode_image,
    open_header,
)
from earthvlm.data.record import ImagePart, ImageRef, Mask, Message, Record
from earthvlm.data.resolution import smart_resize
from earthvlm.data.sensors import (
    FILLS,
    GROUPINGS,
    SAR_UNITS,
    DbScale,
    ReflectanceScale,
    SarUnits,
    SensorInputError,
    multispectral_frames,
    sar_frames,
)
from earthvlm.errors import EarthVLMError, PathEscapeError, RasterError, RecordError
from earthvlm.geo.raster import (
    DEFAULT_MAX_READ_PIXELS,
    DEFAULT_MAX_SCAN_PIXELS,
    RasterTooLargeError,
    open_raster,
    read_pixels,
    read_reduced,
    sniff_driver,
)
from earthvlm.scale.gsd import GSD

#: Label value the loss ignores (PyTorch's cross-entropy default).
IGNORE_INDEX = -100
#: Processor outputs with one entry per token (padded) and per image (concatenated).
_SEQ_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "labels")
_IMAGE_KEYS = ("pixel_values", "image_grid_thw")
#: ``pixel_values`` formats: the processor's float32 rows, or packed uint8 patches.
PIXEL_FORMATS = ("float32", "uint8")
#: What the collator does with an image over its decode budget (see the module docstring).
LARGE_IMAGES = ("reduce", "refuse")
#: Image modalities the collator reads.
READ_MODALITIES = ("optical", "sar", "multispectral")
#: Record ``meta`` keys that describe its SAR images (see the module docstring).
SAR_UNITS_KEY, SAR_SCALING_KEY = "sar_units", "sar_scaling"
#: Record ``meta`` keys that describe its multispectral images (see the module docstring).
MS_ORDER_KEY, MS_GROUPING_KEY, MS_FILL_KEY, MS_SCALE_KEY = (
    "ms_order", "ms_grouping", "ms_fill", "ms_scale",
)  # fmt: skip
_DB_FORMULA = re.compile(r"dB = value / 255 \* (\S+) \+ (\S+)")


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
        modalities: Per sample, its images' modalities in the order they appear (what
            ``EarthFusion``'s ``modalities=`` argument takes).
        masks: Per sample, its masks as ``(K, H, W)`` bool at the size the model sees
            their image (the image processor's resized size), or ``None`` (no masks, or
            ``read_masks=False``).
        mask_images: Per sample, the image its masks belong to, as an index over the
            batch's images (``EarthSeg``'s ``mask_images=``), or ``None``.
        layouts: Per sample, the :class:`~earthvlm.data.sensors.FrameLayout` (as a dict)
            of each multispectral image it shows, in order (empty when it has none).
        reduced_images: Per sample, how many of the images it shows were read at reduced
            size (over the decode budget: see the module docstring); what a report counts.
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
    modalities: list[list[str]] = field(default_factory=list)
    masks: list[np.ndarray | None] = field(default_factory=list)
    mask_images: list[int | None] = field(default_factory=list)
    layouts: list[list[dict[str, Any]]] = field(default_factory=list)
    reduced_images: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_reduced(self) -> int:
        """Images of this batch read at reduced size."""
        return sum(self.reduced_images)


@dataclass
class EncodedSample:
    """One record encoded, before padding.

    Attributes:
        arrays: Unpadded arrays (sequence keys 1-D, image keys as the processor gives them).
        gsds: One GSD per image, in the order the images appear.
        modalities: One modality per image, in the same order.
        target: Generation mode: the reference answer (``None`` when there is none).
        masks: ``(K, H, W)`` bool at the size the model sees their image, or ``None``.
        mask_image: The masks' image as a position among this sample's images, or ``None``.
        layouts: The frame layout (dict) of each multispectral image, in order.
        reduced: How many of its images were read at reduced size.
    """

    arrays: dict[str, np.ndarray]
    gsds: list[GSD]
    target: str | None
    modalities: list[str]
    masks: np.ndarray | None = None
    mask_image: int | None = None
    layouts: list[dict[str, Any]] = field(default_factory=list)
    reduced: int = 0


@dataclass(frozen=True)
class _Shown:
    """An image of a sample, in the order shown: its record index, ref and sizes."""

    index: int
    ref: ImageRef
    source_hw: tuple[int, int]  # as read from the file
    resized_hw: tuple[int, int]  # after the record's resize instruction, if any


@dataclass
class _Conversation:
    messages: list[dict[str, Any]]
    target: str | None
    shown: list[_Shown] = field(default_factory=list)
    layouts: list[dict[str, Any]] = field(default_factory=list)
    reduced: int = 0


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
        max_read_pixels: Pixel budget per image read (decompression bombs): the most
            pixels decoded into memory at once. Images over it are read reduced (or
            refused: ``large_images``).
        large_images: ``"reduce"`` (default): read an image over ``max_read_pixels`` at the
            size the model sees it, never decoded whole (see the module docstring);
            ``"refuse"``: refuse it (``unreadable_image``).
        max_scan_pixels: Most source pixels one reduced read may decode, in pieces (its
            time: a decompression bomb is refused on its header); about 32,768 px a side
            by default.
        image_cache: Keep this many decoded images (by path) for reuse: evaluation that
            asks many questions of one image (closed-set candidates, GSD sweeps) then
            decodes it once. 0 (default) keeps none, as training wants.
        read_masks: Read each record's masks into :attr:`CollatedBatch.masks`
            (referring segmentation). Off by default: records that carry masks for other
            uses are then batched without reading them.
        pixel_format: ``"float32"`` (default): ``pixel_values`` as the transformers
            processor gives them; ``"uint8"``: packed uint8 patches (see the module
            docstring), for a model whose vision tower expands them (every backbone
            ``earthvlm.models`` builds or loads).

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
        # keep the processor, not the backbone: DataLoader workers need no model copy
        # images go through earthvlm's numpy image processor: pixel_values identical to
        # transformers' (tests/data/test_pixels.py), 1.6-3x faster (BENCHMARKS.md); a
        # shallow copy, so the backbone's own processor (saved with checkpoints) is untouched
        self.processor, self.root = copy.copy(backbone.processor), Path(root)
        self.processor.image_processor = PixelProcessor.from_image_processor(
            backbone.processor.image_processor, max_read_pixels=max_read_pixels
        )
        # the same processor for batches: image grids at encoding (all the processor needs
        # to expand image tokens), patches written by _pad into the batch's one array
        self._planner = copy.copy(self.processor)
        self._planner.image_processor = _PlannedPixels(self.processor.image_processor)
        self.mode, self.padding_side, self.max_length = mode, padding_side, max_length
        self.on_error, self.return_tensors = on_error, return_tensors
        self.max_read_pixels = max_read_pixels
        self.large_images, self.max_scan_pixels = large_images, max_scan_pixels
        #: Image files this collator (this process) has read at reduced size.
        self.reduced_reads = 0
        self.image_cache, self.read_masks = image_cache, read_masks
        self.pixel_format = pixel_format
        self._pixel_dtype = np.dtype(np.uint8 if pixel_format == "uint8" else np.float32)
        self._images: OrderedDict[tuple[Any, ...], Image.Image] = OrderedDict()
        self.template = backbone.chat_template(training=mode == "train")
        tok = backbone.tokenizer
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.media_ids = {
            i
            for t in ("<|image_pad|>", "<|video_pad|>")
            if (i := tok.convert_tokens_to_ids(t)) is not None and i != tok.unk_token_id
        }
        self._feature_type: Any = None
        # None: the text shortcut (_encode_text) is not yet checked against the processor
        self._fast_text: bool | None = None
        self._image_pad = tok.convert_tokens_to_ids(getattr(backbone.processor, "image_token",
                                                            "<|image_pad|>"))  # fmt: skip
        self.control = sorted(
            {str(t) for t in tok.added_tokens_decoder.values() if getattr(t, "special", False)}
            | {str(t) for t in getattr(tok, "all_special_tokens", [])}
        )

    # -- one record -----------------------------------------------------------------------

    def load_image(self, ref: ImageRef, meta: Mapping[str, Any] | None = None) -> Image.Image:
        """Read one image of a record as a PIL RGB image (from the cache when enabled).

        Args:
            ref: The image.
            meta: The record's ``meta``: how its SAR images are scaled (``sar_units``,
                ``sar_scaling``); ignored for optical images.

        Raises:
            SampleError: With reason ``path_escape``, ``missing_image``,
                ``unreadable_image``, ``unsupported_modality`` or ``unsupported_image``.
        """
        sar = _sar_options(ref, meta or {}) if ref.modality == "sar" else None
        if not self.image_cache:
            return self._read_image(ref, sar)
        key = (ref.path, ref.modality, sar)
        if key in self._images:
            self._images.move_to_end(key)
            return self._images[key]
        image = self._read_image(ref, sar)
        self._images[key] = image
        if len(self._images) > self.image_cache:
            self._images.popitem(last=False)
        return image

    def load_frames(
        self, ref: ImageRef, meta: Mapping[str, Any] | None = None
    ) -> tuple[list[Image.Image], dict[str, Any]]:
        """Read a multispectral image as its RGB-like frames and their layout (a dict).

        Raises:
            SampleError: As :meth:`load_image`; ``unsupported_image`` for bad band
                names, options or a missing ``ms_scale``.
        """
        options = _ms_options(ref, meta or {})
        key = (ref.path, ref.modality, repr(options))
        if self.image_cache and key in self._images:
            self._images.move_to_end(key)
            return self._images[key]  # type: ignore[return-value]
        pixels, source_hw = self._read_pixels(ref)
        order, grouping, fill, scale = options
        if scale is None:
            if not (np.issubdtype(pixels.dtype, np.integer) and pixels.dtype.itemsize > 1):
                raise SampleError(
                    "unsupported_image",
                    f"{ref.path}: multispectral values of {pixels.dtype}; say how they map to "
                    f"reflectance in the record's meta[{MS_SCALE_KEY!r}] (dn_per_unit, "
                    "offset_dn, max_reflectance)",
                )
            scale = ReflectanceScale()
        try:
            frames = multispectral_frames(
                pixels, bands=ref.bands or [f"band{i + 1}" for i in range(pixels.shape[0])],
                order=order, grouping=grouping, fill=fill, scale=scale, gsd=ref.gsd,
            )  # fmt: skip
        except SensorInputError as e:
            raise SampleError("unsupported_image", f"{ref.path}: {e}") from None
        images = [_mark_reduced(Image.fromarray(f, mode="RGB"), source_hw) for f in frames.frames]
        out = (images, frames.layout.to_dict())
        if self.image_cache:
            self._images[key] = out  # type: ignore[assignment]
            if len(self._images) > self.image_cache:
                self._images.popitem(last=False)
        return out

    def _path(self, ref: ImageRef) -> Path:
        try:
            path = resolve_within(self.root, ref.path)
        except PathEscapeError as e:
            raise SampleError("path_escape", str(e)) from None
        if not path.is_file():
            raise SampleError("missing_image", f"{ref.path}: no such file under {self.root}")
        return path

    def _read_plain_rgb(self, ref: ImageRef) -> Image.Image | None:
        """An RGB JPEG or PNG decoded by PIL, as the transformers processor decodes it;
        ``None`` for other formats (read through GDAL).

        Why not GDAL: its JPEG decoder upsamples 4:2:0 chroma differently (a fifth of the
        values differ, by up to ~60 levels, from what the model sees through
        transformers) and takes ~3x PIL's time (``benchmarks/bench_collate.py``).
        """
        path = self._path(ref)
        try:
            if sniff_driver(path) not in ("JPEG", "PNG"):
                return None
            with open_header(path) as im:  # no Pillow bomb check: the budget decides
                bands = im.getbands()
            if bands != ("R", "G", "B"):
                raise SampleError(
                    "unsupported_image",
                    f"{ref.path}: {len(bands)} band(s) ({''.join(bands)}); the collator takes "
                    "3-band uint8 RGB optical images for now",
                )
            reduce = self._target_size if self.large_images == "reduce" else None
            image = decode_image(path, max_pixels=self.max_read_pixels, reduce_to=reduce,
                                 max_scan_pixels=self.max_scan_pixels)  # fmt: skip
        except ImageTooLargeError as e:
            raise SampleError("image_too_large", str(e)) from None
        except ValueError as e:  # the processor's size rule (aspect ratio over 200)
            raise SampleError("unsupported_image", f"{ref.path}: {e}") from None
        except (RasterError, ImageDecodeError, OSError) as e:
            raise SampleError("unreadable_image", str(e)) from None
        if SOURCE_SIZE_KEY in image.info:
            self.reduced_reads += 1
        return image

    def _target_size(self, height: int, width: int) -> tuple[int, int]:
        """The ``(height, width)`` the image processor resizes a source of this size to."""
        return cast(PixelProcessor, self.processor.image_processor).target_size(height, width)

    def _read_pixels(self, ref: ImageRef) -> tuple[np.ndarray, tuple[int, int] | None]:
        """The file's bands ``(b, h, w)``, and its ``(height, width)`` when it was read
        reduced (to the processor's size: over the budget), else ``None``."""
        path = self._path(ref)
        try:
            with warnings.catch_warnings():  # plain PNG/JPEG chips have no georeferencing
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with open_raster(path) as ds:
                    source_hw = (ds.height, ds.width)
                    small = source_hw[0] * source_hw[1] <= self.max_read_pixels
                    if small or self.large_images == "refuse":
                        return read_pixels(ds, max_pixels=self.max_read_pixels), None
                    pixels = read_reduced(ds, self._target_size(*source_hw),
                                          max_pixels=self.max_read_pixels,
                                          max_scan_pixels=self.max_scan_pixels)  # fmt: skip
        except RasterTooLargeError as e:
            raise SampleError("image_too_large", str(e)) from None
        except RasterError as e:
            raise SampleError("unreadable_image", str(e)) from None
        except ValueError as e:  # the processor's size rule (aspect ratio over 200)
            raise SampleError("unsupported_image", f"{ref.path}: {e}") from None
        self.reduced_reads += 1
        return pixels, source_hw

    def _read_image(
        self, ref: ImageRef, sar: tuple[str | None, DbScale] | None = None
    ) -> Image.Image:
        if ref.modality not in ("optical", "sar"):
            what = (
                "several frames (Collator.load_frames)" if ref.modality in READ_MODALITIES else ""
            )
            raise SampleError(
                "unsupported_modality",
                f"{ref.path}: modality {ref.modality!r} is not one image: "
                f"{what or 'not supported by the collator; convert it to RGB'}",
            )
        if ref.modality == "optical" and (image := self._read_plain_rgb(ref)) is not None:
            return image
        pixels, source_hw = self._read_pixels(ref)
        if ref.modality == "sar":
            units, scale = sar or (None, DbScale())
            return _mark_reduced(_sar_image(ref, pixels, units, scale), source_hw)
        if pixels.shape[0] != 3 or pixels.dtype != np.uint8:
            raise SampleError(
                "unsupported_image",
                f"{ref.path}: {pixels.shape[0]} band(s) of {pixels.dtype}; the collator takes "
                "3-band uint8 RGB optical images for now",
            )
        rgb = Image.fromarray(np.ascontiguousarray(pixels.transpose(1, 2, 0)), mode="RGB")
        return _mark_reduced(rgb, source_hw)

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

    def _conversation(self, rec: Record) -> _Conversation:
        """HF-style messages with images loaded, the shown images in order, the target."""
        messages: list[Message] = list(rec.messages)
        target = None
        if self.mode == "generate":
            last = max((i for i, m in enumerate(messages) if m.role == "assistant"), default=None)
            if last is not None:
                target = messages[last].text()
                messages = messages[:last]
        elif not any(m.role == "assistant" for m in messages):
            raise SampleError("no_target", f"record {rec.id}: no assistant turn to learn from")
        out = _Conversation(messages=[], target=target)
        for m in messages:
            if isinstance(m.content, str):
                out.messages.append({"role": m.role, "content": m.content})
                continue
            parts: list[dict[str, Any]] = []
            for p in m.content:
                if isinstance(p, ImagePart):
                    ref = rec.images[p.index]
                    if ref.modality == "multispectral":  # one image per frame, in order
                        frames, layout = self.load_frames(ref, rec.meta)
                        out.layouts.append(layout)
                    else:
                        frames = [self.load_image(ref, rec.meta)]
                    for read in frames:
                        source = read.info.get(SOURCE_SIZE_KEY)  # (w, h): read reduced
                        try:  # a random resize (earthvlm.data.augment) is applied here
                            if source is None:
                                image = apply_resize(read, rec, p.index)
                            else:
                                image = self._resize_reduced(read, rec, p.index, source)
                        except RecordError as e:
                            raise SampleError("stale_resize", str(e)) from None
                        parts.append({"type": "image", "image": image})
                        w, h = source or read.size  # the file's size (masks are checked on it)
                        out.shown.append(_Shown(p.index, ref, (h, w),
                                                (image.height, image.width)))  # fmt: skip
                        out.reduced += source is not None
                else:
                    parts.append({"type": "text", "text": p.text})
            out.messages.append({"role": m.role, "content": parts})
        return out

    def _resize_reduced(
        self, read: Image.Image, rec: Record, index: int, source_wh: tuple[int, int]
    ) -> Image.Image:
        """:func:`~earthvlm.data.augment.apply_resize` for an image read reduced (already at
        the processor's size for its file): resized to the processor's size for the
        instruction's size, so the model sees what it would see after a full decode."""
        entry = resize_instruction(rec, index)
        if entry is None:
            return read
        source, target = tuple(entry["source_wh"]), tuple(entry["wh"])
        if source != tuple(source_wh):
            raise RecordError(
                f"record {rec.id}: image {index} is {source_wh[0]}x{source_wh[1]} px but its "
                f"resize instruction was made for {source[0]}x{source[1]}; re-augment the record"
            )
        th, tw = self._target_size(target[1], target[0])
        return read if read.size == (tw, th) else read.resize((tw, th), BICUBIC)

    def encode(self, rec: Record) -> tuple[dict[str, np.ndarray], list[GSD], str | None]:
        """One record as unpadded arrays (sequence keys 1-D), its GSDs and its target.

        :meth:`encode_sample` gives the rest (modalities, masks).

        Raises:
            SampleError: If the record cannot become a sample (see the module docstring).
        """
        s = self.encode_sample(rec)
        return s.arrays, s.gsds, s.target

    def encode_sample(self, rec: Record) -> EncodedSample:
        """One record as an :class:`EncodedSample` (masks read when ``read_masks``).

        Raises:
            SampleError: If the record cannot become a sample (see the module docstring).
        """
        return self._encode(rec, planned=False)

    def _encode(self, rec: Record, *, planned: bool) -> EncodedSample:
        """:meth:`encode_sample`; ``planned``: ``pixel_values`` as a
        :class:`~earthvlm.data.pixels.PixelPlan`, written by :meth:`_pad`."""
        self._check_text(rec)
        conv = self._conversation(rec)
        train = self.mode == "train"
        # packed pixels come from a plan (PixelProcessor.__call__ writes float32 only)
        plan = planned or self.pixel_format != "float32"
        processor = self._planner if plan else self.processor
        out = self._encode_text(conv.messages) if self._fast_text is not False else None
        if out is None or self._fast_text is None:
            ref = processor.apply_chat_template(
                conv.messages,
                chat_template=self.template,
                tokenize=True,
                return_dict=True,
                # lists, made arrays below: with "np" transformers flattens every token list
                # (twice with the assistant mask) only to test it for emptiness
                return_tensors=None,
                return_assistant_tokens_mask=train,
                add_generation_prompt=not train,
            )
            self._feature_type = type(ref)
            if out is not None:  # the first sample: the shortcut must give the same arrays
                self._fast_text = _same_text(out, ref)
                if not self._fast_text:
                    warnings.warn(
                        "the collator's text shortcut differs from the processor for this "
                        "backbone's tokenizer or template; using the processor (slower)",
                        stacklevel=2,
                    )
            out = ref
        sample: dict[str, np.ndarray] = {}
        for key, value in out.items():
            if isinstance(value, PixelPlan) and not planned:
                value = self._write_pixels([value])
            arr = value if isinstance(value, PixelPlan) else np.asarray(value)
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
        masks, mask_image = self._masks(rec, conv.shown) if self.read_masks else (None, None)
        return EncodedSample(
            arrays=sample,
            gsds=[s.ref.gsd for s in conv.shown],
            target=conv.target,
            modalities=[s.ref.modality for s in conv.shown],
            masks=masks,
            mask_image=mask_image,
            layouts=conv.layouts,
            reduced=conv.reduced,
        )

    def _encode_text(self, messages: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The processor's ``apply_chat_template`` output (sequences as ``(1, n)``), from the
        unexpanded prompt: tokenised by the tokenizer's chat template call (assistant mask
        included), each ``<|image_pad|>`` then repeated ``grid / merge**2`` times. ``None``
        when the prompt's placeholders do not match the images (the processor decides)."""
        train = self.mode == "train"
        images = [part["image"] for m in messages if isinstance(m["content"], list)
                  for part in m["content"] if part.get("type") == "image"]  # fmt: skip
        enc = self.processor.tokenizer.apply_chat_template(
            messages,
            chat_template=self.template,
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=train,
            add_generation_prompt=not train,
        )
        ids = np.asarray(enc["input_ids"], dtype=np.int64)
        pads = np.flatnonzero(ids == self._image_pad)
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
        if train:
            out["assistant_masks"] = expand(enc["assistant_masks"])
        return out

    # -- masks ----------------------------------------------------------------------------

    def _masks(self, rec: Record, shown: list[_Shown]) -> tuple[np.ndarray | None, int | None]:
        """``(K, H, W)`` bool at the model's size of the masks' image, and that image's
        position among the sample's images."""
        if not rec.masks:
            return None, None
        images = sorted({m.image for m in rec.masks})
        position = [k for k, s in enumerate(shown) if s.index == images[0]]
        if len(images) > 1 or not position:
            what = f"images {images}" if len(images) > 1 else f"image {images[0]}"
            raise SampleError(
                "mask_image",
                f"record {rec.id}: its masks belong to {what}; a sample's masks must belong to "
                "one image the model is shown (split the record per image)",
            )
        s = shown[position[0]]
        ip = self.processor.image_processor
        # the size the processor resizes this image to (the same rule as PixelProcessor)
        seen_hw = smart_resize(*s.resized_hw, ip.factor, ip.min_pixels, ip.max_pixels)
        out = np.zeros((len(rec.masks), *seen_hw), dtype=bool)
        for k, mask in enumerate(rec.masks):
            source = self._read_mask(rec, mask)
            if source.shape != s.source_hw:
                raise SampleError(
                    "unreadable_mask",
                    f"record {rec.id}: mask {k} is {source.shape[1]}x{source.shape[0]} px but "
                    f"its image {s.ref.path} is {s.source_hw[1]}x{s.source_hw[0]} px",
                )
            out[k] = _resize_mask(source, seen_hw)
        return out, position[0]

    def _read_mask(self, rec: Record, mask: Mask) -> np.ndarray:
        """One mask at its file's size, ``(H, W)`` bool."""
        if mask.rle is not None:
            try:
                return _decode_rle(mask.rle, self.max_read_pixels)
            except (TypeError, ValueError) as e:
                raise SampleError("unreadable_mask", f"record {rec.id}: mask RLE: {e}") from None
        try:
            path = resolve_within(self.root, str(mask.path))
        except PathEscapeError as e:
            raise SampleError("path_escape", str(e)) from None
        if not path.is_file():
            raise SampleError("unreadable_mask", f"{mask.path}: no such file under {self.root}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with open_raster(path) as ds:
                    values = read_pixels(ds, max_pixels=self.max_read_pixels)
        except RasterError as e:
            raise SampleError("unreadable_mask", str(e)) from None
        if values.shape[0] != 1 or not np.issubdtype(values.dtype, np.integer):
            raise SampleError(
                "unreadable_mask",
                f"{mask.path}: {values.shape[0]} band(s) of {values.dtype}; a mask is one band "
                "of integers (binary, or instance ids with the mask's `instance`)",
            )
        plane = values[0]
        return plane == mask.instance if mask.instance is not None else plane > 0

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
        inputs = self._pad([s.arrays for s in samples]) if samples else None
        if inputs is not None:
            # the processor's own BatchFeature converts to tensors: no torch import here
            inputs = self._feature_type(data=inputs, tensor_type=self.return_tensors)
        mask_images: list[int | None] = []
        base = 0
        for s in samples:
            mask_images.append(None if s.mask_image is None else base + s.mask_image)
            base += len(s.modalities)
        return CollatedBatch(
            inputs=inputs,
            gsds=[g for s in samples for g in s.gsds],
            ids=ids,
            targets=[s.target or "" for s in samples] if self.mode == "generate" else None,
            ledger=ledger,
            failures=failures,
            modalities=[s.modalities for s in samples],
            masks=[s.masks for s in samples],
            mask_images=mask_images,
            layouts=[s.layouts for s in samples],
            reduced_images=[s.reduced for s in samples],
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
            if parts and isinstance(parts[0], PixelPlan):
                out[key] = self._write_pixels(cast(list[PixelPlan], parts))
            elif parts:
                out[key] = np.concatenate(parts, axis=0)
        return out

    def _write_pixels(self, plans: list[PixelPlan]) -> np.ndarray:
        """The plans' patches in one ``pixel_values`` array, in :attr:`pixel_format`."""
        pp = plans[0].processor
        width = pp.packed_dim if self.pixel_format == "uint8" else pp.patch_dim
        total = sum(p.num_patches for p in plans)
        pixels = np.empty((total, width), dtype=self._pixel_dtype)
        start = 0
        for plan in plans:
            plan.write(pixels[start : start + plan.num_patches])
            start += plan.num_patches
        return pixels


class _PlannedPixels:
    """A :class:`~earthvlm.data.pixels.PixelProcessor` that plans instead of writing:
    its ``pixel_values`` is a :class:`~earthvlm.data.pixels.PixelPlan`."""

    def __init__(self, pixels: PixelProcessor) -> None:
        self.pixels = pixels

    def __getattr__(self, name: str) -> Any:  # merge_size, fetch_images, ...
        if name == "pixels":  # not set yet: while unpickling (DataLoader workers)
            raise AttributeError(name)
        return getattr(self.pixels, name)

    def __call__(self, images: Any, **kwargs: Any) -> dict[str, Any]:
        plan = self.pixels.plan(images, **kwargs)
        return {"pixel_values": plan, "image_grid_thw": plan.grids}


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


def _sar_options(ref: ImageRef, meta: Mapping[str, Any]) -> tuple[str | None, DbScale]:
    """A SAR image's units (``None``: decided by dtype) and dB map, from record ``meta``."""
    units = meta.get(SAR_UNITS_KEY)
    if units is not None and units not in SAR_UNITS:
        raise SampleError(
            "unsupported_image",
            f"{ref.path}: meta[{SAR_UNITS_KEY!r}]={units!r}; use one of {SAR_UNITS}",
        )
    formula = meta.get(SAR_SCALING_KEY)
    if formula is None:
        return units, DbScale()
    match = _DB_FORMULA.fullmatch(str(formula).strip())
    try:
        if match is None:
            raise ValueError("not of that form")
        return units, DbScale(min_db=float(match[2]), span_db=float(match[1]))
    except ValueError as e:
        raise SampleError(
            "unsupported_image",
            f"{ref.path}: meta[{SAR_SCALING_KEY!r}]={formula!r} ({e}); write it as "
            f"{DbScale().formula()!r}",
        ) from None


def _ms_options(
    ref: ImageRef, meta: Mapping[str, Any]
) -> tuple[tuple[str, ...] | None, str, str, ReflectanceScale | None]:
    """A multispectral image's band order, grouping, fill and scale, from record ``meta``."""
    order = meta.get(MS_ORDER_KEY)
    grouping = meta.get(MS_GROUPING_KEY, "three_band")
    fill = meta.get(MS_FILL_KEY, "zero")
    raw = meta.get(MS_SCALE_KEY)
    problem = None
    if order is not None and (
        not isinstance(order, list) or not all(isinstance(b, str) for b in order)
    ):
        problem = f"meta[{MS_ORDER_KEY!r}]={order!r}: give a list of band names"
    elif grouping not in GROUPINGS:
        problem = f"meta[{MS_GROUPING_KEY!r}]={grouping!r}: use one of {GROUPINGS}"
    elif fill not in FILLS:
        problem = f"meta[{MS_FILL_KEY!r}]={fill!r}: use one of {FILLS}"
    scale = None
    if problem is None and raw is not None:
        fields = set(ReflectanceScale.__dataclass_fields__)
        try:
            if not isinstance(raw, Mapping) or set(raw) - fields:
                raise ValueError(f"a mapping of {sorted(fields)}")
            scale = ReflectanceScale(**{k: float(v) for k, v in raw.items()})
        except (TypeError, ValueError) as e:
            problem = f"meta[{MS_SCALE_KEY!r}]={raw!r}: {e}"
    if problem is not None:
        raise SampleError("unsupported_image", f"{ref.path}: {problem}")
    return (tuple(order) if order is not None else None), grouping, fill, scale


def _sar_image(ref: ImageRef, pixels: np.ndarray, units: str | None, scale: DbScale) -> Image.Image:
    """One- or two-band SAR as the zero-padded pseudo-RGB frame (EarthMind App. H)."""
    if units is None:
        if pixels.dtype == np.uint8:
            units = "uint8_db"
        elif np.issubdtype(pixels.dtype, np.floating):
            units = "db"
        else:
            raise SampleError(
                "unsupported_image",
                f"{ref.path}: SAR of {pixels.dtype}: say what it holds in the record's "
                f"meta[{SAR_UNITS_KEY!r}] (one of {SAR_UNITS})",
            )
    try:
        frames = sar_frames(pixels, bands=ref.bands, units=cast(SarUnits, units), scale=scale)
    except SensorInputError as e:
        raise SampleError("unsupported_image", f"{ref.path}: {e}") from None
    return Image.fromarray(frames.frames[0], mode="RGB")


def _mark_reduced(image: Image.Image, source_hw: tuple[int, int] | None) -> Image.Image:
    """``image``, marked as read reduced from a ``source_hw`` file when that is given."""
    if source_hw is not None:
        image.info[SOURCE_SIZE_KEY] = (source_hw[1], source_hw[0])
    return image


def _resize_mask(mask: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """A bool mask at ``size_hw``: area average, then at least half covered (a pixel
    keeps its class when most of it is the object; nearest would drop thin objects
    unevenly when shrinking)."""
    if mask.shape == size_hw:
        return mask
    image = Image.fromarray(mask.astype(np.uint8) * 255, mode="L")
    resized = image.resize((size_hw[1], size_hw[0]), Image.Resampling.BOX)
    return np.asarray(resized) >= 128


def _decode_rle(rle: Mapping[str, Any], max_pixels: int) -> np.ndarray:
    """Uncompressed COCO RLE (``counts`` a list, runs alternate 0/1, column-major)."""
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, str | bytes):
        raise ValueError(
            "compressed RLE (counts as a string) is not read here; store the mask as a PNG "
            "or as uncompressed RLE (counts a list of run lengths)"
        )
    if h < 1 or w < 1 or h * w > max_pixels:
        raise ValueError(f"size {h}x{w} is empty or above the budget of {max_pixels:,} px")
    runs = np.asarray(counts, dtype=np.int64)
    if runs.ndim != 1 or (runs < 0).any() or int(runs.sum()) != h * w:
        raise ValueError(f"run lengths must be >= 0 and sum to {h}x{w} = {h * w}")
    values = np.zeros(len(runs), dtype=bool)
    values[1::2] = True
    return np.repeat(values, runs).reshape(w, h).T


__all__ = [
    "IGNORE_INDEX",
    "LARGE_IMAGES",
    "PIXEL_FORMATS",
    "READ_MODALITIES",
    "BackboneLike",
    "CollatedBatch",
    "Collator",
    "EncodedSample",
    "SampleError",
]
