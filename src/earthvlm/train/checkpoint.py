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
``COMPLETE`` is written last inside it (with the size of every file), so a folder without
``COMPLETE`` (a crash mid-write, a copy in progress) is never resumed from.
:func:`resume_point` picks the newest complete one whose files verify
(:func:`~earthvlm.models.saved.verify_checkpoint`) and says which newer ones it skipped
and why. Pruned checkpoints are renamed to a hidden name before they are deleted, and
:func:`clean_run_dir` removes what a killed save or prune left behind.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from earthvlm.errors import EarthVLMError
from earthvlm.io import atomic_dir, canonicalize_safetensors
from earthvlm.models.saved import (
    COMPLETE_FILE,
    CorruptCheckpointError,
    complete_checkpoints,
    latest_checkpoint,
    verify_checkpoint,
)
from earthvlm.provenance import provenance

STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng.safetensors"
FORMAT = 1
_NAME = re.compile(r"^checkpoint-(\d+)$")
# what atomic_dir and pruning leave when killed: ".checkpoint-N.<random>" (the folder
# being written), ".checkpoint-N.<random>.old" (the one it replaces) and
# ".checkpoint-N.<random>.deleting" (a pruned one)
_LEFTOVER = re.compile(r"^\.checkpoint-\d+\..+$")
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
    """Restore torch, Python and NumPy global RNG states saved in a checkpoint.

    Raises:
        CorruptCheckpointError: Naming the file whose state cannot be restored.
    """
    path = Path(ckpt) / RNG_FILE
    tensors = _load_tensors(path)
    try:
        torch.set_rng_state(tensors["torch_cpu"])
        cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
        if cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda)
    except (KeyError, RuntimeError, TypeError, ValueError) as e:
        raise CorruptCheckpointError(f"{path}: not a saved RNG state ({e!r})") from None
    try:
        v, internal, gauss = state["python_rng"]
        name, keys, *rest = state["numpy_rng"]
        np_state = (name, np.asarray(keys, dtype=np.uint32), *rest)
        np.random.set_state(np_state)
        random.setstate((v, tuple(internal), gauss))
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        path = Path(ckpt) / STATE_FILE
        msg = f"{path}: the Python / NumPy RNG state is damaged ({e!r})"
        raise CorruptCheckpointError(msg) from None


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """``load_file`` with an error that names the file (safetensors' own names none)."""
    try:
        return load_file(str(path))
    except Exception as e:  # SafetensorError, OSError, ...
        raise CorruptCheckpointError(f"{path}: cannot be read ({e})") from None


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
        for name in (OPTIMIZER_FILE, RNG_FILE):
            canonicalize_safetensors(tmp / name)
        full = {
            "format": FORMAT, **state, "optimizer": opt_meta, **rng_meta,
            "provenance": provenance(),
        }  # fmt: skip
        _fsync_write(tmp / STATE_FILE, json.dumps(full, indent=1, sort_keys=True) + "\n")
        files = {
            f.relative_to(tmp).as_posix(): f.stat().st_size
            for f in sorted(tmp.rglob("*"))
            if f.is_file()
        }
        marker = {"step": step, "format": FORMAT, "files": files}
        _fsync_write(tmp / COMPLETE_FILE, json.dumps(marker, sort_keys=True) + "\n")
    if keep_last:
        for old_ckpt in complete_checkpoints(run)[:-keep_last]:
            _remove(old_ckpt)
    return final


def _remove(folder: Path) -> None:
    """Delete a checkpoint folder so that a kill part-way leaves no visible half of it:
    it is renamed to a hidden name first (which :func:`clean_run_dir` removes)."""
    trash = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".deleting", dir=folder.parent))
    os.replace(folder, trash / folder.name)
    shutil.rmtree(trash, ignore_errors=True)


def clean_run_dir(run_dir: str | Path) -> list[str]:
    """Tidy what killed saves and prunes left in a run folder; one line per change.

    * A ``checkpoint-N`` that a save killed between its two renames left missing is put
      back: the new folder if it was complete, else the one it was replacing.
    * Every other hidden ``.checkpoint-N.*`` folder is deleted (a checkpoint half
      written, one being replaced, one being pruned).
    * A ``checkpoint-N`` without a marker, older than the newest complete checkpoint, is
      deleted (half deleted by an earlier version's pruning; a newer one may be a copy in
      progress and is left alone).

    Call it when a run starts, before anything is written.
    """
    run = Path(run_dir)
    if not run.is_dir():
        return []
    done: list[str] = []
    leftovers = [p for p in run.iterdir() if p.is_dir() and _LEFTOVER.match(p.name)]
    # the new folder first: it is what the killed save meant to leave
    for p in sorted(leftovers, key=lambda p: (p.name.endswith(".old"), p.name)):
        name = p.name[1:].split(".", 1)[0]  # ".checkpoint-6.x7a.old" -> "checkpoint-6"
        inner = p / name if p.name.endswith(".old") else p
        if (
            not p.name.endswith(".deleting")
            and not (run / name).exists()
            and (inner / COMPLETE_FILE).is_file()
        ):
            os.replace(inner, run / name)
            done.append(f"restored {name} from {p.name} (a save was killed mid-rename)")
    steps = [int(_NAME.match(c.name)[1]) for c in complete_checkpoints(run)]  # type: ignore[index]
    for p in sorted(run.iterdir()):
        m = _NAME.match(p.name)
        stale = m is not None and steps and int(m[1]) < steps[-1]
        if (
            p.is_dir()
            and not p.is_symlink()
            and (_LEFTOVER.match(p.name) or (stale and not (p / COMPLETE_FILE).is_file()))
        ):
            shutil.rmtree(p, ignore_errors=True)
            done.append(f"removed {p.name} (left by a killed save or prune)")
    return done


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
    except (OSError, ValueError, RecursionError) as e:
        raise CorruptCheckpointError(f"{p / STATE_FILE}: cannot read the trainer state: {e}") from e
    if not isinstance(state, dict):
        raise CorruptCheckpointError(f"{p / STATE_FILE}: not a JSON object")
    # what save_checkpoint writes for every loop (SFT and GRPO alike)
    missing = sorted({"step", "optimizer", "python_rng", "numpy_rng"} - set(state))
    if missing:
        raise CorruptCheckpointError(f"{p / STATE_FILE}: missing {missing}")
    if state.get("format") != FORMAT:
        raise EarthVLMError(f"{p}: checkpoint format {state.get('format')!r}, expected {FORMAT}")
    unknown = sorted(set(state) - _STATE_KEYS)
    if unknown:
        import warnings

        warnings.warn(f"{p / STATE_FILE}: ignoring unknown keys {unknown}", stacklevel=2)
    return state


def load_optimizer(ckpt: str | Path, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load the optimiser state saved in a checkpoint into ``optimizer``.

    Raises:
        CorruptCheckpointError: Naming the file, if it cannot be read or does not fit.
    """
    path = Path(ckpt) / OPTIMIZER_FILE
    tensors = _load_tensors(path)
    try:
        optimizer.load_state_dict(optimizer_from_safetensors(tensors, state["optimizer"]))
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:
        raise CorruptCheckpointError(
            f"{path}: the optimiser state does not fit this optimiser ({e!r})"
        ) from None


def verify_resumable(ckpt: str | Path) -> dict[str, Any]:
    """The trainer state of a checkpoint whose files verify; every file resuming reads is
    checked before anything is loaded (:func:`~earthvlm.models.saved.verify_checkpoint`).

    Raises:
        CorruptCheckpointError: Naming the damaged or missing file.
        EarthVLMError: For a checkpoint of another format.
    """
    p = Path(ckpt)
    verify_checkpoint(p)
    for name in (OPTIMIZER_FILE, RNG_FILE):
        if not (p / name).is_file():
            raise CorruptCheckpointError(f"{p / name}: missing")
    return load_state(p)


def resume_point(
    run_dir: str | Path, say: Callable[[str], None]
) -> tuple[Path | None, dict[str, Any] | None]:
    """The newest checkpoint of a run that can be resumed from, and its state.

    A newer checkpoint whose files are damaged is skipped for the one before, and
    ``say`` is told which file and why.

    Raises:
        CorruptCheckpointError: If the run has complete checkpoints and none can be used.
    """
    found = complete_checkpoints(run_dir)
    for i, ckpt in enumerate(reversed(found)):
        try:
            return ckpt, verify_resumable(ckpt)
        except CorruptCheckpointError as e:
            older = found[-i - 2].name if i + 2 <= len(found) else None
            say(f"{e}; not resuming from {ckpt.name}" + (f", trying {older}" if older else ""))
    if found:
        raise CorruptCheckpointError(
            f"{run_dir}: no checkpoint can be resumed from (each is damaged, see above); "
            "delete them or start a new run name"
        )
    return None, None


__all__ = [
    "COMPLETE_FILE",
    "CorruptCheckpointError",
    "clean_run_dir",
    "complete_checkpoints",
    "latest_checkpoint",
    "load_optimizer",
    "load_state",
    "mark_final",
    "optimizer_from_safetensors",
    "optimizer_to_safetensors",
    "provenance",
    "restore_rng",
    "resume_point",
    "save_checkpoint",
    "verify_resumable",
]
