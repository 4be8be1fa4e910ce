"""Atomic writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

from pathlib import Path

import pytest

from earthvlm.io import atomic_write_text, atomic_writer


class Boom(Exception):
    pass


def test_exception_inside_the_block_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text("old contents\n", encoding="utf-8")
    with pytest.raises(Boom), atomic_writer(path) as f:
        f.write("new contents that must never be seen\n")
        f.flush()
        raise Boom
    assert path.read_text(encoding="utf-8") == "old contents\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_exception_with_no_old_file_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "new.txt"
    with pytest.raises(Boom), atomic_writer(path) as f:
        f.write("partial")
        raise Boom
    assert list(tmp_path.iterdir()) == []


def test_keyboard_interrupt_also_cleans_up(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    path.write_text("old", encoding="utf-8")
    with pytest.raises(KeyboardInterrupt), atomic_writer(path) as f:
        f.write("new")
        raise KeyboardInterrupt
    assert path.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_success_replaces_the_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "out.txt"  # parent folders are created
    atomic_write_text(path, "first")
    with atomic_writer(path) as f:
        f.write("second ünïcode")
    assert path.read_text(encoding="utf-8") == "second ünïcode"
    assert [p.name for p in path.parent.iterdir()] == ["out.txt"]


def test_binary_mode(tmp_path: Path) -> None:
    path = tmp_path / "b.bin"
    with atomic_writer(path, "wb") as f:
        f.write(b"\x00\xff")
    assert path.read_bytes() == b"\x00\xff"


def test_nothing_visible_at_the_target_until_the_block_ends(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("old", encoding="utf-8")
    with atomic_writer(path) as f:
        f.write("new")
        f.flush()
        assert path.read_text(encoding="utf-8") == "old"
    assert path.read_text(encoding="utf-8") == "new"


def test_written_files_and_folders_get_the_usual_permissions(tmp_path: Path) -> None:
    import os
    import stat

    from earthvlm.io import atomic_dir, atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        with atomic_dir(tmp_path / "folder") as d:
            (d / "f").write_text("y")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o755


def test_atomic_dir_replaces_an_old_folder_only_on_success(tmp_path: Path) -> None:
    from earthvlm.io import atomic_dir

    target = tmp_path / "ckpt"
    with atomic_dir(target) as d:
        (d / "weights").write_text("v1")
    with pytest.raises(RuntimeError), atomic_dir(target) as d:
        (d / "weights").write_text("v2")
        raise RuntimeError("crash mid-write")
    assert (target / "weights").read_text() == "v1"
    with atomic_dir(target) as d:
        (d / "weights").write_text("v3")
    assert (target / "weights").read_text() == "v3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
