"""Qwen-VL image preprocessing in NumPy: decode -> resize -> normalise -> patches.

:class:`PixelProcessor` produces exactly the ``pixel_values`` and ``image_grid_thw`` of
transformers' ``Qwen2VLImageProcessorPil`` (the image processor of both Qwen2.5-VL and
Qwen3-VL), bit for bit, in a fraction of its time (``benchmarks/bench_processor.py``:
what remains is mostly JPEG decoding and, where the size changes, PIL's resize, which
both share). The steps and where they match it:

1. *RGB*: PIL images are converted as the processor converts them (transparency
   composited onto white, every other mode through ``Image.convert("RGB")``); arrays are
   ``(H, W)`` or channels-last ``(H, W, 1|3|4)`` uint8, converted with the processor's
   arithmetic. Files are decoded with PIL (EXIF orientation applied, as transformers'
   ``load_image`` does) after a pixel-budget check on the header. A file over the
   budget is refused, or, when the caller says what size it will be seen at
   (``reduce_to``), read at about that size without ever being decoded whole
   (:func:`decode_reduced`: JPEG by libjpeg's DCT scaling, PNG in row strips).
2. *Resize*: to :func:`~earthvlm.data.resolution.smart_resize`'s size with PIL's
   bicubic filter on the 8-bit image, the processor's own call (skipped when the size
   does not change, where PIL would return a copy).
3. *Rescale and normalise*: ``(u8 / 255 - mean) / std`` in float32, in the processor's
   operation order, so the values are identical (checked on all 256 input values per
   channel when the processor is built; a lookup table is the fallback).
4. *Patches*: the layout ``(grid_t * grid_h * grid_w, C * temporal_patch_size * p * p)``
   with patches in merge-window order and the still image repeated over the temporal
   patch.

*Packed patches* (opt-in, :meth:`PixelProcessor.pack`, or :meth:`PixelPlan.write` into a
uint8 array): the same rows in the same order, ``(patches, C * p * p)`` uint8, steps 3
and the temporal repeat left out: an eighth of the float32 bytes. The model expands them
on its device to exactly the float32 rows (``earthvlm.models.pixels``, a pre-hook on the
vision tower's patch embedding, with :func:`normalised_table`'s arithmetic).

Why it is faster (the processor spends most of its time copying): it normalises the
whole image in float64 then float32 with several temporaries, transposes a 9-axis view
element by element, and concatenates. Here each channel plane is normalised in
cache-sized blocks of rows, and the patch transpose moves rows of ``p`` floats as single
items (a ``void`` view) straight into the one output array, all temporal copies in one
pass that writes the output in order.

:class:`PixelProcessor` also answers the parts of the image-processor interface that a
transformers ``ProcessorMixin`` calls (``__call__``, ``fetch_images``, ``merge_size``),
so a processor whose ``image_processor`` is replaced by one encodes as before.

NumPy and PIL only: the data layer imports no torch and no transformers.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, JpegImagePlugin, PngImagePlugin
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from earthvlm.data.resolution import smart_resize
from earthvlm.errors import EarthVLMError, RasterError
from earthvlm.geo.raster import (
    DEFAULT_MAX_READ_PIXELS,
    DEFAULT_MAX_SCAN_PIXELS,
    open_raster,
    read_pixels,
    sniff_driver,
)

#: ``PIL.Image.Resampling.BICUBIC``: the filter of the Qwen-VL image processors.
BICUBIC = int(Image.Resampling.BICUBIC)
#: Rows of the float scratch buffer are chosen so that it stays about this size (in cache).
_BLOCK_BYTES = 1 << 20
#: Call options of a transformers image processor that change nothing here.
_NEUTRAL_KWARGS = {"return_tensors", "device"}

#: ``Image.info`` key of an image read at reduced size: the ``(width, height)`` of the file
#: it was read from (upright, EXIF orientation applied).
SOURCE_SIZE_KEY = "earthvlm_source_size"
#: Bytes of full-resolution rows one strip of a reduced PNG read holds.
_STRIP_BYTES = 8 << 20

ImageLike = Image.Image | np.ndarray | str | os.PathLike
#: ``(height, width)`` of an upright source -> the ``(height, width)`` it will be seen at
#: (e.g. :meth:`PixelProcessor.target_size`).
SizeRule = Callable[[int, int], tuple[int, int]]


class ImageDecodeError(EarthVLMError):
    """An image file cannot be decoded, or is larger than the pixel budget."""


class ImageTooLargeError(ImageDecodeError):
    """An image file is too large to be read within the budgets, even at reduced size."""


def to_rgb(image: Image.Image) -> Image.Image:
    """An RGB copy of a PIL image, as the Qwen-VL image processor converts it.

    Images with an alpha band or a ``transparency`` entry are composited onto white;
    other modes go through ``Image.convert("RGB")``. An RGB image without transparency is
    returned as is (the processor would copy it).
    """
    has_alpha = "A" in image.getbands() or image.info.get("transparency") is not None
    if image.mode == "RGB" and not has_alpha:
        return image
    if has_alpha:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def array_to_rgb(array: np.ndarray) -> np.ndarray:
    """A uint8 ``(H, W)`` or channels-last ``(H, W, 1|3|4)`` array as ``(H, W, 3)`` RGB.

    Grey is repeated; alpha is composited onto white with the processor's arithmetic
    (``round(a / 255 * rgb + (1 - a / 255) * 255)``). Note: transformers guesses the
    channel axis and takes ``(1|3|4, H, W)`` as channels-first; here it is always last.

    Raises:
        ValueError: For another dtype or shape.
    """
    a = np.asarray(array)
    if a.dtype != np.uint8:
        raise ValueError(
            f"image array of dtype {a.dtype}: give uint8 (scale and cast it, e.g. "
            "np.clip(x * 255, 0, 255).astype(np.uint8) for 0-1 floats)"
        )
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"image array of shape {a.shape}: give (H, W) or channels-last (H, W, C) "
            "with C = 1, 3 or 4"
        )
    if a.shape[-1] == 1:
        return np.repeat(a, 3, axis=-1)
    if a.shape[-1] == 4:
        alpha = a[..., 3:4] / 255
        return np.round(alpha * a[..., :3] + (1 - alpha) * 255).astype(np.uint8)
    return a


def normalised_table(
    image_mean: Sequence[float], image_std: Sequence[float], rescale_factor: float
) -> np.ndarray:
    """The normalised value of every uint8 per channel: ``(3, 256)`` float32.

    The transformers processor's arithmetic: rescale in float64, cast to float32, then
    ``(x - mean) / std`` in float32. What :class:`PixelProcessor` reproduces bit for bit
    and what packed patches are expanded to on the model side.
    """
    mean = np.asarray(image_mean, dtype=np.float32)
    std = np.asarray(image_std, dtype=np.float32)
    values = np.arange(256, dtype=np.uint8)
    t = (values.astype(np.float64) * rescale_factor).astype(np.float32)
    return (t[None, :] - mean[:, None]) / std[:, None]


def decode_image(
    path: str | os.PathLike,
    *,
    max_pixels: int = DEFAULT_MAX_READ_PIXELS,
    reduce_to: SizeRule | None = None,
    max_scan_pixels: int = DEFAULT_MAX_SCAN_PIXELS,
) -> Image.Image:
    """Decode an image file with PIL as an RGB image (EXIF orientation applied).

    As transformers' ``load_image`` for a path, except for transparency, which is
    composited onto white as the processor does for PIL images (``load_image``'s
    ``convert("RGB")`` drops the alpha band instead). JPEGs come out identical.

    Args:
        path: The image file (JPEG, PNG, ...).
        max_pixels: Refuse images with more pixels (read from the header, before
            decoding: decompression bombs), unless ``reduce_to`` is given.
        reduce_to: The size rule of the image's consumer (e.g.
            :meth:`PixelProcessor.target_size`): a file over ``max_pixels`` is then read
            at exactly that size by :func:`decode_reduced` instead of being refused. Files
            within the budget are decoded as without it, pixel for pixel.
        max_scan_pixels: With ``reduce_to``: most pixels a reduced read may go through.

    Raises:
        ImageDecodeError: If the file cannot be decoded or is over the budget
            (:class:`ImageTooLargeError` when over a budget of the reduced read).
    """
    if reduce_to is not None:
        with open_header(path) as im:
            w, h = im.size
        if w * h > max_pixels:
            return decode_reduced(path, reduce_to, max_pixels=max_pixels,
                                  max_scan_pixels=max_scan_pixels)  # fmt: skip
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise ImageDecodeError(
                    f"{path}: {w} x {h} = {w * h} px is over the budget of {max_pixels} px; "
                    "raise max_pixels if the file is trusted, or tile it"
                )
            im.load()
            if im.getexif().get(0x0112, 1) != 1:  # Orientation tag: not upright
                im = ImageOps.exif_transpose(im)
            return to_rgb(im)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise ImageDecodeError(f"{path}: cannot decode ({e})") from None


#: Formats training and the UHR reader decode with PIL (:func:`decode_image`); GDAL
#: reads every other one. GDAL and PIL disagree on damaged files (GDAL reads a PNG cut
#: in half, PIL refuses it), so a check must use the same decoder as its consumers.
PIL_DRIVERS = ("JPEG", "PNG")


def verify_pixels(
    path: str | os.PathLike, *, allow_vrt: bool = False, max_pixels: int = 1 << 28
) -> str:
    """Decode every pixel of a file with the decoder training and ``ask`` use for it:
    :func:`decode_image` (PIL) for JPEG and PNG, GDAL for the rest. Returns that
    decoder's name (``"PIL"`` or ``"GDAL"``).

    Args:
        path: The file.
        allow_vrt: Accept a VRT (see :func:`~earthvlm.geo.raster.open_raster`).
        max_pixels: Most pixels decoded (PIL's own bomb limit also applies).

    Raises:
        ImageDecodeError: A JPEG or PNG that training would refuse.
        RasterError: Any other raster that cannot be read.
    """
    if sniff_driver(Path(path)) in PIL_DRIVERS:
        decode_image(path, max_pixels=max_pixels)
        return "PIL"
    with open_raster(path, allow_vrt=allow_vrt) as ds:
        read_pixels(ds, max_pixels=max_pixels)
    return "GDAL"


def open_header(path: str | os.PathLike) -> Image.Image:
    """A file's PIL image, opened (header read) but not decoded; use it as a context manager.

    JPEG and PNG files are opened by their plugin without Pillow's decompression-bomb
    check (which raises on legitimate large scenes before anything is decoded): their
    pixel count is the caller's to check. Other formats go through ``Image.open``.

    Raises:
        ImageDecodeError: If the file cannot be opened as an image.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(8)
        if head.startswith(b"\xff\xd8\xff"):
            return JpegImagePlugin.JpegImageFile(os.fspath(path))
        if head.startswith(b"\x89PNG\r\n\x1a\n"):
            return PngImagePlugin.PngImageFile(os.fspath(path))
        return Image.open(path)
    except (
        OSError,
        ValueError,
        SyntaxError,
        IndexError,
        TypeError,
        Image.DecompressionBombError,
    ) as e:
        raise ImageDecodeError(f"{path}: cannot decode ({e})") from None


def decode_reduced(
    path: str | os.PathLike,
    reduce_to: SizeRule,
    *,
    max_pixels: int = DEFAULT_MAX_READ_PIXELS,
    max_scan_pixels: int = DEFAULT_MAX_SCAN_PIXELS,
) -> Image.Image:
    """An image file read as an RGB image of exactly ``reduce_to(height, width)``, never
    decoded at full size.

    The file is decoded at a size reduced by an integer factor while it is read, still
    at least the target size, then resized to the target with PIL's bicubic filter (the
    image processor's): that target then passes through the processor unresized. ``height``
    and ``width`` are the upright source's (EXIF orientation applied, as
    :func:`decode_image` does); the result's ``info[SOURCE_SIZE_KEY]`` keeps them as
    ``(width, height)``.

    * JPEG: libjpeg's DCT scaling (PIL's ``draft``), 1/2, 1/4 or 1/8 per side: only the
      reduced image is held. Progressive JPEGs are refused: libjpeg buffers the whole
      image's coefficients for them, as much memory as a full decode.
    * PNG (8-bit grey, grey + alpha, RGB, RGBA, not interlaced): read in strips of full
      rows (through GDAL's PNG driver, :func:`~earthvlm.geo.raster.open_raster`), each
      composited onto white and box-averaged by the integer factor. Interlaced PNGs
      cannot be read in strips and are refused, as are palette, 16-bit and
      colour-keyed PNGs.
    * Other formats are refused: convert them to a tiled GeoTIFF with overviews
      (``gdal_translate -of COG``).

    Every pixel is still decoded once (in pieces), so a file over ``max_scan_pixels`` is
    refused before anything is decoded: a decompression bomb costs a header read.

    Args:
        path: The image file.
        reduce_to: Upright ``(height, width)`` -> the output ``(height, width)``.
        max_pixels: Most pixels held at once: the reduced decode must fit.
        max_scan_pixels: Most source pixels decoded (in pieces).

    Raises:
        ImageTooLargeError: If the file is over a budget or cannot be read reduced (the
            message says why and what to do).
        ImageDecodeError: If the file cannot be decoded.
    """
    with open_header(path) as im:
        w, h = im.size
        orientation = _orientation(im)
        upright = (w, h) if orientation in (5, 6, 7, 8) else (h, w)  # (height, width)
        if w * h > max_scan_pixels:
            raise ImageTooLargeError(
                f"{path}: {w} x {h} = {w * h:,} px is over max_scan_pixels={max_scan_pixels:,} "
                "(the most pixels a reduced read may decode); convert it to a tiled GeoTIFF "
                "with overviews (gdal_translate -of COG), or raise max_scan_pixels if trusted"
            )
        th, tw = (int(v) for v in reduce_to(*upright))
        file_wh = (th, tw) if orientation in (5, 6, 7, 8) else (tw, th)  # as stored
        if im.format == "JPEG":
            reduced = _jpeg_reduced(path, im, file_wh, max_pixels)
        elif im.format == "PNG":
            reduced = _png_reduced(path, im, file_wh, max_pixels)
        else:
            raise ImageTooLargeError(
                f"{path}: a {w} x {h} px {im.format} is over the budget of {max_pixels:,} px "
                "and cannot be decoded at a reduced size; convert it to a tiled GeoTIFF "
                "with overviews (gdal_translate -of COG)"
            )
    if orientation in _TRANSPOSE:  # what ImageOps.exif_transpose does
        reduced = reduced.transpose(_TRANSPOSE[orientation])
    if reduced.size != (tw, th):
        reduced = reduced.resize((tw, th), resample=BICUBIC)
    reduced.info[SOURCE_SIZE_KEY] = (upright[1], upright[0])
    return reduced


#: EXIF orientation -> the transpose that makes the image upright (``ImageOps.exif_transpose``'s).
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _orientation(im: Image.Image) -> int:
    """The EXIF (or XMP) orientation from the header. ``Image.getexif`` of the base class:
    ``PngImageFile.getexif`` decodes the whole image to look for a late ``eXIf`` chunk."""
    try:
        return int(Image.Image.getexif(im).get(0x0112, 1))
    except (OSError, ValueError, SyntaxError, TypeError):
        return 1


def _jpeg_reduced(
    path: str | os.PathLike, im: Image.Image, file_wh: tuple[int, int], max_pixels: int
) -> Image.Image:
    """A JPEG decoded by libjpeg at 1/1-1/8 scale, at least ``file_wh``, as RGB."""
    if im.info.get("progressive") or im.info.get("progression"):
        raise ImageTooLargeError(
            f"{path}: a progressive {im.size[0]} x {im.size[1]} px JPEG is over the budget "
            f"of {max_pixels:,} px; libjpeg holds a progressive image's whole coefficients "
            "to decode it at any scale. Re-encode it as baseline JPEG or as a COG"
        )
    try:
        im.draft(None, file_wh)  # the largest DCT scaling that keeps >= file_wh
        rw, rh = im.size
        if rw * rh > max_pixels:
            raise ImageTooLargeError(
                f"{path}: even at 1/8 scale the JPEG is {rw} x {rh} = {rw * rh:,} px, over "
                f"the budget of {max_pixels:,} px; convert it to a COG "
                "(gdal_translate -of COG) or raise the budget"
            )
        im.load()
        rgb = to_rgb(im)
        return rgb.copy() if rgb is im else rgb
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageDecodeError(f"{path}: cannot decode ({e})") from None


def _png_reduced(
    path: str | os.PathLike, im: Image.Image, file_wh: tuple[int, int], max_pixels: int
) -> Image.Image:
    """A PNG read in strips of full rows, each composited onto white and box-averaged by
    the largest integer factor that keeps at least ``file_wh``, as RGB."""
    w, h = im.size
    problem = None
    if im.info.get("interlace"):
        problem = "is interlaced (Adam7), which cannot be read in strips"
    elif im.mode not in ("L", "LA", "RGB", "RGBA"):
        problem = f"has mode {im.mode} (palette or 16-bit)"
    elif im.info.get("transparency") is not None:
        problem = "has a transparency colour key"
    if problem is not None:
        raise ImageTooLargeError(
            f"{path}: a {w} x {h} px PNG over the budget of {max_pixels:,} px is read reduced "
            f"in strips of 8-bit grey/RGB(A) rows, and this one {problem}; re-save it "
            "(non-interlaced 8-bit RGB) or convert it to a COG (gdal_translate -of COG)"
        )
    d = max(1, min(w // file_wh[0], h // file_wh[1]))  # integer reduction factor
    rw, rh = math.ceil(w / d), math.ceil(h / d)
    if rw * rh > max_pixels:
        raise ImageTooLargeError(
            f"{path}: reduced by {d} the PNG is still {rw} x {rh} = {rw * rh:,} px, over the "
            f"budget of {max_pixels:,} px; raise the budget or convert it to a COG"
        )
    out = np.empty((rh, rw, 3), dtype=np.uint8)
    try:
        with ExitStack() as stack:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)  # PNGs have none
                ds = stack.enter_context(open_raster(path))
            if ds.dtypes[0] != "uint8" or ds.count not in (1, 2, 3, 4):
                raise ImageTooLargeError(
                    f"{path}: a {w} x {h} px PNG over the budget of {max_pixels:,} px is read "
                    f"reduced in strips of 8-bit rows, and this one has {ds.count} band(s) of "
                    f"{ds.dtypes[0]}; re-save it as 8-bit RGB or convert it to a COG"
                )
            # full rows, a multiple of d, within the strip size and the budget
            rows = min(_STRIP_BYTES // (w * ds.count), max_pixels // w) // d * d
            if rows < 1:
                raise ImageTooLargeError(
                    f"{path}: {d} rows of {w} px (one strip of the reduced read) are over the "
                    f"budget of {max_pixels:,} px; raise the budget or convert it to a COG"
                )
            for y in range(0, h, rows):
                n = min(rows, h - y)
                strip = read_pixels(ds, window=Window(0, y, w, n), max_pixels=max_pixels)
                hwc = strip.transpose(1, 2, 0)
                if ds.count == 2:  # grey + alpha -> grey as RGB + alpha
                    hwc = hwc[:, :, [0, 0, 0, 1]]
                rgb = Image.fromarray(np.ascontiguousarray(array_to_rgb(hwc)))
                part = rgb.reduce(d) if d > 1 else rgb
                out[y // d : y // d + part.height] = np.asarray(part)
    except RasterError as e:
        raise ImageDecodeError(f"{path}: cannot decode ({e})") from None
    return Image.fromarray(out)


@dataclass(frozen=True)
class PixelProcessor:
    """A Qwen-VL image processor in NumPy, with the transformers processor's output.

    Build it from a backbone's processor with :meth:`from_image_processor`, or from the
    family's numbers (``earthvlm.models.processor`` lists them).
    """

    patch_size: int
    """Vision patch side in pixels (16 for Qwen3-VL, 14 for Qwen2.5-VL)."""
    image_mean: tuple[float, float, float]
    """Per-channel mean of the 0-1 pixel values."""
    image_std: tuple[float, float, float]
    """Per-channel standard deviation of the 0-1 pixel values."""
    min_pixels: int
    """Smallest resized area (see :func:`~earthvlm.data.resolution.smart_resize`)."""
    max_pixels: int
    """Largest resized area."""
    merge_size: int = 2
    """Patches merged per side into one language token."""
    temporal_patch_size: int = 2
    """Frames per temporal patch: a still image is repeated this many times."""
    rescale_factor: float = 1 / 255
    """Multiplies the uint8 values before normalising."""
    max_read_pixels: int = DEFAULT_MAX_READ_PIXELS
    """Pixel budget of a decoded file."""
    _mean: np.ndarray = field(init=False, repr=False, compare=False)
    _std: np.ndarray = field(init=False, repr=False, compare=False)
    _divisor: np.float32 = field(init=False, repr=False, compare=False)
    _lut: np.ndarray | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("patch_size", "merge_size", "temporal_patch_size"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise ValueError(f"{name}={value!r}: must be an integer >= 1")
        if not 1 <= self.min_pixels <= self.max_pixels:
            raise ValueError(
                f"min_pixels={self.min_pixels}, max_pixels={self.max_pixels}: need "
                "1 <= min_pixels <= max_pixels"
            )
        if len(self.image_mean) != 3 or len(self.image_std) != 3:
            raise ValueError(
                f"image_mean={self.image_mean}, image_std={self.image_std}: give 3 values "
                "each (R, G, B)"
            )
        if min(self.image_std) <= 0 or self.rescale_factor <= 0:
            raise ValueError(
                f"image_std={self.image_std}, rescale_factor={self.rescale_factor}: must be > 0"
            )
        object.__setattr__(self, "image_mean", tuple(float(v) for v in self.image_mean))
        object.__setattr__(self, "image_std", tuple(float(v) for v in self.image_std))
        mean = np.asarray(self.image_mean, dtype=np.float32)
        std = np.asarray(self.image_std, dtype=np.float32)
        object.__setattr__(self, "_mean", mean)
        object.__setattr__(self, "_std", std)
        object.__setattr__(self, "_divisor", np.float32(1 / self.rescale_factor))
        object.__setattr__(self, "_lut", None)
        # the processor's arithmetic on every uint8 value: float64 rescale, float32 cast,
        # float32 (x - mean) / std; the fast path must reproduce it bit for bit
        values = np.arange(256, dtype=np.uint8)
        expected = normalised_table(self.image_mean, self.image_std, self.rescale_factor)
        fast = np.empty((3, 256), dtype=np.float32)
        for c in range(3):
            self._normalise(values, c, fast[c])
        object.__setattr__(self, "_lut", None if np.array_equal(fast, expected) else expected)

    @classmethod
    def from_image_processor(cls, image_processor: Any, **overrides: Any) -> PixelProcessor:
        """The same preprocessing as a transformers ``Qwen2VLImageProcessor(Pil)``.

        Its attributes are read (transformers is not imported). ``overrides`` replace
        fields (e.g. ``max_read_pixels``).

        Raises:
            ValueError: If it is configured in a way this class does not reproduce
                (resizing, rescaling, normalising or RGB conversion turned off, or a
                resampling filter other than bicubic).
        """
        ip = image_processor
        for flag in ("do_resize", "do_rescale", "do_normalize", "do_convert_rgb"):
            if getattr(ip, flag, True) is False:
                raise ValueError(
                    f"the image processor has {flag}=False; PixelProcessor reproduces the "
                    "default Qwen-VL preprocessing only: set it back to True"
                )
        resample = getattr(ip, "resample", BICUBIC)
        if int(resample) != BICUBIC:
            raise ValueError(
                f"the image processor resamples with {resample!r}; PixelProcessor uses PIL "
                "bicubic, the Qwen-VL default: set resample=PILImageResampling.BICUBIC"
            )
        mean, std = ip.image_mean, ip.image_std
        mean = (mean,) * 3 if isinstance(mean, int | float) else tuple(mean)
        std = (std,) * 3 if isinstance(std, int | float) else tuple(std)
        fields = {
            "patch_size": int(ip.patch_size),
            "merge_size": int(ip.merge_size),
            "temporal_patch_size": int(ip.temporal_patch_size),
            "image_mean": mean,
            "image_std": std,
            "min_pixels": int(ip.size["shortest_edge"]),
            "max_pixels": int(ip.size["longest_edge"]),
            "rescale_factor": float(getattr(ip, "rescale_factor", 1 / 255)),
        }
        return cls(**{**fields, **overrides})

    # -- sizes ----------------------------------------------------------------------------

    @property
    def factor(self) -> int:
        """Side in pixels of one language token (``patch_size * merge_size``)."""
        return self.patch_size * self.merge_size

    @property
    def patch_dim(self) -> int:
        """Values per patch: ``3 * temporal_patch_size * patch_size**2``."""
        return 3 * self.temporal_patch_size * self.patch_size**2

    @property
    def packed_dim(self) -> int:
        """Values per packed patch: ``3 * patch_size**2`` (uint8, one frame, not normalised)."""
        return 3 * self.patch_size**2

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        """The ``(height, width)`` an image of this size is resized to."""
        return smart_resize(height, width, self.factor, self.min_pixels, self.max_pixels)

    def grid_thw(self, height: int, width: int) -> tuple[int, int, int]:
        """``(1, grid_h, grid_w)`` in patches for a source of this size."""
        h, w = self.target_size(height, width)
        return 1, h // self.patch_size, w // self.patch_size

    # -- images ---------------------------------------------------------------------------

    def load(self, image: ImageLike) -> Image.Image | np.ndarray:
        """An RGB PIL image or ``(H, W, 3)`` uint8 array from any accepted input."""
        if isinstance(image, Image.Image):
            return to_rgb(image)
        if isinstance(image, np.ndarray):
            return array_to_rgb(image)
        if isinstance(image, str | os.PathLike):
            if "://" in str(image):
                raise ValueError(f"{image}: URLs are not fetched; download the file first")
            return decode_image(Path(image), max_pixels=self.max_read_pixels)
        raise TypeError(
            f"image of type {type(image).__name__}: give a PIL image, a uint8 array or a path"
        )

    def _planes(self, rgb: Image.Image | np.ndarray, size: tuple[int, int]) -> list[np.ndarray]:
        """The three uint8 channel planes of ``rgb`` resized to ``size`` (height, width)."""
        h, w = size
        if isinstance(rgb, np.ndarray):
            if rgb.shape[:2] == (h, w):
                return [rgb[:, :, c] for c in range(3)]
            rgb = Image.fromarray(np.ascontiguousarray(rgb))
        if rgb.size != (w, h):
            rgb = rgb.resize((w, h), resample=BICUBIC)
        # one packed copy per band; split() + asarray copies twice and allocates 3 images
        return [
            np.frombuffer(rgb.tobytes("raw", band), dtype=np.uint8).reshape(h, w) for band in "RGB"
        ]

    def _normalise(self, src: np.ndarray, c: int, out: np.ndarray) -> None:
        """``out = (src / (1 / rescale_factor) - mean[c]) / std[c]`` in float32."""
        if self._lut is not None:
            np.take(self._lut[c], src, out=out)
            return
        np.divide(src, self._divisor, out=out)
        np.subtract(out, self._mean[c], out=out)
        np.divide(out, self._std[c], out=out)

    def _write_patches(self, planes: Sequence[np.ndarray], out: np.ndarray) -> None:
        """Normalise ``planes`` and write their patches into ``out`` (rows, patch_dim);
        a uint8 ``out`` (rows, packed_dim) takes the packed patches instead."""
        if out.dtype == np.uint8:
            self._write_packed(planes, out)
            return
        p, m, t_size = self.patch_size, self.merge_size, self.temporal_patch_size
        h, w = planes[0].shape
        gh, gw = h // (p * m), w // (p * m)  # merge windows per column and per row
        row = np.dtype((np.void, 4 * p))  # p float32 values moved as one item
        # out as (gh, gw, m, m, C, T, p) items of one patch row each
        dst = out.reshape(gh, gw, m, m, 3, t_size, p, p).view(row)[..., 0]
        rows = max(1, _BLOCK_BYTES // (3 * m * p * w * 4))  # merge-window rows per block
        scratch = np.empty((3, min(rows, gh) * m * p, w), dtype=np.float32)
        for g0 in range(0, gh, rows):
            g1 = min(gh, g0 + rows)
            y0, y1 = g0 * m * p, g1 * m * p
            block = scratch[:, : y1 - y0]
            for c in range(3):
                self._normalise(planes[c][y0:y1], c, block[c])
            # (C, g, m, p, gw, m) items -> (g, gw, m, m, C, p): merge-window patch order;
            # one assignment repeats each row over T, so the output is written in order
            src = block.view(row).reshape(3, g1 - g0, m, p, gw, m).transpose(1, 4, 2, 5, 0, 3)
            part = dst[g0:g1]
            part[...] = np.broadcast_to(src[:, :, :, :, :, None, :], part.shape)

    def _write_packed(self, planes: Sequence[np.ndarray], out: np.ndarray) -> None:
        """Write the uint8 patches of ``planes`` into ``out`` (rows, packed_dim): the
        float layout without the temporal axis, values as they are."""
        p, m = self.patch_size, self.merge_size
        h, w = planes[0].shape
        gh, gw = h // (p * m), w // (p * m)
        row = np.dtype((np.void, p))  # p uint8 values moved as one item
        dst = out.reshape(gh, gw, m, m, 3, p, p).view(row)[..., 0]  # (gh, gw, m, m, C, p)
        for c in range(3):
            # (g, m, p, gw, m) items -> (g, gw, m, m, p): merge-window patch order
            src = np.ascontiguousarray(planes[c]).view(row).reshape(gh, m, p, gw, m)
            dst[:, :, :, :, c] = src.transpose(0, 3, 1, 4, 2)

    def preprocess(self, image: ImageLike) -> tuple[np.ndarray, np.ndarray]:
        """One image's ``pixel_values`` (patches, patch_dim) and ``image_grid_thw`` (3,)."""
        out = self(image)
        return out["pixel_values"], out["image_grid_thw"][0]

    def __call__(self, images: ImageLike | Iterable[Any], **kwargs: Any) -> dict[str, np.ndarray]:
        """Images -> ``{"pixel_values": (sum of patches, patch_dim) float32,
        "image_grid_thw": (n_images, 3) int64}``, images concatenated in order.

        ``images`` is one image or a (nested) list of them: PIL images, uint8 arrays or
        file paths. ``kwargs`` are accepted for the transformers image-processor interface:
        ``return_tensors`` and ``device`` change nothing (arrays are returned; the caller's
        ``BatchFeature`` converts them); any other option set to a value is refused.

        Raises:
            ValueError: For an option this class does not take, or a bad image.
            ImageDecodeError: For a file that cannot be decoded.
        """
        plan = self.plan(images, **kwargs)
        out = np.empty((plan.num_patches, self.patch_dim), dtype=np.float32)
        plan.write(out)
        return {"pixel_values": out, "image_grid_thw": plan.grids}

    def pack(self, images: ImageLike | Iterable[Any]) -> dict[str, np.ndarray]:
        """Images -> ``{"pixel_values": (sum of patches, packed_dim) uint8,
        "image_grid_thw": (n_images, 3) int64}``: :meth:`__call__`'s rows before
        normalising and repeating over the temporal patch (see the module docstring).

        Raises:
            ValueError: For a bad image.
            ImageDecodeError: For a file that cannot be decoded.
        """
        plan = self.plan(images)
        out = np.empty((plan.num_patches, self.packed_dim), dtype=np.uint8)
        plan.write(out)
        return {"pixel_values": out, "image_grid_thw": plan.grids}

    def plan(self, images: ImageLike | Iterable[Any], **kwargs: Any) -> PixelPlan:
        """Decode and size ``images`` now, write their patches later (:meth:`PixelPlan.write`).

        What :meth:`__call__` does in two steps, so that a caller assembling a batch of
        several calls writes every image straight into the batch's one array instead of
        concatenating per-call arrays (a copy of the whole float32 batch). Same arguments
        and errors as :meth:`__call__`.
        """
        unknown = {k for k, v in kwargs.items() if v is not None} - _NEUTRAL_KWARGS
        if unknown:
            raise ValueError(
                f"PixelProcessor does not take the per-call option(s) {sorted(unknown)}: "
                "build it with the settings you need instead"
            )
        rgbs = [self.load(im) for im in _flatten(images)]
        sizes = [
            self.target_size(*(r.shape[:2] if isinstance(r, np.ndarray) else r.size[::-1]))
            for r in rgbs
        ]
        p = self.patch_size
        grids = np.array([(1, h // p, w // p) for h, w in sizes], dtype=np.int64).reshape(-1, 3)
        return PixelPlan(self, rgbs, sizes, grids)

    def fetch_images(self, images: Any) -> Any:
        """Return ``images`` unchanged (the ``ProcessorMixin`` interface; paths are
        decoded in :meth:`__call__`, URLs are refused there)."""
        return images


@dataclass(frozen=True)
class PixelPlan:
    """Images decoded and sized by :meth:`PixelProcessor.plan`, patches not yet written."""

    processor: PixelProcessor
    images: list[Image.Image | np.ndarray]
    """The RGB images, at their source size."""
    sizes: list[tuple[int, int]]
    """The ``(height, width)`` each image is resized to."""
    grids: np.ndarray
    """``image_grid_thw``: ``(n_images, 3)`` int64."""

    @property
    def num_patches(self) -> int:
        """Rows of ``pixel_values``: the patches of all images."""
        return int(self.grids.prod(axis=1).sum())

    def write(self, out: np.ndarray) -> None:
        """Write ``pixel_values`` into ``out``, e.g. a slice of a batch's array:
        ``(num_patches, patch_dim)`` float32, or the packed patches into
        ``(num_patches, packed_dim)`` uint8.

        Raises:
            ValueError: If ``out`` has another shape or dtype.
        """
        pp = self.processor
        dims = {np.dtype(np.float32): pp.patch_dim, np.dtype(np.uint8): pp.packed_dim}
        if out.shape != (self.num_patches, dims.get(out.dtype, -1)):
            raise ValueError(
                f"out is {out.dtype} {out.shape}; give float32 ({self.num_patches}, "
                f"{pp.patch_dim}) or packed uint8 ({self.num_patches}, {pp.packed_dim})"
            )
        start = 0
        for rgb, size, n in zip(self.images, self.sizes, self.grids.prod(axis=1).tolist(),
                                strict=True):  # fmt: skip
            pp._write_patches(pp._planes(rgb, size), out[start : start + n])
            start += n


def _flatten(images: Any) -> list[Any]:
    if isinstance(images, list | tuple):
        return [im for item in images for im in _flatten(item)]
    return [images]


__all__ = [
    "BICUBIC",
    "PIL_DRIVERS",
    "SOURCE_SIZE_KEY",
    "ImageDecodeError",
    "ImageTooLargeError",
    "PixelPlan",
    "PixelProcessor",
    "SizeRule",
    "array_to_rgb",
    "decode_image",
    "decode_reduced",
    "normalised_table",
    "open_header",
    "to_rgb",
    "verify_pixels",
]
