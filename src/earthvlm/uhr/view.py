"""A view: the pixels a model sees, the source window they show, and their own GSD.

The project's "one GSD per view" contract: a global view downsampled 8x carries 8x the
source GSD, a native-resolution crop keeps it, a crop resized to fit the model's pixel
budget carries the resized GSD. A view also knows its place in the source raster, so a
box a model writes on it (in the backbone's frame, see :data:`~earthvlm.geo.boxes.BOX_FRAMES`)
maps back to source pixels, however many zoom steps deep the view is: every view is
read from the source, never cropped from another view, so one step of mapping is exact.

Coordinates are continuous, with pixel edges at integers (the raster spans
``[0, width] x [0, height]``), as in :mod:`earthvlm.geo.boxes`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from earthvlm.geo.boxes import BOX_FRAMES, frame_to_px, px_to_frame
from earthvlm.scale.gsd import GSD


@dataclass(frozen=True, eq=False)
class View:
    """One image shown to the model, read from a source raster.

    Build views with :class:`~earthvlm.uhr.reader.UHRReader`; the pixels are read-only.

    Attributes:
        pixels: ``(height, width, 3)`` uint8 RGB, exactly the size the backbone's image
            processor keeps (sides are multiples of its token side, so it does not
            resize them again).
        window_xyxy_px: The source pixels shown, ``(x1, y1, x2, y2)``, integers.
        gsd: The GSD of what the view shows: the source GSD scaled by
            :attr:`downsample` (a range scales both ends, unknown stays unknown).
        source_hw: ``(height, width)`` of the whole source raster.
        level: Decimation factor of the raster level the pixels were read from (1: full
            resolution; 8: the 8x overview). Provenance; it does not change the GSD,
            which follows from the window and the view size alone.
    """

    pixels: np.ndarray
    window_xyxy_px: tuple[int, int, int, int]
    gsd: GSD
    source_hw: tuple[int, int]
    level: int = 1

    @property
    def hw(self) -> tuple[int, int]:
        """``(height, width)`` of the view in pixels."""
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])

    @property
    def window_hw(self) -> tuple[int, int]:
        """``(height, width)`` of the source window in source pixels."""
        x1, y1, x2, y2 = self.window_xyxy_px
        return y2 - y1, x2 - x1

    @property
    def scale_xy(self) -> tuple[float, float]:
        """``(sx, sy)``: view side / window side along x and y (1.0 for a native crop,
        below 1 when downsampled)."""
        (h, w), (wh, ww) = self.hw, self.window_hw
        return w / ww, h / wh

    @property
    def downsample(self) -> float:
        """Linear downsampling factor, ``sqrt(window area / view area)``: the factor the
        source GSD is multiplied by (as :attr:`ResolutionPlan.downsample
        <earthvlm.data.resolution.ResolutionPlan.downsample>`)."""
        (h, w), (wh, ww) = self.hw, self.window_hw
        return math.sqrt((wh * ww) / (h * w))

    @property
    def is_native(self) -> bool:
        """True when one view pixel is one source pixel."""
        return self.hw == self.window_hw

    def frame_extent(self, frame: str) -> tuple[float, float]:
        """``(width, height)`` of the view in ``frame``: 1000 x 1000 for ``norm1000``,
        the view's pixel size for ``abs_px_resized``."""
        if frame == "norm1000":
            return 1000.0, 1000.0
        if frame == "abs_px_resized":
            return float(self.hw[1]), float(self.hw[0])
        raise ValueError(f"frame={frame!r}: choose one of {list(BOX_FRAMES)}")

    def to_source_px(self, coords: Sequence[float] | np.ndarray, frame: str) -> np.ndarray:
        """Coordinates a model wrote on this view (in ``frame``) -> source pixels.

        ``coords`` is any array whose last axis alternates x and y (an xyxy box, a flat
        quad, points; see :func:`earthvlm.geo.boxes.scale_xy`).
        """
        out = frame_to_px(coords, frame, source_hw=self.window_hw, resized_hw=self.hw)
        return _shift(out, self.window_xyxy_px[0], self.window_xyxy_px[1])

    def from_source_px(self, coords_px: Sequence[float] | np.ndarray, frame: str) -> np.ndarray:
        """Source-pixel coordinates -> this view's ``frame`` (the inverse of
        :meth:`to_source_px`), e.g. to write a target box for training."""
        x1, y1 = self.window_xyxy_px[:2]
        local = _shift(np.asarray(coords_px, dtype=np.float64), -x1, -y1)
        return px_to_frame(local, frame, source_hw=self.window_hw, resized_hw=self.hw)


def _shift(coords: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """A copy of ``coords`` (last axis alternating x and y) moved by ``(dx, dy)``."""
    out = np.array(coords, dtype=np.float64)
    out[..., 0::2] += dx
    out[..., 1::2] += dy
    return out


__all__ = ["View"]
