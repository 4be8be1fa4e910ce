"""Opening rasters safely, and reading their pixels with errors that name the file.

GDAL (under rasterio) opens far more than images: a VRT is XML that may be named
``.tif`` and can read any local file or fetch a URL. Data from a dataset must not be
able to do that (see the project's notes on untrusted inputs). So :func:`open_raster`

* refuses URLs, GDAL virtual paths (``/vsi...``) and anything that is not a local file;
* sniffs the file's magic bytes and opens it with that format's driver only;
* accepts a VRT only when the caller asks (``allow_vrt=True``, e.g. a path a person
  typed) and only if every source it references stays inside the VRT's own folder;
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
    """Refuse a VRT that reads anything outside its own folder (or any URL / ``/vsi`` path).

    Raises:
        RasterError: Naming the offending source.
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise RasterError(f"{path}: VRT is not valid XML ({e})") from None
    base = path.resolve().parent
    for el in root.iter():
        if el.get("subClass") is not None:
            # derived (pixel functions, Python code) and warped VRTs: not needed, refused
            raise RasterError(
                f"{path}: VRT element {el.tag} subClass={el.get('subClass')!r} is refused; "
                "only simple source VRTs are accepted."
            )
        if el.tag != "SourceFilename":
            continue
        text = (el.text or "").strip()
        relative = el.get("relativeToVRT", "0") == "1"
        # plain file paths only: no URLs, /vsi paths or GDAL connection strings
        # (e.g. "GTIFF_DIR:1:/elsewhere/x.tif", which GDAL opens whatever the prefix)
        if _URL.match(text) or _CONNECTION.match(text) or text.startswith(("/vsi", "vsi")):
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
        ds = rasterio.open(p, driver=driver)
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
            try:
                with warnings.catch_warnings():  # as the caller opened the file
                    warnings.simplefilter("ignore", NotGeoreferencedWarning)
                    k = factors.index(factor)
                    level = stack.enter_context(
                        rasterio.open(ds.name, driver=ds.driver, overview_level=k)
                    )
            except RasterioError as e:
                raise RasterError(f"{ds.name}: overview {factor}x cannot be opened ({e})") from None
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
