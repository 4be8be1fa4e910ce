"""Image sizes from file headers, without decoding a pixel.

A reader needs each image's width and height (boxes are checked against them, GeoChat's
0-100 grid is converted with them), but converting a dataset must not decode hundreds of
thousands of images, and must not trip Pillow's decompression-bomb check on legitimate
large scenes (DOTA v2 reaches 20,000 px a side, LRS-VQA 27,328). So:

* PNG: the ``IHDR`` chunk (the first 24 bytes);
* JPEG: the first start-of-frame marker, walking the marker segments;
* GeoTIFF, JPEG 2000, NITF: :func:`earthvlm.geo.raster.open_raster` (GDAL reads the
  header only, refuses VRTs and absurd sizes);
* anything else (BMP, WebP, GIF): Pillow's header read, whose bomb error is reported
  as an error, never bypassed.
"""

from __future__ import annotations

import struct
import warnings
from pathlib import Path
from typing import BinaryIO

from earthvlm.errors import EarthVLMError, RasterError
from earthvlm.geo.raster import MAX_SIDE_PX, open_raster

#: File name suffixes readers treat as images (lower case).
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".jp2", ".webp", ".gif"}
)

_PNG = b"\x89PNG\r\n\x1a\n"
_TIFF = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_JP2 = (b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51")
# start-of-frame markers: C0-CF except DHT (C4), JPG (C8) and DAC (CC)
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


class ImageHeaderError(EarthVLMError):
    """An image's header cannot be read (truncated, corrupt, not an image, too large)."""


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` of an image file, read from its header only.

    Raises:
        ImageHeaderError: If the header is unreadable or the size is 0 or above
            :data:`~earthvlm.geo.raster.MAX_SIDE_PX`; the message names the file.
    """
    p = Path(path)
    try:
        with open(p, "rb") as f:
            head = f.read(32)
            if head.startswith(_PNG):
                size = _png_size(head)
            elif head.startswith(b"\xff\xd8"):
                size = _jpeg_size(f)
            elif head.startswith(_TIFF + _JP2 + (b"NITF",)):
                size = _raster_size(p)
            else:
                size = _pil_size(p)
    except OSError as e:
        raise ImageHeaderError(f"{p}: cannot be read ({e})") from None
    w, h = size
    if not (0 < w <= MAX_SIDE_PX and 0 < h <= MAX_SIDE_PX):
        raise ImageHeaderError(f"{p}: header claims {w} x {h} px; the file is corrupt")
    return w, h


def _png_size(head: bytes) -> tuple[int, int]:
    if len(head) < 24 or head[12:16] != b"IHDR":
        raise ImageHeaderError("PNG without an IHDR chunk (truncated or corrupt)")
    w, h = struct.unpack(">II", head[16:24])
    return int(w), int(h)


def _jpeg_size(f: BinaryIO) -> tuple[int, int]:
    f.seek(2)
    while True:
        byte = f.read(1)
        if byte != b"\xff":
            raise ImageHeaderError("JPEG marker expected (truncated or corrupt)")
        marker = f.read(1)
        while marker == b"\xff":  # fill bytes
            marker = f.read(1)
        if not marker:
            raise ImageHeaderError("JPEG ends before its frame header (truncated)")
        m = marker[0]
        if m == 0x01 or 0xD0 <= m <= 0xD8:  # markers without a length
            continue
        if m in (0xD9, 0xDA):
            raise ImageHeaderError("JPEG has no frame header before its data")
        raw = f.read(2)
        if len(raw) < 2:
            raise ImageHeaderError("JPEG ends inside a marker segment (truncated)")
        length = struct.unpack(">H", raw)[0]
        if length < 2:
            raise ImageHeaderError("JPEG marker segment with an invalid length")
        if m in _SOF:
            data = f.read(5)
            if len(data) < 5:
                raise ImageHeaderError("JPEG frame header is truncated")
            h, w = struct.unpack(">HH", data[1:5])
            return int(w), int(h)
        f.seek(length - 2, 1)


def _raster_size(p: Path) -> tuple[int, int]:
    from rasterio.errors import NotGeoreferencedWarning

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with open_raster(p) as ds:
                return int(ds.width), int(ds.height)
    except RasterError as e:
        raise ImageHeaderError(str(e)) from None


def _pil_size(p: Path) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                return im.size
    except Image.DecompressionBombError as e:
        raise ImageHeaderError(
            f"{p}: {e}; convert it to a tiled GeoTIFF, which is read by windows"
        ) from None
    except (UnidentifiedImageError, ValueError) as e:
        raise ImageHeaderError(f"{p}: not a readable image ({e})") from None
