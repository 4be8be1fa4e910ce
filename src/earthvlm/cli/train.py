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
    complete checkpoint. Exit code 2 for config errors (including a recipe this machine
    cannot run, such as bf16 without a GPU), 1 if training fails."""
    # heavy imports (torch, transformers) only when the command runs
    from earthvlm.errors import ConfigError, EarthVLMError
    from earthvlm.train import load_config, train

    try:
        cfg = load_config(config, overrides or [])
    except (ValueError, EarthVLMError) as e:
        err_console.print(f"[red]config error:[/] {e}")
        raise typer.Exit(2) from None
    main = os.environ.get("RANK", "0") == "0"  # one report under accelerate launch / torchrun
    if os.environ.get("WORLD_SIZE", "1") == "1":  # several processes split the cores already
        from earthvlm.train.threads import CpuThreads

        CpuThreads(lambda line: err_console.print(line, highlight=False)).pick()
    try:
        result = train(cfg, console=err_console)
    except ConfigError as e:
        err_console.print(f"[red]config error:[/] {e}")
        raise typer.Exit(2) from None
    except EarthVLMError as e:
        err_console.print(f"[red]error:[/] {e}")
        raise typer.Exit(1) from None
    if not main:
        return
    # the loop has said where the run and its checkpoint are; add the loss and the log
    rows = [r for r in result.metrics if r.get("loss") is not None]
    loss = (
        f"loss {rows[0]['loss']:.4f} (step {rows[0]['step']}) -> {rows[-1]['loss']:.4f} "
        f"(step {rows[-1]['step']}); "
        if rows
        else ""
    )
    console.print(f"{loss}metrics: {result.run_dir / 'metrics.jsonl'}")
