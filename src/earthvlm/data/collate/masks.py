"""Masks for ``[SEG]``: a record's masks read and resized to the size the model sees their
image at (what ``EarthSeg(masks=..., mask_images=...)`` takes).

A mask is a PNG inside the root (binary, or instance ids with the mask's ``instance``) or
uncompressed COCO RLE. A sample's masks belong to one image it shows.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from rasterio.errors import NotGeoreferencedWarning

from earthvlm.data.collate.sample import SampleError, Shown
from earthvlm.data.paths import resolve_within
from earthvlm.data.pixels import PixelProcessor
from earthvlm.data.record import Mask, Record
from earthvlm.data.resolution import smart_resize
from earthvlm.errors import PathEscapeError, RasterError
from earthvlm.geo.raster import open_raster, read_pixels


class MaskReader:
    """Reads the masks of records under ``root``.

    Args:
        root: The dataset root; mask paths are resolved inside it.
        pixels: The image processor: masks are resized to the size it resizes their image to.
        max_read_pixels: Pixel budget of one mask.
    """

    def __init__(self, root: Path, pixels: PixelProcessor, max_read_pixels: int) -> None:
        self.root, self.pixels, self.max_read_pixels = root, pixels, max_read_pixels

    def read(self, rec: Record, shown: list[Shown]) -> tuple[np.ndarray | None, int | None]:
        """``(K, H, W)`` bool at the model's size of the masks' image, and that image's
        position among the sample's images (``shown``); ``(None, None)`` without masks.

        Raises:
            SampleError: ``mask_image`` (masks of several images, or of one not shown),
                ``unreadable_mask`` or ``path_escape``.
        """
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
        ip = self.pixels
        # the size the processor resizes this image to (the same rule as PixelProcessor)
        seen_hw = smart_resize(*s.resized_hw, ip.factor, ip.min_pixels, ip.max_pixels)
        out = np.zeros((len(rec.masks), *seen_hw), dtype=bool)
        for k, mask in enumerate(rec.masks):
            source = self._read_one(rec, mask)
            if source.shape != s.source_hw:
                raise SampleError(
                    "unreadable_mask",
                    f"record {rec.id}: mask {k} is {source.shape[1]}x{source.shape[0]} px but "
                    f"its image {s.ref.path} is {s.source_hw[1]}x{s.source_hw[0]} px",
                )
            out[k] = _resize_mask(source, seen_hw)
        return out, position[0]

    def _read_one(self, rec: Record, mask: Mask) -> np.ndarray:
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
