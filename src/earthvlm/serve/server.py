"""Running the app on uvicorn: in the foreground (``earthvlm serve``) or in a thread
(tests, benchmarks, and any loopback endpoint a test needs).

Shutdown is uvicorn's: on SIGINT / SIGTERM it stops accepting connections, lets
in-flight requests finish (up to ``graceful_s``), then runs the app's lifespan exit,
which fails queued requests with 503 and joins the model thread.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


def _uvicorn_config(app: Any, host: str, port: int, log_level: str, graceful_s: float) -> Any:
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        timeout_graceful_shutdown=graceful_s,
        access_log=log_level == "debug",
    )


def run(
    app: Any, host: str, port: int, *, log_level: str = "info", graceful_s: float = 30.0
) -> None:
    """Serve ``app`` until SIGINT / SIGTERM (blocking); returns normally after a clean
    shutdown (uvicorn re-raises the signal it caught once it is done: both end up here
    as ``KeyboardInterrupt``, so the command exits 0)."""
    import signal

    import uvicorn

    def _interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        uvicorn.Server(_uvicorn_config(app, host, port, log_level, graceful_s)).run()
    except KeyboardInterrupt:
        log.info("stopped by signal")
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class RunningServer:
    """A server started by :func:`serve_in_thread`.

    Attributes:
        host: The bound address.
        port: The bound port.
        app: The ASGI app.
    """

    host: str
    port: int
    app: Any

    @property
    def url(self) -> str:
        """The root URL, ``http://host:port``."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI API root, ``http://host:port/v1``."""
        return f"{self.url}/v1"


@contextlib.contextmanager
def serve_in_thread(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    log_level: str = "warning",
    start_timeout_s: float = 30.0,
) -> Iterator[RunningServer]:
    """Run ``app`` on uvicorn in a background thread for the ``with`` block.

    The socket is bound here (``port=0``: a free port), so the port is known before the
    server starts and no other process can take it in between.

    Raises:
        RuntimeError: If the server does not start within ``start_timeout_s``.
    """
    import uvicorn

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    server = uvicorn.Server(_uvicorn_config(app, host, bound, log_level, 5.0))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="earthvlm-serve", daemon=True
    )
    thread.start()
    t0 = time.monotonic()
    while not server.started:
        if not thread.is_alive() or time.monotonic() - t0 > start_timeout_s:
            server.should_exit = True
            sock.close()
            raise RuntimeError(f"the server on {host}:{bound} did not start")
        time.sleep(0.01)
    try:
        yield RunningServer(host, bound, app)
    finally:
        server.should_exit = True
        thread.join(30.0)
        sock.close()


__all__ = ["RunningServer", "run", "serve_in_thread"]
