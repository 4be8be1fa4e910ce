"""``earthvlm serve MODEL``: an OpenAI-compatible server with a GSD per image.

Loads MODEL as every command does (``--model`` elsewhere) and serves it on uvicorn until
Ctrl-C / SIGTERM (clean shutdown: in-flight requests finish, queued ones get 503). The
API, the limits and the batching are described in :mod:`earthvlm.serve`.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from earthvlm.cli._model import MODEL_HELP, BaseOpt, DtypeOpt, Nf4Opt

console = Console(stderr=True)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_command(
    model: Annotated[Path, typer.Argument(help=MODEL_HELP, file_okay=False)],
    host: Annotated[str, typer.Option(help="Interface to bind (loopback by default).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="TCP port (0: a free one).")] = 8000,
    base: BaseOpt = None,
    dtype: DtypeOpt = "fp32",
    load_in_4bit: Nf4Opt = False,
    name: Annotated[
        str | None,
        typer.Option("--name", help="The model name clients send (default: the model's own)."),
    ] = None,
    image_root: Annotated[
        Path | None,
        typer.Option(
            "--image-root",
            file_okay=False,
            exists=True,
            help="Read local image paths (file:// or plain) under this folder only; "
            "without it every path is refused.",
        ),
    ] = None,
    allow_url: Annotated[
        bool, typer.Option("--allow-url", help="Fetch http(s) image URLs (off by default).")
    ] = False,
    zoom: Annotated[
        bool,
        typer.Option("--zoom", help="Run the zoom_in tool server-side when a request offers it."),
    ] = False,
    max_zooms: Annotated[int, typer.Option(min=0, help="Most zooms per request.")] = 2,
    max_body_mb: Annotated[float, typer.Option(help="Largest request body, MiB.")] = 20.0,
    max_image_pixels: Annotated[
        int, typer.Option(help="Largest image decoded whole, in pixels.")
    ] = 4096 * 4096,
    max_request_pixels: Annotated[
        int, typer.Option(help="Largest total of decoded pixels in a request.")
    ] = 2 * 4096 * 4096,
    max_tokens: Annotated[int, typer.Option(help="Largest max_tokens a request may ask.")] = 1024,
    max_concurrent: Annotated[
        int, typer.Option(help="Requests admitted at once; more get 429 (Retry-After).")
    ] = 16,
    max_batch_size: Annotated[int, typer.Option(help="Most rows in one generate.")] = 8,
    batch_wait_ms: Annotated[
        float, typer.Option(help="How long a request waits for others to batch with.")
    ] = 5.0,
    timeout: Annotated[float, typer.Option(help="Per-request limit in seconds (504).")] = 120.0,
    log_level: Annotated[str, typer.Option(help="debug, info, warning.")] = "info",
) -> None:
    """Serve a model over the OpenAI chat API, with a GSD per image and dynamic batching.
    Exit code 2 for a bad model folder or option."""
    from earthvlm.errors import EarthVLMError
    from earthvlm.serve import ServeConfig, create_app, run

    if log_level.lower() not in ("debug", "info", "warning", "error"):
        console.print(f"[red]error:[/] --log-level {log_level!r}: debug, info, warning or error")
        raise typer.Exit(2)

    try:
        config = ServeConfig(
            host=host,
            port=port,
            model_name=name,
            image_root=image_root,
            allow_url=allow_url,
            zoom=zoom,
            max_zooms=max_zooms,
            max_body_bytes=int(max_body_mb * 1024 * 1024),
            max_image_pixels=max_image_pixels,
            max_request_pixels=max_request_pixels,
            max_tokens=max_tokens,
            default_max_tokens=min(256, max_tokens),
            max_concurrent=max_concurrent,
            max_batch_size=max_batch_size,
            batch_wait_ms=batch_wait_ms,
            timeout_s=timeout,
        )
    except ValueError as e:
        console.print(f"[red]error:[/] {e}")
        raise typer.Exit(2) from None
    from earthvlm.cli._model import load_model_option

    try:
        served = load_model_option(model, base=base, dtype=dtype, load_in_4bit=load_in_4bit)
    except EarthVLMError as e:
        console.print(f"[red]model error:[/] {e}")
        raise typer.Exit(2) from None
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s: %(message)s")
    if not _is_loopback(host):
        console.print(
            f"[yellow]warning:[/] binding {host}: the server has no authentication; anyone "
            "who reaches this address can use the model"
        )
    served_name = name or served.name
    console.print(
        f"serving {served_name} ({served.variant}) at http://{host}:{port}/v1 "
        f"(GSD per image: {'yes' if served.takes_gsd else 'not used by this model'}; "
        f"zoom: {'on' if zoom else 'off'})"
    )
    run(create_app(served, config), host, port, log_level=log_level.lower())


__all__ = ["serve_command"]
