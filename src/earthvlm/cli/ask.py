"""``earthvlm ask IMAGE "question" [--model DIR] [--max-zooms K]``: one question, with zooming.

The model sees a global view of the image, may zoom into regions read natively from the
source (:func:`earthvlm.uhr.loop.run_zoom_loop`), and answers. The command prints the
answer, every view with the GSD it was given (and, for a scale-conditioned model, the GSD
it was conditioned on), and writes a picture of the zoom trace (PNG) and the trace itself
(JSON beside it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from earthvlm.cli._model import MODEL_HELP, BaseOpt, DtypeOpt, Nf4Opt

console = Console()
err_console = Console(stderr=True)

#: Printed when no --model is given.
RANDOM_NOTE = (
    "no --model: a tiny randomly initialised backbone answers, so its answers and zooms "
    "are noise (this run shows the machinery: views, GSDs, the trace)"
)


def _load_model(path: Path | None, **kwargs: Any) -> Any:
    """The :class:`~earthvlm.models.EarthVLM` at ``path`` (anything ``--model`` takes),
    or (``None``) a tiny random backbone."""
    if path is None:
        from earthvlm.models import EarthVLM, build_tiny_backbone

        return EarthVLM.from_backbone(build_tiny_backbone(), name="tiny random backbone")
    from earthvlm.cli._model import load_model_option

    return load_model_option(path, **kwargs)


def ask_command(
    image: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            readable=True,
            help="The image: a tiled GeoTIFF / COG (read by window) or a JPEG / PNG.",
        ),
    ],
    question: Annotated[str, typer.Argument(help="The question, in quotes.")],
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            file_okay=False,
            help=MODEL_HELP + " Default: a tiny random backbone (its answers are noise).",
        ),
    ] = None,
    base: BaseOpt = None,
    dtype: DtypeOpt = "fp32",
    load_in_4bit: Nf4Opt = False,
    max_zooms: Annotated[
        int, typer.Option("--max-zooms", min=0, help="Most zooms (0: global view only).")
    ] = 2,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            dir_okay=False,
            help="The trace picture (PNG; the trace JSON goes beside it); default "
            "<image name>.zoom.png in the current folder.",
        ),
    ] = None,
    gsd_m: Annotated[
        float | None,
        typer.Option(
            "--gsd",
            help="The image's GSD in metres per pixel; default: from its georeferencing.",
        ),
    ] = None,
    max_new_tokens: Annotated[
        int, typer.Option("--max-new-tokens", min=1, help="Tokens per model turn.")
    ] = 128,
) -> None:
    """Ask a question about an image; the model may zoom before it answers. Exit code 2
    for a bad --model folder, 1 if the image cannot be read."""
    # heavy imports (torch, transformers) only when the command runs
    from earthvlm.errors import EarthVLMError
    from earthvlm.io import atomic_write_text
    from earthvlm.scale.gsd import GSD, GSDSource
    from earthvlm.uhr.loop import LoopConfig, run_zoom_loop

    try:
        gsd = None if gsd_m is None else GSD.exact(gsd_m, GSDSource.USER, "--gsd")
    except EarthVLMError as e:
        err_console.print(f"[red]--gsd:[/] {e}")
        raise typer.Exit(2) from None
    try:
        zoom_model = _load_model(model, base=base, dtype=dtype, load_in_4bit=load_in_4bit)
    except EarthVLMError as e:
        err_console.print(f"[red]model error:[/] {e}")
        raise typer.Exit(2) from None
    if model is None:
        console.print(f"[yellow]note:[/] {RANDOM_NOTE}")
    config = LoopConfig(max_zooms=max_zooms, max_new_tokens=max_new_tokens)
    try:
        trace = run_zoom_loop(zoom_model, image, question, config, gsd=gsd)
    except EarthVLMError as e:
        err_console.print(f"[red]error:[/] {e}")
        raise typer.Exit(1) from None
    target = out or Path.cwd() / f"{image.stem}.zoom.png"
    trace.save_png(target)
    trace_json = target.with_suffix(".json")
    atomic_write_text(trace_json, json.dumps(trace.to_dict(), indent=2) + "\n")

    console.print(f"[bold]answer:[/] {escape(trace.answer) or '(empty)'}")
    console.print(
        f"model: {zoom_model.name}; stop: {trace.stop}; zooms: {trace.n_zooms}; "
        f"tool schema via: {trace.tools_via}"
    )
    decisions = next((t.gsd_decisions for t in reversed(trace.turns) if t.gsd_decisions), ())
    table = Table(title="views (each with its own GSD)")
    for col in ("view", "source window (px)", "size (px)", "GSD given", "GSD used"):
        table.add_column(col)
    for k, view in enumerate(trace.views):
        kind = "native" if view.is_native else f"x{view.downsample:.3g} downsampled"
        if view.downsample < 1:
            kind = f"x{1 / view.downsample:.3g} enlarged"
        if k < len(decisions):
            used = f"{decisions[k][0]} ({decisions[k][1]})"
        elif zoom_model.takes_gsd:
            used = "as given"
        else:
            used = "not used by this model"
        h, w = view.hw
        table.add_row(
            "global" if k == 0 else f"zoom {k}",
            str(list(view.window_xyxy_px)),
            f"{w} x {h} ({kind})",
            str(view.gsd),
            used,
        )
    console.print(table)
    for k, turn in enumerate(trace.turns, 1):
        what = turn.action + (f" ({turn.reason})" if turn.reason else "")
        console.print(f"turn {k}: {what}, {turn.n_tokens} tokens")
    console.print(f"trace picture: {target}; trace: {trace_json}")
