"""Benchmarks through any OpenAI-compatible endpoint, scored by earthvlm's own scorers.

:class:`EndpointModel` stands where the runner (:func:`earthvlm.eval.runner.run_benchmark`)
takes a local model: the cache, resume, sharding over processes and the reports are the
runner's, unchanged; only the answers come from an HTTP server (``earthvlm serve``, vLLM,
SGLang, ``transformers serve``, a hosted API).

Each record is sent as the collator would show it to a local model: its turns up to the
last assistant turn (the reference), each image as a PNG or JPEG data URL read the way
the collator reads it (JPEG and PNG files as they are; GeoTIFF and other rasters through
the safe raster reader, 3-band uint8, as lossless PNG), with the image's GSD as
``"gsd_m"`` (a number, or ``[lo, hi]`` for a range) when the record knows it; greedy
decoding (``temperature`` 0) for the benchmark's ``max_new_tokens``. Servers that do
not know ``gsd_m`` ignore it (a merged model is conditioned on its fixed GSD anyway).
With ``zoom``, the request offers the ``zoom_in`` tool, which ``earthvlm serve --zoom``
runs on the native image (the zoom arm through an endpoint).

A batch of records is sent concurrently (``max_workers``), so a batching server batches
them. A request the server refuses (4xx), or that fails after the client's retries
(429 and 5xx are retried with backoff by the ``openai`` client), becomes a failed row
with its reason (``http_400``, ``timeout``, ``connection``), scored wrong and tried
again on the next run, as the collator's refusals are. A record the client cannot send
(an unreadable image, SAR or multispectral views) fails the same way
(``unsupported_modality``, ``unreadable_image``).
"""

from __future__ import annotations

import base64
import io
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from earthvlm.data.paths import resolve_within
from earthvlm.data.record import ImagePart, ImageRef, Record
from earthvlm.errors import EarthVLMError, PathEscapeError, RasterError
from earthvlm.geo.raster import open_raster, read_pixels, sniff_driver
from earthvlm.scale.gsd import GSDKind


class EndpointError(EarthVLMError):
    """An endpoint cannot be used (no ``openai`` package, a bad URL or model name)."""


@dataclass(frozen=True)
class EndpointConfig:
    """Where and how benchmark records are sent.

    Attributes:
        base_url: The API root, e.g. ``http://127.0.0.1:8000/v1``.
        model: The served model's name (``GET /v1/models`` lists it).
        api_key_env: The environment variable holding the key; ``None`` sends a
            placeholder (local servers need none).
        max_workers: Requests in flight at once (per process).
        timeout_s: Limit of one request.
        max_retries: Retries of 408/409/429/5xx and connection errors (the client's
            backoff, honouring ``Retry-After``).
        send_gsd: Send each image's known GSD as ``gsd_m``.
        zoom: Offer the ``zoom_in`` tool, with at most this many zooms (``None``: no tool).
    """

    base_url: str
    model: str
    api_key_env: str | None = None
    max_workers: int = 8
    timeout_s: float = 600.0
    max_retries: int = 4
    send_gsd: bool = True
    zoom: int | None = None

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(
                f"base_url={self.base_url!r}: give an http(s) URL such as http://127.0.0.1:8000/v1"
            )
        if self.base_url.rstrip("/").endswith("/chat/completions"):
            raise ValueError(f"base_url={self.base_url!r} is the API root: drop /chat/completions")
        if not self.model:
            raise ValueError("model: name the served model (GET /v1/models lists it)")
        if self.max_workers < 1 or self.max_retries < 0 or not self.timeout_s > 0:
            raise ValueError("max_workers >= 1, max_retries >= 0 and timeout_s > 0 are needed")
        if self.zoom is not None and self.zoom < 0:
            raise ValueError(f"zoom={self.zoom}: give >= 0 zooms, or None for no tool")


class _Unsendable(EarthVLMError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def image_data_url(root: Path, ref: ImageRef, max_pixels: int = 89_478_485) -> str:
    """One record image as a data URL, read as the collator reads it.

    Raises:
        _Unsendable: With the reason the collator would give (``path_escape``,
            ``missing_image``, ``unreadable_image``, ``unsupported_modality``,
            ``unsupported_image``).
    """
    if ref.modality != "optical":
        raise _Unsendable(
            "unsupported_modality", f"{ref.path}: {ref.modality} images are not sent to endpoints"
        )
    try:
        path = resolve_within(root, ref.path)
    except PathEscapeError as e:
        raise _Unsendable("path_escape", str(e)) from None
    if not path.is_file():
        raise _Unsendable("missing_image", f"{ref.path}: no such file under {root}")
    try:
        driver = sniff_driver(path)
        if driver in ("JPEG", "PNG"):
            mime = "jpeg" if driver == "JPEG" else "png"
            return f"data:image/{mime};base64," + base64.b64encode(path.read_bytes()).decode()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with open_raster(path) as ds:
                pixels = read_pixels(ds, max_pixels=max_pixels)
    except RasterError as e:
        raise _Unsendable("unreadable_image", str(e)) from None
    if pixels.shape[0] != 3 or pixels.dtype != np.uint8:
        raise _Unsendable(
            "unsupported_image",
            f"{ref.path}: {pixels.shape[0]} band(s) of "
            f"{pixels.dtype}; endpoints get 3-band uint8 RGB",
        )
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels.transpose(1, 2, 0))).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def record_messages(record: Record, root: Path, *, send_gsd: bool = True) -> list[dict[str, Any]]:
    """A record's turns before its last assistant turn, in the OpenAI chat format.

    Raises:
        _Unsendable: If an image cannot be sent.
    """
    messages = list(record.messages)
    last = max((i for i, m in enumerate(messages) if m.role == "assistant"), default=None)
    if last is not None:
        messages = messages[:last]
    out: list[dict[str, Any]] = []
    for m in messages:
        if isinstance(m.content, str):
            out.append({"role": m.role, "content": m.content})
            continue
        parts: list[dict[str, Any]] = []
        for p in m.content:
            if not isinstance(p, ImagePart):
                parts.append({"type": "text", "text": p.text})
                continue
            ref = record.images[p.index]
            part: dict[str, Any] = {
                "type": "image_url",
                "image_url": {"url": image_data_url(root, ref)},
            }
            if send_gsd and ref.gsd.kind is GSDKind.EXACT:
                part["gsd_m"] = ref.gsd.point_m
            elif send_gsd and ref.gsd.kind is GSDKind.RANGE:
                part["gsd_m"] = [ref.gsd.lo_m, ref.gsd.hi_m]
            parts.append(part)
        out.append({"role": m.role, "content": parts})
    return out


class EndpointModel:
    """An OpenAI-compatible endpoint in the evaluation runner's place of a local model.

    Args:
        config: Where to send requests and how.

    Raises:
        EndpointError: If the ``openai`` package is missing or the key variable is unset.
    """

    variant = "endpoint"
    origin = "endpoint"
    source = None

    def __init__(self, config: EndpointConfig) -> None:
        try:
            import openai
        except ImportError:
            raise EndpointError(
                "evaluating an endpoint needs the openai package: pip install 'earthvlm[serve]'"
            ) from None
        key = "EMPTY"
        if config.api_key_env is not None:
            key = os.environ.get(config.api_key_env, "").strip()
            if not key:
                raise EndpointError(f"the API key variable {config.api_key_env} is not set")
        self.config = config
        self._openai = openai
        self.client = openai.OpenAI(
            base_url=config.base_url,
            api_key=key,
            timeout=config.timeout_s,
            max_retries=config.max_retries,
        )
        self.name = config.model

    def info(self) -> dict[str, Any]:
        """What the reports say about the model (and what the cache's setup keys on)."""
        arm = f"+zoom{self.config.zoom}" if self.config.zoom is not None else ""
        return {
            "name": self.name,
            "variant": self.variant,
            "checkpoint": f"{self.config.base_url.rstrip('/')}#{self.config.model}{arm}",
            "origin": self.origin,
            "base_model": self.config.model,
            "stage": None,
            "endpoint": self.config.base_url,
            "zoom": self.config.zoom,
        }

    def answers(
        self, records: Sequence[Record], image_root: Path, *, max_new_tokens: int
    ) -> list[dict[str, Any]]:
        """One cache row per record, in order (requests sent concurrently)."""
        workers = max(1, min(self.config.max_workers, len(records)))
        with ThreadPoolExecutor(workers, thread_name_prefix="earthvlm-endpoint") as pool:
            return list(
                pool.map(lambda r: self._answer(r, Path(image_root), max_new_tokens), records)
            )

    def _answer(self, record: Record, root: Path, max_new_tokens: int) -> dict[str, Any]:
        row: dict[str, Any] = {"id": record.id, "prediction": None, "truncated": False}
        try:
            messages = record_messages(record, root, send_gsd=self.config.send_gsd)
        except _Unsendable as e:
            return {**row, "failure": e.reason, "message": str(e)}
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": messages,
            "max_tokens": max_new_tokens,
            "temperature": 0,
        }
        extra: dict[str, Any] = {}
        if self.config.zoom is not None:
            from earthvlm.uhr.tool import zoom_tool_schema

            body["tools"] = [zoom_tool_schema()]
            extra["max_zooms"] = self.config.zoom
        oa = self._openai
        try:
            reply = self.client.chat.completions.create(**body, extra_body=extra or None)
        except oa.APIStatusError as e:
            return {**row, "failure": f"http_{e.status_code}", "message": str(e)[:300]}
        except oa.APITimeoutError:
            return {**row, "failure": "timeout", "message": "no reply within the timeout"}
        except oa.APIConnectionError as e:
            return {**row, "failure": "connection", "message": str(e)[:300]}
        if not reply.choices:
            return {**row, "failure": "empty_choice", "message": "the reply has no choices"}
        choice = reply.choices[0]
        row.update(
            prediction=(choice.message.content or "").strip(),
            truncated=choice.finish_reason == "length",
            failure=None,
        )
        ext = (reply.model_extra or {}).get("earthvlm")
        if isinstance(ext, dict):  # earthvlm serve: what each image was conditioned on
            row["gsd"] = [(im.get("gsd_m"), im.get("branch")) for im in ext.get("images", [])]
            if isinstance(ext.get("zoom"), dict):
                row["zooms"] = len(ext["zoom"].get("views", [])) - 1
        return row


__all__ = ["EndpointConfig", "EndpointError", "EndpointModel", "image_data_url", "record_messages"]
