"""Opening rasters safely, and reading their pixels with errors that name the file.

GDAL (under rasterio) opens far more than images: a VRT is XML that may be named
``.tif`` and can read any local file or fetch a URL. Data from a dataset must not be
able to do that (see the project's notes on untrusted inputs). So :func:`open_raster`

* refuses URLs, GDAL virtual paths (``/vsi...``) and anything that is not a local file;
* sniffs the file's magic bytes and opens it with that format's driver only;
* accepts a VRT only when the caller asks (``allow_vrt=True``, e.g. a path a person
  typed), only if it uses nothing but the elements and attributes of a simple-source
  VRT (compared case-insensitively, as GDAL compares them) and only if every source it
  references stays inside the VRT's own folder and has no sidecar files;
* opens under :data:`SAFE_GDAL_OPTIONS`, so GDAL consults no sidecar file: an
  ``X.tif.ovr`` (overviews), ``X.tif.msk`` (mask) or ``X.tif.aux.xml`` (georeferencing,
  metadata) beside the file is ignored, because any of them may be a VRT that reads
  another file, or may rewrite the GSD;
* checks dimensions and band count right after opening (huge sizes in a tiny file are
  refused before any pixel is decoded).

Corrupt tiled GeoTIFFs often open fine and fail only when a tile is read: the header
(and hence the georeferencing) stays usable, while :func:`read_pixels` raises a
:class:`~earthvlm.errors.RasterError` naming the file.

A raster larger than a full-decode budget is read at a reduced size by
:func:`read_reduced`: from the coarsest internal overview still at least as fine as the
output (GDAL resampling block by block), so the full-resolution raster is never held in
memory; without a coarse enough overview every source pixel is decoded once, block by
block, which :data:`DEFAULT_MAX_SCAN_PIXELS` bounds.
"""

from __future__ import annotations

import re
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
import rasterio
import rasterio.enums
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from earthvlm.errors import RasterError
from earthvlm.io import atomic_path

#: Largest width or height accepted on open. The largest public RS scenes are ~30k px a
#: side; 2^20 leaves room for mosaics while refusing absurd headers.
MAX_SIDE_PX = 1 << 20
#: Most bands accepted (hyperspectral cubes reach a few hundred).
MAX_BANDS = 1024
#: Default pixel budget for a full (non-windowed) decode: the Pillow bomb threshold.
DEFAULT_MAX_READ_PIXELS = 89_478_485
#: Default most source pixels one reduced read may decode (about 32,768 px a side): its
#: memory stays that of the output (and GDAL's block cache), but its time grows with them.
DEFAULT_MAX_SCAN_PIXELS = 1 << 30

#: GDAL config options in force whenever this module opens a raster. ``EMPTY_DIR`` makes
#: GDAL believe the file's folder holds nothing else, so it finds no sidecar (``.ovr``,
#: ``.msk``, ``.aux``, ``.aux.xml``, world files), not at open and not later when an
#: overview or mask is first read (the sibling list is fixed at open). ``TRUE`` would
#: not do: GDAL then probes each sidecar name with ``stat``. PAM off stops ``.aux.xml``
#: from being read (and GDAL from writing one into a dataset's folder).
SAFE_GDAL_OPTIONS: dict[str, str] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_PAM_ENABLED": "NO",
}
#: Largest VRT file accepted (bytes): a mosaic of some 100,000 sources.
MAX_VRT_BYTES = 32 << 20
#: Sidecar suffixes GDAL opens beside a raster (``X.tif`` + suffix, compared ignoring
#: case), refused next to a VRT's sources (they are opened when pixels are read, after
#: :func:`open_raster` returns, so :data:`SAFE_GDAL_OPTIONS` cannot cover them).
SIDECAR_SUFFIXES = (".ovr", ".msk", ".aux", ".aux.xml")
# The elements of a simple-source VRT (what gdalbuildvrt and gdal_translate -of VRT
# write), each with the attributes it may carry, lower-cased: GDAL matches names
# ignoring case. Everything else is refused: derived and warped bands, kernel filters,
# open options, XML metadata (format="xml"), namespaces.
_VRT_BARE_ELEMENTS = (  # elements without attributes
    "sourceband geotransform colorinterp nodatavalue hidenodatavalue colortable description "
    "unittype offset scale categorynames category scaleoffset scaleratio nodata usemaskband "
    "lut colortablecomponent exponent srcmin srcmax dstmin dstmax overview maskband "
    "blockxsize blockysize"
)
_VRT_SCHEMA: dict[str, tuple[str, ...]] = {
    "vrtdataset": ("rasterxsize", "rasterysize"),
    "vrtrasterband": ("datatype", "band", "blockxsize", "blockysize"),
    "simplesource": ("resampling",),
    "complexsource": ("resampling",),
    "sourcefilename": ("relativetovrt", "shared"),
    "sourceproperties": ("rasterxsize", "rasterysize", "datatype", "blockxsize", "blockysize"),
    "srcrect": ("xoff", "yoff", "xsize", "ysize"),
    "dstrect": ("xoff", "yoff", "xsize", "ysize"),
    "srs": ("dataaxistosrsaxismapping",),
    "gcplist": ("projection", "dataaxistosrsaxismapping"),
    "gcp": ("id", "info", "pixel", "line", "x", "y", "z"),
    "metadata": ("domain",),
    "mdi": ("key",),
    "entry": ("c1", "c2", "c3", "c4"),
    "overviewlist": ("resampling",),
    **dict.fromkeys(_VRT_BARE_ELEMENTS.split(), ()),
}
_VRT_DTD = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
# GDAL driver-prefixed connection strings ("GTIFF_DIR:1:...", "NETCDF:...", "HDF5:...")
_CONNECTION = re.compile(r"^[A-Za-z][A-Za-z0-9_]*:")

# (magic prefix, GDAL driver). BigTIFF and both byte orders of TIFF.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"II*\x00", "GTiff"),
    (b"MM\x00*", "GTiff"),
    (b"II+\x00", "GTiff"),
    (b"MM\x00+", "GTiff"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JP2OpenJPEG"),
    (b"\xff\x4f\xff\x51", "JP2OpenJPEG"),
    (b"NITF", "NITF"),
)


def check_local_path(path: str | Path) -> Path:
    """Refuse URLs and GDAL virtual paths; return the path if it is an existing file.

    Raises:
        RasterError: For a URL, a ``/vsi...`` path, or a path that is not a regular file.
    """
    s = str(path)
    if "\x00" in s:
        raise RasterError(f"{s!r}: path contains a NUL byte")
    if _URL.match(s) or s.startswith(("/vsi", "vsi")):
        raise RasterError(
            f"{s}: URLs and GDAL virtual paths are refused; download the file and pass a "
            "local path."
        )
    p = Path(s)
    if not p.exists():
        raise RasterError(f"{p}: no such file")
    if not p.is_file():
        raise RasterError(f"{p}: not a regular file")
    return p


def sniff_driver(path: Path) -> str:
    """The GDAL driver for a file, from its first bytes (``VRT`` for VRT XML).

    Raises:
        RasterError: If the bytes match no supported raster format.
    """
    with open(path, "rb") as f:
        head = f.read(512)
    for magic, driver in _MAGIC:
        if head.startswith(magic):
            return driver
    text = head.lstrip()
    if text.startswith(b"<VRTDataset") or (text.startswith(b"<?xml") and b"<VRTDataset" in text):
        return "VRT"
    raise RasterError(
        f"{path}: not a supported raster (GeoTIFF, PNG, JPEG, JPEG 2000, NITF); "
        f"first bytes {head[:8]!r}"
    )


def check_vrt_sources(path: Path) -> None:
    """Refuse a VRT that could read anything but plain rasters inside its own folder.

    Only the elements and attributes of a simple-source VRT are accepted, compared
    ignoring case as GDAL does (``<SOURCEFILENAME>`` is ``<SourceFilename>`` to GDAL).
    Every source must be a relative path inside the VRT's folder (or an absolute one that
    resolves there), an existing raster that is not itself a VRT, with no sidecar files
    (:data:`SIDECAR_SUFFIXES`).

    Raises:
        RasterError: Naming the offending element, attribute or source.
    """
    if path.stat().st_size > MAX_VRT_BYTES:
        raise RasterError(f"{path}: VRT is over {MAX_VRT_BYTES:,} bytes; refused")
    data = path.read_bytes()
    if _VRT_DTD.search(data):
        # entities would be expanded by this check's parser and not by GDAL's
        raise RasterError(f"{path}: VRT has a DOCTYPE or ENTITY declaration; refused")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise RasterError(f"{path}: VRT is not valid XML ({e})") from None
    if root.tag.lower() != "vrtdataset":
        raise RasterError(f"{path}: VRT root element is {root.tag!r}, not VRTDataset")
    base = path.resolve().parent
    for el in root.iter():
        attrs = {name.lower(): value for name, value in el.attrib.items()}
        if "subclass" in attrs:
            # derived (pixel functions, Python code) and warped VRTs: not needed, refused
            raise RasterError(
                f"{path}: VRT element {el.tag} subClass={attrs['subclass']!r} is refused; "
                "only simple source VRTs are accepted."
            )
        allowed = _VRT_SCHEMA.get(el.tag.lower())
        if allowed is None:
            raise RasterError(
                f"{path}: VRT element <{el.tag}> is refused; only the elements of a simple "
                "source VRT are accepted (convert it with gdal_translate if you trust it)."
            )
        if len(attrs) != len(el.attrib):
            raise RasterError(f"{path}: VRT element <{el.tag}> repeats an attribute name")
        for name in el.attrib:
            if name.lower() not in allowed:
                raise RasterError(f"{path}: VRT attribute {name!r} of <{el.tag}> is refused")
        if el.tag.lower() == "sourcefilename":
            _check_vrt_source(path, base, el.text or "", attrs.get("relativetovrt", "0"))


def _check_vrt_source(path: Path, base: Path, text: str, relative_flag: str) -> None:
    """Refuse one ``<SourceFilename>`` of ``path`` unless it is a plain raster in ``base``."""
    if relative_flag not in ("0", "1"):
        raise RasterError(f"{path}: VRT relativeToVRT={relative_flag!r}; give 0 or 1")
    if text != text.strip() or any(ord(c) < 32 for c in text):
        raise RasterError(f"{path}: VRT source {text!r} has surrounding space or control chars")
    relative = relative_flag == "1"
    # plain file paths only: no URLs, /vsi paths or GDAL connection strings
    # (e.g. "GTIFF_DIR:1:/elsewhere/x.tif", which GDAL opens whatever the prefix)
    if _URL.match(text) or _CONNECTION.match(text) or text.lower().startswith(("/vsi", "vsi")):
        raise RasterError(
            f"{path}: VRT source {text!r} is a URL, virtual path or connection string; refused"
        )
    if not relative and not Path(text).is_absolute():
        # GDAL would resolve it against the current directory, not the VRT's folder
        raise RasterError(f"{path}: VRT source {text!r} is relative to the working directory")
    target = (base / text) if relative else Path(text)
    resolved = target.resolve()
    if not resolved.is_relative_to(base):
        raise RasterError(
            f"{path}: VRT source {text!r} lies outside the VRT's folder {base}; refused "
            "(a VRT from a dataset must not read arbitrary files)."
        )
    if not resolved.is_file():
        raise RasterError(f"{path}: VRT source {text!r} is not an existing file")
    if sniff_driver(resolved) == "VRT":
        raise RasterError(
            f"{path}: VRT source {text!r} is itself a VRT; nested VRTs are refused "
            "(their sources would escape this check)."
        )
    found = sidecars(target) + sidecars(resolved)
    if found:
        raise RasterError(
            f"{path}: VRT source {text!r} has sidecar file(s) {sorted({f.name for f in found})}"
            ", which GDAL would open when the VRT is read; refused. Remove them or "
            "convert the VRT to a GeoTIFF (gdal_translate) if you trust them."
        )


def sidecars(path: Path) -> list[Path]:
    """The sidecar files GDAL may open beside ``path`` (:data:`SIDECAR_SUFFIXES`, any case)."""
    names = {(path.name + suffix).lower() for suffix in SIDECAR_SUFFIXES}
    names |= {(path.stem + suffix).lower() for suffix in (".ovr", ".aux", ".msk")}
    try:
        return [f for f in path.parent.iterdir() if f.name.lower() in names]
    except OSError:
        return []


def _gdal_open(path: str | Path, driver: str, **kwargs: object) -> rasterio.io.DatasetReader:
    """``rasterio.open`` for reading under :data:`SAFE_GDAL_OPTIONS` (no sidecar files)."""
    with rasterio.Env(**SAFE_GDAL_OPTIONS):
        return rasterio.open(path, driver=driver, **kwargs)


def open_overview(ds: rasterio.io.DatasetReader, level: int) -> rasterio.io.DatasetReader:
    """Open internal overview ``level`` (0-based, as in ``ds.overviews``) of an open
    dataset as a dataset of its own, under the same rules as :func:`open_raster`.

    The caller closes it (it is a context manager).

    Raises:
        RasterError: If the overview cannot be opened.
    """
    try:
        with warnings.catch_warnings():  # as the caller opened the file
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return _gdal_open(ds.name, ds.driver, overview_level=level)
    except RasterioError as e:
        raise RasterError(f"{ds.name}: overview level {level} cannot be opened ({e})") from None


@contextmanager
def open_raster(
    path: str | Path, *, allow_vrt: bool = False
) -> Iterator[rasterio.io.DatasetReader]:
    """Open a raster for reading, with the safety checks described in the module docstring.

    Args:
        path: A local file path.
        allow_vrt: Accept a VRT whose sources stay inside its folder. Leave False for
            paths that come from datasets.

    Yields:
        The open rasterio dataset.

    Raises:
        RasterError: If the file is refused or cannot be opened; the message names it.
    """
    p = check_local_path(path)
    driver = sniff_driver(p)
    if driver == "VRT":
        if not allow_vrt:
            raise RasterError(
                f"{p}: is a GDAL VRT (XML), which can read other files; refused here. "
                "Convert it to a GeoTIFF (gdal_translate) or open it with allow_vrt=True "
                "if you trust it."
            )
        check_vrt_sources(p)
    try:
        ds = _gdal_open(p, driver)
    except RasterioError as e:
        raise RasterError(f"{p}: cannot be opened as {driver} ({e})") from None
    try:
        if not (0 < ds.width <= MAX_SIDE_PX and 0 < ds.height <= MAX_SIDE_PX):
            raise RasterError(
                f"{p}: header claims {ds.width} x {ds.height} px, outside 1..{MAX_SIDE_PX} a "
                "side; the file is corrupt or hostile."
            )
        if not 0 < ds.count <= MAX_BANDS:
            raise RasterError(f"{p}: header claims {ds.count} bands (max {MAX_BANDS})")
        yield ds
    finally:
        ds.close()


def read_pixels(
    ds: rasterio.io.DatasetReader,
    *,
    window: Window | None = None,
    bands: list[int] | None = None,
    max_pixels: int = DEFAULT_MAX_READ_PIXELS,
) -> np.ndarray:
    """Read pixels as a ``(bands, height, width)`` array, within a pixel budget.

    Args:
        ds: An open dataset (from :func:`open_raster`).
        window: A window to read; the whole raster when ``None``.
        bands: 1-based band indexes; all bands when ``None``.
        max_pixels: Refuse reads larger than this many pixels per band (decompression
            bombs); read large rasters through windows instead.

    Raises:
        RasterError: If the read exceeds the budget or the data cannot be decoded.
    """
    w = window or Window(0, 0, ds.width, ds.height)
    n = int(w.width) * int(w.height)
    if n > max_pixels:
        raise RasterError(
            f"{ds.name}: reading {int(w.width)} x {int(w.height)} px exceeds the budget of "
            f"{max_pixels:,} px; read a window or an overview instead."
        )
    idx = bands or list(range(1, ds.count + 1))
    try:
        return ds.read(idx, window=w)
    except RasterioError as e:
        cause = f": {e.__cause__}" if e.__cause__ else ""
        raise RasterError(
            f"{ds.name}: pixel data cannot be read ({e}{cause}); the file is corrupt or "
            "truncated — re-download or re-export it."
        ) from None


class RasterTooLargeError(RasterError):
    """A raster cannot be read within the budgets even at a reduced size."""


def read_reduced(
    ds: rasterio.io.DatasetReader,
    out_hw: tuple[int, int],
    *,
    bands: list[int] | None = None,
    resampling: Resampling = Resampling.average,
    max_pixels: int = DEFAULT_MAX_READ_PIXELS,
    max_scan_pixels: int = DEFAULT_MAX_SCAN_PIXELS,
) -> np.ndarray:
    """The whole raster resampled to ``out_hw``: ``(bands, height, width)``, never decoded
    whole into memory.

    The read goes to the coarsest level (full resolution or an internal overview) that is
    still at least as fine as ``out_hw``, and GDAL resamples it to ``out_hw`` block by
    block (``resampling``; average by default), so memory is the output plus GDAL's block
    cache (``GDAL_CACHEMAX``), whatever the raster's size. With an overview that coarse
    only the overview is decoded; without one every full-resolution pixel is decoded once.

    Args:
        ds: An open dataset (from :func:`open_raster`).
        out_hw: The output ``(height, width)``.
        bands: 1-based band indexes; all bands when ``None``.
        resampling: GDAL's resampling (``nearest`` for palette or class rasters).
        max_pixels: Most pixels per band of the output, and of one block of the level
            read (a block is decoded whole: a GeoTIFF of one compressed strip is refused).
        max_scan_pixels: Most pixels of the level read (its time): above, build overviews
            (``gdaladdo -r average``).

    Raises:
        RasterTooLargeError: If a budget would be exceeded (the message names the file,
            the sizes and what to do).
        RasterError: If the data cannot be decoded (corrupt or truncated file).
        ValueError: If ``out_hw`` is not two positive sides.
    """
    oh, ow = (int(v) for v in out_hw)
    if oh < 1 or ow < 1:
        raise ValueError(f"out_hw={tuple(out_hw)}: both sides must be >= 1")
    if oh * ow > max_pixels:
        raise RasterTooLargeError(
            f"{ds.name}: a reduced read of {ow} x {oh} px is over the budget of {max_pixels:,} px"
        )
    need = min(ds.width / ow, ds.height / oh)  # the output's decimation of the source
    factors = sorted(set(ds.overviews(1)))
    factor = max((f for f in (1, *factors) if f <= need), default=1)
    idx = bands or list(range(1, ds.count + 1))
    with ExitStack() as stack:
        level = ds
        if factor != 1:
            level = stack.enter_context(open_overview(ds, factors.index(factor)))
        n = level.width * level.height
        where = "full resolution" if factor == 1 else f"overview {factor}x"
        if n > max_scan_pixels:
            raise RasterTooLargeError(
                f"{ds.name}: a reduced read ({ow} x {oh} px) would decode {level.width} x "
                f"{level.height} = {n:,} px ({where}), over max_scan_pixels="
                f"{max_scan_pixels:,}; build overviews (gdaladdo -r average) or convert it "
                "to a COG (gdal_translate -of COG)"
            )
        bh, bw = level.block_shapes[0]
        if bh * bw > max_pixels:
            raise RasterTooLargeError(
                f"{ds.name}: blocks of {bw} x {bh} px ({where}) are over the budget of "
                f"{max_pixels:,} px, and a block is decoded whole; re-tile it "
                "(gdal_translate -co TILED=YES)"
            )
        try:
            if (level.height, level.width) == (oh, ow):
                return level.read(idx)
            return level.read(idx, out_shape=(len(idx), oh, ow), resampling=resampling)
        except RasterioError as e:
            raise RasterError(
                f"{ds.name}: pixel data cannot be read ({e}); the file is corrupt or "
                "truncated — re-download or re-export it."
            ) from None


def write_geotiff(
    path: str | Path,
    array: np.ndarray,
    *,
    crs: str | None,
    transform: rasterio.Affine | None,
    tiled: bool = False,
    compress: str | None = "deflate",
    overviews: tuple[int, ...] = (),
    nodata: float | None = None,
    tags: dict[str, str] | None = None,
    band_names: tuple[str, ...] | None = None,
) -> Path:
    """Write a (bands, H, W) array as a GeoTIFF, atomically (temp file, then rename).

    Args:
        path: Destination.
        array: The pixels, (bands, height, width).
        crs: A CRS string (``"EPSG:32633"``) or ``None``.
        transform: The affine geotransform or ``None``.
        tiled: Write 512 x 512 tiles (for large rasters read by windows).
        compress: GDAL compression (``deflate``, ``lzw``) or ``None``.
        overviews: Decimation factors of internal overviews (e.g. ``(2, 4, 8)``).
        nodata: The nodata value, if any.
        tags: Dataset metadata tags.
        band_names: Band descriptions, one per band.

    Returns:
        The path written. The output is byte-identical for identical inputs.
    """
    target = Path(path)
    bands, height, width = array.shape
    profile: dict[str, object] = {
        "driver": "GTiff", "width": width, "height": height, "count": bands,
        "dtype": array.dtype.name, "crs": crs, "transform": transform,
    }  # fmt: skip
    if compress:
        profile["compress"] = compress
        profile["predictor"] = 2 if np.issubdtype(array.dtype, np.integer) else 3
    if tiled:
        profile.update(tiled=True, blockxsize=512, blockysize=512)
    if nodata is not None:
        profile["nodata"] = nodata
    if band_names is not None and len(band_names) != bands:
        raise RasterError(f"{target}: {len(band_names)} band names for {bands} bands")
    with atomic_path(target, suffix=".tif") as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(array)
        if tags:
            dst.update_tags(**tags)
        for i, name in enumerate(band_names or (), start=1):
            dst.set_band_description(i, name)
        if overviews:
            dst.build_overviews(list(overviews), rasterio.enums.Resampling.average)
            dst.update_tags(ns="rio_overview", resampling="average")
    return target
