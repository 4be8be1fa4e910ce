"""Images from requests: data URLs, local paths under a root, and (opt-in) http URLs.

Each image becomes a PIL RGB image and the GSD it is given, or an :class:`~earthvlm.
serve.protocol.APIError` (400) naming the image and the reason; the caller counts both.

* **Data URLs** (``data:image/png;base64,...``, what lmms-eval and most clients send):
  strict base64, the format sniffed from magic bytes (PNG, JPEG, WebP, GIF, TIFF; the
  declared type is not trusted), the pixel count read from the header and checked
  against ``max_image_pixels`` before a pixel is decoded (decompression bombs), then
  decoded as the collator decodes files (EXIF orientation, alpha onto white).
* **Local paths** (``file:///abs/path`` or a plain path, relative to the root): refused
  unless the server has an ``image_root``; read by the collator's own reader
  (:meth:`earthvlm.data.collate.Collator.load_image`), so the containment rules
  (``..``, absolute paths elsewhere, symlinks out, ``/vsi`` paths), the format
  sniffing, the refusal of VRTs and the reduced reads of large rasters are exactly
  those of dataset roots.
* **http(s) URLs**: refused unless ``allow_url``; fetched without redirects, within
  ``url_timeout_s`` and ``max_body_bytes``, then as a data URL.

The GSD: the request's ``gsd_m`` when given (exact, or a range ``[lo, hi]``); else, for
a local file, the resolver chain (:func:`earthvlm.scale.resolve.resolve_gsd`: GeoTIFF
georeferencing, then a sensor in the file name); else unknown, which the model resolves
(SSE-U, then the neutral value) and reports. The GSD is of the image *as sent*, as
records state it for the collator.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps
from pydantic import ValidationError

from earthvlm.data.ledger import Ledger
from earthvlm.data.pixels import to_rgb
from earthvlm.errors import EarthVLMError, PathEscapeError, RasterError
from earthvlm.scale.gsd import GSD, GSDSource
from earthvlm.serve.config import ServeConfig
from earthvlm.serve.protocol import APIError, ImagePart, bad_request

log = logging.getLogger(__name__)

#: Magic bytes -> format name, for the formats accepted in data URLs and fetched URLs.
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
_DATA_URL = re.compile(r"^data:([\w.+/-]*)((?:;[\w.+-]+=[\w.+-]+)*);base64,", re.ASCII)
SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "TIFF": ".tif", "WEBP": ".webp"}


@dataclass
class LoadedImage:
    """One request image, decoded.

    Attributes:
        image: The RGB image handed to the processor.
        source: ``data_url``, ``path`` or ``url``.
        gsd: The GSD the model is given for it (``None``: unknown).
        gsd_from: What gave it: ``request``, a resolver step (``georef``, ``filename``)
            or ``unknown``.
        path: The local file (a path under the root), if any.
        raw: The encoded bytes (data URLs and URLs), kept for the zoom tool.
        format: The sniffed format (``PNG``, ``JPEG``, ...) or the file's suffix.
    """

    image: Image.Image
    source: str
    gsd: GSD | None
    gsd_from: str
    path: Path | None = None
    raw: bytes | None = None
    format: str = ""

    @property
    def pixels(self) -> int:
        return self.image.width * self.image.height

    def describe(self) -> dict[str, Any]:
        """What the response's extension says about the image before generation."""
        return {
            "source": self.source,
            "width": self.image.width,
            "height": self.image.height,
            "gsd_metadata": None if self.gsd is None else self.gsd.to_dict(),
            "gsd_from": self.gsd_from,
        }


def parse_gsd(value: Any, param: str) -> GSD | None:
    """A request's ``gsd_m`` (a number, ``[lo, hi]`` or null) as a :class:`GSD`.

    Raises:
        APIError: 400 ``bad_gsd`` naming the value and the fix.
    """
    if value is None:
        return None
    try:
        if isinstance(value, list):
            if len(value) != 2:
                raise bad_request(
                    f"{param}={value}: give one number (metres per pixel) or [lo, hi]",
                    "bad_gsd",
                    param,
                )
            return GSD.range(value[0], value[1], GSDSource.USER, f"request {param}")
        return GSD.exact(value, GSDSource.USER, f"request {param}")
    except (EarthVLMError, TypeError, ValueError) as e:
        if isinstance(e, APIError):
            raise
        raise bad_request(f"{param}: {e}", "bad_gsd", param) from None


def sniff(raw: bytes) -> str | None:
    """The image format of encoded bytes from their magic, or ``None``."""
    for magic, name in _MAGIC:
        if raw.startswith(magic):
            return name
    if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        return "WEBP"
    return None


def decode_bytes(raw: bytes, max_pixels: int, what: str) -> tuple[Image.Image, str]:
    """Decode an encoded image after checking its header's pixel count.

    Raises:
        APIError: 400 ``unsupported_image``, ``image_too_large`` or ``bad_image``.
    """
    fmt = sniff(raw)
    if fmt is None:
        raise bad_request(
            f"{what}: not a PNG, JPEG, WebP, GIF or TIFF image (by its first bytes)",
            "unsupported_image",
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw), formats=[fmt]) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise bad_request(
                        f"{what}: {w} x {h} = {w * h:,} px is over the server's "
                        f"max_image_pixels={max_pixels:,}; send a smaller image",
                        "image_too_large",
                    )
                im.load()
                if im.getexif().get(0x0112, 1) != 1:  # EXIF orientation: not upright
                    im = ImageOps.exif_transpose(im)
                return to_rgb(im), fmt
    except APIError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise bad_request(f"{what}: too many pixels to decode", "image_too_large") from None
    except Exception as e:
        log.info("%s: undecodable (%s: %s)", what, type(e).__name__, e)
        raise bad_request(
            f"{what}: cannot decode the {fmt} image ({type(e).__name__})", "bad_image"
        ) from None


class ImageCounts:
    """Every image a request carried: ``ok`` (answered), failed with the reason it was
    refused, or skipped (read fine, but its request was refused or failed later).
    Thread-safe: requests are prepared in worker threads."""

    def __init__(self) -> None:
        self.ledger = Ledger(stage="images")
        self._lock = threading.Lock()

    def ok(self, n: int) -> None:
        with self._lock:
            for _ in range(n):
                self.ledger.count_ok()

    def failed(self, reason: str) -> None:
        with self._lock:
            self.ledger.count_failed(reason)

    def skipped(self, reason: str, n: int) -> None:
        with self._lock:
            for _ in range(n):
                self.ledger.count_skipped(reason)

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            return self.ledger.to_dict()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class ImageLoader:
    """Turns a request's image parts into :class:`LoadedImage` within the server's limits.

    Args:
        config: The server's limits and roots.
        collator: A generation-mode :class:`~earthvlm.data.collate.Collator` rooted at
            ``config.image_root`` (its reader reads local paths); ``None`` without a root.
    """

    def __init__(self, config: ServeConfig, collator: Any | None) -> None:
        self.config = config
        self.collator = collator
        self._opener = urllib.request.build_opener(_NoRedirect(), urllib.request.ProxyHandler({}))

    def load(self, part: ImagePart, what: str, *, keep_raw: bool = False) -> LoadedImage:
        """One image part.

        Raises:
            APIError: 400 for a refused, unreadable or oversized image, or a bad ``gsd_m``.
        """
        given = parse_gsd(part.gsd_value(), "gsd_m")
        url = part.image_url.url.strip()
        if url.startswith("data:"):
            raw = self._data_url(url, what)
            image, fmt = decode_bytes(raw, self.config.max_image_pixels, what)
            return LoadedImage(
                image,
                "data_url",
                given,
                "request" if given else "unknown",
                raw=raw if keep_raw else None,
                format=fmt,
            )
        scheme = urllib.parse.urlsplit(url).scheme.lower()
        if scheme in ("http", "https"):
            raw = self._fetch(url, what)
            image, fmt = decode_bytes(raw, self.config.max_image_pixels, what)
            return LoadedImage(
                image,
                "url",
                given,
                "request" if given else "unknown",
                raw=raw if keep_raw else None,
                format=fmt,
            )
        if scheme == "file":
            parsed = urllib.parse.urlsplit(url)
            if parsed.netloc not in ("", "localhost"):
                raise bad_request(f"{what}: file URLs name a local path only", "path_refused")
            return self._path(urllib.parse.unquote(parsed.path), given, what)
        if scheme and len(scheme) > 1:  # a drive letter is not a scheme, but is refused later
            raise bad_request(
                f"{what}: {scheme}: URLs are not read; send a data URL (base64), a file path "
                "under the server's --image-root, or an http(s) URL to a server started "
                "with --allow-url",
                "unsupported_url",
            )
        return self._path(url, given, what)

    # -- sources --------------------------------------------------------------------------

    def _data_url(self, url: str, what: str) -> bytes:
        m = _DATA_URL.match(url[:256])
        if m is None:
            raise bad_request(
                f"{what}: a data URL must be base64, as data:image/png;base64,<data>",
                "bad_image",
            )
        payload = url[m.end() :]
        if len(payload) * 3 // 4 > self.config.max_body_bytes:
            raise APIError(
                413, f"{what}: the image is larger than the body limit", code="body_too_large"
            )
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise bad_request(f"{what}: the data URL is not valid base64", "bad_image") from None

    def _fetch(self, url: str, what: str) -> bytes:
        cfg = self.config
        if not cfg.allow_url:
            raise bad_request(
                f"{what}: http(s) image URLs are refused by this server (start it with "
                "--allow-url to fetch them); send the image as a data URL",
                "url_refused",
            )
        try:
            with self._opener.open(url, timeout=cfg.url_timeout_s) as r:
                size = r.headers.get("Content-Length")
                if size is not None and size.isdigit() and int(size) > cfg.max_body_bytes:
                    raise bad_request(f"{what}: {size} bytes is over the limit", "image_too_large")
                raw = r.read(cfg.max_body_bytes + 1)
        except APIError:
            raise
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise bad_request(f"{what}: cannot fetch {url!r} ({e})", "url_unreachable") from None
        if len(raw) > cfg.max_body_bytes:
            raise bad_request(
                f"{what}: the image is over {cfg.max_body_bytes} bytes", "image_too_large"
            )
        return raw

    def _path(self, path: str, given: GSD | None, what: str) -> LoadedImage:
        from earthvlm.data.collate import SampleError
        from earthvlm.data.paths import resolve_within
        from earthvlm.data.record import ImageRef
        from earthvlm.scale.resolve import resolve_gsd

        root = self.config.image_root
        if root is None or self.collator is None:
            raise bad_request(
                f"{what}: local image paths are refused by this server (start it with "
                "--image-root DIR to read files under DIR); send a data URL",
                "path_refused",
            )
        try:
            real = resolve_within(root, path)
            ref = ImageRef(path=path)
        except (PathEscapeError, ValidationError) as e:
            message = e.errors()[0]["msg"] if isinstance(e, ValidationError) else str(e)
            raise bad_request(f"{what}: {message}", "path_escape") from None
        try:
            image = self.collator.load_image(ref)
        except SampleError as e:
            raise bad_request(f"{what}: {e}", e.reason) from None
        if image.width * image.height > self.config.max_image_pixels:
            raise bad_request(
                f"{what}: read at {image.width} x {image.height} px, over max_image_pixels",
                "image_too_large",
            )
        gsd, gsd_from = given, "request"
        if given is None:
            try:
                resolved = resolve_gsd(real)
                gsd = resolved.gsd if resolved.gsd.is_known else None
                gsd_from = resolved.decided_by
            except (RasterError, EarthVLMError) as e:
                log.info("%s: GSD not resolved (%s)", what, e)
                gsd, gsd_from = None, "unknown"
        return LoadedImage(image, "path", gsd, gsd_from, path=real, format=real.suffix.lower())


__all__ = [
    "SUFFIX",
    "ImageCounts",
    "ImageLoader",
    "LoadedImage",
    "decode_bytes",
    "parse_gsd",
    "sniff",
]
