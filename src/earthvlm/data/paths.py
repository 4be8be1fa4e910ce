"""Paths from annotation files, checked before anything is opened.

A dataset's annotation can name any path. ``../../etc/passwd``, an absolute path
elsewhere, a symlink out of the dataset, a URL or a GDAL ``/vsicurl/`` path must never
be opened on its behalf. :func:`resolve_within` is the one gate every image path from a
dataset goes through.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath, PureWindowsPath

from earthvlm.errors import PathEscapeError

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, s3:, file:, C: (drive letters too)


def check_relative_path(rel: str) -> str:
    """Validate the text of a path from an annotation file without touching the disk.

    Allowed: a relative POSIX path that stays inside its root after normalisation.

    Raises:
        PathEscapeError: For empty paths, NUL bytes, URLs and drive letters, GDAL
            ``/vsi...`` paths, backslashes, and ``..`` components that climb out.
    """
    if not isinstance(rel, str) or not rel.strip():
        raise PathEscapeError(f"empty image path {rel!r}")
    if "\x00" in rel:
        raise PathEscapeError(f"image path {rel!r} contains a NUL byte")
    if rel.startswith("/vsi"):
        raise PathEscapeError(f"image path {rel!r} is a GDAL virtual path; use a plain file")
    if _URL.match(rel) and not PurePosixPath(rel).is_absolute():
        raise PathEscapeError(
            f"image path {rel!r} is a URL or has a drive letter; download the data and use "
            "paths relative to the dataset root"
        )
    if "\\" in rel or PureWindowsPath(rel).drive:
        raise PathEscapeError(f"image path {rel!r} uses backslashes; use '/' separators")
    if rel.startswith("/"):
        raise PathEscapeError(
            f"image path {rel!r} is absolute; expected a path relative to the root"
        )
    depth = 0
    for part in PurePosixPath(rel).parts:
        if part == "/":
            continue
        if part == "..":
            depth -= 1
            if depth < 0:
                raise PathEscapeError(
                    f"image path {rel!r} climbs out of the dataset root with '..'"
                )
        elif part != ".":
            depth += 1
    return rel


def resolve_within(root: str | Path, rel: str, *, must_exist: bool = False) -> Path:
    """Resolve an annotation's image path against the dataset root, refusing escapes.

    Absolute paths are accepted only if they lie inside ``root``. Symlinks are followed
    and the final target must still lie inside ``root``.

    Args:
        root: The dataset root folder.
        rel: The path as written in the annotation.
        must_exist: Also require the target to be an existing file.

    Returns:
        The resolved absolute path.

    Raises:
        PathEscapeError: If the path escapes the root (the message says how) or, with
            ``must_exist``, if it is missing.
    """
    root_real = Path(os.path.realpath(root))
    if PurePosixPath(rel).is_absolute():
        if "\x00" in rel or rel.startswith("/vsi"):
            check_relative_path(rel)  # raises with the specific reason
        candidate = Path(rel)  # accepted only if it lies inside the root (checked below)
    else:
        check_relative_path(rel)
        candidate = root_real / rel
    real = Path(os.path.realpath(candidate))
    if not real.is_relative_to(root_real):
        raise PathEscapeError(
            f"image path {rel!r} resolves to {real}, outside the dataset root {root_real} "
            "(through '..', an absolute path or a symlink); keep images under the root"
        )
    if must_exist and not real.is_file():
        raise PathEscapeError(f"image path {rel!r} does not exist under {root_real}")
    return real
