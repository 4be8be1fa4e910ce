"""Reading a record's images: paths kept inside the root, a decode budget, reduced reads.

Optical JPEG and PNG files are decoded by PIL, as the transformers processor decodes
them; everything else goes through GDAL (:func:`~earthvlm.geo.raster.open_raster`). An
image over the budget is read at the size the model sees it, never decoded whole, or
refused (``large_images``). SAR and multispectral pixels become frames in
:mod:`earthvlm.data.collate.frames`. Decoded images may be kept in a small LRU cache.
``docs/collation.md`` tells the whole story.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image
from rasterio.errors import NotGeoreferencedWarning

from earthvlm.data.augment import apply_resize, resize_instruction
from earthvlm.data.collate.frames import (
    SarOptions,
    ms_images,
    ms_options,
    sar_image,
    sar_options,
)
from earthvlm.data.collate.sample import SampleError, Shown
from earthvlm.data.paths import resolve_within
from earthvlm.data.pixels import (
    BICUBIC,
    SOURCE_SIZE_KEY,
    ImageDecodeError,
    ImageTooLargeError,
    PixelProcessor,
    decode_image,
    open_header,
)
from earthvlm.data.record import ImageRef, Record
from earthvlm.data.sensors import DbScale
from earthvlm.errors import PathEscapeError, RasterError, RecordError
from earthvlm.geo.raster import (
    RasterTooLargeError,
    open_raster,
    read_pixels,
    read_reduced,
    sniff_driver,
)

#: What the collator does with an image over its decode budget.
LARGE_IMAGES = ("reduce", "refuse")
#: Image modalities the collator reads.
READ_MODALITIES = ("optical", "sar", "multispectral")

_T = TypeVar("_T")


@dataclass(frozen=True)
class ReadBudget:
    """How much of a file one read may decode (the collator's arguments of these names)."""

    max_read_pixels: int
    max_scan_pixels: int
    large_images: str  # one of LARGE_IMAGES


class ImageReader:
    """Reads the images of records under ``root`` as PIL RGB images.

    Args:
        root: The dataset root; image paths are resolved inside it.
        budget: The decode budget.
        pixels: The image processor: the size it resizes to is the size of a reduced read.
        cache_size: Decoded images kept (by path, modality and options); 0 keeps none.
    """

    def __init__(
        self, root: Path, budget: ReadBudget, pixels: PixelProcessor, cache_size: int
    ) -> None:
        self.root, self.budget, self.pixels, self.cache_size = root, budget, pixels, cache_size
        self.cache: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        #: Image files this reader (this process) has read at reduced size.
        self.reduced_reads = 0

    # -- what a sample shows --------------------------------------------------------------

    def show(
        self, rec: Record, index: int
    ) -> tuple[list[Image.Image], list[Shown], dict[str, Any] | None]:
        """Image ``index`` of ``rec`` as the model is shown it: its images (one, or a
        multispectral image's frames) after the record's resize instruction, what each is,
        and the frames' layout (``None`` for one image).

        Raises:
            SampleError: As :meth:`load_image` and :meth:`load_frames`; ``stale_resize``
                for a resize instruction made for a file of another size.
        """
        ref = rec.images[index]
        layout = None
        if ref.modality == "multispectral":  # one image per frame, in order
            reads, layout = self.load_frames(ref, rec.meta)
        else:
            reads = [self.load_image(ref, rec.meta)]
        images, shown = [], []
        for read in reads:
            source = read.info.get(SOURCE_SIZE_KEY)  # (w, h): read reduced
            try:  # a random resize (earthvlm.data.augment) is applied here
                if source is None:
                    image = apply_resize(read, rec, index)
                else:
                    image = self._resize_reduced(read, rec, index, source)
            except RecordError as e:
                raise SampleError("stale_resize", str(e)) from None
            w, h = source or read.size  # the file's size (masks are checked on it)
            images.append(image)
            shown.append(Shown(index, ref, (h, w), (image.height, image.width), source is not None))
        return images, shown, layout

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
        th, tw = self.pixels.target_size(target[1], target[0])
        return read if read.size == (tw, th) else read.resize((tw, th), BICUBIC)

    # -- one file -------------------------------------------------------------------------

    def load_image(self, ref: ImageRef, meta: Mapping[str, Any] | None = None) -> Image.Image:
        """:meth:`earthvlm.data.collate.Collator.load_image`."""
        sar = sar_options(ref, meta or {}) if ref.modality == "sar" else None
        return self._cached((ref.path, ref.modality, sar), lambda: self._read_image(ref, sar))

    def load_frames(
        self, ref: ImageRef, meta: Mapping[str, Any] | None = None
    ) -> tuple[list[Image.Image], dict[str, Any]]:
        """:meth:`earthvlm.data.collate.Collator.load_frames`."""
        options = ms_options(ref, meta or {})

        def read() -> tuple[list[Image.Image], dict[str, Any]]:
            pixels, source_hw = self._read_pixels(ref)
            frames, layout = ms_images(ref, pixels, options)
            return [_mark_reduced(f, source_hw) for f in frames], layout

        return self._cached((ref.path, ref.modality, repr(options)), read)

    def _cached(self, key: tuple[Any, ...], read: Callable[[], _T]) -> _T:
        """``read()``, or what it gave for ``key`` before (least recently used goes first)."""
        if not self.cache_size:
            return read()
        if key in self.cache:
            self.cache.move_to_end(key)
            return self.cache[key]  # type: ignore[no-any-return]
        value = read()
        self.cache[key] = value
        if len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)
        return value

    def path(self, ref: ImageRef) -> Path:
        """The image's file, inside the root.

        Raises:
            SampleError: ``path_escape`` or ``missing_image``.
        """
        try:
            path = resolve_within(self.root, ref.path)
        except PathEscapeError as e:
            raise SampleError("path_escape", str(e)) from None
        if not path.is_file():
            raise SampleError("missing_image", f"{ref.path}: no such file under {self.root}")
        return path

    def _read_image(self, ref: ImageRef, sar: SarOptions | None = None) -> Image.Image:
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
            return _mark_reduced(sar_image(ref, pixels, sar or (None, DbScale())), source_hw)
        if pixels.shape[0] != 3 or pixels.dtype != np.uint8:
            raise SampleError(
                "unsupported_image",
                f"{ref.path}: {pixels.shape[0]} band(s) of {pixels.dtype}; the collator takes "
                "3-band uint8 RGB optical images for now",
            )
        rgb = Image.fromarray(np.ascontiguousarray(pixels.transpose(1, 2, 0)), mode="RGB")
        return _mark_reduced(rgb, source_hw)

    def _read_plain_rgb(self, ref: ImageRef) -> Image.Image | None:
        """An RGB JPEG or PNG decoded by PIL, as the transformers processor decodes it;
        ``None`` for other formats (read through GDAL).

        Why not GDAL: its JPEG decoder upsamples 4:2:0 chroma differently (a fifth of the
        values differ, by up to ~60 levels, from what the model sees through
        transformers) and takes ~3x PIL's time (``benchmarks/bench_collate.py``).
        """
        path = self.path(ref)
        budget = self.budget
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
            image = decode_image(
                path,
                max_pixels=budget.max_read_pixels,
                reduce_to=self.pixels.target_size if budget.large_images == "reduce" else None,
                max_scan_pixels=budget.max_scan_pixels,
            )
        except ImageTooLargeError as e:
            raise SampleError("image_too_large", str(e)) from None
        except ValueError as e:  # the processor's size rule (aspect ratio over 200)
            raise SampleError("unsupported_image", f"{ref.path}: {e}") from None
        except (RasterError, ImageDecodeError, OSError) as e:
            raise SampleError("unreadable_image", str(e)) from None
        if SOURCE_SIZE_KEY in image.info:
            self.reduced_reads += 1
        return image

    def _read_pixels(self, ref: ImageRef) -> tuple[np.ndarray, tuple[int, int] | None]:
        """The file's bands ``(b, h, w)``, and its ``(height, width)`` when it was read
        reduced (to the processor's size: over the budget), else ``None``."""
        path = self.path(ref)
        budget = self.budget
        try:
            with warnings.catch_warnings():  # plain PNG/JPEG chips have no georeferencing
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with open_raster(path) as ds:
                    source_hw = (ds.height, ds.width)
                    small = source_hw[0] * source_hw[1] <= budget.max_read_pixels
                    if small or budget.large_images == "refuse":
                        return read_pixels(ds, max_pixels=budget.max_read_pixels), None
                    pixels = read_reduced(
                        ds,
                        self.pixels.target_size(*source_hw),
                        max_pixels=budget.max_read_pixels,
                        max_scan_pixels=budget.max_scan_pixels,
                    )
        except RasterTooLargeError as e:
            raise SampleError("image_too_large", str(e)) from None
        except RasterError as e:
            raise SampleError("unreadable_image", str(e)) from None
        except ValueError as e:  # the processor's size rule (aspect ratio over 200)
            raise SampleError("unsupported_image", f"{ref.path}: {e}") from None
        self.reduced_reads += 1
        return pixels, source_hw


def _mark_reduced(image: Image.Image, source_hw: tuple[int, int] | None) -> Image.Image:
    """``image``, marked as read reduced from a ``source_hw`` file when that is given."""
    if source_hw is not None:
        image.info[SOURCE_SIZE_KEY] = (source_hw[1], source_hw[0])
    return image
