"""Checkpoints: optimiser state through safetensors, completeness marker, pruning; damaged
checkpoints named and skipped on resume; leftovers of killed saves tidied; identical
saves identical bytes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from earthvlm.errors import EarthVLMError
from earthvlm.train.checkpoint import (
    COMPLETE_FILE,
    OPTIMIZER_FILE,
    RNG_FILE,
    CorruptCheckpointError,
    clean_run_dir,
    complete_checkpoints,
    latest_checkpoint,
    load_optimizer,
    load_state,
    restore_rng,
    resume_point,
    save_checkpoint,
    verify_resumable,
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


# -- damaged checkpoints: verified on resume, the file named, the one before used --------


def _save_with_weights(run: Path, step: int, opt: torch.optim.Optimizer, **kw) -> Path:
    def weights(out: Path) -> None:
        (out / "adapter").mkdir()
        save_file({"w": torch.full((8,), float(step))}, str(out / "adapter" / "w.safetensors"))
        (out / "adapter" / "config.json").write_text(json.dumps({"step": step}))

    state = {"step": step, "epoch": 0, "batch_in_epoch": step, "config": {"name": "x"}}
    return save_checkpoint(run, step, write_weights=weights, optimizer=opt, state=state, **kw)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-7])


def _zero_header(path: Path) -> None:  # same size, header destroyed
    data = path.read_bytes()
    path.write_bytes(b"\x00" * 64 + data[64:])


#: one way to damage each kind of file a checkpoint holds: (file, damage, words of the error)
DAMAGE = [
    ("optimizer.safetensors", _truncate, "optimizer.safetensors"),
    ("optimizer.safetensors", _zero_header, "optimizer.safetensors"),
    ("rng.safetensors", _truncate, "rng.safetensors"),
    ("adapter/w.safetensors", _zero_header, "w.safetensors"),
    ("adapter/config.json", lambda p: p.write_text("{oops"), "config.json"),
    ("trainer_state.json", lambda p: p.write_text('{"format": 1}'), "trainer_state.json"),
    ("trainer_state.json", lambda p: p.write_text("[1, 2]"), "trainer_state.json"),
    ("COMPLETE", lambda p: p.write_text("{not json"), "COMPLETE"),
    ("rng.safetensors", lambda p: p.unlink(), "rng.safetensors: missing"),
    ("adapter/w.safetensors", lambda p: p.unlink(), "w.safetensors: missing"),
]


@pytest.mark.parametrize(
    ("name", "damage", "words"), DAMAGE, ids=[f"{d[0]}-{i}" for i, d in enumerate(DAMAGE)]
)
def test_a_damaged_newest_checkpoint_is_named_and_the_one_before_resumed(
    tmp_path: Path, name: str, damage, words: str
) -> None:
    _, opt = _optimizer()
    _save_with_weights(tmp_path, 2, opt)
    newest = _save_with_weights(tmp_path, 4, opt)
    damage(newest / name)
    with pytest.raises(CorruptCheckpointError, match=re.escape(words)):
        verify_resumable(newest)
    said: list[str] = []
    ckpt, state = resume_point(tmp_path, said.append)
    assert ckpt == tmp_path / "checkpoint-2" and state["step"] == 2
    (line,) = said
    assert words in line and "not resuming from checkpoint-4, trying checkpoint-2" in line
    # loading a run for evaluation falls back the same way, with a warning
    with pytest.warns(UserWarning, match=re.escape(words)):
        assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint-2"


def test_no_usable_checkpoint_is_an_error_not_a_fresh_start(tmp_path: Path) -> None:
    _, opt = _optimizer()
    only = _save_with_weights(tmp_path, 2, opt)
    _truncate(only / OPTIMIZER_FILE)
    said: list[str] = []
    with pytest.raises(CorruptCheckpointError, match="no checkpoint can be resumed"):
        resume_point(tmp_path, said.append)
    assert "optimizer.safetensors" in said[0]
    assert resume_point(tmp_path / "empty", said.append) == (None, None)


def test_loaders_name_the_damaged_file(tmp_path: Path) -> None:
    # what resuming reads after verification: every failure names its file
    _, opt = _optimizer()
    ckpt = _save_with_weights(tmp_path, 2, opt)
    state = load_state(ckpt)
    _zero_header(ckpt / OPTIMIZER_FILE)
    with pytest.raises(CorruptCheckpointError, match=r"optimizer\.safetensors: cannot be read"):
        load_optimizer(ckpt, opt, state)
    _, other = _optimizer()
    other.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))]})
    fresh = _save_with_weights(tmp_path, 3, opt)
    with pytest.raises(CorruptCheckpointError, match=r"optimizer\.safetensors: .*does not fit"):
        load_optimizer(fresh, other, load_state(fresh))
    _zero_header(ckpt / RNG_FILE)
    with pytest.raises(CorruptCheckpointError, match=r"rng\.safetensors"):
        restore_rng(ckpt, state)
    with pytest.raises(CorruptCheckpointError, match=r"trainer_state\.json: the Python"):
        restore_rng(fresh, {**load_state(fresh), "python_rng": [3, "x"]})


# -- what killed saves and prunes leave: tidied on the next start ------------------------


def test_a_killed_prune_leaves_nothing_visible_and_is_tidied(tmp_path: Path, monkeypatch) -> None:
    _, opt = _optimizer()
    for step in (2, 4):
        _save_with_weights(tmp_path, step, opt)

    def killed(path, *args, **kwargs):
        raise KeyboardInterrupt  # the process dies inside the delete

    monkeypatch.setattr("earthvlm.train.checkpoint.shutil.rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        _save_with_weights(tmp_path, 6, opt, keep_last=2)
    monkeypatch.undo()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert [n for n in names if not n.startswith(".")] == ["checkpoint-4", "checkpoint-6"]
    assert clean_run_dir(tmp_path) == [
        f"removed {n} (left by a killed save or prune)" for n in names if n.startswith(".")
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-4", "checkpoint-6"]


def test_clean_run_dir_removes_leftovers_and_restores_a_half_renamed_checkpoint(
    tmp_path: Path,
) -> None:
    _, opt = _optimizer()
    for step in (4, 6, 8):
        _save_with_weights(tmp_path, step, opt)
    # a save of step 6 again, killed between atomic_dir's two renames: the old folder is
    # aside, the new complete one still hidden
    aside = tmp_path / ".checkpoint-6.k3j.old"
    aside.mkdir()
    (tmp_path / "checkpoint-6").rename(aside / "checkpoint-6")
    (tmp_path / "checkpoint-8").rename(tmp_path / ".checkpoint-6.n3w")
    (tmp_path / ".checkpoint-10.x1y").mkdir()  # a save killed mid-write
    (tmp_path / ".checkpoint-4.p0q.deleting").mkdir()  # a prune killed mid-delete
    (tmp_path / "checkpoint-2" / "adapter").mkdir(parents=True)  # half deleted, old style
    (tmp_path / "checkpoint-12").mkdir()  # newer and incomplete: a copy in progress
    done = clean_run_dir(tmp_path)
    assert done[0] == "restored checkpoint-6 from .checkpoint-6.n3w (a save was killed mid-rename)"
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["checkpoint-12", "checkpoint-4", "checkpoint-6"]
    assert load_state(tmp_path / "checkpoint-6")["step"] == 8  # the new folder won
    assert len(done) == 5 and clean_run_dir(tmp_path) == []


# -- identical saves are identical bytes ---------------------------------------------------


def test_two_saves_of_the_same_state_are_byte_identical(tmp_path: Path) -> None:
    from safetensors.torch import save as save_bytes

    from earthvlm.io import canonicalize_safetensors

    meta = {k: k.upper() for k in ("format", "fusion", "seg_token_id", "provenance", "x")}
    tensors = {"b": torch.arange(3.0), "a": torch.ones(2, dtype=torch.float16)}
    assert len({save_bytes(tensors, metadata=meta) for _ in range(8)}) > 1  # the hash order
    files = []
    for i in range(4):
        path = tmp_path / f"{i}.safetensors"
        save_file(tensors, str(path), metadata=meta)
        canonicalize_safetensors(path)
        files.append(path.read_bytes())
    assert len(set(files)) == 1
    assert load_file(str(tmp_path / "0.safetensors"))["b"].tolist() == [0.0, 1.0, 2.0]
    # whole checkpoints: the same optimiser and RNG state twice
    _, opt = _optimizer()
    torch.manual_seed(0)
    a = _save_with_weights(tmp_path / "a", 2, opt)
    torch.manual_seed(0)
    b = _save_with_weights(tmp_path / "b", 2, opt)
    for f in sorted(a.rglob("*.safetensors")):
        assert f.read_bytes() == (b / f.relative_to(a)).read_bytes(), f.name
