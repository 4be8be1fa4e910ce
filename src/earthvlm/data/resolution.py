"""Dynamic resolution: the size a model sees an image at, its GSD, and its box frame.

RSCoVLM sec. III-C: the backbone takes images of any shape (Qwen2-VL's native
resolution), within two bounds on the pixel count. Between them an image is seen at its
native size, rounded to whole tokens; below ``min_pixels`` it is enlarged so that the
decoder gets enough visual tokens; above, it is UHR and goes to the zoom path (sec.
III-D), which sees a global view downsampled to ``max_pixels`` and zooms into the native
image. Boxes are *scalable* (sec. III-C2): their coordinates follow the resolution of the
image the model sees (Qwen2.5-VL: pixels of the resized image) or a fixed 0-1000 frame
(Qwen3-VL); :class:`ResolutionPlan` converts both ways (the geometry itself lives in
:mod:`earthvlm.geo.boxes`).

Where this departs from the paper and its code:

* the paper's eq. (4) rounds sides *up* to a patch multiple; the backbone's processor
  rounds to the *nearest* multiple of ``patch_size * merge_size`` (:func:`smart_resize`),
  and the plan must predict what the processor does, so it uses the processor's rule;
* the GSD the model is conditioned on is the GSD of the image it sees: a view
  downsampled 8x has 8x the source GSD (an upscaled small image a finer one); the
  reference implementation keeps the source GSD;
* the zoom path crops the *native* image (:meth:`ResolutionPlan.boxes_from_frame` maps a
  region chosen on the global view back to source pixels), not the downsampled view.

NumPy only: the data layer imports no torch and no transformers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from earthvlm.geo.boxes import frame_to_px, px_to_frame
from earthvlm.scale.gsd import GSD

#: Largest ``max(height, width) / min(height, width)`` the backbone processors accept.
MAX_ASPECT_RATIO = 200


def smart_resize(
    height: int, width: int, factor: int, min_pixels: int, max_pixels: int
) -> tuple[int, int]:
    """The ``(height, width)`` the Qwen-VL image processor resizes an image to.

    The same arithmetic as ``transformers.models.qwen2_vl.image_processing_qwen2_vl
    .smart_resize`` (transformers 5.x), which both Qwen2.5-VL and Qwen3-VL use for
    images (Qwen3-VL's own ``smart_resize`` is for video frames only): each side rounded
    to the nearest multiple of ``factor`` (Python's ``round``, half to even); if the area
    then exceeds ``max_pixels``, both sides are scaled down by the same factor and
    floored to a multiple (at least ``factor``); if it is below ``min_pixels``, scaled up
    and ceiled. Either way the aspect ratio is kept as closely as whole tokens allow.

    Args:
        height: Source height in pixels.
        width: Source width in pixels.
        factor: Side of one language token in pixels: ``patch_size * merge_size`` (32 for
            Qwen3-VL, 28 for Qwen2.5-VL).
        min_pixels: Smallest area after resizing.
        max_pixels: Largest area after resizing.

    Raises:
        ValueError: If a side is not positive, or the aspect ratio is above 200 (as the
            processor raises; the message says what to do).
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size {height} x {width} px: both sides must be > 0")
    ratio = max(height, width) / min(height, width)
    if ratio > MAX_ASPECT_RATIO:
        raise ValueError(
            f"absolute aspect ratio must be smaller than {MAX_ASPECT_RATIO}, got {ratio} "
            f"({height} x {width} px): crop the image into pieces, or pad its short side"
        )
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


class Tier(StrEnum):
    """The three size classes of RSCoVLM's dynamic resolution (sec. III-C1)."""

    SMALL = "small"  # enlarged to about min_pixels
    REGULAR = "regular"  # native size, rounded to whole tokens
    UHR = "uhr"  # global view downsampled to max_pixels, plus zoom into the native image


@dataclass(frozen=True)
class ResolutionPlan:
    """How one image is shown to the model. Build it with :meth:`Resolution.plan`.

    Attributes:
        tier: Small, regular or UHR.
        source_hw: ``(height, width)`` of the source image in pixels.
        resized_hw: ``(height, width)`` the model sees (the global view of a UHR image):
            exactly what the backbone's image processor resizes the source to.
        factor: Side of one language token in pixels.
        source_gsd: The GSD of the source image.
        gsd: The GSD of the resized image: the source GSD times :attr:`downsample`
            (a range scales both ends, unknown stays unknown, provenance is kept).
    """

    tier: Tier
    source_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    factor: int
    source_gsd: GSD
    gsd: GSD

    @property
    def zoom(self) -> bool:
        """True when the image goes to the zoom path (UHR)."""
        return self.tier is Tier.UHR

    @property
    def scale_xy(self) -> tuple[float, float]:
        """``(sx, sy)``: resized side / source side along x and y (rounding to whole
        tokens makes them differ slightly)."""
        (sh, sw), (rh, rw) = self.source_hw, self.resized_hw
        return rw / sw, rh / sh

    @property
    def downsample(self) -> float:
        """Linear downsampling factor, ``sqrt(source area / resized area)``: > 1 when the
        model sees fewer pixels than the source, < 1 for an enlarged small image."""
        (sh, sw), (rh, rw) = self.source_hw, self.resized_hw
        return math.sqrt((sh * sw) / (rh * rw))

    @property
    def num_tokens(self) -> int:
        """Language-model tokens the (global) view takes: one per ``factor`` x ``factor``."""
        rh, rw = self.resized_hw
        return (rh // self.factor) * (rw // self.factor)

    def boxes_to_frame(self, coords_px: Sequence[float] | np.ndarray, frame: str) -> np.ndarray:
        """Source-pixel boxes or quads -> ``frame`` (``"abs_px_resized"`` or ``"norm1000"``,
        the backbone's ``box_frame``). See :func:`earthvlm.geo.boxes.px_to_frame`."""
        return px_to_frame(coords_px, frame, source_hw=self.source_hw, resized_hw=self.resized_hw)

    def boxes_from_frame(self, coords: Sequence[float] | np.ndarray, frame: str) -> np.ndarray:
        """A model's boxes in ``frame`` -> source pixels (evaluation, zoom crops)."""
        return frame_to_px(coords, frame, source_hw=self.source_hw, resized_hw=self.resized_hw)


@dataclass(frozen=True)
class Resolution:
    """The dynamic-resolution policy of one backbone (RSCoVLM sec. III-C1).

    ``factor``, ``min_pixels`` and ``max_pixels`` must be those of the backbone's image
    processor (:meth:`from_processor` reads them), so that a plan predicts exactly the
    size the processor produces.
    """

    factor: int
    """Side of one language token in pixels (``patch_size * merge_size``)."""
    min_pixels: int
    """Smaller images (after rounding to whole tokens) are enlarged to about this area."""
    max_pixels: int
    """The largest area the model sees; the global view of a UHR image is resized to it."""
    uhr_pixels: int | None = None
    """Sources with more pixels than this are UHR and go to the zoom path. ``None``: the
    same as ``max_pixels`` (the paper's two bounds and three tiers). A larger value lets
    images between the two be downsampled to ``max_pixels`` without zooming (regular)."""

    def __post_init__(self) -> None:
        if int(self.factor) != self.factor or self.factor < 1:
            raise ValueError(f"factor={self.factor!r}: give patch_size * merge_size, >= 1")
        if not 1 <= self.min_pixels <= self.max_pixels:
            raise ValueError(
                f"min_pixels={self.min_pixels}, max_pixels={self.max_pixels}: need "
                "1 <= min_pixels <= max_pixels"
            )
        if self.uhr_pixels is not None and self.uhr_pixels < 1:
            raise ValueError(f"uhr_pixels={self.uhr_pixels}: must be >= 1 (or None)")

    @classmethod
    def from_processor(cls, processor: Any, *, uhr_pixels: int | None = None) -> Resolution:
        """The policy of an image processor: a :class:`~earthvlm.data.pixels.PixelProcessor`
        or a transformers Qwen-VL image processor (read by attribute, not imported)."""
        factor = int(processor.patch_size) * int(processor.merge_size)
        if hasattr(processor, "min_pixels") and hasattr(processor, "max_pixels"):
            lo, hi = processor.min_pixels, processor.max_pixels
        else:  # transformers keeps them in ``size``
            lo, hi = processor.size["shortest_edge"], processor.size["longest_edge"]
        return cls(factor, int(lo), int(hi), uhr_pixels)

    @property
    def uhr_threshold(self) -> int:
        """The source pixel count above which an image is UHR."""
        return self.max_pixels if self.uhr_pixels is None else self.uhr_pixels

    def plan(self, height: int, width: int, gsd: GSD | None = None) -> ResolutionPlan:
        """How an image of ``height`` x ``width`` source pixels is shown to the model.

        Args:
            height: Source height in pixels.
            width: Source width in pixels.
            gsd: The source GSD (``None``: unknown).

        Raises:
            ValueError: For a non-positive side or an aspect ratio above 200.
        """
        height, width = int(height), int(width)
        resized = smart_resize(height, width, self.factor, self.min_pixels, self.max_pixels)
        if height * width > self.uhr_threshold:
            tier = Tier.UHR
        elif (
            round(height / self.factor) * round(width / self.factor) * self.factor**2
            < self.min_pixels
        ):
            tier = Tier.SMALL  # the processor's enlarging branch
        else:
            tier = Tier.REGULAR
        source_gsd = GSD.unknown() if gsd is None else gsd
        plan = ResolutionPlan(tier, (height, width), resized, self.factor, source_gsd, source_gsd)
        factor = plan.downsample
        if factor != 1.0:
            detail = f"resized {height}x{width} -> {resized[0]}x{resized[1]} px"
            plan = ResolutionPlan(
                tier, plan.source_hw, resized, self.factor, source_gsd,
                source_gsd.scaled(factor, detail),
            )  # fmt: skip
        return plan


__all__ = ["MAX_ASPECT_RATIO", "Resolution", "ResolutionPlan", "Tier", "smart_resize"]
