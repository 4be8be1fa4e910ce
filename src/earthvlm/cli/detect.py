"""``earthvlm detect MODEL SCENE.tif --out FILE``: detection over a whole scene, on the map.

The scene is cut into overlapping tiles read by window (never the whole raster in
memory), the model writes its detections as text on each tile, the boxes go back to
source pixels, duplicates across tiles are merged (rotated NMS per class, the whole-scene
DOTA merge) and the objects are written through the raster's georeferencing
(:mod:`earthvlm.uhr.scene_detect`): ``.geojson`` in WGS84 lon/lat (RFC 7946), ``.gpkg``
in the raster's own CRS. A scene without georeferencing is written in pixels, and the
command says so. Every tile's outcome (its raw text included) goes to
``FILE``'s stem ``.tiles.json`` beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from earthvlm.cli._model import MODEL_HELP, BaseOpt, DtypeOpt, Nf4Opt

console = Console()
err_console = Console(stderr=True)

#: The MODEL argument that builds a tiny random backbone (its detections are noise).
RANDOM_MODEL = "random"


def _classes(values: list[str] | None) -> tuple[str, ...] | None:
    """``--classes`` given repeatedly and / or comma-separated."""
    if not values:
        return None
    names = [c.strip() for v in values for c in v.split(",") if c.strip()]
    return tuple(dict.fromkeys(names)) or None


def _model(model: str, **kwargs: Any) -> Any:
    if model == RANDOM_MODEL:
        from earthvlm.models import EarthVLM, build_tiny_backbone

        return EarthVLM.from_backbone(build_tiny_backbone(), name="tiny random backbone")
    from earthvlm.cli._model import load_model_option

    return load_model_option(Path(model), **kwargs)


def detect_command(
    model: Annotated[
        str,
        typer.Argument(help=MODEL_HELP + f" '{RANDOM_MODEL}': a tiny random backbone (noise)."),
    ],
    scene: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            readable=True,
            help="The scene: a GeoTIFF / COG of any size (read tile by tile).",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            dir_okay=False,
            help="Where the objects go: .geojson (WGS84 lon/lat) or .gpkg (the raster's CRS).",
        ),
    ],
    classes: Annotated[
        list[str] | None,
        typer.Option(
            "--classes",
            help="Classes to look for (repeat, or comma-separate); other labels are dropped.",
        ),
    ] = None,
    tile: Annotated[int, typer.Option("--tile", min=32, help="Tile side in source px.")] = 1024,
    overlap: Annotated[
        int, typer.Option("--overlap", min=0, help="Tile overlap in source px.")
    ] = 200,
    box_frame: Annotated[
        str,
        typer.Option(
            "--box-frame",
            help="What the model's coordinates are: window_px (detection as text: pixels of "
            "the tile), norm1000 (Qwen3-VL grounding) or abs_px_resized (Qwen2.5-VL).",
        ),
    ] = "window_px",
    fmt: Annotated[
        str, typer.Option("--format", help="quad (oriented boxes) or hbox (horizontal).")
    ] = "quad",
    prompt: Annotated[
        str | None, typer.Option("--prompt", help="The instruction (default: the project's).")
    ] = None,
    max_new_tokens: Annotated[
        int, typer.Option("--max-new-tokens", min=1, help="Tokens per tile.")
    ] = 512,
    gsd_m: Annotated[
        float | None,
        typer.Option("--gsd", help="The scene's GSD in metres; default: its georeferencing."),
    ] = None,
    base: BaseOpt = None,
    dtype: DtypeOpt = "fp32",
    load_in_4bit: Nf4Opt = False,
) -> None:
    """Detect objects over a whole scene and write them on the map. Exit code 2 for bad
    options or model, 1 if the scene cannot be read or no tile could be."""
    from rich.progress import Progress

    from earthvlm.data.resolution import Resolution
    from earthvlm.errors import EarthVLMError
    from earthvlm.geo.mapping import Georef
    from earthvlm.geo.vector import vector_format
    from earthvlm.scale.gsd import GSD, GSDSource
    from earthvlm.uhr.scene_detect import (
        SceneDetectConfig,
        detect_scene,
        model_detector,
        tile_windows,
    )

    try:
        vector_format(out)
        config = SceneDetectConfig(
            tile_px=tile,
            overlap_px=overlap,
            classes=_classes(classes),
            fmt=fmt,  # type: ignore[arg-type]
            box_frame=box_frame,
            prompt=prompt,
            max_new_tokens=max_new_tokens,
        )
        gsd = None if gsd_m is None else GSD.exact(gsd_m, GSDSource.USER, "--gsd")
    except (ValueError, EarthVLMError) as e:
        err_console.print(f"[red]error:[/] {e}")
        raise typer.Exit(2) from None
    try:
        georef = Georef.from_raster(scene)
    except EarthVLMError as e:
        err_console.print(f"[red]error:[/] {e}")
        raise typer.Exit(1) from None
    try:
        vlm = _model(model, base=base, dtype=dtype, load_in_4bit=load_in_4bit)
    except EarthVLMError as e:
        err_console.print(f"[red]model error:[/] {e}")
        raise typer.Exit(2) from None
    if model == RANDOM_MODEL:
        console.print("[yellow]note:[/] a tiny random backbone detects: its objects are noise")
    if not georef.is_georeferenced:
        console.print(f"[yellow]note:[/] {scene.name} is {georef.note}; writing pixel coordinates")
    resolution = Resolution.from_processor(vlm.backbone.processor.image_processor)
    n_tiles = len(tile_windows(georef.width, georef.height, tile, overlap))
    detect = model_detector(vlm, max_new_tokens=max_new_tokens)
    try:
        with Progress(console=err_console, transient=True) as bar:
            task = bar.add_task(f"tiles of {scene.name}", total=n_tiles)
            found = detect_scene(
                scene,
                detect,
                config,
                resolution=resolution,
                gsd=gsd,
                progress=lambda _: bar.advance(task, 1),
            )
    except EarthVLMError as e:
        err_console.print(f"[red]error:[/] {e}")
        raise typer.Exit(1) from None
    report = found.save(out)
    tiles_json = found.save_tiles(out.with_suffix(".tiles.json"))
    _print(found, report)
    console.print(f"objects: {out}; tiles: {tiles_json}")
    if found.ledger.ok == 0:
        err_console.print("[red]error:[/] no tile could be read and detected")
        raise typer.Exit(1)


def _print(found: Any, report: Any) -> None:
    from collections import Counter

    ledger = found.ledger
    table = Table(title=f"detect: {found.source.name}")
    table.add_column("what")
    table.add_column("counts")
    tiles = f"{ledger.read} = ok {ledger.ok} + failed {ledger.n_failed}"
    if ledger.failed:
        tiles += " (" + ", ".join(f"{k} {v}" for k, v in sorted(ledger.failed.items())) + ")"
    table.add_row("tiles", tiles)
    parse = found.parse_counts
    dropped = ", ".join(f"{k} {v}" for k, v in parse["dropped"].items()) or "none"
    table.add_row(
        "parsed objects",
        f"{parse.get('candidates', 0)} candidates: ok {parse.get('ok', 0)}, repaired "
        f"{parse.get('repaired', 0)}, dropped {dropped}",
    )
    table.add_row("merged across tiles", f"{found.merged_away} duplicates removed")
    per_class = Counter(str(c) for c in found.labels)
    table.add_row("objects", ", ".join(f"{k} {v}" for k, v in sorted(per_class.items())) or "none")
    g = found.georef
    where = f"{g.method} georeferencing ({g.crs_label})" if g.is_georeferenced else g.note
    table.add_row("written", f"{report.written} features, {report.coordinates}: {where}")
    if report.skipped:
        table.add_row("not written", ", ".join(f"{k} {v}" for k, v in report.skipped.items()))
    console.print(table)
    for t in found.tiles:
        if t.status == "failed":
            err_console.print(f"[yellow]tile {t.index} {list(t.window_xyxy_px)}:[/] {t.reason}")
