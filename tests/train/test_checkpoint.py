"""Checkpoints: optimiser state through safetensors, completeness marker, pruning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from earthvlm.errors import EarthVLMError
from earthvlm.train.checkpoint import (
    COMPLETE_FILE,
    complete_checkpoints,
    latest_checkpoint,
    load_optimizer,
    load_state,
    restore_rng,
    save_checkpoint,
)


def _optimizer(seed: int = 0) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    groups = [
        {"params": [model[0].weight], "lr": 1e-3, "name": "adapter", "base_lr": 1e-3},
        {"params": [model[0].bias, *model[1].parameters()], "lr": 1e-2, "weight_decay": 0.0,
         "name": "sseu", "base_lr": 1e-2},
    ]  # fmt: skip
    opt = torch.optim.AdamW(groups, betas=(0.9, 0.95))
    for _ in range(3):
        model(torch.randn(2, 4)).pow(2).sum().backward()
        opt.step()
        opt.zero_grad()
    return model, opt


def _save(run: Path, step: int, opt: torch.optim.Optimizer, keep_last: int = 0) -> Path:
    def weights(out: Path) -> None:
        (out / "adapter").mkdir()
        (out / "adapter" / "w.txt").write_text(str(step))

    state = {"step": step, "epoch": 0, "batch_in_epoch": step, "config": {"name": "x"}}
    return save_checkpoint(
        run, step, write_weights=weights, optimizer=opt, state=state, keep_last=keep_last
    )


def test_optimizer_and_rng_state_round_trip_without_pickle(tmp_path: Path) -> None:
    _, opt = _optimizer()
    torch.manual_seed(123)
    ckpt = _save(tmp_path, 3, opt)
    expected_draw = torch.rand(3)
    assert not [p for p in ckpt.rglob("*") if p.suffix in (".pt", ".bin", ".pkl")]

    _, fresh = _optimizer(seed=1)  # other moments
    state = load_state(ckpt)
    load_optimizer(ckpt, fresh, state)
    a, b = opt.state_dict(), fresh.state_dict()
    assert a["param_groups"] == b["param_groups"]  # betas back as a tuple, names kept
    for idx in a["state"]:
        for key in ("step", "exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(a["state"][idx][key], b["state"][idx][key], rtol=0, atol=0)
    torch.manual_seed(999)
    restore_rng(ckpt, state)
    torch.testing.assert_close(torch.rand(3), expected_draw)


def test_latest_is_the_newest_complete_checkpoint_and_old_ones_are_pruned(
    tmp_path: Path,
) -> None:
    _, opt = _optimizer()
    for step in (2, 4, 6):
        _save(tmp_path, step, opt, keep_last=2)
    assert [p.name for p in complete_checkpoints(tmp_path)] == ["checkpoint-4", "checkpoint-6"]
    # a folder without the marker (a crash mid-copy) and a leftover temporary folder
    (tmp_path / "checkpoint-9").mkdir()
    (tmp_path / ".checkpoint-10.abc").mkdir()
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint-6"
    assert json.loads((tmp_path / "checkpoint-6" / COMPLETE_FILE).read_text())["step"] == 6
    assert latest_checkpoint(tmp_path / "nothing-here") is None
    with pytest.raises(EarthVLMError, match="not a complete checkpoint"):
        load_state(tmp_path / "checkpoint-9")


def test_a_failed_save_leaves_no_checkpoint_behind(tmp_path: Path) -> None:
    _, opt = _optimizer()
    _save(tmp_path, 2, opt)

    def broken(out: Path) -> None:
        (out / "adapter").mkdir()
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, 4, write_weights=broken, optimizer=opt, state={"step": 4})
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-2"]
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint-2"
