"""What a chat server's reply means: the completion text, or a failure and whether to retry.

Pure functions over bytes and headers, shared by :class:`~earthvlm.teacher.client.ChatClient`
and by tests: reading a ``/chat/completions`` body that may be hostile (not UTF-8, not
JSON, the wrong shape, empty, refused, truncated), reading ``Retry-After``, and the
backoff schedule.
"""

from __future__ import annotations

import email.utils
import json
import math
import random
import time
from collections.abc import Mapping
from typing import Any

from earthvlm.errors import EarthVLMError
from earthvlm.io import UntrustedJSONError, check_plain_json

#: How much of an error body is kept in a result's ``detail``.
DETAIL_CHARS = 200


class ChatResponseError(EarthVLMError):
    """One attempt at a request failed.

    Attributes:
        reason: The failure code the request ends with if it is not (or no longer) retried.
        detail: What was found, for people (status, a snippet of the body).
        retry_as: The code this failure is retried under (``http_429``, ``http_503``,
            ``timeout``, ...), None when it is not worth retrying.
        retry_after_s: The delay the server asked for, if any.
    """

    def __init__(
        self,
        reason: str,
        detail: str,
        *,
        retry_as: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.retry_as = retry_as
        self.retry_after_s = retry_after_s


def backoff_delay_s(
    retry: int,
    *,
    base_s: float,
    max_s: float,
    jitter: float,
    rng: random.Random,
    retry_after_s: float | None = None,
) -> float:
    """How long to wait before retry number ``retry`` (0 for the first retry).

    The server's ``Retry-After`` wins when given (capped at ``max_s``); otherwise
    ``min(base_s * 2**retry, max_s)`` shortened by a random fraction up to ``jitter``.
    """
    if retry_after_s is not None:
        return min(max(retry_after_s, 0.0), max_s)
    delay = min(base_s * 2.0 ** min(retry, 60), max_s)
    return delay * (1.0 - jitter * rng.random())


def parse_retry_after(headers: Mapping[str, str] | Any) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date).

    Returns None when absent or unreadable (negative, not finite, malformed).
    """
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000.0
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return value
    after = headers.get("retry-after")
    if after is None:
        return None
    try:
        value = float(after)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(after)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        value = when.timestamp() - time.time()
        return max(value, 0.0)
    return value if math.isfinite(value) and value >= 0 else None


def snippet(raw: bytes | str) -> str:
    """At most ``DETAIL_CHARS`` printable characters of a body, for a failure's detail."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    text = "".join(c if c.isprintable() else " " for c in text[: DETAIL_CHARS * 2])
    text = " ".join(text.split())
    return text[:DETAIL_CHARS] + ("..." if len(text) > DETAIL_CHARS else "")


def parse_chat_completion(raw: bytes) -> dict[str, Any]:
    """The reply of a ``/chat/completions`` body: ``{"text", "finish_reason", "usage"}``.

    Raises:
        ChatResponseError: With reason ``not_utf8``, ``bad_json``, ``bad_shape``,
            ``api_error``, ``empty_choice``, ``refusal`` or ``truncated``.
    """
    try:
        body = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ChatResponseError("not_utf8", f"byte {e.start} is not UTF-8") from None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise ChatResponseError("bad_json", f"not JSON: {snippet(body)!r}") from None
    try:  # a "\ud800" escape: text no UTF-8 writer (the cache, a record) can write back
        check_plain_json(data, max_depth=None)
    except UntrustedJSONError as e:
        raise ChatResponseError("not_utf8", e.detail) from None
    if not isinstance(data, dict):
        raise ChatResponseError("bad_shape", f"a JSON {type(data).__name__}, not an object")
    if "choices" not in data and "error" in data:
        raise ChatResponseError("api_error", f"error object: {snippet(str(data['error']))}")
    choices = data.get("choices")
    if not isinstance(choices, list):
        raise ChatResponseError("bad_shape", "no 'choices' list")
    if not choices:
        raise ChatResponseError("empty_choice", "'choices' is empty")
    choice = choices[0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise ChatResponseError("bad_shape", "choices[0] has no 'message' object")
    finish = choice.get("finish_reason")
    finish = finish if isinstance(finish, str) else None
    if message.get("refusal") or finish == "content_filter":
        raise ChatResponseError("refusal", snippet(str(message.get("refusal") or finish)))
    if finish == "length":
        raise ChatResponseError("truncated", "finish_reason is 'length' (raise max_tokens)")
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        raise ChatResponseError("bad_shape", f"message content is a {type(content).__name__}")
    if not content or not content.strip():
        raise ChatResponseError("empty_choice", "the message has no text")
    usage = data.get("usage")
    if isinstance(usage, dict):
        usage = {k: v for k, v in usage.items() if isinstance(v, int) and k.endswith("_tokens")}
    return {"text": content, "finish_reason": finish, "usage": usage or None}
