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
   ``load_image`` does) after a pixel-budget check on the header.
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

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from earthvlm.data.resolution import smart_resize
from earthvlm.errors import EarthVLMError
from earthvlm.geo.raster import DEFAULT_MAX_READ_PIXELS

#: ``PIL.Image.Resampling.BICUBIC``: the filter of the Qwen-VL image processors.
BICUBIC = int(Image.Resampling.BICUBIC)
#: Rows of the float scratch buffer are chosen so that it stays about this size (in cache).
_BLOCK_BYTES = 1 << 20
#: Call options of a transformers image processor that change nothing here.
_NEUTRAL_KWARGS = {"return_tensors", "device"}

ImageLike = Image.Image | np.ndarray | str | os.PathLike


class ImageDecodeError(EarthVLMError):
    """An image file cannot be decoded, or is larger than the pixel budget."""


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


def decode_image(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_READ_PIXELS):
    """Decode an image file with PIL as an RGB image (EXIF orientation applied).

    As transformers' ``load_image`` for a path, except for transparency, which is
    composited onto white as the processor does for PIL images (``load_image``'s
    ``convert("RGB")`` drops the alpha band instead). JPEGs come out identical.

    Args:
        path: The image file (JPEG, PNG, ...).
        max_pixels: Refuse images with more pixels (read from the header, before
            decoding: decompression bombs).

    Raises:
        ImageDecodeError: If the file cannot be decoded or is over the budget.
    """
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
    "ImageDecodeError",
    "PixelPlan",
    "PixelProcessor",
    "array_to_rgb",
    "decode_image",
    "normalised_table",
    "to_rgb",
]
