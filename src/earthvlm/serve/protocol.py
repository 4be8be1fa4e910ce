"""The OpenAI chat-completions wire format: requests in, responses, chunks and errors out.

A request is validated here into a :class:`ChatRequest` (pydantic; unknown top-level
fields are accepted and ignored, as OpenAI-compatible servers do, except those that
would change the answer and that this server does not implement, which are refused
with 400 rather than silently dropped: ``logprobs``, penalties, ``logit_bias``, a
``response_format`` other than text).

earthvlm's extensions, all optional and ignored by other servers:

* an image part may carry ``"gsd_m"``: metres per pixel of the image as sent, a number
  or ``[lo, hi]`` for a range (on the part, or inside ``image_url``);
* ``max_zooms``: fewer zooms than the server's budget for this request;
* responses (and the last chunk of a stream) carry ``"earthvlm"``: per image the GSD the
  model was conditioned on and the resolver's branch, how many rows shared the forward,
  and the zoom trace when the server ran the tool.

Errors are OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, raised as
:class:`APIError` and rendered by the app; no traceback ever reaches a client.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from earthvlm.errors import EarthVLMError

#: At most this many stop sequences (OpenAI's limit).
MAX_STOP = 4
#: Temperatures below this decode greedily (dividing logits by ~0 overflows to NaN).
GREEDY_BELOW = 1e-4


class APIError(EarthVLMError):
    """A request the server answers with an error body (never a traceback).

    Args:
        status: The HTTP status.
        message: What was wrong and what to do.
        type: OpenAI's error type (``invalid_request_error``, ``rate_limit_error``, ...).
        code: A short machine-readable reason (``bad_image``, ``image_too_large``, ...).
        param: The request field at fault, if any.
        headers: Extra response headers (``Retry-After``).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type = status, message, type
        self.code, self.param, self.headers = code, param, headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def bad_request(message: str, code: str, param: str | None = None) -> APIError:
    """A 400 with ``invalid_request_error``."""
    return APIError(400, message, code=code, param=param)


# -- the request ------------------------------------------------------------------------


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


GsdValue = float | list[float] | None


class TextPart(_Open):
    type: Literal["text"]
    text: str


class ImageURL(_Open):
    url: str
    detail: str | None = None
    gsd_m: GsdValue = None


class ImagePart(_Open):
    type: Literal["image_url"]
    image_url: ImageURL
    gsd_m: GsdValue = None

    def gsd_value(self) -> GsdValue:
        """The GSD the client gave (on the part or inside ``image_url``).

        Raises:
            APIError: If both are given and differ.
        """
        a, b = self.gsd_m, self.image_url.gsd_m
        if a is not None and b is not None and a != b:
            raise bad_request(
                f"gsd_m is {a} on the image part but {b} inside image_url: give one",
                "conflicting_gsd",
                "gsd_m",
            )
        return a if a is not None else b


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class ChatMessage(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None


class StreamOptions(_Open):
    include_usage: bool = False


class ChatRequest(_Open):
    """One ``POST /v1/chat/completions`` body (fields as in OpenAI's API)."""

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    seed: int | None = Field(default=None, ge=-(2**63), le=2**64 - 1)
    stop: str | list[str] | None = None
    n: int = Field(default=1, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    max_zooms: int | None = Field(default=None, ge=0)
    # accepted to refuse them with a clear message when set to something we do not do
    logprobs: bool | None = None
    top_logprobs: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None

    @field_validator("stop")
    @classmethod
    def _stop(cls, v: str | list[str] | None) -> str | list[str] | None:
        items = [v] if isinstance(v, str) else v or []
        if len(items) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop sequences")
        if any(not s for s in items):
            raise ValueError("stop sequences must be non-empty")
        return v

    @property
    def stop_list(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())

    @property
    def greedy(self) -> bool:
        """Whether decoding is greedy: ``temperature`` 0 (below :data:`GREEDY_BELOW`).
        Absent is 1, OpenAI's default: send 0 for reproducible answers."""
        return self.temperature is not None and self.temperature < GREEDY_BELOW

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def check_supported(self) -> None:
        """Refuse options that would change the answer and that this server ignores.

        Raises:
            APIError: 400 naming the option.
        """
        if self.logprobs or self.top_logprobs:
            raise bad_request(
                "logprobs are not supported by this server", "unsupported", "logprobs"
            )
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(self, name):
                raise bad_request(
                    f"{name} is not supported (send 0 or leave it out)", "unsupported", name
                )
        if self.logit_bias:
            raise bad_request("logit_bias is not supported", "unsupported", "logit_bias")
        if self.response_format and self.response_format.get("type") not in (None, "text"):
            raise bad_request(
                "only response_format {'type': 'text'} is supported",
                "unsupported",
                "response_format",
            )


def parse_request(data: Any) -> ChatRequest:
    """Validate a decoded JSON body.

    Raises:
        APIError: 400 with the first problem's field and message.
    """
    if not isinstance(data, dict):
        raise bad_request("the body must be a JSON object", "bad_request")
    try:
        req = ChatRequest.model_validate(data)
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"])
        raise bad_request(f"{where}: {err['msg']}", "bad_request", where or None) from None
    req.check_supported()
    return req


# -- responses ------------------------------------------------------------------------


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion(
    cid: str,
    model: str,
    choices: list[tuple[str, str]],
    usage_: dict[str, int],
    extension: dict[str, Any],
) -> dict[str, Any]:
    """A ``chat.completion`` object; ``choices`` are ``(text, finish_reason)``."""
    return {
        "id": cid,
        "object": "chat.completion",
        "created": now(),
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish,
            }
            for i, (text, finish) in enumerate(choices)
        ],
        "usage": usage_,
        "earthvlm": extension,
    }


def chunk(
    cid: str,
    created: int,
    model: str,
    index: int,
    delta: dict[str, Any],
    finish_reason: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One ``chat.completion.chunk`` with one choice."""
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        ],
        **extra,
    }


def usage_chunk(cid: str, created: int, model: str, usage_: dict[str, int]) -> dict[str, Any]:
    """The last chunk of a stream asked with ``stream_options.include_usage``."""
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [],
        "usage": usage_,
    }


__all__ = [
    "APIError",
    "ChatMessage",
    "ChatRequest",
    "ImagePart",
    "TextPart",
    "bad_request",
    "chunk",
    "completion",
    "completion_id",
    "parse_request",
    "usage",
    "usage_chunk",
]
