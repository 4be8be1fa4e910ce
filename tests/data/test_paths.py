"""Image paths from annotation files must never leave the dataset root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from earthvlm.data.paths import check_relative_path, resolve_within
from earthvlm.errors import PathEscapeError


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A dataset root with ``a/b.png`` and ``b.png``, and a secret file outside it."""
    r = tmp_path / "dataset"
    (r / "a").mkdir(parents=True)
    (r / "a" / "b.png").write_bytes(b"png")
    (r / "b.png").write_bytes(b"png")
    (tmp_path / "secret.txt").write_text("secret")
    return r


# (path, a fragment of the error message saying why)
TEXT_ESCAPES = [
    ("../x", "climbs out"),
    ("a/../../x", "climbs out"),
    ("./../x", "climbs out"),
    ("http://example.com/a.png", "URL"),
    ("s3://bucket/a.tif", "URL"),
    ("file:///etc/passwd", "URL"),
    ("/vsicurl/http://example.com/a.tif", "GDAL virtual path"),
    ("/vsizip//tmp/x.zip/a.tif", "GDAL virtual path"),
    ("C:\\x", "drive letter"),
    ("C:/x", "drive letter"),
    ("a\\b.png", "backslashes"),
    ("..\\x", "backslashes"),
    ("a/b\x00.png", "NUL"),
    ("", "empty"),
    ("   ", "empty"),
]


@pytest.mark.parametrize(("rel", "why"), TEXT_ESCAPES)
def test_check_relative_path_rejects(rel: str, why: str) -> None:
    with pytest.raises(PathEscapeError, match=why):
        check_relative_path(rel)


@pytest.mark.parametrize(("rel", "why"), TEXT_ESCAPES)
def test_resolve_within_rejects_before_touching_disk(root: Path, rel: str, why: str) -> None:
    with pytest.raises(PathEscapeError, match=why):
        resolve_within(root, rel)


@pytest.mark.parametrize("rel", ["a/b.png", "a/../b.png", "./a/b.png", "a/./b.png", "b.png"])
def test_check_relative_path_accepts_paths_that_stay_inside(rel: str) -> None:
    assert check_relative_path(rel) == rel


@pytest.mark.parametrize(
    ("rel", "expected"), [("a/b.png", "a/b.png"), ("a/../b.png", "b.png"), ("./b.png", "b.png")]
)
def test_resolve_within_accepts_and_normalises(root: Path, rel: str, expected: str) -> None:
    got = resolve_within(root, rel, must_exist=True)
    assert got == (root / expected).resolve()
    assert got.is_absolute()


def test_absolute_path_inside_root_is_accepted(root: Path) -> None:
    target = root / "a" / "b.png"
    assert resolve_within(root, str(target), must_exist=True) == target.resolve()


@pytest.mark.parametrize("where", ["secret", "etc"])
def test_absolute_path_outside_root_is_rejected(root: Path, where: str) -> None:
    outside = str(root.parent / "secret.txt") if where == "secret" else "/etc/passwd"
    with pytest.raises(PathEscapeError, match="outside the dataset root"):
        resolve_within(root, outside)


def test_absolute_path_that_climbs_out_of_root_is_rejected(root: Path) -> None:
    with pytest.raises(PathEscapeError, match="outside the dataset root"):
        resolve_within(root, f"{root}/a/../../secret.txt")


def test_sibling_folder_sharing_the_root_prefix_is_outside(tmp_path: Path, root: Path) -> None:
    # "/tmp/x/dataset2" starts with the text "/tmp/x/dataset" but is not inside it
    sibling = tmp_path / "dataset2"
    sibling.mkdir()
    (sibling / "c.png").write_bytes(b"png")
    with pytest.raises(PathEscapeError, match="outside the dataset root"):
        resolve_within(root, str(sibling / "c.png"))


def test_symlinked_file_pointing_outside_is_rejected(root: Path) -> None:
    os.symlink(root.parent / "secret.txt", root / "innocent.png")
    with pytest.raises(PathEscapeError, match="outside the dataset root"):
        resolve_within(root, "innocent.png")
    with pytest.raises(PathEscapeError, match="outside the dataset root"):
        resolve_within(root, str(root / "innocent.png"))


def test_symlinked_folder_pointing_outside_is_rejected(root: Path) -> None:
    os.symlink(root.parent, root / "up")
    with pytest.raises(PathEscapeError, match="outside the dataset root"):
        resolve_within(root, "up/secret.txt")


def test_symlink_staying_inside_root_is_followed(root: Path) -> None:
    os.symlink(root / "a" / "b.png", root / "alias.png")
    assert resolve_within(root, "alias.png", must_exist=True) == (root / "a" / "b.png").resolve()


def test_root_given_through_a_symlink_still_contains_its_files(tmp_path: Path, root: Path) -> None:
    link = tmp_path / "root_link"
    os.symlink(root, link)
    assert resolve_within(link, "a/b.png", must_exist=True) == (root / "a" / "b.png").resolve()


def test_must_exist_raises_for_a_missing_file(root: Path) -> None:
    assert resolve_within(root, "a/missing.png") == (root / "a" / "missing.png").resolve()
    with pytest.raises(PathEscapeError, match="does not exist"):
        resolve_within(root, "a/missing.png", must_exist=True)


def test_must_exist_rejects_a_folder(root: Path) -> None:
    with pytest.raises(PathEscapeError, match="does not exist"):
        resolve_within(root, "a", must_exist=True)


def test_path_escape_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        check_relative_path("../x")
