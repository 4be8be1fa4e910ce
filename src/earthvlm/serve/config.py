"""What a server accepts and how it batches: limits with defaults safe on a laptop."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

MIB = 1024 * 1024


@dataclass(frozen=True)
class ServeConfig:
    """How ``earthvlm serve`` listens, what it accepts and how it batches.

    Every limit is checked before work is done for a request: the body size on its
    ``Content-Length`` (and while reading), image sizes on their headers before decoding.
    """

    host: str = "127.0.0.1"
    """Interface to bind; loopback by default (the server has no authentication)."""
    port: int = 8000
    """TCP port; 0 picks a free one."""
    model_name: str | None = None
    """The name clients send as ``model`` (default: the model's own name)."""
    image_root: Path | None = None
    """Local image paths (``file://`` URLs or plain paths) are read only under this
    folder, with the dataset roots' containment rules; ``None`` refuses every path."""
    allow_url: bool = False
    """Fetch ``http(s)://`` image URLs (off: the server fetches nothing on a client's
    behalf)."""
    zoom: bool = False
    """Execute the ``zoom_in`` tool server-side when a request offers it."""
    max_zooms: int = 2
    """Most crops the zoom loop shows (a request may ask for fewer)."""
    max_body_bytes: int = 20 * MIB
    """Largest request body (base64 images included)."""
    max_image_pixels: int = 4096 * 4096
    """Largest image decoded whole (data URLs, fetched URLs, local JPEG/PNG): width x height
    from its header. Local rasters larger than this are read reduced, as datasets are."""
    max_request_pixels: int = 2 * 4096 * 4096
    """Largest total of decoded pixels over a request's images."""
    max_images: int = 8
    """Most images in one request."""
    max_prompt_tokens: int = 8192
    """Longest prompt after the chat template (image tokens included)."""
    max_tokens: int = 1024
    """Largest ``max_tokens`` a request may ask for."""
    default_max_tokens: int = 256
    """``max_tokens`` of a request that gives none."""
    max_n: int = 4
    """Largest ``n`` (choices per request)."""
    max_concurrent: int = 16
    """Requests admitted at once (queued or running); more get 429 with Retry-After."""
    max_batch_size: int = 8
    """Most rows (requests x choices) in one ``generate``."""
    batch_wait_ms: float = 5.0
    """How long the first request of a batch waits for others to join it."""
    timeout_s: float = 120.0
    """Per-request limit from admission to the last token; past it the request's rows are
    stopped and it gets 504."""
    url_timeout_s: float = 10.0
    """Limit of one image URL fetch (``allow_url``)."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port={self.port}: give 0-65535 (0 picks a free port)")
        if self.model_name is not None and not self.model_name.strip():
            raise ValueError("model_name is empty: give a name or None (the model's own)")
        positive = {
            "max_body_bytes": self.max_body_bytes,
            "max_image_pixels": self.max_image_pixels,
            "max_request_pixels": self.max_request_pixels,
            "max_images": self.max_images,
            "max_prompt_tokens": self.max_prompt_tokens,
            "max_tokens": self.max_tokens,
            "default_max_tokens": self.default_max_tokens,
            "max_n": self.max_n,
            "max_concurrent": self.max_concurrent,
            "max_batch_size": self.max_batch_size,
            "timeout_s": self.timeout_s,
            "url_timeout_s": self.url_timeout_s,
        }
        for name, value in positive.items():
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}={value}: must be > 0")
        if self.default_max_tokens > self.max_tokens:
            raise ValueError(
                f"default_max_tokens={self.default_max_tokens} > max_tokens={self.max_tokens}"
            )
        if self.max_image_pixels > self.max_request_pixels:
            raise ValueError(
                f"max_image_pixels={self.max_image_pixels} > max_request_pixels="
                f"{self.max_request_pixels}: one image could never be sent"
            )
        if self.max_zooms < 0:
            raise ValueError(f"max_zooms={self.max_zooms}: must be >= 0")
        if not (math.isfinite(self.batch_wait_ms) and 0 <= self.batch_wait_ms <= 1000):
            raise ValueError(f"batch_wait_ms={self.batch_wait_ms}: give 0-1000 ms")
        if self.image_root is not None and not Path(self.image_root).is_dir():
            raise ValueError(f"image_root={self.image_root}: not a folder")


__all__ = ["MIB", "ServeConfig"]
