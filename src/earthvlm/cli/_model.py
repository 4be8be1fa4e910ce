"""The options every command that loads a model shares, and the one way it loads.

``--model`` takes anything :func:`earthvlm.models.saved.load_model` reads: a run folder
or checkpoint, a Hugging Face Qwen2.5-VL / Qwen3-VL folder, a peft LoRA adapter folder
or an earthvlm CS-HLoRA / MoE-LoRA adapter folder (the last two over ``--base``, or the
base they record).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

#: Help text of ``--model``.
MODEL_HELP = (
    "A run folder (SFT or GRPO) or one of its checkpoints, a Hugging Face Qwen2.5-VL / "
    "Qwen3-VL folder (zero-shot), a peft LoRA adapter folder or an earthvlm adapter "
    "folder (over --base)."
)
BaseOpt = Annotated[
    Path | None,
    typer.Option(
        "--base",
        file_okay=False,
        help="The base Qwen-VL folder of an adapter folder (default: the one it records), "
        "or where a run's base model is now if it moved.",
    ),
]
DtypeOpt = Annotated[
    str, typer.Option("--dtype", help="fp32 or bf16, for a Hugging Face folder or a base.")
]
Nf4Opt = Annotated[
    bool,
    typer.Option(
        "--load-in-4bit/--no-load-in-4bit",
        help="Quantise a Hugging Face folder's or base's language model to NF4 "
        "(needs bitsandbytes).",
    ),
]


def load_model_option(
    path: Path, *, base: Path | None = None, dtype: str = "fp32", load_in_4bit: bool = False
) -> Any:
    """The :class:`~earthvlm.models.EarthVLM` at ``path``, in eval mode.

    Raises:
        EarthVLMError: If the folder cannot be loaded (the message names the file and the
            fix).
    """
    from earthvlm.models.saved import load_model

    return load_model(path, base=base, dtype=dtype, load_in_4bit=load_in_4bit)


def default_out(model: Any, leaf: str) -> Path:
    """Where a command writes by default: inside the run folder for a run
    (``<run>/<leaf>/<checkpoint>``), else ``./<leaf>/<model name>`` (never inside a
    user's Hugging Face or adapter folder)."""
    if model.origin == "run" and model.source is not None:
        ckpt = Path(model.source).resolve()
        return ckpt.parent / leaf / ckpt.name
    return Path.cwd() / leaf / model.name


__all__ = ["MODEL_HELP", "BaseOpt", "DtypeOpt", "Nf4Opt", "default_out", "load_model_option"]
