"""A scripted OpenAI-compatible server on loopback, for tests and offline runs.

:class:`FakeChatServer` is a real HTTP server (``http.server``, one thread per
connection) bound to ``127.0.0.1`` on an ephemeral port. It answers ``POST
/v1/chat/completions`` with whatever a *script* returns for each call, so a test can
play a well-behaved model, a rate-limited one, a failing one or a hostile one, and then
inspect what the client actually sent::

    def script(call: ChatCall) -> Reply:
        if call.index == 0:
            return Reply(429, headers={"Retry-After": "0"})
        return Reply(body=completion("Score: 4"))

    with FakeChatServer(script) as server:
        client = ChatClient(ClientConfig(server.url, "judge", api_key_env=None))
        ...
        assert server.n_calls == 2

Other paths answer 404 and other methods 405 (both are recorded as calls). An exception
raised by the script is answered with a 500 and raised again when the server stops, so
a broken script fails its test loudly.
"""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

#: The one path the server implements.
CHAT_PATH = "/v1/chat/completions"
#: Request bodies larger than this are answered 413.
MAX_REQUEST_BYTES = 16 * 1024 * 1024


def completion(
    text: str | None,
    *,
    finish_reason: str | None = "stop",
    model: str = "fake-model",
    **message: Any,
) -> dict[str, Any]:
    """A ``/chat/completions`` response body in the OpenAI shape, with one choice.

    Extra keyword arguments go into the message (``refusal="..."``, ``tool_calls=[...]``).
    """
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, **message},
                "finish_reason": finish_reason,
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


@dataclass(frozen=True)
class Reply:
    """What the server answers to one call.

    Attributes:
        status: The HTTP status code.
        body: A mapping or list (sent as JSON), text (sent as UTF-8), raw bytes, or None
            (an empty body).
        headers: Extra response headers (``Retry-After``, ...).
        delay_s: Seconds to wait before answering (cut short when the server stops).
        content_length: False leaves out ``Content-Length``: the body then ends when the
            connection closes, as with a proxy that streams an unknown length.
    """

    status: int = 200
    body: Mapping[str, Any] | list[Any] | str | bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    content_length: bool = True

    def encoded(self) -> bytes:
        """The body as bytes."""
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode("utf-8")
        return json.dumps(self.body).encode("utf-8")


@dataclass(frozen=True)
class ChatCall:
    """One request the server received.

    Attributes:
        index: Its position among all requests the server received (0 first).
        method: ``POST`` (the script is called) or ``GET`` (answered 405).
        path: The request path.
        headers: The request headers (names lower-cased).
        body: The raw request body.
    """

    index: int
    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        """The body parsed as JSON (None when it is not JSON)."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The request's messages (empty when absent)."""
        data = self.json
        messages = data.get("messages") if isinstance(data, dict) else None
        return messages if isinstance(messages, list) else []

    @property
    def last_user_text(self) -> str:
        """The text of the last user message ("" when there is none)."""
        for m in reversed(self.messages):
            if isinstance(m, dict) and m.get("role") == "user":
                content = m.get("content")
                return content if isinstance(content, str) else json.dumps(content)
        return ""


def echo(call: ChatCall) -> Reply:
    """The default script: answer with the last user message."""
    return Reply(body=completion(call.last_user_text or "(no user message)"))


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, a DNS query we do not need
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


class FakeChatServer:
    """A scripted chat-completions server on ``127.0.0.1``; use it as a context manager.

    Args:
        script: Called once per request to ``/v1/chat/completions`` with the
            :class:`ChatCall`; returns the :class:`Reply`. Called from the server's
            threads, so a script that keeps state should lock it (``call.index`` is
            assigned under the server's lock).
    """

    def __init__(self, script: Callable[[ChatCall], Reply] = echo) -> None:
        self.script = script
        self._lock = threading.Lock()
        self._calls: list[ChatCall] = []
        self._errors: list[BaseException] = []
        self._stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        #: Replies the client hung up on before they were written (it timed out).
        self.dropped = 0

    @property
    def url(self) -> str:
        """The API root to use as ``base_url`` (``http://127.0.0.1:PORT/v1``)."""
        if self._httpd is None:
            raise RuntimeError("the server is not running; use it in a 'with' block")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    @property
    def calls(self) -> list[ChatCall]:
        """The requests received so far, in arrival order."""
        with self._lock:
            return list(self._calls)

    @property
    def n_calls(self) -> int:
        """How many requests arrived."""
        with self._lock:
            return len(self._calls)

    def start(self) -> FakeChatServer:
        """Bind an ephemeral port and serve in a background thread."""
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: tests read the calls, not a log

            def do_POST(self) -> None:
                owner._handle(self)

            def do_GET(self) -> None:
                owner._handle(self)

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake delayed replies, and raise the first script error, if any."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._errors:
            raise RuntimeError("the fake server's script failed") from self._errors[0]

    def __enter__(self) -> FakeChatServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- inside the server's threads -----------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        try:
            length = int(handler.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_REQUEST_BYTES:
            self._send(handler, Reply(413, {"error": {"message": "bad request length"}}))
            return
        body = handler.rfile.read(length)
        with self._lock:
            call = ChatCall(
                index=len(self._calls),
                method=handler.command,
                path=handler.path,
                headers={k.lower(): v for k, v in handler.headers.items()},
                body=body,
            )
            self._calls.append(call)
        if handler.path != CHAT_PATH:
            self._send(handler, Reply(404, {"error": {"message": f"no route {handler.path}"}}))
            return
        if handler.command != "POST":
            self._send(handler, Reply(405, {"error": {"message": "POST only"}}))
            return
        try:
            reply = self.script(call)
        except Exception as e:
            with self._lock:
                self._errors.append(e)
            reply = Reply(500, {"error": {"message": f"script failed: {e!r}"}})
        if reply.delay_s > 0:
            self._stopping.wait(reply.delay_s)
        self._send(handler, reply)

    def _send(self, handler: BaseHTTPRequestHandler, reply: Reply) -> None:
        data = reply.encoded()
        try:
            handler.send_response(reply.status)
            if not any(k.lower() == "content-type" for k in reply.headers):
                handler.send_header("Content-Type", "application/json")
            for k, v in reply.headers.items():
                handler.send_header(k, v)
            if reply.content_length:
                handler.send_header("Content-Length", str(len(data)))
            handler.send_header("Connection", "close")
            handler.end_headers()
            handler.wfile.write(data)
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            with self._lock:
                self.dropped += 1
        handler.close_connection = True
