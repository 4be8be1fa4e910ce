"""The GSD resolver chain of GeoScale-VQA's GSD injection (ScaleEarth sec. 2.2, Fig. 3A).

Metadata parse -> sensor lookup -> assignment as exact, range or unknown, with the
provenance of the step that decided and a trace of every step tried. In order:

1. ``metadata``: a per-sample value from the annotation (a dataset field, a DOTA
   ``gsd:`` header).
2. ``georef``: the raster's own georeferencing (CRS + geotransform, GCPs or RPCs). It
   describes the file as delivered, so it beats any table.
3. ``filename``: a sensor product recognised in the file name, looked up in the table.
4. ``sensor``: a dataset-level sensor name (``sentinel-2``), looked up in the table.
5. ``dataset``: a dataset-level value or range (a known public dataset, or given).
6. Otherwise unknown. Unknown stays unknown: an estimator (SSE-U) fills it later, and
   only the inference-time resolver of sec. 3.3 falls back to the neutral 1 m.

A metadata value that disagrees with the file's georeferencing by more than 2x is kept
(the annotation decides) but the disagreement is reported in the trace. So is a sensor
recognised in the file name whose GSD the georeferencing contradicts by more than 25 %
(a resampled or renamed product, e.g. a 20 m Sentinel-2 band at 10 m): the
georeferencing decides, the trace and the resolved GSD's detail carry both values, and
a :class:`GSDConflictWarning` is issued.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from earthvlm.errors import RasterError
from earthvlm.scale.georef import GeorefGSD, gsd_from_raster
from earthvlm.scale.gsd import GSD, GSDSource
from earthvlm.scale.sensors import (
    dataset_gsd,
    lookup_sensor,
    parse_dota_header,
    parse_sensor_name,
)

#: How far the georeferencing may lie outside a file-name sensor's GSD (or range)
#: before the two are reported as disagreeing: a product's own grid matches its table
#: value to a few per cent, a resampled one is off by 2x or more.
NAME_AGREE_FACTOR = 1.25


class GSDConflictWarning(UserWarning):
    """Two sources of one file's GSD disagree (the message gives both values)."""


def _disagree(value: GSD, other: GSD, factor: float) -> bool:
    """Whether ``value``'s point lies more than ``factor`` outside ``other``'s bounds."""
    lo, hi = other.bounds_m
    return not lo / factor <= value.point_m <= hi * factor


@dataclass(frozen=True)
class Step:
    """One step of the chain: its name, what it found, and why."""

    step: str
    outcome: str  # "used", "skipped", "none", "error", "warning"
    detail: str = ""


@dataclass(frozen=True)
class Resolution:
    """The resolved GSD, the per-axis georeferenced sizes if measured, and the trace."""

    gsd: GSD
    georef: GeorefGSD | None = None
    trace: tuple[Step, ...] = field(default_factory=tuple)

    @property
    def decided_by(self) -> str:
        """The name of the step that decided, or ``"unknown"``."""
        for s in self.trace:
            if s.outcome == "used":
                return s.step
        return "unknown"


def resolve_gsd(
    path: str | Path | None = None,
    *,
    metadata_m: float | GSD | None = None,
    sensor: str | None = None,
    dataset: str | None = None,
    gsd_range_m: tuple[float, float] | None = None,
    read_georef: bool = True,
    allow_vrt: bool = False,
) -> Resolution:
    """Resolve the GSD of one image through the chain described in the module docstring.

    Args:
        path: The image file (read for georeferencing; its name is parsed for a sensor).
        metadata_m: A per-sample GSD from the annotation (metres, or a :class:`GSD`).
        sensor: A dataset-level sensor key from :data:`~earthvlm.scale.sensors.SENSORS`.
        dataset: A public dataset key from :data:`~earthvlm.scale.sensors.DATASETS`.
        gsd_range_m: A dataset-level range ``(lo, hi)`` in metres.
        read_georef: Open the file to read its georeferencing (header only).
        allow_vrt: Accept a VRT (see :func:`~earthvlm.geo.raster.open_raster`).

    Returns:
        The resolution. Never a silent guess: unknown when nothing resolved.

    Raises:
        GSDError: For an invalid metadata value, an unknown sensor or dataset key, or an
            invalid range (configuration errors, not per-file conditions).
        RasterError: If ``read_georef`` and the file is refused or cannot be opened.
    """
    trace: list[Step] = []
    meta: GSD | None = None
    if metadata_m is not None:
        meta = (
            metadata_m
            if isinstance(metadata_m, GSD)
            else GSD.exact(metadata_m, GSDSource.METADATA, "per-sample annotation")
        )
        if not meta.is_known:
            meta = None
    # configuration is checked up front, whichever step ends up deciding
    later: list[tuple[str, GSD | None]] = []
    if path is not None:
        match = parse_sensor_name(path)
        later.append(("filename", match.gsd if match else None))
    if sensor:
        later.append(("sensor", lookup_sensor(sensor).gsd(None, f"dataset sensor {sensor!r}")))
    if dataset:
        later.append(("dataset", dataset_gsd(dataset)))
    if gsd_range_m:
        later.append(("range", GSD.range(*gsd_range_m, GSDSource.DATASET, "dataset-level range")))

    georef: GeorefGSD | None = None
    if path is not None and read_georef:
        georef = gsd_from_raster(path, allow_vrt=allow_vrt)

    chosen: GSD | None = None
    if meta is not None:
        chosen = meta
        trace.append(Step("metadata", "used", meta.detail or str(meta)))
    else:
        trace.append(Step("metadata", "none", "no per-sample GSD"))

    if georef is not None:
        if georef.gsd.is_known:
            if chosen is None:
                chosen = georef.gsd
                trace.append(Step("georef", "used", georef.gsd.detail))
            else:
                ratio = chosen.point_m / georef.gsd.point_m
                outcome = "warning" if not 0.5 <= ratio <= 2.0 else "skipped"
                trace.append(Step("georef", outcome, f"file says {georef.gsd}, metadata {chosen}"))
        else:
            trace.append(Step("georef", "none", georef.gsd.detail))
    elif path is not None:
        trace.append(Step("georef", "skipped", "not read"))

    georef_decided = any(t.step == "georef" and t.outcome == "used" for t in trace)
    for name, candidate in later:
        if candidate is None:
            trace.append(Step(name, "none", "no sensor recognised in the name"))
            continue
        if chosen is None:
            chosen = candidate
            trace.append(Step(name, "used", candidate.detail))
        elif (
            name == "filename"
            and georef_decided
            and _disagree(chosen, candidate, NAME_AGREE_FACTOR)
        ):
            note = (
                f"the file name says {candidate} ({candidate.detail}) but the "
                f"georeferencing says {chosen}; using the georeferencing (a resampled or "
                "renamed product?)"
            )
            trace.append(Step(name, "warning", note))
            chosen = dataclasses.replace(chosen, detail=f"{chosen.detail}; WARNING: {note}")
            warnings.warn(f"{path}: {note}", GSDConflictWarning, stacklevel=2)
        else:
            trace.append(Step(name, "skipped", f"{candidate} (an earlier step decided)"))

    if chosen is None:
        geo_why = georef.gsd.detail if georef is not None else "georeferencing not read"
        chosen = GSD.unknown(f"nothing resolved: {geo_why}; no sensor in the name")
    return Resolution(chosen, georef, tuple(trace))


def resolve_file(path: str | Path, *, allow_vrt: bool = True) -> Resolution:
    """Resolve a file a person named: a raster (georeferencing, then its name) or a DOTA
    label ``.txt`` (its ``gsd:`` header, then its name).

    Raises:
        RasterError: If a raster cannot be opened (the message names the file).
        GSDError: If a header holds an invalid GSD.
    """
    p = Path(path)
    if p.suffix.lower() == ".txt":
        if not p.is_file():
            raise RasterError(f"{p}: no such file")
        with open(p, encoding="utf-8", errors="replace") as f:
            head = f.read(4096)
        header = parse_dota_header(head, where=p.name)
        return resolve_gsd(p, metadata_m=header, read_georef=False)
    return resolve_gsd(p, allow_vrt=allow_vrt)
