"""Non-optical views as RGB-like frames: SAR as one pseudo-RGB frame, multispectral bands
as a multi-frame (video-like) sequence (EarthMind sec. 3.1, App. D and H).

A Qwen-VL vision tower sees three 8-bit channels. EarthMind feeds it other sensors by
formatting them the same way:

* **SAR** with one or two polarisations (``VV``; ``VV``/``VH``) becomes one pseudo-RGB
  frame. The missing channels are **zero-padded** by default, the paper's choice (App. H,
  Table C: zero-padding beats channel replication on every SAR split). Replication
  (``fill="replicate"``) is kept as an option: it is what the public EarthMind release
  does, and what the Qwen image processor does to a grey ``(H, W)`` array, so pass the
  frames built here (``(H, W, 3)``) and never the raw band. Backscatter is written in dB
  through a recorded linear map (:class:`DbScale`, by default the synthetic world's
  ``dB = value / 255 * 40 - 30``).
* **Multispectral** bands are grouped, in order, into three-band frames (the paper's
  default) or one band per frame (``grouping="single_band"``, slightly better in App. H
  at three times the tokens). A last frame with fewer than three bands is filled like
  SAR. Reflectance is written through a recorded linear map (:class:`ReflectanceScale`).

Every result is a :class:`SensorFrames`: the frames ``(T, H, W, 3)`` uint8 channels-last
(what :class:`~earthvlm.data.pixels.PixelProcessor` takes frame by frame), a
:class:`FrameLayout` that records which band sits in which channel of which frame and
how values were scaled, and the GSD of the view itself (views of one scene keep their
own GSD: Sentinel-1 and an aerial RGB of the same footprint do not share one).

NumPy only: the data layer imports no torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from earthvlm.errors import EarthVLMError
from earthvlm.scale.gsd import GSD

SarUnits = Literal["uint8_db", "db", "linear_power"]
Fill = Literal["zero", "replicate"]
Grouping = Literal["three_band", "single_band"]

SAR_UNITS: tuple[str, ...] = ("uint8_db", "db", "linear_power")
FILLS: tuple[str, ...] = ("zero", "replicate")
GROUPINGS: tuple[str, ...] = ("three_band", "single_band")
#: Linear backscatter at or below this is written as the floor of the dB scale (-100 dB).
_MIN_LINEAR_POWER = 1e-10


class SensorInputError(EarthVLMError, ValueError):
    """A sensor array or its description cannot be turned into frames."""


@dataclass(frozen=True)
class DbScale:
    """The linear map between 8-bit values and SAR backscatter in dB.

    ``dB = value / 255 * span_db + min_db``; values outside ``[min_db, min_db + span_db]``
    are clipped. The defaults are the synthetic world's (``earthvlm.synth.render``'s
    ``SAR_DB_MIN`` and ``SAR_DB_SPAN``), which cover calm water to metal returns.

    Attributes:
        min_db: Backscatter written as 0.
        span_db: Backscatter range written over 0..255.
    """

    min_db: float = -30.0
    span_db: float = 40.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.min_db) and math.isfinite(self.span_db) and self.span_db > 0):
            raise ValueError(
                f"DbScale needs a finite min_db and span_db > 0, got {self.min_db}, {self.span_db}"
            )

    def to_uint8(self, db: np.ndarray) -> np.ndarray:
        """Backscatter in dB (NaN allowed: written as 0) -> uint8."""
        v = np.clip((np.asarray(db, dtype=np.float64) - self.min_db) / self.span_db, 0.0, 1.0)
        return np.nan_to_num(v * 255 + 0.5, nan=0.0).astype(np.uint8)

    def to_db(self, value: np.ndarray) -> np.ndarray:
        """uint8 values -> backscatter in dB (float32)."""
        return (np.asarray(value, dtype=np.float32) / 255 * self.span_db + self.min_db).astype(
            np.float32
        )

    def formula(self) -> str:
        """The map as text (the same text the synthetic dataset writes in ``sar_scaling``)."""
        return f"dB = value / 255 * {self.span_db:g} + {self.min_db:g}"


@dataclass(frozen=True)
class ReflectanceScale:
    """The linear map from stored digital numbers (DN) to 8-bit values, via reflectance.

    ``reflectance = (DN + offset_dn) / dn_per_unit`` and
    ``value = clip(reflectance / max_reflectance, 0, 1) * 255``. The defaults fit
    Sentinel-2 L2A before processing baseline 04.00 (and the synthetic world): DN =
    reflectance x 10000. From baseline 04.00 on, pass ``offset_dn=-1000`` (the product's
    ``BOA_ADD_OFFSET``). ``max_reflectance=0.6`` keeps the NIR plateau of vegetation and
    bright SWIR soils below saturation; clouds and snow saturate.

    Attributes:
        dn_per_unit: DN of reflectance 1 (1 for arrays already in reflectance).
        offset_dn: Added to DN before dividing.
        max_reflectance: Reflectance written as 255.
    """

    dn_per_unit: float = 10000.0
    offset_dn: float = 0.0
    max_reflectance: float = 0.6

    def __post_init__(self) -> None:
        ok = all(math.isfinite(v) for v in (self.dn_per_unit, self.offset_dn, self.max_reflectance))
        if not (ok and self.dn_per_unit > 0 and self.max_reflectance > 0):
            raise ValueError(
                "ReflectanceScale needs dn_per_unit > 0, max_reflectance > 0 and a finite "
                f"offset_dn, got {self.dn_per_unit}, {self.max_reflectance}, {self.offset_dn}"
            )

    def to_uint8(self, dn: np.ndarray) -> np.ndarray:
        """DN (NaN allowed: written as 0) -> uint8."""
        refl = (np.asarray(dn, dtype=np.float64) + self.offset_dn) / self.dn_per_unit
        v = np.clip(refl / self.max_reflectance, 0.0, 1.0)
        return np.nan_to_num(v * 255 + 0.5, nan=0.0).astype(np.uint8)

    def formula(self) -> str:
        """The map as text."""
        dn = f"(DN + {self.offset_dn:g})" if self.offset_dn else "DN"
        return (
            f"reflectance = {dn} / {self.dn_per_unit:g}; "
            f"value = clip(reflectance / {self.max_reflectance:g}, 0, 1) * 255"
        )


#: One frame's channels: a band name, or ``None`` for a zero-padded channel.
FrameBands = tuple[str | None, str | None, str | None]


@dataclass(frozen=True)
class FrameLayout:
    """Which band sits in which channel of which frame, and how values were scaled.

    Saved with a sample (``to_dict``) so that a model, a plot or a person can read the
    frames back as physical values.

    Attributes:
        modality: ``sar`` or ``multispectral``.
        frame_bands: Per frame, the band in each of the three channels; ``None`` marks a
            zero-padded channel, a repeated name a replicated one.
        fill: How frames with fewer than three bands were filled (``zero`` or
            ``replicate``).
        grouping: ``three_band`` or ``single_band`` (``three_band`` for SAR: one frame).
        scaling: The value map as text (``DbScale.formula()``, ``ReflectanceScale.formula()``).
        units: What the input held (``uint8_db``, ``db``, ``linear_power`` for SAR;
            ``dn`` for multispectral).
    """

    modality: Literal["sar", "multispectral"]
    frame_bands: tuple[FrameBands, ...]
    fill: Fill
    grouping: Grouping
    scaling: str
    units: str

    @property
    def n_frames(self) -> int:
        return len(self.frame_bands)

    @property
    def bands(self) -> tuple[str, ...]:
        """The bands in the order they first appear in the frames."""
        seen: dict[str, None] = {}
        for frame in self.frame_bands:
            for b in frame:
                if b is not None:
                    seen.setdefault(b, None)
        return tuple(seen)

    def to_dict(self) -> dict[str, Any]:
        return {
            "modality": self.modality,
            "frame_bands": [list(f) for f in self.frame_bands],
            "fill": self.fill,
            "grouping": self.grouping,
            "scaling": self.scaling,
            "units": self.units,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FrameLayout:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise SensorInputError(f"unknown frame layout field(s) {sorted(unknown)}")
        kw = dict(d)
        kw["frame_bands"] = tuple(tuple(f) for f in kw["frame_bands"])
        return cls(**kw)


@dataclass(frozen=True, eq=False)
class SensorFrames:
    """A sensor view as RGB-like frames, ready for the image (or video) processor.

    Attributes:
        frames: ``(T, H, W, 3)`` uint8, channels-last.
        layout: Band order and value scaling.
        gsd: The GSD of this view (not of the other views of the same scene).
        nodata_px: Input pixels (summed over bands) that were NaN, inf or negative power,
            written as 0.
    """

    frames: np.ndarray
    layout: FrameLayout
    gsd: GSD = field(default_factory=GSD.unknown)
    nodata_px: int = 0

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @property
    def size_hw(self) -> tuple[int, int]:
        return int(self.frames.shape[1]), int(self.frames.shape[2])


def _channel_first(array: np.ndarray, what: str, max_bands: int | None) -> np.ndarray:
    a = np.asarray(array)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[0] < 1 or a.shape[1] < 1 or a.shape[2] < 1:
        raise SensorInputError(
            f"{what} array of shape {np.shape(array)}: give (H, W) or channels-first "
            "(bands, H, W), as rasterio reads it"
        )
    if max_bands is not None and a.shape[0] > max_bands:
        hint = "; channels-last? pass array.transpose(2, 0, 1)" if a.shape[2] <= max_bands else ""
        raise SensorInputError(
            f"{what} array of shape {a.shape} has {a.shape[0]} bands, at most {max_bands} "
            f"allowed{hint}"
        )
    return a


def _band_names(bands: Sequence[str] | None, n: int, what: str) -> tuple[str, ...]:
    if bands is None:
        return tuple(f"band{i + 1}" for i in range(n))
    names = tuple(bands)
    if len(names) != n:
        raise SensorInputError(f"{what}: {len(names)} band names {list(names)} for {n} bands")
    if any(not isinstance(b, str) or not b.strip() for b in names) or len(set(names)) != n:
        raise SensorInputError(f"{what}: band names must be distinct non-empty strings: {names}")
    return names


def _check_choice(value: str, allowed: tuple[str, ...], name: str) -> None:
    if value not in allowed:
        raise SensorInputError(f"{name} must be one of {allowed}, got {value!r}")


def _frame_bands(names: Sequence[str], fill: Fill) -> FrameBands:
    """Three channels from one to three bands: zeros, or the bands repeated in order."""
    k = len(names)
    out = [*names, None, None][:3] if fill == "zero" else [names[i % k] for i in range(3)]
    return (out[0], out[1], out[2])


def _assemble(
    planes: dict[str, np.ndarray], frame_bands: Sequence[FrameBands], h: int, w: int
) -> np.ndarray:
    frames = np.zeros((len(frame_bands), h, w, 3), dtype=np.uint8)
    for t, fb in enumerate(frame_bands):
        for c, band in enumerate(fb):
            if band is not None:
                frames[t, :, :, c] = planes[band]
    return frames


def sar_frames(
    sar: np.ndarray,
    *,
    bands: Sequence[str] | None = None,
    units: SarUnits = "uint8_db",
    scale: DbScale | None = None,
    fill: Fill = "zero",
    gsd: GSD | None = None,
) -> SensorFrames:
    """One pseudo-RGB frame from a one- or two-channel SAR array (EarthMind App. H).

    Channels go in order into R, G (``VV`` -> R; ``VV, VH`` -> R, G); the rest is zeros
    (``fill="zero"``, the paper's default) or the bands repeated in order
    (``fill="replicate"``: ``VV, VV, VV`` or ``VV, VH, VV``, the release's behaviour).

    Args:
        sar: ``(H, W)`` or ``(C, H, W)`` with C = 1 or 2.
        bands: Band names (``["VV"]``, ``["VV", "VH"]``); default ``band1``, ``band2``.
        units: ``uint8_db`` (already written through ``scale``, as the synthetic world
            writes SAR), ``db`` (float backscatter in dB) or ``linear_power`` (float
            sigma0, converted with ``10 log10``).
        scale: The dB <-> uint8 map (default :class:`DbScale`).
        fill: ``zero`` or ``replicate``.
        gsd: The GSD of this view.

    Raises:
        SensorInputError: For a bad shape, dtype, band list or option.
    """
    _check_choice(units, SAR_UNITS, "units")
    _check_choice(fill, FILLS, "fill")
    scale = scale or DbScale()
    a = _channel_first(sar, "SAR", max_bands=2)
    names = _band_names(bands, a.shape[0], "SAR")
    nodata = 0
    if units == "uint8_db":
        if a.dtype != np.uint8:
            raise SensorInputError(
                f"SAR with units='uint8_db' must be uint8, got {a.dtype}; for float "
                "backscatter pass units='db' or units='linear_power'"
            )
        planes = a
    else:
        if not np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_:
            raise SensorInputError(f"SAR values of dtype {a.dtype} are not numbers")
        x = a.astype(np.float64)
        bad = ~np.isfinite(x)
        if units == "linear_power":
            bad |= x < 0
            x = 10 * np.log10(np.maximum(np.where(bad, 1.0, x), _MIN_LINEAR_POWER))
        nodata = int(bad.sum())
        planes = scale.to_uint8(np.where(bad, np.nan, x))
    layout = FrameLayout(
        modality="sar",
        frame_bands=(_frame_bands(names, fill),),
        fill=fill,
        grouping="three_band",
        scaling=scale.formula(),
        units=units,
    )
    h, w = a.shape[1:]
    frames = _assemble(dict(zip(names, planes, strict=True)), layout.frame_bands, h, w)
    return SensorFrames(frames, layout, gsd or GSD.unknown(), nodata)


def multispectral_frames(
    ms: np.ndarray,
    *,
    bands: Sequence[str],
    order: Sequence[str] | None = None,
    grouping: Grouping = "three_band",
    fill: Fill = "zero",
    scale: ReflectanceScale | None = None,
    gsd: GSD | None = None,
) -> SensorFrames:
    """A multi-frame sequence from multispectral bands (EarthMind sec. 3.1, App. H).

    Bands are taken in ``order`` (default: file order) and grouped: three consecutive
    bands per frame (``three_band``, the paper's default) or one band per frame
    (``single_band``). A frame with fewer than three bands is filled with zeros or its
    bands repeated (``fill``). With Sentinel-2 file order ``B02, B03, B04`` the first
    frame is blue-green-red in the R-G-B slots; pass ``order=("B04", "B03", "B02", ...)``
    for a true-colour first frame.

    Args:
        ms: ``(B, H, W)`` digital numbers (or reflectance with ``dn_per_unit=1``).
        bands: Band names in file order.
        order: Bands to use, in frame order (a subset or permutation of ``bands``).
        grouping: ``three_band`` or ``single_band``.
        fill: ``zero`` or ``replicate``.
        scale: The DN -> uint8 map (default :class:`ReflectanceScale`).
        gsd: The GSD of this view.

    Raises:
        SensorInputError: For a bad shape, dtype, band list or option.
    """
    _check_choice(grouping, GROUPINGS, "grouping")
    _check_choice(fill, FILLS, "fill")
    scale = scale or ReflectanceScale()
    a = _channel_first(ms, "multispectral", max_bands=None)
    if not np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_:
        raise SensorInputError(f"multispectral values of dtype {a.dtype} are not numbers")
    names = _band_names(bands, a.shape[0], "multispectral")
    use = names if order is None else tuple(order)
    unknown = [b for b in use if b not in names]
    if unknown or len(set(use)) != len(use) or not use:
        raise SensorInputError(
            f"order {list(use)} must name distinct bands of {list(names)} (unknown: {unknown})"
        )
    index = {b: i for i, b in enumerate(names)}
    x = a[[index[b] for b in use]].astype(np.float64)
    bad = ~np.isfinite(x)
    planes = scale.to_uint8(np.where(bad, np.nan, x))
    per = 3 if grouping == "three_band" else 1
    groups = [use[i : i + per] for i in range(0, len(use), per)]
    layout = FrameLayout(
        modality="multispectral",
        frame_bands=tuple(_frame_bands(g, fill) for g in groups),
        fill=fill,
        grouping=grouping,
        scaling=scale.formula(),
        units="dn",
    )
    h, w = a.shape[1:]
    frames = _assemble(dict(zip(use, planes, strict=True)), layout.frame_bands, h, w)
    return SensorFrames(frames, layout, gsd or GSD.unknown(), int(bad.sum()))
