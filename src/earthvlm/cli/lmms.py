"""``earthvlm export-lmms``: write a benchmark as an lmms-eval task folder.

The folder holds the task YAML, a ``utils.py`` whose ``process_results`` scores with
earthvlm's own scorer, and the docs read from the benchmark's data; run it with
``lmms_eval --tasks earthvlm_<bench> --include_path OUT`` (earthvlm installed there too).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def lmms_export_command(
    bench: Annotated[str, typer.Option("--bench", help="A registered benchmark name.")],
    data: Annotated[
        Path, typer.Option("--data", help="The benchmark's data folder (as for `earthvlm eval`).")
    ],
    out: Annotated[Path, typer.Option("--out", help="The task folder to write.")],
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Export at most this many items.")
    ] = None,
) -> None:
    """Export a benchmark as an lmms-eval task scored by earthvlm."""
    from earthvlm.errors import EarthVLMError
    from earthvlm.eval.lmms_export import export_by_name

    try:
        result = export_by_name(bench, data, out, limit=limit)
    except (EarthVLMError, ValueError) as e:
        err_console.print(f"[red]error:[/] {e}")
        raise typer.Exit(2) from None
    console.print(
        f"wrote task [bold]{result.task}[/] ({result.n_docs} docs) to {result.folder}\n"
        f"run: lmms_eval --tasks {result.task} --include_path {result.folder} ..."
    )


__all__ = ["lmms_export_command"]
