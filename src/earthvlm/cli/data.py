"""``earthvlm data``: convert public datasets into records, list the known sources.

earthvlm data sources
earthvlm data convert dota DOTA/train --out data/dota-train --opt version=1.5
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

data_app = typer.Typer(
    help="Convert public datasets (DOTA, COCO, RSVQA, ...) into records.",
    no_args_is_help=True,
)

console = Console()
err_console = Console(stderr=True)

#: Options every reader has (shown once in ``sources``, not per source).
_COMMON = ("source", "split", "sensor", "dataset", "gsd_range_m", "read_georef", "verify_images")


@data_app.command("sources")
def sources_command() -> None:
    """List the registered sources: task, expected files, how the GSD is set, options."""
    from earthvlm.data.sources import SourceReader, get_source, list_sources

    base = SourceReader.option_defaults()

    table = Table(title="Sources")
    for col in ("name", "task", "files", "GSD", "options (--opt key=value)"):
        table.add_column(col, overflow="fold")
    for name in list_sources():
        cls = get_source(name)
        own = {  # its own options, and common ones whose default it changes
            k: v for k, v in cls.option_defaults().items() if k not in _COMMON or base[k] != v
        }
        table.add_row(
            name,
            cls.task,
            "\n".join(cls.files),
            cls.gsd_note,
            "\n".join(f"{k}={v!r}" for k, v in own.items()) or "-",
        )
    console.print(table)
    console.print("every source also takes: " + ", ".join(_COMMON))


@data_app.command("convert")
def convert_command(
    source: Annotated[str, typer.Argument(help="A source name (see 'earthvlm data sources').")],
    path: Annotated[Path, typer.Argument(help="The dataset's root folder.")],
    out: Annotated[
        Path, typer.Option("--out", help="Output folder: records.jsonl, quarantine, manifest.")
    ],
    split: Annotated[
        str | None, typer.Option(help="Split of the records (and of the files, for RSVQA).")
    ] = None,
    opt: Annotated[
        list[str] | None,
        typer.Option("--opt", help="A reader option key=value, e.g. version=1.5 (repeatable)."),
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit with code 1 if any row was quarantined.")
    ] = False,
) -> None:
    """Convert the dataset at PATH into records; malformed rows go to a quarantine file.

    Prints the ledger (rows read, written, skipped and quarantined per reason). Exit code
    2 for an unknown source or option or an unreadable dataset.
    """
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from earthvlm.data.ledger import Ledger
    from earthvlm.data.sources import build_reader, parse_options
    from earthvlm.data.sources.convert import convert_source
    from earthvlm.errors import EarthVLMError

    try:
        options = parse_options(source, opt or [])
        if split is not None:
            options["split"] = split
        reader = build_reader(source, **options)
    except (EarthVLMError, ValueError) as e:
        err_console.print(f"[red]error:[/] {e}")
        raise typer.Exit(2) from None

    columns = (
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
        TextColumn("{task.fields[ledger]}"), TimeElapsedColumn(),
    )  # fmt: skip
    try:
        with Progress(*columns, console=err_console, transient=True) as bar:
            task = bar.add_task(f"converting {reader.name}", total=None, ledger="")

            def tick(ledger: Ledger) -> None:
                bar.update(
                    task,
                    ledger=f"read {ledger.read}, ok {ledger.ok}, failed {ledger.n_failed}",
                )

            result = convert_source(reader, path, out, progress=tick)
    except (EarthVLMError, ValueError) as e:
        err_console.print(f"[red]error:[/] {e}")
        raise typer.Exit(2) from None

    ledger = result.ledger
    table = Table(title=f"{reader.name} ({reader.split}) -> {result.records_path}")
    table.add_column("rows")
    table.add_column("reason")
    table.add_column("count", justify="right")
    table.add_row("read", "", str(ledger.read))
    table.add_row("written", "", str(result.written))
    for reason, n in sorted(ledger.skipped.items()):
        table.add_row("skipped", reason, str(n))
    for reason, n in sorted(ledger.failed.items()):
        table.add_row("[red]quarantined[/]", reason, str(n))
    console.print(table)
    for p in result.problems[:10]:
        console.print(f"  {p}")
    if len(result.problems) > 10:
        console.print(f"  ... and {len(result.problems) - 10} more")
    if result.quarantine_path:
        console.print(f"quarantined rows: {result.quarantine_path}")
    console.print(f"manifest: {result.manifest_path}")
    if strict and result.problems:
        raise typer.Exit(1)
