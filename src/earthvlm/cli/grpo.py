"""``earthvlm train-grpo CONFIG [--set key=value ...] [--bench NAME]``: GRPO on the zoom loop.

The recipe is a :class:`~earthvlm.train.grpo.GRPORunConfig` YAML (``configs/grpo_*.yaml``);
``--set`` overrides single fields with dotted keys as ``earthvlm train`` does. ``--bench``
names a benchmark whose per-item :meth:`~earthvlm.eval.benchmarks.Benchmark.reward` scores
the answer term (``train`` sits below ``eval`` and cannot import it; this layer can).
Without it the answer term is exact match.

A GRPO task row is ``{"source", "question", "answer", "roi_xyxy_px"}``; a benchmark
scores :class:`~earthvlm.data.record.Record` objects. A row that carries its record under
``"record"`` is scored on it; otherwise a record is made from the row (its ``task``,
default ``vqa``, the question, the answer as the reference, and its ``meta``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(f"[red]error:[/] {message}")
    return typer.Exit(code)


def row_record(row: dict[str, Any]) -> Any:
    """The :class:`~earthvlm.data.record.Record` a benchmark scores for a GRPO task row.

    Raises:
        pydantic.ValidationError: If ``row["record"]`` is not a valid record.
    """
    from earthvlm.data.record import Record

    if isinstance(row.get("record"), dict):
        return Record.model_validate(row["record"])
    return Record.model_validate(
        {
            "id": str(row.get("id", "grpo-task")),
            "task": str(row.get("task", "vqa")),
            "source": "grpo",
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": str(row["question"])}]},
                {"role": "assistant", "content": str(row["answer"])},
            ],
            "meta": dict(row.get("meta") or {}),
        }
    )


def bench_score_fn(name: str) -> Callable[[dict[str, Any], str], float]:
    """``score_fn(row, prediction)`` from benchmark ``name``'s ``reward``.

    Raises:
        BenchmarkError: For an unknown benchmark (with "did you mean ...?").
    """
    from earthvlm.eval.benchmarks import build_benchmark

    bench = build_benchmark(name)

    def score(row: dict[str, Any], prediction: str) -> float:
        return bench.reward(row_record(row), prediction)

    score.__name__ = f"{bench.name}_reward"
    return score


def grpo_command(
    config: Annotated[Path, typer.Argument(help="A GRPO recipe, e.g. configs/grpo_tiny_cpu.yaml.")],
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Override one field with a dotted key, e.g. --set grpo.lr=1e-5 (repeatable).",
        ),
    ] = None,
    bench: Annotated[
        str | None,
        typer.Option(
            "--bench",
            help="Score answers with this benchmark's reward (e.g. synth_vqa); "
            "default: exact match.",
        ),
    ] = None,
) -> None:
    """GRPO on the zoom loop: the policy decides whether and where to zoom (TRL's
    GRPOTrainer). Exit code 2 for config or argument errors, 1 if training fails."""
    from earthvlm.errors import EarthVLMError
    from earthvlm.train.grpo import load_grpo_config

    if not config.is_file():
        raise _fail(f"{config}: no such config file (see configs/grpo_tiny_cpu.yaml)")
    try:
        cfg = load_grpo_config(config, set_ or [])
    except EarthVLMError as e:
        raise _fail(f"config error: {e}") from None
    score_fn = None
    if bench is not None:
        from earthvlm.eval.benchmarks import BenchmarkError

        try:
            score_fn = bench_score_fn(bench)
        except (BenchmarkError, ValueError) as e:
            raise _fail(f"--bench: {e}") from None
    tasks = Path(cfg.data.tasks) if cfg.data.tasks else None
    if tasks is None or not (tasks.is_file() or (tasks / "tasks.jsonl").is_file()):
        raise _fail(
            f"data.tasks={cfg.data.tasks!r}: no such file; point it at a JSONL of "
            '{"source", "question", "answer", "roi_xyxy_px"} lines or the folder '
            "'earthvlm data grpo-tasks RECORDS --out FOLDER' writes (--set data.tasks=PATH)"
        )
    from earthvlm.train.grpo import train_grpo

    try:
        result = train_grpo(cfg, score_fn=score_fn)
    except (EarthVLMError, ValueError) as e:
        raise _fail(str(e), code=1) from None
    if os.environ.get("RANK", "0") != "0":  # one report under accelerate launch / torchrun
        return
    rewards = [r["reward"] for r in result.log_history if "reward" in r]
    if rewards:
        console.print(f"reward {rewards[0]:.4f} (first log) -> {rewards[-1]:.4f} (last log)")
    scorer = "exact match" if score_fn is None else score_fn.__name__
    console.print(
        f"finished {len(result.log_history)} log rows; answers scored by {scorer}; "
        f"run folder: {cfg.run_dir}"
    )
    if result.checkpoint is not None:
        console.print(
            f"policy ({cfg.policy.kind}) saved: {result.checkpoint}; try it with "
            f"`earthvlm ask IMAGE QUESTION --model {cfg.run_dir}`"
        )


__all__ = ["bench_score_fn", "grpo_command", "row_record"]
