"""Atomic writes, and JSON read from outside.

Atomic writes: a reader sees the old file (or folder) or the new one, never half of one.
Every artifact the project writes (records, rasters, adapters, checkpoints) goes through
these helpers: the content is written under a temporary name beside the target, then
renamed into place. Temporary files get the usual permissions (``mkstemp`` alone would
leave them 0600, folders 0700).

JSON from outside (dataset rows, annotation files, checkpoint configs) goes through
:func:`loads_untrusted`: a line nested thousands deep, an integer of thousands of digits
or a lone surrogate escape (``"\\ud800"``, which no UTF-8 writer can write back) becomes
an :class:`UntrustedJSONError` with a short reason, never a ``RecursionError`` or a
bare ``ValueError`` escaping the reader.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary file path beside ``path``; on success rename it over ``path``.

    For writers that want a path rather than a file object (rasterio, PIL, safetensors).
    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_writer(
    path: str | Path, mode: str = "w", encoding: str | None = "utf-8"
) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success fsync it and rename it over ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    with atomic_path(path) as tmp, open(tmp, mode, encoding=None if "b" in mode else encoding) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_writer(path) as f:
        f.write(text)


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path``.

    An existing ``path`` is moved aside first and removed only after the new folder is in
    place. On an exception the temporary folder is removed and ``path`` is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if target.exists():
            old = Path(
                tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent)
            )
            os.replace(target, old / target.name)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


#: Deepest nesting accepted in JSON from outside. Rows, annotations and API bodies nest a
#: handful of levels; 64 leaves room and stays far below Python's recursion limit, so the
#: code that later recurses into a value (pydantic, ``json.dumps``) cannot overflow.
MAX_JSON_DEPTH = 64


class UntrustedJSONError(ValueError):
    """JSON from outside that is refused. ``reason`` is short and stable (``invalid_json``,
    ``not_utf8``, ``too_deep``, ``number_too_long``, ``lone_surrogate``); ``detail`` says
    what was found."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def loads_untrusted(text: str | bytes, *, max_depth: int | None = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` for text from outside: every failure is an :class:`UntrustedJSONError`.

    Args:
        text: The JSON text (bytes are decoded as UTF-8).
        max_depth: Refuse values nested deeper (a scalar is depth 0, ``[1]`` depth 1),
            and any lone surrogate (:func:`check_plain_json`). ``None`` checks only what
            the parser itself cannot take, for whole files too large to walk twice whose
            items are checked one by one (as records, which refuse what they cannot
            write back), so that one bad item does not refuse the file.

    Raises:
        UntrustedJSONError: Not JSON (``invalid_json``, with the message, line and column
            of ``json``), not UTF-8, nested too deeply, an integer past Python's digit
            limit (``sys.get_int_max_str_digits``), or a lone surrogate.
    """
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as e:
            raise UntrustedJSONError("not_utf8", f"byte {e.start} is not UTF-8") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise UntrustedJSONError(
            "invalid_json", f"{e.msg} at line {e.lineno}, column {e.colno}"
        ) from None
    except RecursionError:
        raise UntrustedJSONError("too_deep", "nested deeper than the parser can go") from None
    except ValueError as e:  # int("9" * 5000): past sys.get_int_max_str_digits()
        raise UntrustedJSONError("number_too_long", str(e).split(";")[0]) from None
    if max_depth is not None:
        check_plain_json(value, max_depth=max_depth)
    return value


def check_plain_json(value: Any, *, max_depth: int | None = MAX_JSON_DEPTH) -> None:
    """Refuse a JSON-like value (dicts, lists, scalars) nested deeper than ``max_depth``
    or holding a string (key or value) that is not valid Unicode (a lone surrogate).

    Walks iteratively, so a deep value cannot overflow the stack here.

    Raises:
        UntrustedJSONError: ``too_deep`` or ``lone_surrogate``, with where it was found.
    """
    # (value, depth, where its parent is, its key there): "where" is spelled out only
    # once per container and on an error, not for every scalar
    stack: list[tuple[Any, int, str, Any]] = [(value, 0, "", None)]
    while stack:
        v, depth, parent, key = stack.pop()
        if isinstance(v, str):
            _check_text(v, parent, key)
            continue
        if isinstance(v, dict):
            items: Iterable[tuple[Any, Any]] = v.items()
        elif isinstance(v, list | tuple):
            items = enumerate(v)
        else:
            continue
        where = _where(parent, key)
        if max_depth is not None and depth + 1 > max_depth:
            raise UntrustedJSONError(
                "too_deep", f"{where} is nested deeper than {max_depth} levels"
            )
        for k, child in items:
            if isinstance(k, str):
                _check_text(k, where, k, is_key=True)
            if isinstance(child, str | dict | list | tuple):
                stack.append((child, depth + 1, where, k))


def _where(parent: str, key: Any) -> str:
    """``$['objects'][3]``: where a value sits (the end of a long path is cut)."""
    return "$" if key is None and not parent else f"{parent}[{key!r}]"[:200]


def _check_text(s: str, parent: str, key: Any, *, is_key: bool = False) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as e:
        where = f"a key of {parent}" if is_key else _where(parent, key)
        raise UntrustedJSONError(
            "lone_surrogate",
            f"{where} holds a lone surrogate {s[e.start]!r} at character {e.start}; "
            "the text was written with a broken escape (a half of a UTF-16 pair)",
        ) from None


def canonicalize_safetensors(path: str | Path) -> None:
    """Rewrite a safetensors file's header so that identical tensors and metadata give
    identical bytes: the ``__metadata__`` keys sorted.

    safetensors (0.4 - 0.8) writes the metadata in the order of a Rust ``HashMap``, which
    is seeded per process: two saves of the same checkpoint differ byte for byte as soon
    as the metadata has two keys (the tensors themselves are written in a fixed order).
    The header is rewritten in place, padded with spaces as safetensors pads it; the
    compact JSON of the same content is never longer, and a header that would be is left
    as it is. Call it on a file nobody reads yet (inside an atomic folder or path).
    """
    with open(path, "r+b") as f:
        head = f.read(8)
        if len(head) < 8:
            return
        n = int.from_bytes(head, "little")
        header = json.loads(f.read(n))
        meta = header.pop("__metadata__", None)
        if not meta:
            return
        ordered = {"__metadata__": dict(sorted(meta.items())), **header}
        text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if len(text) <= n:
            f.seek(8)
            f.write(text + b" " * (n - len(text)))
