"""An OpenAI-compatible chat client for teacher and judge work: retries, a cache, a ledger.

One :class:`ChatClient` talks to any server that implements ``POST
{base_url}/chat/completions`` (OpenAI, vLLM, SGLang, llama.cpp, LiteLLM, ...) with the
standard library alone (``urllib``), so the teacher layer needs no HTTP dependency and
no torch. :meth:`ChatClient.chat_many` sends a batch through a bounded thread pool and
accounts for every request in a :class:`~earthvlm.data.ledger.Ledger`.

What it does with a server it does not trust (``shared/notes/untrusted-inputs.md``):

* Retries 429, 408, every 5xx, timeouts and connection errors with exponential backoff
  and jitter, honouring ``Retry-After`` / ``retry-after-ms`` (capped at
  ``backoff_max_s``, so a server cannot stall a batch for hours). Other 4xx are not
  retried: a bad key or a bad request will not get better.
* Refuses redirects (``urllib`` would forward the bearer key to the new host).
* Caps the body (``max_body_bytes``, checked against ``Content-Length`` first and
  while reading) and the wall-clock time of one attempt (``timeout_s``, also across a
  body that trickles in).
* Rejects, with a reason, bodies that are not UTF-8, not JSON, not the completion
  shape, empty, refused (``refusal`` / ``content_filter``) or truncated
  (``finish_reason == "length"``): a truncated reply must not be parsed as an answer.

Failure reasons (the ledger's ``failed`` keys): ``http_4xx``, ``http_3xx`` (refused
redirect), ``http_408_exhausted``, ``http_429_exhausted``, ``http_5xx_exhausted``,
``timeout``, ``connection``, ``body_too_large``, ``not_utf8``, ``bad_json``,
``bad_shape``, ``api_error``, ``empty_choice``, ``refusal``, ``truncated``,
``bad_status`` (a status code outside 2xx-5xx), ``tls`` (certificate not verified).

Successful replies go to a :class:`~earthvlm.teacher.cache.ResponseCache` keyed by the
request content, so a rerun after a crash calls each finished request zero more times;
results are joined to requests by position in the input (never by completion order) and
carry their key.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import logging
import math
import os
import random
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from earthvlm import __version__
from earthvlm.data.ledger import Ledger
from earthvlm.errors import EarthVLMError
from earthvlm.teacher.cache import ResponseCache, canonical_json, request_key
from earthvlm.teacher.responses import (
    DETAIL_CHARS,
    ChatResponseError,
    backoff_delay_s,
    parse_chat_completion,
    parse_retry_after,
    snippet,
)

log = logging.getLogger(__name__)

Message = Mapping[str, Any]
ROLES = frozenset({"system", "user", "assistant", "tool", "developer"})
#: Body parameters that the config sets and ``extra_body`` may not override.
RESERVED = frozenset({"model", "messages", "temperature", "max_tokens", "stream", "n"})


@dataclass(frozen=True)
class ClientConfig:
    """Where to send chat requests, with which parameters, and how hard to try.

    Attributes:
        base_url: The API root that ``/chat/completions`` is appended to, such as
            ``https://api.openai.com/v1`` or ``http://localhost:8000/v1`` (vLLM).
        model: The model name sent with every request.
        api_key_env: The name of the environment variable holding the bearer key (the
            key itself never sits in a config, a cache entry or a log). None sends no
            ``Authorization`` header, for local servers started without a key.
        temperature: Sampling temperature (0 for judges and reproducible data).
        max_tokens: The reply length limit; a reply cut at it counts as ``truncated``.
        extra_body: More body parameters (``seed``, ``top_p``, ``response_format``,
            ...). They are part of the cache key.
        timeout_s: Wall-clock limit of one attempt, connect to last byte.
        max_retries: Retries after the first attempt of a retryable failure.
        backoff_base_s: The first retry waits about this long; each next one twice as
            long (exponential backoff).
        backoff_max_s: No wait is longer, ``Retry-After`` included.
        jitter: Each backoff is shortened by a random fraction up to this (0 to 1), so
            that many workers do not retry in lock step.
        max_workers: Requests in flight at once.
        max_body_bytes: Replies larger than this are rejected (``body_too_large``).
        cache_dir: Folder of the response cache; None disables caching.
        seed: Seed of the jitter's random generator (None: fresh each run).
    """

    base_url: str
    model: str
    api_key_env: str | None = "OPENAI_API_KEY"
    temperature: float = 0.0
    max_tokens: int = 1024
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    timeout_s: float = 120.0
    max_retries: int = 4
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    jitter: float = 0.25
    max_workers: int = 8
    max_body_bytes: int = 4 * 1024 * 1024
    cache_dir: str | Path | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        url = urllib.parse.urlsplit(self.base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(
                f"base_url must be an http(s) URL such as http://localhost:8000/v1, "
                f"got {self.base_url!r}"
            )
        if self.base_url.rstrip("/").endswith("/chat/completions"):
            raise ValueError(
                f"base_url is the API root; drop '/chat/completions' from {self.base_url!r}"
            )
        if not isinstance(self.model, str) or not self.model:
            raise ValueError("model must be a non-empty model name")
        if self.api_key_env is not None and not self.api_key_env:
            raise ValueError("api_key_env must name an environment variable, or be None")
        if not (math.isfinite(self.temperature) and 0.0 <= self.temperature <= 2.0):
            raise ValueError(f"temperature must be in [0, 2], got {self.temperature}")
        bad = RESERVED & set(self.extra_body)
        if bad:
            raise ValueError(f"extra_body may not set {sorted(bad)}; use the config fields instead")
        positive = {
            "max_tokens": self.max_tokens,
            "timeout_s": self.timeout_s,
            "max_workers": self.max_workers,
            "max_body_bytes": self.max_body_bytes,
        }
        for name, value in positive.items():
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be positive, got {value}")
        if not 0 <= self.max_retries <= 20:
            raise ValueError(f"max_retries must be between 0 and 20, got {self.max_retries}")
        if not (0 <= self.backoff_base_s <= self.backoff_max_s):
            raise ValueError(
                f"need 0 <= backoff_base_s <= backoff_max_s, got {self.backoff_base_s} "
                f"and {self.backoff_max_s}"
            )
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"jitter must be a fraction in [0, 1], got {self.jitter}")

    @property
    def endpoint(self) -> str:
        """The URL requests are posted to."""
        return self.base_url.rstrip("/") + "/chat/completions"


@dataclass(frozen=True)
class ChatResult:
    """What became of one request.

    Attributes:
        key: The request's cache key (SHA-256 of its content); join on it, not on order.
        status: ``ok`` (answered now), ``cached`` (answered without a request: from the
            cache, or from an identical request earlier in the batch) or ``failed``.
        text: The reply text; None when the request failed.
        reason: The failure code (see the module docstring); None unless failed.
        detail: What was found, for people; None unless failed.
        finish_reason: The server's ``finish_reason``.
        usage: Token counts the server reported (``prompt_tokens``, ...), if any.
        attempts: HTTP requests made for it (0 when served without one).
        retries: The code of each retry, in order (``http_429``, ``timeout``, ...).
        cache_problem: A cache entry that could not be read or written, if any.
    """

    key: str
    status: Literal["ok", "cached", "failed"]
    text: str | None = None
    reason: str | None = None
    detail: str | None = None
    finish_reason: str | None = None
    usage: Mapping[str, int] | None = None
    attempts: int = 0
    retries: tuple[str, ...] = ()
    cache_problem: str | None = None

    @property
    def ok(self) -> bool:
        """True when there is a reply text."""
        return self.text is not None


@dataclass
class ChatBatch:
    """The results of :meth:`ChatClient.chat_many`, in the order of the requests.

    Attributes:
        results: One result per request.
        ledger: ``ok`` (answered now or from the cache) and ``failed`` by reason; the
            counts add up to the number of requests.
    """

    results: list[ChatResult]
    ledger: Ledger

    @property
    def texts(self) -> list[str | None]:
        """The reply texts (None where a request failed)."""
        return [r.text for r in self.results]

    @property
    def n_cached(self) -> int:
        """Requests answered without an HTTP request."""
        return sum(r.status == "cached" for r in self.results)

    @property
    def n_http_requests(self) -> int:
        """HTTP requests made, retries included."""
        return sum(r.attempts for r in self.results)

    @property
    def retries(self) -> Counter[str]:
        """Retry code -> how many retries it caused."""
        return Counter(code for r in self.results for code in r.retries)

    @property
    def cache_problems(self) -> Counter[str]:
        """Cache entries that could not be read or written, by problem."""
        return Counter(r.cache_problem for r in self.results if r.cache_problem)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (the texts are left to the caller)."""
        return {
            "ledger": self.ledger.to_dict(),
            "cached": self.n_cached,
            "http_requests": self.n_http_requests,
            "retries": dict(sorted(self.retries.items())),
            "cache_problems": dict(sorted(self.cache_problems.items())),
        }


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Turn every redirect into an error: the bearer key must not follow it elsewhere."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ChatClient:
    """Send chat requests to an OpenAI-compatible endpoint; see the module docstring.

    Args:
        config: Endpoint, parameters, retry and cache settings.
        sleep: The function that waits between retries (tests pass a recorder).

    Raises:
        EarthVLMError: When ``config.api_key_env`` names a variable that is not set.
    """

    def __init__(self, config: ClientConfig, *, sleep: Callable[[float], None] = time.sleep):
        self.config = config
        self._sleep = sleep
        self._rng = random.Random(config.seed)
        self._cache = ResponseCache(config.cache_dir) if config.cache_dir is not None else None
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"earthvlm/{__version__}",
        }
        if config.api_key_env is not None:
            key = os.environ.get(config.api_key_env, "").strip()
            if not key:
                raise EarthVLMError(
                    f"the API key variable {config.api_key_env} is not set: export it, or "
                    "set api_key_env=None for a local server that needs no key"
                )
            if not key.isascii() or not key.isprintable() or any(c.isspace() for c in key):
                raise EarthVLMError(
                    f"the API key in {config.api_key_env} has spaces or control characters; "
                    "check how it was exported"
                )
            self._headers["Authorization"] = f"Bearer {key}"
        handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
        if _is_loopback(urllib.parse.urlsplit(config.base_url).hostname or ""):
            handlers.append(urllib.request.ProxyHandler({}))  # no proxy reaches our loopback
        self._opener = urllib.request.build_opener(*handlers)

    def __repr__(self) -> str:
        return f"ChatClient(model={self.config.model!r}, endpoint={self.config.endpoint!r})"

    @property
    def cache(self) -> ResponseCache | None:
        """The response cache, if any."""
        return self._cache

    def request_body(self, messages: Sequence[Message]) -> dict[str, Any]:
        """The JSON body of a request for ``messages`` (what the cache key is made of).

        Raises:
            ValueError: When a message is not ``{"role": ..., "content": ...}`` or the
                body is not JSON-serialisable.
        """
        if isinstance(messages, (str, bytes, Mapping)) or not messages:
            raise ValueError(
                "messages must be a non-empty list of {'role': ..., 'content': ...} dicts"
            )
        for j, m in enumerate(messages):
            if not isinstance(m, Mapping) or m.get("role") not in ROLES or "content" not in m:
                raise ValueError(
                    f"messages[{j}] must be a dict with a role in {sorted(ROLES)} and a "
                    f"content, got {m!r:.100}"
                )
        body = {
            **self.config.extra_body,
            "model": self.config.model,
            "messages": [dict(m) for m in messages],
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens,
        }
        try:
            return json.loads(canonical_json(body))
        except (TypeError, ValueError) as e:
            raise ValueError(f"the request is not JSON-serialisable: {e}") from None

    def chat(self, messages: Sequence[Message]) -> ChatResult:
        """One request (through the cache and the retries); never raises for a bad reply."""
        return self.chat_many([messages], stage="chat").results[0]

    def chat_many(self, requests: Sequence[Sequence[Message]], *, stage: str = "chat") -> ChatBatch:
        """Send many requests, ``config.max_workers`` at a time.

        Identical requests are sent once. A bad reply, an exhausted retry budget or a
        timeout fails that request with a reason; it never stops the batch.

        Args:
            requests: One list of messages per request.
            stage: The ledger's name.

        Raises:
            ValueError: When a request is malformed (before anything is sent).
        """
        bodies = []
        for i, messages in enumerate(requests):
            try:
                bodies.append(self.request_body(messages))
            except ValueError as e:
                raise ValueError(f"requests[{i}]: {e}") from None
        keys = [request_key(b) for b in bodies]
        first: dict[str, int] = {}
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        futures: dict[str, Future[ChatResult]] = {}
        workers = max(1, min(self.config.max_workers, len(first)))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="earthvlm-chat")
        try:
            for k, i in first.items():
                futures[k] = pool.submit(self._complete, k, bodies[i])
            out = [futures[k].result() for k in first]  # wait for all; re-raise bugs
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
        done = dict(zip(first, out, strict=True))
        results: list[ChatResult] = []
        ledger = Ledger(stage=stage)
        for i, k in enumerate(keys):
            r = done[k]
            if i != first[k]:  # a repeat of an earlier request: no request of its own
                r = replace(
                    r,
                    status="cached" if r.ok else "failed",
                    attempts=0,
                    retries=(),
                    cache_problem=None,
                )
            results.append(r)
            if r.ok:
                ledger.count_ok()
            else:
                ledger.count_failed(r.reason or "unknown")
        ledger.check()
        return ChatBatch(results=results, ledger=ledger)

    # -- one request --------------------------------------------------------------------

    def _complete(self, key: str, body: dict[str, Any]) -> ChatResult:
        cache_problem = None
        if self._cache is not None:
            reply, cache_problem = self._cache.get(key, body)
            if reply is not None:
                return ChatResult(
                    key=key,
                    status="cached",
                    text=reply["text"],
                    finish_reason=reply.get("finish_reason"),
                    usage=reply.get("usage"),
                )
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        retries: list[str] = []
        while True:
            try:
                reply = self._attempt(data)
                break
            except ChatResponseError as e:
                if e.retry_as is None or len(retries) >= self.config.max_retries:
                    return ChatResult(
                        key=key,
                        status="failed",
                        reason=e.reason,
                        detail=e.detail,
                        attempts=len(retries) + 1,
                        retries=tuple(retries),
                        cache_problem=cache_problem,
                    )
                delay = backoff_delay_s(
                    len(retries),
                    base_s=self.config.backoff_base_s,
                    max_s=self.config.backoff_max_s,
                    jitter=self.config.jitter,
                    rng=self._rng,
                    retry_after_s=e.retry_after_s,
                )
                log.debug("retry %d of %s after %s (%.2f s)", len(retries) + 1, key[:8], e, delay)
                retries.append(e.retry_as)
                self._sleep(delay)
        if self._cache is not None:
            try:
                self._cache.put(key, body, reply)
            except OSError as e:
                cache_problem = f"write failed ({type(e).__name__})"
        return ChatResult(
            key=key,
            status="ok",
            text=reply["text"],
            finish_reason=reply["finish_reason"],
            usage=reply["usage"],
            attempts=len(retries) + 1,
            retries=tuple(retries),
            cache_problem=cache_problem,
        )

    def _attempt(self, data: bytes) -> dict[str, Any]:
        """One HTTP exchange; the parsed reply, or :class:`ChatResponseError`."""
        request = urllib.request.Request(
            self.config.endpoint, data=data, headers=self._headers, method="POST"
        )
        start = time.monotonic()
        try:
            response = self._opener.open(request, timeout=self.config.timeout_s)
        except urllib.error.HTTPError as e:
            with e:
                raise self._status_error(e) from None
        except urllib.error.URLError as e:
            raise self._transport_error(e.reason) from None
        except (OSError, http.client.HTTPException) as e:
            raise self._transport_error(e) from None
        with response:
            raw = self._read_capped(response, start)
        return parse_chat_completion(raw)

    def _read_capped(self, response: http.client.HTTPResponse, start: float) -> bytes:
        cap = self.config.max_body_bytes
        length = (response.headers.get("Content-Length") or "").strip()
        if length.isdigit() and int(length) > cap:
            raise ChatResponseError("body_too_large", f"Content-Length {length} > {cap} bytes")
        chunks: list[bytes] = []
        total = 0
        try:
            while True:
                if time.monotonic() - start > self.config.timeout_s:
                    detail = f"body not complete after {self.config.timeout_s} s"
                    raise ChatResponseError("timeout", detail, retry_as="timeout")
                chunk = response.read1(min(1 << 16, cap + 1 - total))
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
                total += len(chunk)
                if total > cap:
                    raise ChatResponseError("body_too_large", f"body exceeds {cap} bytes")
        except (OSError, http.client.HTTPException) as e:
            raise self._transport_error(e) from None

    def _transport_error(self, error: object) -> ChatResponseError:
        if isinstance(error, ssl.SSLCertVerificationError):
            return ChatResponseError("tls", snippet(str(error)))  # retrying will not fix it
        if isinstance(error, TimeoutError):
            return ChatResponseError(
                "timeout", f"no reply within {self.config.timeout_s} s", retry_as="timeout"
            )
        return ChatResponseError(
            "connection", snippet(f"{type(error).__name__}: {error}"), retry_as="connection"
        )

    def _status_error(self, e: urllib.error.HTTPError) -> ChatResponseError:
        code = e.code
        try:
            body = snippet(e.read(2 * DETAIL_CHARS))
        except (OSError, http.client.HTTPException):
            body = ""
        detail = f"HTTP {code}: {body}" if body else f"HTTP {code}"
        retry_after = parse_retry_after(e.headers) if e.headers is not None else None
        if code in (408, 429):
            return ChatResponseError(
                f"http_{code}_exhausted", detail, retry_as=f"http_{code}", retry_after_s=retry_after
            )
        if 500 <= code <= 599:
            return ChatResponseError(
                "http_5xx_exhausted", detail, retry_as=f"http_{code}", retry_after_s=retry_after
            )
        if 300 <= code <= 399:
            where = e.headers.get("Location", "?") if e.headers is not None else "?"
            return ChatResponseError("http_3xx", f"HTTP {code} redirect to {where!r:.100} refused")
        if 400 <= code <= 499:
            return ChatResponseError("http_4xx", detail)
        return ChatResponseError("bad_status", detail)
