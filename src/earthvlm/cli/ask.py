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
    allow_vrt: Annotated[
        bool,
        typer.Option(
            "--allow-vrt",
            help="Accept a GDAL VRT (XML that can read other files) whose sources stay in "
            "its folder; only for a VRT you trust.",
        ),
    ] = False,
    geojson: Annotated[
        Path | None,
        typer.Option(
            "--geojson",
            dir_okay=False,
            help="Also write the answer on the map: each view's window, each zoom box asked "
            "for, the answer's boxes and [SEG] masks (.geojson: WGS84; .gpkg: the image's CRS).",
        ),
    ] = None,
) -> None:
    """Ask a question about an image; the model may zoom before it answers. Exit code 2
    for a bad --model folder, 1 if the image cannot be read."""
    # heavy imports (torch, transformers) only when the command runs
    from earthvlm.cli._messages import for_cli
    from earthvlm.errors import EarthVLMError
    from earthvlm.io import atomic_write_text
    from earthvlm.scale.gsd import GSD, GSDSource
    from earthvlm.uhr.loop import LoopConfig, run_zoom_loop
    from earthvlm.uhr.reader import ReaderConfig

    try:
        gsd = None if gsd_m is None else GSD.exact(gsd_m, GSDSource.USER, "--gsd")
    except EarthVLMError as e:
        err_console.print(f"[red]--gsd:[/] {e}")
        raise typer.Exit(2) from None
    if geojson is not None:
        _check_map_path(geojson)
    try:
        zoom_model = _load_model(model, base=base, dtype=dtype, load_in_4bit=load_in_4bit)
    except EarthVLMError as e:
        err_console.print(f"[red]model error:[/] {e}")
        raise typer.Exit(2) from None
    if model is None:
        console.print(f"[yellow]note:[/] {RANDOM_NOTE}")
    config = LoopConfig(max_zooms=max_zooms, max_new_tokens=max_new_tokens)
    reader = ReaderConfig(allow_vrt=allow_vrt)
    captured: dict[str, Any] = {}  # --geojson: the last turn's [SEG] masks
    try:
        trace = run_zoom_loop(
            zoom_model,
            image,
            question,
            config,
            gsd=gsd,
            reader_config=reader,
            generate=_keeping_masks(zoom_model, captured) if geojson is not None else None,
        )
    except EarthVLMError as e:
        err_console.print(f"[red]error:[/] {escape(for_cli(str(e), vrt_flag='--allow-vrt'))}")
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
    if geojson is not None:
        _write_map(geojson, image, trace, zoom_model, captured.get("masks"), allow_vrt)


# -- --geojson: the answer on the map ------------------------------------------------------


def _check_map_path(path: Path) -> None:
    from earthvlm.geo.vector import VectorError, vector_format

    try:
        vector_format(path)
    except VectorError as e:
        err_console.print(f"[red]--geojson:[/] {e}")
        raise typer.Exit(2) from None


def _keeping_masks(model: Any, captured: dict[str, Any]) -> Any:
    """Greedy decoding (as :func:`earthvlm.uhr.loop.greedy_ids`) that keeps the last
    turn's ``[SEG]`` masks (a segmenting model's) in ``captured["masks"]``."""

    def generate(inputs: Any, gsds: list[Any], max_new_tokens: int) -> list[int]:
        out, masks = model.generate(
            inputs, list(gsds), max_new_tokens=max_new_tokens, do_sample=False
        )
        first = masks[0] if masks else None
        captured["masks"] = None if first is None else (first > 0).cpu().numpy()
        return out[0, inputs["input_ids"].shape[1] :].tolist()

    return generate


def _answer_boxes(text: str, view: Any, frame: str) -> list[tuple[str, list[float]]]:
    """The boxes of an answer on ``view``: what the detection parser reads (``x1,y1,x2,y2
    label`` lines, JSON with a label, text before a box as its label) when it reads any,
    else the first bare box, labelled ``answer`` (grounding)."""
    from earthvlm.data.detection_parse import parse_detections
    from earthvlm.eval.metrics import parse_box

    width, height = view.frame_extent(frame)
    parsed = parse_detections(text, width=width, height=height, fmt="quad")
    if parsed.objects:
        return [(o.label, list(o.coords)) for o in parsed.objects]
    box = parse_box(text).box_xyxy
    return [("answer", list(box))] if box is not None else []


def _write_map(
    path: Path, image: Path, trace: Any, model: Any, masks: Any, allow_vrt: bool
) -> None:
    """Write the trace and the answer on the map (see ``--geojson``)."""
    from earthvlm.errors import EarthVLMError
    from earthvlm.geo.mapping import Georef
    from earthvlm.geo.vector import write_features
    from earthvlm.uhr.trace_map import trace_features

    frame = model.backbone.box_frame
    boxes = _answer_boxes(trace.answer, trace.views[-1], frame)
    features = trace_features(trace, answer_boxes=boxes, box_frame=frame, masks=masks)
    try:
        georef = Georef.from_raster(image, allow_vrt=allow_vrt)
    except EarthVLMError as e:
        err_console.print(f"[red]--geojson:[/] {escape(str(e))}")
        raise typer.Exit(1) from None
    meta = {
        "question": trace.question,
        "answer": trace.answer,
        "stop": trace.stop,
        "answer_frame": frame,
        "answer_view": len(trace.views) - 1,
    }
    report = write_features(path, features, georef, layer="answer", meta=meta)
    where = f"{georef.crs_label} via {georef.method}" if georef.is_georeferenced else georef.note
    n_masks = 0 if masks is None else len(masks)
    console.print(
        f"map: {path} ({report.written} features: {len(trace.views)} view(s), {len(boxes)} "
        f"answer box(es), {n_masks} mask(s); coordinates {report.coordinates}: {where})"
    )
