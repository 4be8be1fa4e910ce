"""The ground sampling distance (GSD) value: exact, a range, or unknown, always with its source.

ScaleEarth (sec. 2.2, 3.3) keeps three annotation states: an exact scalar, a range
``[g_lo, g_hi]`` for mixed-platform sources (its point estimate is the geometric mean,
the statistic the inference-time resolver uses), and unknown (later filled by an
estimator, never by a silent guess). :class:`GSD` carries one of those states plus
where it came from, so every number the model is conditioned on can be traced.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from earthvlm.errors import GSDError

#: Largest GSD accepted, in metres per pixel. Coarser than 100 km/pixel is not imagery
#: anyone conditions a VLM on: such a value is a unit error (degrees, kilometres) or garbage.
MAX_GSD_M = 100_000.0
#: Smallest GSD accepted, in metres per pixel: 0.1 mm. The finest imagery anyone feeds a
#: remote-sensing VLM is from drones (survey products reach about 5 mm per pixel,
#: close-range inspection about 0.5 mm), so 0.1 mm is below all of it, and a spoofing
#: sweep two decades under a 1 cm GSD (App. A.3's deltas reach -2) still fits. A smaller
#: value is a unit error (a pixel size in degrees taken as metres: 1 m is about 9e-6
#: degrees) or garbage such as 1e-300, whose log10 (-300) would put CS-HLoRA's scale
#: gates and the SSE-U loss hundreds of decades outside anything trained.
MIN_GSD_M = 1e-4


class GSDSource(StrEnum):
    """Where a GSD value came from (its provenance)."""

    METADATA = "metadata"  # a per-sample annotation: a dataset field, a DOTA ``gsd:`` header
    GEOREF = "georef"  # measured from the raster's CRS and geotransform (or GCPs / RPCs)
    SENSOR_TABLE = "sensor_table"  # a sensor recognised in a name, looked up in the table
    DATASET = "dataset"  # a dataset-level value or range (e.g. RSVQA-HR is 0.15 m)
    ESTIMATE = "estimate"  # predicted from pixels (SSE-U)
    DEFAULT = "default"  # the neutral fallback of the resolver (1 m)
    USER = "user"  # given by a person at run time (CLI flag, spoofing sweep)
    NONE = "none"  # nothing resolved: the value is unknown


class GSDKind(StrEnum):
    """The three annotation states of ScaleEarth's GSD injection."""

    EXACT = "exact"
    RANGE = "range"
    UNKNOWN = "unknown"


def check_gsd_m(value: Any, *, source: str = "value", detail: str = "") -> float:
    """Validate one GSD in metres per pixel and return it as a float.

    Args:
        value: The candidate GSD in metres per pixel.
        source: Where the value came from, named in the error message.
        detail: More context for the error message (a file, a field).

    Raises:
        GSDError: If the value is not a real number, not finite, not positive, below
            :data:`MIN_GSD_M` or above :data:`MAX_GSD_M`. The message names the value and
            where it came from.
    """
    where = f"{source}" + (f" ({detail})" if detail else "")
    if isinstance(value, bool):
        raise GSDError(f"GSD {value!r} from {where} is a boolean, not metres per pixel")
    if not isinstance(value, int | float):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise GSDError(
                f"GSD {value!r} from {where} is not a number; give metres per pixel "
                "as a number, or leave the GSD unknown."
            ) from None
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        raise GSDError(
            f"GSD {value!r} m from {where} is not finite; fix the source value or leave "
            "the GSD unknown."
        )
    if value <= 0:
        raise GSDError(
            f"GSD {value!r} m from {where} is not positive; a GSD is metres per pixel "
            "and must be > 0. Fix the source value or leave the GSD unknown."
        )
    if value < MIN_GSD_M:
        raise GSDError(
            f"GSD {value!r} m from {where} is below {MIN_GSD_M:g} m per pixel, finer than "
            "any imagery: check the units (a pixel size in degrees taken as metres?)."
        )
    if value > MAX_GSD_M:
        raise GSDError(
            f"GSD {value!r} m from {where} is above {MAX_GSD_M:g} m per pixel, which is "
            "not imagery: check the units (degrees or kilometres taken as metres?)."
        )
    return value


@dataclass(frozen=True, slots=True)
class GSD:
    """A ground sampling distance in metres per pixel, with its state and provenance.

    Build one with :meth:`exact`, :meth:`range` or :meth:`unknown`; the constructor
    validates every field. Instances are immutable and hashable.

    Attributes:
        kind: Exact, range or unknown.
        lo_m: Lower bound in metres per pixel (equal to ``hi_m`` when exact; ``None``
            when unknown).
        hi_m: Upper bound in metres per pixel.
        source: Where the value came from.
        detail: Human-readable provenance (a file, a sensor, a field).
        sigma_log10: For estimates, the predicted standard deviation of ``log10_gsd``.
    """

    kind: GSDKind
    lo_m: float | None = None
    hi_m: float | None = None
    source: GSDSource = GSDSource.NONE
    detail: str = ""
    sigma_log10: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", GSDKind(self.kind))
        object.__setattr__(self, "source", GSDSource(self.source))
        src, det = self.source.value, self.detail
        if self.kind is GSDKind.UNKNOWN:
            if self.lo_m is not None or self.hi_m is not None:
                raise GSDError(f"an unknown GSD from {src} cannot carry bounds")
            return
        if self.lo_m is None or self.hi_m is None:
            raise GSDError(f"a {self.kind.value} GSD from {src} needs lo_m and hi_m")
        lo = check_gsd_m(self.lo_m, source=src, detail=det)
        hi = check_gsd_m(self.hi_m, source=src, detail=det)
        if lo > hi:
            raise GSDError(
                f"GSD range [{lo:g}, {hi:g}] m from {src} ({det}) has lo > hi; swap the bounds."
            )
        if self.kind is GSDKind.EXACT and lo != hi:
            raise GSDError(f"an exact GSD from {src} needs lo_m == hi_m; use GSD.range()")
        object.__setattr__(self, "lo_m", lo)
        object.__setattr__(self, "hi_m", hi)
        if self.sigma_log10 is not None:
            s = float(self.sigma_log10)
            if not math.isfinite(s) or s < 0:
                raise GSDError(f"sigma_log10 {s!r} from {src} must be finite and >= 0")
            object.__setattr__(self, "sigma_log10", s)

    # -- constructors -----------------------------------------------------------------

    @classmethod
    def exact(
        cls,
        gsd_m: float,
        source: GSDSource | str = GSDSource.METADATA,
        detail: str = "",
        *,
        sigma_log10: float | None = None,
    ) -> GSD:
        """An exact GSD in metres per pixel."""
        v = check_gsd_m(gsd_m, source=str(GSDSource(source).value), detail=detail)
        return cls(GSDKind.EXACT, v, v, GSDSource(source), detail, sigma_log10)

    @classmethod
    def range(
        cls, lo_m: float, hi_m: float, source: GSDSource | str = GSDSource.DATASET, detail: str = ""
    ) -> GSD:
        """A GSD known only to lie in ``[lo_m, hi_m]`` metres per pixel."""
        return cls(GSDKind.RANGE, lo_m, hi_m, GSDSource(source), detail)

    @classmethod
    def unknown(cls, detail: str = "", source: GSDSource | str = GSDSource.NONE) -> GSD:
        """An unknown GSD; ``detail`` says why nothing resolved."""
        return cls(GSDKind.UNKNOWN, None, None, GSDSource(source), detail)

    # -- values -----------------------------------------------------------------------

    @property
    def is_known(self) -> bool:
        """True for exact and range values."""
        return self.kind is not GSDKind.UNKNOWN

    @property
    def point_m(self) -> float:
        """The point estimate in metres: the value, or the range's geometric mean.

        Raises:
            GSDError: If the GSD is unknown.
        """
        lo, hi = self.bounds_m
        return math.sqrt(lo * hi)

    @property
    def bounds_m(self) -> tuple[float, float]:
        """``(lo_m, hi_m)``; equal for exact values.

        Raises:
            GSDError: If the GSD is unknown.
        """
        if self.lo_m is None or self.hi_m is None:
            raise GSDError(
                f"the GSD is unknown ({self.detail or 'nothing resolved'}); resolve it first "
                "(metadata, sensor table or an estimator) or use the neutral default."
            )
        return self.lo_m, self.hi_m

    @property
    def log10_gsd(self) -> float:
        """``log10`` of the point estimate: the scale variable ``s`` of CS-HLoRA."""
        return math.log10(self.point_m)

    @property
    def log10_bounds(self) -> tuple[float, float]:
        """``(log10 lo, log10 hi)``; equal for exact values."""
        lo, hi = self.bounds_m
        return math.log10(lo), math.log10(hi)

    def sample_log10(self, rng: random.Random) -> float:
        """Draw ``s`` for training: uniform in the log range (ScaleEarth sec. 3.2).

        Exact values return their ``log10_gsd``; unknown values raise :class:`GSDError`.
        """
        lo, hi = self.log10_bounds
        return lo if lo == hi else rng.uniform(lo, hi)

    def scaled(self, factor: float, detail: str) -> GSD:
        """The GSD of a resampled view: ``factor`` > 1 for downsampling.

        A global view downsampled 8x has 8x the GSD of its source; a native crop keeps it.
        Provenance is kept, with ``detail`` appended. Unknown stays unknown.
        """
        if not (math.isfinite(factor) and factor > 0):
            raise GSDError(f"resampling factor {factor!r} must be finite and > 0")
        new_detail = f"{self.detail}; {detail}" if self.detail else detail
        if not self.is_known:
            return GSD.unknown(new_detail, self.source)
        lo, hi = self.bounds_m
        return GSD(
            self.kind,
            lo * factor,
            hi * factor,
            self.source,
            new_detail,
            self.sigma_log10,
        )

    # -- serialisation ----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` reads it back."""
        out: dict[str, Any] = {"kind": self.kind.value}
        if self.kind is GSDKind.EXACT:
            out["m"] = self.lo_m
        elif self.kind is GSDKind.RANGE:
            out["lo_m"], out["hi_m"] = self.lo_m, self.hi_m
        out["source"] = self.source.value
        if self.detail:
            out["detail"] = self.detail
        if self.sigma_log10 is not None:
            out["sigma_log10"] = self.sigma_log10
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GSD:
        """Read the dict written by :meth:`to_dict`.

        Raises:
            GSDError: On unknown keys or kinds, or invalid values.
        """
        allowed = {"kind", "m", "lo_m", "hi_m", "source", "detail", "sigma_log10"}
        extra = set(data) - allowed
        if extra:
            raise GSDError(f"unknown GSD field(s) {sorted(extra)}; allowed: {sorted(allowed)}")
        try:
            kind = GSDKind(data.get("kind", "exact" if "m" in data else "unknown"))
            source = GSDSource(data.get("source", "metadata" if "m" in data else "none"))
        except ValueError as e:
            raise GSDError(
                f"{e}; kind is one of {[k.value for k in GSDKind]}, "
                f"source one of {[s.value for s in GSDSource]}"
            ) from None
        detail = str(data.get("detail", ""))
        if kind is GSDKind.EXACT:
            if "m" not in data:
                raise GSDError("an exact GSD needs the field 'm' (metres per pixel)")
            return cls.exact(data["m"], source, detail, sigma_log10=data.get("sigma_log10"))
        if kind is GSDKind.RANGE:
            if "lo_m" not in data or "hi_m" not in data:
                raise GSDError("a range GSD needs the fields 'lo_m' and 'hi_m'")
            return cls(
                GSDKind.RANGE, data["lo_m"], data["hi_m"], source, detail, data.get("sigma_log10")
            )
        return cls.unknown(detail, source)

    @classmethod
    def coerce(cls, value: Any) -> GSD:
        """Accept a :class:`GSD`, its dict form, a bare number (exact metadata) or ``None``."""
        if isinstance(value, GSD):
            return value
        if value is None:
            return cls.unknown()
        if isinstance(value, dict):
            return cls.from_dict(value)
        return cls.exact(value, GSDSource.METADATA)

    @classmethod
    def __get_pydantic_core_schema__(cls, source_type: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_plain_validator_function(
            cls.coerce,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda g: g.to_dict()),
        )

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        return {
            "type": "object",
            "description": "GSD: {kind: exact|range|unknown, m | lo_m+hi_m, source, detail}",
        }

    def __str__(self) -> str:
        if self.kind is GSDKind.UNKNOWN:
            return "unknown"
        if self.kind is GSDKind.EXACT:
            return f"{format_m(self.point_m)}"
        lo, hi = self.bounds_m
        return f"{format_m(lo)}-{format_m(hi)}"


def format_m(metres: float) -> str:
    """Format a distance for people: ``0.15 m``, ``30 m``, ``13.9 km``."""
    if metres >= 1000:
        return f"{metres / 1000:.3g} km"
    if metres >= 100:
        return f"{metres:.0f} m"
    return f"{metres:.3g} m"
