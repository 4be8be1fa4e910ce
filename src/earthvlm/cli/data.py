"""``earthvlm data``: convert public datasets into records, list the known sources, and
make zoom training data (Zoom-in Chains for SFT, tasks for GRPO) from records.

earthvlm data sources
earthvlm data convert dota DOTA/train --out data/dota-train --opt version=1.5
earthvlm data zoom-chains data/synth/records.jsonl --out data/zoom-chains --templates
earthvlm data grpo-tasks data/synth/records.jsonl --out data/uhr_tasks --templates

Each prints its ledger (read, written, skipped and failed per reason) and shows progress
as ``convert`` does; rows left out are listed with their reason in a file beside the
output, and a manifest (options, ledger, provenance) is written last.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from earthvlm.data.ledger import Ledger
    from earthvlm.data.record import Record

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

    try:
        with _progress(f"converting {reader.name}") as tick:
            result = convert_source(reader, path, out, progress=tick)
    except (EarthVLMError, ValueError) as e:
        err_console.print(f"[red]error:[/] {e}")
        raise typer.Exit(2) from None

    title = f"{reader.name} ({reader.split}) -> {result.records_path}"
    console.print(_ledger_table(title, result.ledger, result.written, "quarantined"))
    dropped = _dropped_boxes(result.records_path)
    if dropped:
        reasons = ", ".join(f"{n} {r}" for r, n in dropped.most_common())
        console.print(
            f"boxes dropped (their images kept): {sum(dropped.values())} ({reasons}); "
            "each record lists them in meta.boxes_dropped / meta.dropped_lines"
        )
    for p in result.problems[:10]:
        console.print(f"  {p}")
    if len(result.problems) > 10:
        console.print(f"  ... and {len(result.problems) - 10} more")
    if result.quarantine_path:
        console.print(f"quarantined rows: {result.quarantine_path}")
    console.print(f"manifest: {result.manifest_path}")
    if strict and result.problems:
        raise typer.Exit(1)


def _dropped_boxes(records_path: Path) -> Counter[str]:
    """Boxes a reader dropped from the records it kept (``meta.boxes_dropped``), summed."""
    total: Counter[str] = Counter()
    if not records_path.is_file():
        return total
    with open(records_path, encoding="utf-8") as f:
        for line in f:
            if '"boxes_dropped"' in line:
                total.update(json.loads(line).get("meta", {}).get("boxes_dropped", {}))
    return total


# -- shared pieces ----------------------------------------------------------------------


@contextmanager
def _progress(description: str) -> Iterator[Callable[[Ledger], None]]:
    """A transient progress line on stderr; yields ``tick(ledger)``."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
        TextColumn("{task.fields[ledger]}"), TimeElapsedColumn(),
    )  # fmt: skip
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task(description, total=None, ledger="")

        def tick(ledger: Ledger) -> None:
            text = f"read {ledger.read}, ok {ledger.ok}, failed {ledger.n_failed}"
            bar.update(task, ledger=text)

        yield tick


def _ledger_table(title: str, ledger: Ledger, written: int, failed_word: str) -> Table:
    """Rows read, written, skipped and failed (``failed_word``) per reason."""
    table = Table(title=title)
    table.add_column("rows")
    table.add_column("reason")
    table.add_column("count", justify="right")
    table.add_row("read", "", str(ledger.read))
    table.add_row("written", "", str(written))
    for reason, n in sorted(ledger.skipped.items()):
        table.add_row("skipped", reason, str(n))
    for reason, n in sorted(ledger.failed.items()):
        table.add_row(f"[red]{failed_word}[/]", reason, str(n))
    return table


def _read_inputs(
    records_path: Path, root: Path | None, out_prefix: str, templates: bool, seed: int
) -> tuple[list[Record], Path, dict[str, Any]]:
    """The records (invalid rows quarantined in ``<out_prefix>input.quarantine.jsonl``),
    their root, and what was read; with ``templates``, LRS-VQA-Zoom template questions of
    each labelled image are appended (and written to
    ``<out_prefix>template_questions.jsonl``, image paths relative to the root)."""
    import numpy as np

    from earthvlm.data.jsonl import read_records, write_records
    from earthvlm.uhr.chain import label_records, template_questions

    root = root or records_path.parent
    quarantine = Path(f"{out_prefix}input.quarantine.jsonl")
    read = read_records(records_path, root=root, quarantine=quarantine)
    info: dict[str, Any] = {
        "records": str(records_path.resolve()),
        "root": str(root.resolve()),
        "input_ledger": read.ledger.to_dict(),
        "input_quarantine": str(read.quarantine_path) if read.quarantine_path else None,
    }
    records = list(read.records)
    if templates:
        questions: list[Record] = []
        unsized: list[str] = []
        for k, labels in enumerate(label_records(records)):
            try:  # one generator per labelled image: adding an image changes no other's
                questions += template_questions(labels, np.random.default_rng([seed, k]))
            except ValueError:
                unsized.append(labels.id)
        questions_path = Path(f"{out_prefix}template_questions.jsonl")
        write_records(questions, questions_path)
        info["template_questions"] = len(questions)
        info["template_questions_file"] = str(questions_path)
        info["template_labels_without_size"] = unsized
        records += questions
    return records, root, info


def _write_left_out(path: Path, failures: list[tuple[str, str, str]]) -> Path | None:
    """One JSON line per record left out (id, reason, message); removed when none."""
    from earthvlm.io import atomic_writer

    if not failures:
        path.unlink(missing_ok=True)
        return None
    with atomic_writer(path) as f:
        for rid, reason, message in failures:
            f.write(json.dumps({"id": rid, "reason": reason, "message": message}) + "\n")
    return path


def _plain(config: Any) -> dict[str, Any]:
    """A config dataclass as JSON-ready values (tuples as lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def _finish(
    title: str,
    output: Path,
    written: int,
    result: Any,
    left_out_path: Path,
    manifest: Path,
    fields: dict[str, Any],
    strict: bool,
) -> None:
    """List the records left out, write the manifest (last), print the ledger; exit 1
    under ``strict`` if any record failed."""
    left_out = _write_left_out(left_out_path, result.failures)
    fields = {**fields, "written": written, "left_out_file": left_out.name if left_out else None}
    _write_manifest(manifest, output, result.ledger, fields)
    _report(title, result.ledger, written, left_out, fields)
    console.print(f"manifest: {manifest}")
    if strict and result.ledger.n_failed:
        raise typer.Exit(1)


def _write_manifest(path: Path, output: Path, ledger: Ledger, fields: dict[str, Any]) -> None:
    """The manifest, written last: what was made, from what, the ledger and provenance."""
    from earthvlm.io import atomic_write_text
    from earthvlm.provenance import provenance

    manifest = {
        **fields,
        "output": output.name,
        "output_sha256": hashlib.sha256(output.read_bytes()).hexdigest(),
        "ledger": ledger.to_dict(),
        "provenance": provenance(("numpy", "pillow", "rasterio", "transformers")),
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "complete": True,
    }
    atomic_write_text(path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def _report(title: str, ledger: Ledger, written: int, left_out: Path | None, info: dict) -> None:
    console.print(_ledger_table(title, ledger, written, "failed"))
    bad_rows = info["input_ledger"]["failed"]
    if bad_rows:
        console.print(
            f"invalid input rows (not counted above): {sum(bad_rows.values())}, "
            f"quarantined in {info['input_quarantine']}"
        )
    if "template_questions" in info:
        console.print(f"template questions added: {info['template_questions']}")
    if left_out is not None:
        console.print(f"records left out, with reasons: {left_out}")


_RECORDS_ARG = typer.Argument(
    exists=True, dir_okay=False, readable=True, help="A JSONL file of records."
)
_ROOT_OPT = typer.Option(
    "--root", file_okay=False, help="Dataset root of the image paths; default: the file's folder."
)
_TEMPLATES_OPT = typer.Option(
    "--templates",
    help="Also ask LRS-VQA-Zoom template questions (counts over the image or a 3 x 3 grid "
    "cell, comparisons, MCQ) of every labelled image (its detection record).",
)


# -- zoom training data ------------------------------------------------------------------


@data_app.command("zoom-chains")
def zoom_chains_command(
    records: Annotated[Path, _RECORDS_ARG],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            file_okay=False,
            help="Output folder: records.jsonl (the chains), views/, skipped.jsonl, manifest.",
        ),
    ],
    root: Annotated[Path | None, _ROOT_OPT] = None,
    templates: Annotated[bool, _TEMPLATES_OPT] = False,
    family: Annotated[
        str, typer.Option(help="Backbone family: its box frame and token size.")
    ] = "qwen3_vl",
    min_pixels: Annotated[
        int | None, typer.Option("--min-pixels", help="The processor's min_pixels.")
    ] = None,
    max_pixels: Annotated[
        int | None,
        typer.Option("--max-pixels", help="The processor's max_pixels (crops' budget)."),
    ] = None,
    global_max_pixels: Annotated[
        int | None,
        typer.Option(
            "--global-max-pixels",
            help="The global view's budget; use the inference loop's. Default: --max-pixels.",
        ),
    ] = None,
    observation_gsd: Annotated[
        bool,
        typer.Option(
            "--observation-gsd",
            help="State each crop's GSD in the tool observation: only for chains that train "
            "a GSD-as-text (B3) model.",
        ),
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the template questions.")] = 0,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit with code 1 if any record failed.")
    ] = False,
) -> None:
    """Write Zoom-in Chain SFT conversations (RSCoVLM sec. III-D) from records with a
    region of interest: the global view, a zoom_in call on the ROI, the native crop, the
    answer. Exit code 2 for unreadable input or bad options."""
    from earthvlm.data.jsonl import write_records
    from earthvlm.data.resolution import Resolution
    from earthvlm.errors import EarthVLMError
    from earthvlm.models.backbone import BOX_FRAME
    from earthvlm.models.processor import build_image_processor
    from earthvlm.uhr.chain import ChainConfig, ChainWriter

    try:
        processor = build_image_processor(family, min_pixels=min_pixels, max_pixels=max_pixels)
        resolution = Resolution.from_processor(processor)
        config = ChainConfig(
            box_frame=BOX_FRAME[family],
            global_max_pixels=global_max_pixels,
            observation_gsd=observation_gsd,
            observation_role="tool" if family == "qwen3_vl" else "user",
        )
    except ValueError as e:
        err_console.print(f"[red]error:[/] {e}")
        raise typer.Exit(2) from None
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "manifest.json"
    manifest.unlink(missing_ok=True)  # incomplete until rewritten
    try:
        inputs, root, info = _read_inputs(records, root, f"{out}/", templates, seed)
        with _progress("writing zoom chains") as tick, ChainWriter(
            root, out, resolution, config
        ) as writer:  # fmt: skip
            result = writer.build(inputs, progress=tick)
    except EarthVLMError as e:
        err_console.print(f"[red]error:[/] {e}")
        raise typer.Exit(2) from None
    target = out / "records.jsonl"
    written = write_records(result.records, target)
    fields = {**info, "kind": "zoom_chains", "family": family, "config": _plain(config),
              "resolution": dataclasses.asdict(resolution)}  # fmt: skip
    left_out = out / "skipped.jsonl"
    _finish(f"zoom chains -> {target}", target, written, result, left_out, manifest, fields, strict)


@data_app.command("grpo-tasks")
def grpo_tasks_command(
    records: Annotated[Path, _RECORDS_ARG],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            file_okay=False,
            help="Output folder: tasks.jsonl (data.tasks of a GRPO recipe: the folder or "
            "the file), skipped.jsonl, manifest.json; as zoom-chains writes.",
        ),
    ],
    root: Annotated[Path | None, _ROOT_OPT] = None,
    templates: Annotated[bool, _TEMPLATES_OPT] = False,
    global_questions: Annotated[
        bool,
        typer.Option(
            "--global-questions/--no-global-questions",
            help="Keep whole-scene questions as tasks without an ROI.",
        ),
    ] = True,
    seed: Annotated[int, typer.Option(help="Seed of the template questions.")] = 0,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit with code 1 if any record failed.")
    ] = False,
) -> None:
    """Write GRPO tasks (source raster, question, answer, ROI in source pixels) from
    records into a folder. Exit code 2 for unreadable input or bad options."""
    from earthvlm.errors import EarthVLMError
    from earthvlm.uhr.tasks import TaskConfig, build_tasks, write_tasks

    if out.suffix.lower() in (".jsonl", ".json"):
        err_console.print(
            f"[red]error:[/] --out {out}: give a folder (tasks.jsonl is written inside it, "
            f"as zoom-chains writes records.jsonl), e.g. --out {out.with_suffix('')}"
        )
        raise typer.Exit(2)
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "manifest.json"
    manifest.unlink(missing_ok=True)  # incomplete until rewritten
    config = TaskConfig(global_questions=global_questions)
    try:
        inputs, root, info = _read_inputs(records, root, f"{out}/", templates, seed)
        with _progress("writing GRPO tasks") as tick:
            result = build_tasks(inputs, root, config, progress=tick)
    except EarthVLMError as e:
        err_console.print(f"[red]error:[/] {e}")
        raise typer.Exit(2) from None
    target = out / "tasks.jsonl"
    written = write_tasks(result.rows, target)
    fields = {**info, "kind": "grpo_tasks", "config": _plain(config)}
    left_out = out / "skipped.jsonl"
    _finish(f"GRPO tasks -> {target}", target, written, result, left_out, manifest, fields, strict)
