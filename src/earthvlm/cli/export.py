"""``earthvlm export MODEL --out DIR [--gsd METRES]``: a plain Hugging Face checkpoint.

Merges the model's adapter (a CS-HLoRA or MoE-LoRA one at the GSD given) into the base
weights and writes the stock transformers model and processor
(:func:`earthvlm.models.export.export_merged`), so that any engine that serves Qwen-VL
(vLLM, SGLang, ``transformers serve``) serves it. What is lost: a GSD per image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from earthvlm.cli._model import MODEL_HELP, BaseOpt, DtypeOpt

console = Console()
err_console = Console(stderr=True)


def export_command(
    model: Annotated[Path, typer.Argument(file_okay=False, help=MODEL_HELP)],
    out: Annotated[Path, typer.Option("--out", help="The folder to write (must not exist).")],
    gsd_m: Annotated[
        float | None,
        typer.Option(
            "--gsd",
            help="Metres per pixel the GSD-gated adapter is fixed at (required for CS-HLoRA "
            "and MoE-LoRA; the served images should have this GSD).",
        ),
    ] = None,
    base: BaseOpt = None,
    dtype: DtypeOpt = "fp32",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out.")] = False,
) -> None:
    """Merge a model into a plain Hugging Face Qwen-VL checkpoint. Exit code 2 when the
    model cannot be exported as asked (the message says why and what to do)."""
    from earthvlm.cli._model import load_model_option
    from earthvlm.errors import EarthVLMError
    from earthvlm.models.export import EXPORT_FILE, export_merged

    try:
        loaded = load_model_option(model, base=base, dtype=dtype)
        folder = export_merged(loaded, out, gsd_m=gsd_m, overwrite=overwrite)
    except (EarthVLMError, ValueError) as e:
        err_console.print(f"[red]error:[/] {e}")
        raise typer.Exit(2) from None
    at = f" at {gsd_m:g} m/px" if gsd_m is not None and loaded.gated is not None else ""
    console.print(f"exported {loaded.name} ({loaded.variant}){at}: {folder}")
    console.print(
        "load it with transformers: AutoModelForImageTextToText.from_pretrained(DIR), "
        f"AutoProcessor.from_pretrained(DIR); what was merged: {folder / EXPORT_FILE}"
    )


__all__ = ["export_command"]
