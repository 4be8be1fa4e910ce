"""``earthvlm train CONFIG [--set key=value ...]``: run or resume an SFT recipe."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def train_command(
    config: Annotated[Path, typer.Argument(help="A YAML recipe, e.g. configs/stage2_*.yaml.")],
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Override one field with a dotted key, e.g. --set optim.lr=2e-4 (repeatable).",
        ),
    ] = None,
) -> None:
    """Train (stage 1 or stage 2) from a recipe; resumes from the run folder's newest
    complete checkpoint. Exit code 2 for config errors, 1 if training fails."""
    # heavy imports (torch, transformers) only when the command runs
    from earthvlm.errors import EarthVLMError
    from earthvlm.train import load_config, train

    try:
        cfg = load_config(config, overrides or [])
    except (ValueError, EarthVLMError) as e:
        err_console.print(f"[red]config error:[/] {e}")
        raise typer.Exit(2) from None
    main = os.environ.get("RANK", "0") == "0"  # one report under accelerate launch / torchrun
    try:
        result = train(cfg, console=err_console)
    except EarthVLMError as e:
        err_console.print(f"[red]error:[/] {e}")
        raise typer.Exit(1) from None
    if not main:
        return
    rows = [r for r in result.metrics if r.get("loss") is not None]
    if rows:
        console.print(
            f"loss {rows[0]['loss']:.4f} (step {rows[0]['step']}) -> {rows[-1]['loss']:.4f} "
            f"(step {rows[-1]['step']})"
        )
    state = "finished" if result.finished else "stopped"
    console.print(
        f"{state} at step {result.step}/{result.total_steps}; run folder: {result.run_dir}; "
        f"checkpoint: {result.checkpoint}; metrics: {result.run_dir / 'metrics.jsonl'}"
    )
