"""The ASGI app: OpenAI's chat-completions API in front of one :class:`EarthVLM`.

Routes: ``POST /v1/chat/completions`` (JSON or SSE streaming), ``GET /v1/models``,
``GET /v1/models/{id}``, ``GET /health``. Every error is an OpenAI error body with its
status: 400 bad request (bad JSON, bad image, bad GSD, too many pixels, ...), 404
unknown model or route, 405 wrong method, 413 body too large, 429 too many requests at
once (with ``Retry-After``), 503 shutting down, 504 past the per-request timeout; an
unexpected failure is logged with its traceback and answered 500 without it.

Admission: at most ``max_concurrent`` requests are admitted (queued or generating);
the next one gets 429 at once rather than waiting in an unbounded queue. Admitted
requests wait for the model thread, bounded by ``timeout_s``.

Accounting: every image a request carries is counted (``ok`` or failed with its
reason) and logged with its size, source and GSD; every request is counted by outcome.
``/health`` shows both, with the queue and batch statistics.

Streaming follows OpenAI: a first chunk with the role, content deltas, a chunk per
choice with its ``finish_reason`` (the last one carries the ``earthvlm`` extension),
then, with ``stream_options.include_usage``, a chunk with ``usage`` and no choices, then
``data: [DONE]``. An error after the stream started is sent as ``data: {"error": ...}``
(the openai client raises it). A zoom request's answer arrives as one delta when the
loop ends (its turns are not streamed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from earthvlm import __version__
from earthvlm.models.earthvlm import EarthVLM
from earthvlm.serve.config import ServeConfig
from earthvlm.serve.engine import Engine, Job, JobResult
from earthvlm.serve.images import LoadedImage
from earthvlm.serve.prepare import Preparer, deadline_in
from earthvlm.serve.protocol import (
    APIError,
    ChatRequest,
    bad_request,
    chunk,
    completion,
    completion_id,
    now,
    parse_request,
    usage,
    usage_chunk,
)

log = logging.getLogger("earthvlm.serve")

_DONE = object()


def error_response(e: APIError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status, headers=e.headers)


class Server:
    """The state behind the routes: the model's engine, the preparer, the counters.

    Args:
        model: The served model.
        config: Limits, roots and batching.
    """

    def __init__(self, model: EarthVLM, config: ServeConfig) -> None:
        self.config = config
        self.model = model
        self.name = config.model_name or model.name
        self.created = now()
        lock = threading.Lock()
        self.engine = Engine(
            model,
            max_batch_size=config.max_batch_size,
            batch_wait_ms=config.batch_wait_ms,
            tokenizer_lock=lock,
        )
        self.preparer = Preparer(model, config, lock)
        self.admitted = 0
        self.images = self.preparer.counts
        self.requests: Counter[str] = Counter()

    # -- life ---------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self.engine.start()
        log.info(
            "serving %s (%s) with batches of up to %d rows",
            self.name,
            self.model.variant,
            self.config.max_batch_size,
        )
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(self.engine.stop)
            log.info("stopped: requests %s; images %s", dict(self.requests), self.images.to_dict())

    # -- routes -------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "model": self.name,
                "version": __version__,
                "admitted": self.admitted,
                "queued": self.engine.queued,
                "batches": dict(self.engine.stats),
                "requests": dict(self.requests),
                "images": self.images.to_dict(),
            }
        )

    def _card(self) -> dict[str, Any]:
        m = self.model
        return {
            "id": self.name,
            "object": "model",
            "created": self.created,
            "owned_by": "earthvlm",
            "earthvlm": {
                "variant": m.variant,
                "takes_gsd": m.takes_gsd,
                "gsd_as_text": m.gsd_as_text,
                "sseu": m.sseu is not None,
                "zoom": self.config.zoom,
                "source": str(m.source) if m.source else None,
            },
        }

    async def models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [self._card()]})

    async def model_card(self, request: Request) -> Response:
        if request.path_params["model_id"] != self.name:
            return error_response(self._unknown_model(request.path_params["model_id"]))
        return JSONResponse(self._card())

    def _unknown_model(self, name: str) -> APIError:
        return APIError(
            404,
            f"the model {name!r} is not served here; this server serves "
            f"{self.name!r} (GET /v1/models)",
            code="model_not_found",
            param="model",
        )

    async def chat(self, request: Request) -> Response:
        t0 = time.perf_counter()
        if self.admitted >= self.config.max_concurrent:
            self.requests["http_429"] += 1
            return error_response(
                APIError(
                    429,
                    f"the server is at its limit of {self.config.max_concurrent} requests at "
                    "once; retry shortly",
                    type="rate_limit_error",
                    code="server_busy",
                    headers={"Retry-After": "1"},
                )
            )
        self.admitted += 1
        streaming = False
        images: list[LoadedImage] = []
        try:
            deadline = deadline_in(self.config.timeout_s)
            req = await self._read(request)
            job, images = await self._prepare(req, deadline)
            if req.stream:
                streaming = True
                counted = [False]
                return _Stream(
                    self._stream(req, job, images, t0, counted),
                    on_close=lambda: self._close_stream(job, images, t0, counted),
                    media_type="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
                )
            result = await self._wait(job)
            self._count("ok", images, t0, result)
            return JSONResponse(self._completion(req, result, images))
        except APIError as e:
            self._count(f"http_{e.status}", images, t0, None, e)
            return error_response(e)
        finally:
            if not streaming:
                self.admitted -= 1

    # -- one request --------------------------------------------------------------------

    async def _read(self, request: Request) -> ChatRequest:
        limit = self.config.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            raise APIError(
                413,
                f"the body is {declared} bytes, over the limit of {limit}",
                code="body_too_large",
            )
        size, parts = 0, []
        async for part in request.stream():
            size += len(part)
            if size > limit:
                raise APIError(
                    413, f"the body is over the limit of {limit} bytes", code="body_too_large"
                )
            parts.append(part)
        try:
            data = json.loads(b"".join(parts))
        except (ValueError, RecursionError):
            raise bad_request("the body is not valid JSON", "bad_json") from None
        req = parse_request(data)
        if req.model != self.name:
            raise self._unknown_model(req.model)
        return req

    async def _prepare(self, req: ChatRequest, deadline: float) -> tuple[Job, list[LoadedImage]]:
        return await anyio.to_thread.run_sync(self.preparer.prepare, req, deadline)

    async def _wait(self, job: Job) -> JobResult:
        self.engine.submit(job)
        left = max(0.0, job.deadline - time.monotonic())
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(job.future)), left)
        except TimeoutError:
            job.cancelled = True
            job.future.cancel()
            raise APIError(
                504,
                f"no answer within the server's timeout of {self.config.timeout_s:g} s",
                type="timeout_error",
                code="timeout",
            ) from None
        except asyncio.CancelledError:
            job.cancelled = True  # the client went away
            job.future.cancel()
            raise

    def _count(
        self,
        outcome: str,
        images: list[LoadedImage],
        t0: float,
        result: JobResult | None,
        error: APIError | None = None,
    ) -> None:
        self.requests[outcome] += 1
        if result is not None:
            self.images.ok(len(images))
        else:
            self.images.skipped("request_failed", len(images))
        for k, im in enumerate(images):
            log.info(
                "image %d: %s %dx%d gsd %s (%s)",
                k,
                im.source,
                im.image.width,
                im.image.height,
                im.gsd,
                im.gsd_from,
            )
        ms = (time.perf_counter() - t0) * 1000
        if error is not None:
            log.info("request %s: %s (%s) in %.0f ms", outcome, error.code, error.message, ms)
        elif result is not None:
            log.info(
                "request ok: %d image(s), %d prompt + %d completion tokens, batch of %d "
                "row(s), %.0f ms",
                len(images),
                result.n_prompt,
                sum(c.n_tokens for c in result.choices),
                result.batch_rows,
                ms,
            )

    def _extension(self, result: JobResult, images: list[LoadedImage]) -> dict[str, Any]:
        decided = result.decisions
        out = []
        for k, im in enumerate(images):
            row = {"index": k, **im.describe()}
            if decided is not None and k < len(decided):
                gsd, branch = decided[k]
                row.update(gsd=gsd.to_dict(), gsd_m=gsd.point_m, branch=branch)
            elif self.model.gsd_as_text and im.gsd is not None:
                row.update(gsd=im.gsd.to_dict(), gsd_m=im.gsd.point_m, branch="text")
            else:
                row.update(gsd=None, gsd_m=None, branch="not_used")
            out.append(row)
        ext: dict[str, Any] = {
            "images": out,
            "batch": {"rows": result.batch_rows, "requests": result.batch_jobs},
            "model_takes_gsd": self.model.takes_gsd,
        }
        if result.zoom is not None:
            ext["zoom"] = result.zoom
            if decided is not None:  # every view the last turn saw
                ext["zoom"]["gsd_decisions"] = [
                    {"gsd": g.to_dict(), "gsd_m": g.point_m, "branch": b} for g, b in decided
                ]
        return ext

    def _completion(
        self, req: ChatRequest, result: JobResult, images: list[LoadedImage]
    ) -> dict[str, Any]:
        n_completion = sum(c.n_tokens for c in result.choices[: 1 if _shared(req) else None])
        return completion(
            completion_id(),
            self.name,
            [(c.text, c.finish_reason) for c in result.choices],
            usage(result.n_prompt, n_completion),
            self._extension(result, images),
        )

    def _close_stream(
        self, job: Job, images: list[LoadedImage], t0: float, counted: list[bool]
    ) -> None:
        """After the stream ended, however it ended (even before its first chunk): stop
        the job if it still runs, count the request, release its admission."""
        if not job.future.done():
            job.cancelled = True  # the client went away
            job.future.cancel()
        if not counted[0]:
            gone = APIError(499, "the client disconnected", code="client_gone")
            self._count("client_gone", images, t0, None, gone)
        self.admitted -= 1

    async def _stream(
        self, req: ChatRequest, job: Job, images: list[LoadedImage], t0: float, counted: list[bool]
    ) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        job.on_text = lambda c, d: loop.call_soon_threadsafe(queue.put_nowait, (c, d))
        job.future.add_done_callback(lambda _: loop.call_soon_threadsafe(queue.put_nowait, _DONE))
        cid, created = completion_id(), now()
        sent = [""] * req.n
        try:
            self.engine.submit(job)
            for c in range(req.n):
                yield _sse(chunk(cid, created, self.name, c, {"role": "assistant", "content": ""}))
            while True:
                left = max(0.0, job.deadline - time.monotonic())
                try:
                    item = await asyncio.wait_for(queue.get(), left)
                except TimeoutError:
                    raise APIError(
                        504,
                        "no answer within the server's timeout",
                        type="timeout_error",
                        code="timeout",
                    ) from None
                if item is _DONE:
                    break
                c, delta = item
                sent[c] += delta
                yield _sse(chunk(cid, created, self.name, c, {"content": delta}))
            error = job.future.exception()
            if error is not None:
                raise (
                    error
                    if isinstance(error, APIError)
                    else APIError(500, "generation failed; see the server log", type="server_error")
                )
            result: JobResult = job.future.result()
            for c, choice in enumerate(result.choices):
                rest = choice.text[len(sent[c]) :] if choice.text.startswith(sent[c]) else ""
                if rest:  # a zoom answer, or text held back at the end
                    yield _sse(chunk(cid, created, self.name, c, {"content": rest}))
                extra = {"earthvlm": self._extension(result, images)} if c == req.n - 1 else {}
                yield _sse(chunk(cid, created, self.name, c, {}, choice.finish_reason, **extra))
            if req.stream_options is not None and req.stream_options.include_usage:
                n_completion = sum(
                    c.n_tokens for c in result.choices[: 1 if _shared(req) else None]
                )
                yield _sse(
                    usage_chunk(cid, created, self.name, usage(result.n_prompt, n_completion))
                )
            counted[0] = True
            self._count("ok", images, t0, result)
            yield "data: [DONE]\n\n"
        except APIError as e:
            counted[0] = True
            self._count(f"http_{e.status}", images, t0, None, e)
            yield _sse(e.body())
            yield "data: [DONE]\n\n"


class _Stream(StreamingResponse):
    """A streaming response that calls ``on_close`` when it is over, whether the body was
    sent, the client went away, or the body never started."""

    def __init__(self, content: Any, *, on_close: Any, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


def _shared(req: ChatRequest) -> bool:
    """Whether one decoded row answers every choice (greedy ``n`` > 1)."""
    return req.greedy and req.n > 1


def _sse(obj: dict[str, Any]) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


async def _http_error(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    if status == 404:
        e = APIError(
            404,
            f"no route {request.url.path}; see /v1/chat/completions, /v1/models",
            code="not_found",
        )
    elif status == 405:
        e = APIError(
            405, f"{request.method} is not allowed on {request.url.path}", code="method_not_allowed"
        )
    else:
        e = APIError(status, str(getattr(exc, "detail", "")) or "error", code="http_error")
    return error_response(e)


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(
        APIError(
            500,
            "internal server error; see the server log",
            type="server_error",
            code="internal_error",
        )
    )


def create_app(model: EarthVLM, config: ServeConfig | None = None) -> Starlette:
    """The ASGI app serving ``model`` (start it with uvicorn, or :func:`~earthvlm.serve.
    server.serve_in_thread`). The model thread starts and stops with the app's lifespan.
    """
    server = Server(model, config or ServeConfig())
    routes = [
        Route("/health", server.health, methods=["GET"]),
        Route("/v1/models", server.models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", server.model_card, methods=["GET"]),
        Route("/v1/chat/completions", server.chat, methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=server.lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
    )
    app.state.server = server
    return app


__all__ = ["Server", "create_app", "error_response"]
