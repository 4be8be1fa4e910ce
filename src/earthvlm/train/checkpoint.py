"""Training checkpoints: weights, optimiser, schedule, sampler and RNG state, no pickle.

A checkpoint is a folder ``checkpoint-{step}`` in the run folder::

    checkpoint-120/
      adapter/ | model/        the weights (save_cshlora / peft / save_backbone)
      optimizer.safetensors    AdamW moments and step counts, by "state.{param}.{key}"
      rng.safetensors          torch RNG states (CPU, and CUDA when present)
      trainer_state.json       step, sampler position, schedule, optimiser hyper-
                               parameters, Python/NumPy RNG, config and provenance
      COMPLETE                 written last

Everything is written into a hidden temporary folder that is renamed into place, and
``COMPLETE`` is written last inside it, so a folder without ``COMPLETE`` (a crash
mid-write, a copy in progress) is never resumed from. :func:`latest_checkpoint` picks
the newest complete one.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from earthvlm.errors import EarthVLMError
from earthvlm.io import atomic_dir
from earthvlm.models.saved import COMPLETE_FILE, complete_checkpoints, latest_checkpoint
from earthvlm.provenance import provenance

STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng.safetensors"
FORMAT = 1
_NAME = re.compile(r"^checkpoint-(\d+)$")
_STATE_KEYS = {
    "format", "step", "epoch", "batch_in_epoch", "total_steps", "scheduler", "optimizer",
    "python_rng", "numpy_rng", "config", "provenance", "metrics",
}  # fmt: skip


# -- optimiser and RNG state as tensors + JSON ------------------------------------------


def optimizer_to_safetensors(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict]:
    """Split ``optimizer.state_dict()`` into tensors and a JSON-ready rest."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for idx, st in state_dict["state"].items():
        for key, value in st.items():
            if torch.is_tensor(value):
                tensors[f"state.{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{key}"] = value
    groups = [
        {k: list(v) if isinstance(v, tuple) else v for k, v in g.items()}
        for g in state_dict["param_groups"]
    ]
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_from_safetensors(tensors: dict[str, torch.Tensor], meta: dict) -> dict[str, Any]:
    """The inverse of :func:`optimizer_to_safetensors`: a dict for ``load_state_dict``."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = value
    for name, value in meta.get("scalars", {}).items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    version_, internal, gauss = random.getstate()
    np_state = np.random.get_state()
    return tensors, {
        "python_rng": [version_, list(internal), gauss],
        "numpy_rng": [np_state[0], np_state[1].tolist(), *np_state[2:]],
    }


def restore_rng(ckpt: str | Path, state: dict[str, Any]) -> None:
    """Restore torch, Python and NumPy global RNG states saved in a checkpoint."""
    tensors = load_file(str(Path(ckpt) / RNG_FILE))
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    v, internal, gauss = state["python_rng"]
    random.setstate((v, tuple(internal), gauss))
    name, keys, *rest = state["numpy_rng"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))


# -- writing and finding checkpoints ----------------------------------------------------


def _fsync_write(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    *,
    write_weights: Callable[[Path], None],
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    keep_last: int = 0,
) -> Path:
    """Write ``checkpoint-{step}`` atomically; ``COMPLETE`` is the last file written.

    Args:
        run_dir: The run folder.
        step: The global optimiser step the checkpoint is taken after.
        write_weights: Writes the model or adapter weights into the folder it is given.
        optimizer: Its ``state_dict()`` is saved as safetensors + JSON.
        state: Loop state (step, sampler position, schedule, config, metrics, ...).
        keep_last: Delete all but the newest ``keep_last`` complete checkpoints (0: keep).

    Returns:
        The checkpoint folder.
    """
    run = Path(run_dir)
    final = run / f"checkpoint-{step}"
    # a hidden temporary folder renamed into place (the same step saved again replaces it)
    with atomic_dir(final) as tmp:
        write_weights(tmp)
        tensors, opt_meta = optimizer_to_safetensors(optimizer.state_dict())
        save_file(tensors, str(tmp / OPTIMIZER_FILE), metadata={"format": "pt"})
        rng_tensors, rng_meta = _rng_state()
        save_file(rng_tensors, str(tmp / RNG_FILE), metadata={"format": "pt"})
        full = {
            "format": FORMAT, **state, "optimizer": opt_meta, **rng_meta,
            "provenance": provenance(),
        }  # fmt: skip
        _fsync_write(tmp / STATE_FILE, json.dumps(full, indent=1, sort_keys=True) + "\n")
        _fsync_write(tmp / COMPLETE_FILE, json.dumps({"step": step, "format": FORMAT}) + "\n")
    if keep_last:
        for old_ckpt in complete_checkpoints(run)[:-keep_last]:
            shutil.rmtree(old_ckpt, ignore_errors=True)
    return final


def mark_final(run_dir: str | Path, ckpt: str | Path) -> Path:
    """Point ``run_dir/final`` at a finished run's last checkpoint (a relative symlink,
    swapped in atomically), so the next stage can name a stable path."""
    run, target = Path(run_dir), Path(ckpt)
    link, tmp = run / "final", run / ".final.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target.name, target_is_directory=True)
    os.replace(tmp, link)
    return link


def load_state(ckpt: str | Path) -> dict[str, Any]:
    """The ``trainer_state.json`` of a complete checkpoint.

    Raises:
        EarthVLMError: If the folder is not a complete checkpoint of a known format.
    """
    p = Path(ckpt)
    if not (p / COMPLETE_FILE).is_file():
        raise EarthVLMError(f"{p}: not a complete checkpoint (no {COMPLETE_FILE} marker)")
    try:
        state = json.loads((p / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise EarthVLMError(f"{p / STATE_FILE}: cannot read the trainer state: {e}") from e
    if state.get("format") != FORMAT:
        raise EarthVLMError(f"{p}: checkpoint format {state.get('format')!r}, expected {FORMAT}")
    unknown = sorted(set(state) - _STATE_KEYS)
    if unknown:
        import warnings

        warnings.warn(f"{p / STATE_FILE}: ignoring unknown keys {unknown}", stacklevel=2)
    return state


def load_optimizer(ckpt: str | Path, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load the optimiser state saved in a checkpoint into ``optimizer``."""
    tensors = load_file(str(Path(ckpt) / OPTIMIZER_FILE))
    optimizer.load_state_dict(optimizer_from_safetensors(tensors, state["optimizer"]))


__all__ = [
    "COMPLETE_FILE",
    "complete_checkpoints",
    "latest_checkpoint",
    "load_optimizer",
    "load_state",
    "mark_final",
    "optimizer_from_safetensors",
    "optimizer_to_safetensors",
    "provenance",
    "restore_rng",
    "save_checkpoint",
]
