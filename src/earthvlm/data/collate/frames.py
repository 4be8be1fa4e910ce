"""Sensor frames: SAR and multispectral pixels as the RGB frames the model is shown.

A record's ``meta`` says how its values are scaled (``sar_units``, ``sar_scaling``,
``ms_order``, ``ms_grouping``, ``ms_fill``, ``ms_scale``; ``docs/collation.md``); the
arithmetic is :mod:`earthvlm.data.sensors`'. Pixels come in, PIL frames go out: reading
the file is :mod:`earthvlm.data.collate.images`' job.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, cast

import numpy as np
from PIL import Image

from earthvlm.data.collate.sample import SampleError
from earthvlm.data.record import ImageRef
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

#: Record ``meta`` keys that describe its SAR images.
SAR_UNITS_KEY, SAR_SCALING_KEY = "sar_units", "sar_scaling"
#: Record ``meta`` keys that describe its multispectral images.
MS_ORDER_KEY, MS_GROUPING_KEY, MS_FILL_KEY, MS_SCALE_KEY = (
    "ms_order",
    "ms_grouping",
    "ms_fill",
    "ms_scale",
)
_DB_FORMULA = re.compile(r"dB = value / 255 \* (\S+) \+ (\S+)")

#: A SAR image's units (``None``: decided by dtype) and dB map.
SarOptions = tuple[str | None, DbScale]
#: A multispectral image's band order, grouping, fill and scale (``None``: by dtype).
MsOptions = tuple[tuple[str, ...] | None, str, str, ReflectanceScale | None]


def sar_options(ref: ImageRef, meta: Mapping[str, Any]) -> SarOptions:
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


def ms_options(ref: ImageRef, meta: Mapping[str, Any]) -> MsOptions:
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


def sar_image(ref: ImageRef, pixels: np.ndarray, options: SarOptions) -> Image.Image:
    """One- or two-band SAR as the zero-padded pseudo-RGB frame (EarthMind App. H)."""
    units, scale = options
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


def ms_images(
    ref: ImageRef, pixels: np.ndarray, options: MsOptions
) -> tuple[list[Image.Image], dict[str, Any]]:
    """A multispectral image's bands as RGB frames, in order, and their layout (a dict).

    Raises:
        SampleError: ``unsupported_image`` for bad band names or options, or values that
            are not wide integers with no ``ms_scale`` to say what they are.
    """
    order, grouping, fill, scale = options
    if scale is None:
        if not (np.issubdtype(pixels.dtype, np.integer) and pixels.dtype.itemsize > 1):
            raise SampleError(
                "unsupported_image",
                f"{ref.path}: multispectral values of {pixels.dtype}; say how they map to "
                f"reflectance in the record's meta[{MS_SCALE_KEY!r}] (dn_per_unit, "
                "offset_dn, max_reflectance)",
            )
        scale = ReflectanceScale()  # Sentinel-2 style: DN = reflectance x 10000
    try:
        frames = multispectral_frames(
            pixels,
            bands=ref.bands or [f"band{i + 1}" for i in range(pixels.shape[0])],
            order=order,
            grouping=grouping,
            fill=fill,
            scale=scale,
            gsd=ref.gsd,
        )
    except SensorInputError as e:
        raise SampleError("unsupported_image", f"{ref.path}: {e}") from None
    images = [Image.fromarray(f, mode="RGB") for f in frames.frames]
    return images, frames.layout.to_dict()
