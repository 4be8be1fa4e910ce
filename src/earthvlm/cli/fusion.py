"""``earthvlm fusion``: the optical + SAR fusion experiment (EarthMind) and its data.

* ``earthvlm fusion run [--preset ci|quick|full|scenes]``: trains a tiny Qwen-VL once per fusion
  method (HCA, the release's fixed lambda, concatenation, average, cosine) through the
  SFT loop, evaluates optical-only / SAR-only / fused in the EarthMind-Bench format split
  by clouds, reads the modality attention score per layer, and writes ``report.md``,
  ``report.json`` and ``figures/mas_per_layer.png``. Open-ended answers go to the judge
  given by ``--judge-url`` / ``--judge-model`` (any OpenAI-compatible server), else to a
  local rule-based judge on loopback (class-name overlap; the report says which).
  ``--set key=value`` overrides any field of the preset's config.
* ``earthvlm fusion world OUT``: writes the experiment's synthetic dataset (co-registered
  optical + SAR GeoTIFFs, clouds, masks, records in three settings) for ``earthvlm
  train`` with a ``fusion:`` / ``seg:`` recipe (``configs/fusion_hca_tiny_cpu.yaml``);
  ``--set key=value`` sets any :class:`~earthvlm.synth.fusion_world.WorldConfig` field.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)

fusion_app = typer.Typer(
    help="Optical + SAR fusion (EarthMind): the experiment and its synthetic data.",
    no_args_is_help=True,
)


def _quiet_gdal() -> None:
    from rasterio.errors import NotGeoreferencedWarning

    warnings.simplefilter("ignore", NotGeoreferencedWarning)


@fusion_app.command("run")
def run_command(
    out: Annotated[
        Path | None,
        typer.Option(help="Experiment folder (default: runs/fusion-<preset>)."),
    ] = None,
    preset_name: Annotated[
        str, typer.Option("--preset", help="ci (seconds), quick (default), full or scenes.")
    ] = "quick",
    methods: Annotated[
        str | None,
        typer.Option(help="Comma-separated fusion methods (default: all of the preset)."),
    ] = None,
    steps: Annotated[
        int | None, typer.Option(min=1, help="Optimiser steps per method (overrides the preset).")
    ] = None,
    judge_url: Annotated[
        str | None,
        typer.Option(
            help="Open-ended judge: API root of an OpenAI-compatible server "
            "(default: the local rule-based judge)."
        ),
    ] = None,
    judge_model: Annotated[str | None, typer.Option(help="The judge's model name.")] = None,
    judge_key_env: Annotated[
        str | None,
        typer.Option(help="Environment variable holding the judge's API key (none: no key)."),
    ] = None,
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Override one FusionExpConfig field, e.g. --set lr=1e-3 (repeatable; "
            "applied after the other options).",
        ),
    ] = None,
) -> None:
    """Train and compare fusion methods on optical-under-cloud + SAR scenes; write a report."""
    from earthvlm.errors import EarthVLMError
    from earthvlm.eval.benchmarks._judge import judge_client
    from earthvlm.experiments.fusion import preset, run_experiment
    from earthvlm.experiments.fusion.report import check_claims

    overrides: dict = {}
    if methods:
        overrides["methods"] = tuple(m.strip() for m in methods.split(",") if m.strip())
    if steps is not None:
        overrides["steps"] = steps
    folder = out or Path("runs") / f"fusion-{preset_name}"
    try:
        cfg = preset(preset_name, sets=sets or [], **overrides)
        cache = str(folder / "judge-cache") if judge_url else None
        judge = judge_client(None, judge_url, judge_model, cache, judge_key_env)
    except ValueError as e:
        err_console.print(f"[red]error:[/] {e}")
        raise typer.Exit(2) from None
    _quiet_gdal()
    t0 = time.perf_counter()
    console.print(f"fusion experiment, preset {preset_name!r}: folder {folder}")
    try:
        res = run_experiment(cfg, folder, judge=judge,
                             log=lambda line: console.print(f"[cyan]>[/] {line}"))  # fmt: skip
    except EarthVLMError as e:
        err_console.print(f"[red]error:[/] {e}")
        raise typer.Exit(1) from None
    table = Table(title="Held-out items: fused / optical / SAR (MCQ %, judge 1-5, mIoU %)")
    for col in ("method", "setting", "MCQ all", "MCQ cloud-hidden", "judge",
                "judge cloud-hidden", "mIoU", "MAS gap (mean)"):  # fmt: skip
        table.add_column(col)
    for k, r in res.methods.items():
        for s in ("fused", "optical", "sar"):
            t = r.scores[s].table()
            table.add_row(
                k, s, _pct(t["all"]["mcq_acc"]), _pct(t["cloud_hidden"]["mcq_acc"]),
                _num(t["all"]["open_score"]), _num(t["cloud_hidden"]["open_score"]),
                _pct(t["all"]["miou"]), f"{r.mas.gap.mean():+.3f}" if s == "fused" else "",
            )  # fmt: skip
    console.print(table)
    claims = Table(title="Claims (EarthMind), checked on the measured numbers")
    for col in ("claim", "holds", "measured"):
        claims.add_column(col, overflow="fold")
    for c in check_claims(res):
        claims.add_row(c["claim"], c["holds"], c["measured"])
    console.print(claims)
    console.print(f"report: {folder / 'report.md'} ({(time.perf_counter() - t0) / 60:.1f} min)")


def _pct(v: float) -> str:
    return "-" if v != v else f"{100 * v:.1f}"  # NaN check without math


def _num(v: float) -> str:
    return "-" if v != v else f"{v:.2f}"


@fusion_app.command("world")
def world_command(
    out: Annotated[Path, typer.Argument(help="Folder to write (records.jsonl inside).")],
    n_scenes: Annotated[int, typer.Option(min=1, help="Scenes with at least one object.")] = 64,
    size_px: Annotated[int, typer.Option(min=32, max=1024, help="View side in pixels.")] = 64,
    cloud_prob: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of scenes partly under cloud.")
    ] = 0.5,
    layout: Annotated[
        str, typer.Option(help="chip (one centred object, the experiment's default) or scene.")
    ] = "chip",
    seed: Annotated[int, typer.Option(help="Generator seed (same seed, same bytes).")] = 0,
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Override one WorldConfig field, e.g. --set chip_background=textured "
            "(repeatable; applied after the other options).",
        ),
    ] = None,
) -> None:
    """Write the fusion experiment's synthetic optical + SAR dataset."""
    from earthvlm.synth.fusion_world import WorldConfig, write_world
    from earthvlm.typed import apply_overrides, build_dataclass

    fields = {
        "n_scenes": n_scenes,
        "size_px": size_px,
        "cloud_prob": cloud_prob,
        "layout": layout,
        "seed": seed,
    }
    try:
        cfg = build_dataclass(WorldConfig, apply_overrides(fields, sets or []))
    except ValueError as e:
        err_console.print(f"[red]error:[/] {e}")
        raise typer.Exit(2) from None
    summary = write_world(out, cfg)
    console.print(
        f"wrote {summary.records} records ({summary.scenes} scenes x 3 settings) to "
        f"{out / 'records.jsonl'}: {dict(summary.items or {})}"
    )


__all__ = ["fusion_app"]
