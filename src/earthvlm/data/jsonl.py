"""Reading and writing records as JSONL, with a quarantine file and a ledger.

Reading never loses a row silently: each line becomes a record (ok), is skipped with a
reason (blank lines), or goes to the quarantine file with its line number, the reason
and the raw text, so a fix can be re-applied. The ledger adds up:
``read == ok + skipped + failed``.

Quarantine reasons are short and stable: ``not_utf8``, ``invalid_json``, ``too_deep``
(nested past :data:`~earthvlm.io.MAX_JSON_DEPTH`), ``number_too_long`` (an integer past
Python's digit limit), ``lone_surrogate`` (a ``\\ud800`` escape no UTF-8 writer can write
back), ``not_an_object``, ``duplicate_id``, ``path_escape``, ``missing_file``, and for
schema errors ``<field>:<error type>`` (e.g. ``images:unsafe_path``, ``box_out_of_image``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from earthvlm.data.ledger import Ledger
from earthvlm.data.paths import resolve_within
from earthvlm.data.record import Record, primary_error
from earthvlm.errors import PathEscapeError, RecordError
from earthvlm.io import UntrustedJSONError, atomic_writer, loads_untrusted


@dataclass
class RecordSet:
    """Records read from a file, and the ledger of that read.

    Attributes:
        records: The valid records, in file order.
        ledger: Counts per outcome and reason.
        quarantine_path: Where rejected rows were written (``None`` if none were).
    """

    records: list[Record]
    ledger: Ledger
    quarantine_path: Path | None = None
    problems: list[dict[str, Any]] = field(default_factory=list)


def quarantine_path_for(path: Path) -> Path:
    """The default quarantine file of a JSONL file: ``name.quarantine.jsonl`` beside it."""
    return path.with_name(path.name.removesuffix(".jsonl") + ".quarantine.jsonl")


def validation_reason(err: ValidationError) -> tuple[str, str]:
    """The quarantine reason and detail of a record schema error: ``("images:missing",
    "images: Field required")``."""
    first = primary_error(err)
    loc = [str(x) for x in first["loc"] if not isinstance(x, int)]
    kind = first["type"]
    reason = f"{loc[0]}:{kind}" if loc else kind
    where = ".".join(str(x) for x in first["loc"]) or "record"
    return reason, f"{where}: {first['msg']}"


def read_records(
    path: str | Path,
    *,
    root: str | Path | None = None,
    must_exist: bool = False,
    quarantine: str | Path | None = None,
    strict: bool = False,
) -> RecordSet:
    """Read a JSONL file of records, quarantining invalid rows.

    Args:
        path: The JSONL file.
        root: The dataset root. When given, every image and mask path is resolved
            against it and rows whose paths escape it (``..``, absolute elsewhere,
            symlinks out) are quarantined before anything is opened.
        must_exist: With ``root``, also quarantine rows whose image files are missing.
        quarantine: Where to write rejected rows; default ``<name>.quarantine.jsonl``
            beside ``path``. A stale quarantine file is removed when no row fails.
        strict: Raise :class:`RecordError` on the first invalid row instead.

    Returns:
        The records and the ledger (``ledger.check()`` passes).

    Raises:
        RecordError: If the file is missing, or with ``strict`` on the first bad row.
    """
    p = Path(path)
    if not p.is_file():
        raise RecordError(f"{p}: no such JSONL file")
    qpath = Path(quarantine) if quarantine is not None else quarantine_path_for(p)
    ledger = Ledger(p.name)
    records: list[Record] = []
    problems: list[dict[str, Any]] = []
    seen: set[str] = set()

    def fail(lineno: int, reason: str, detail: str, raw: str) -> None:
        if strict:
            raise RecordError(f"{p}:{lineno}: {reason}: {detail}")
        ledger.count_failed(reason)
        problems.append({"line": lineno, "reason": reason, "detail": detail, "raw": raw})

    with open(p, "rb") as f:
        for lineno, raw_bytes in enumerate(f, start=1):
            try:
                raw = raw_bytes.decode("utf-8-sig" if lineno == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                fail(
                    lineno, "not_utf8", str(e), raw_bytes.decode("utf-8", "replace").rstrip("\r\n")
                )
                continue
            if not raw.strip():
                ledger.count_skipped("blank_line")
                continue
            try:
                obj = loads_untrusted(raw)
            except UntrustedJSONError as e:  # not JSON, too deep, huge int, lone surrogate
                fail(lineno, e.reason, e.detail, raw)
                continue
            if not isinstance(obj, dict):
                fail(
                    lineno,
                    "not_an_object",
                    f"a row must be a JSON object, got {type(obj).__name__}",
                    raw,
                )
                continue
            try:
                rec = Record.model_validate(obj)
            except ValidationError as e:
                reason, detail = validation_reason(e)
                fail(lineno, reason, detail, raw)
                continue
            if rec.id in seen:
                fail(lineno, "duplicate_id", f"id {rec.id!r} appeared on an earlier line", raw)
                continue
            if root is not None:
                try:
                    for rel in [im.path for im in rec.images] + [
                        m.path for m in rec.masks if m.path
                    ]:
                        resolve_within(root, rel, must_exist=must_exist)
                except PathEscapeError as e:
                    reason = "missing_file" if "does not exist" in str(e) else "path_escape"
                    fail(lineno, reason, str(e), raw)
                    continue
            seen.add(rec.id)
            records.append(rec)
            ledger.count_ok()

    ledger.check()
    if problems:
        with atomic_writer(qpath) as q:
            for row in problems:
                q.write(json.dumps({"file": str(p), **row}, ensure_ascii=False) + "\n")
    else:
        qpath.unlink(missing_ok=True)  # a stale quarantine from an earlier read
    return RecordSet(records, ledger, qpath if problems else None, problems)


def record_to_json(record: Record) -> str:
    """One JSONL line for a record (``None`` fields left out)."""
    return record.model_dump_json(exclude_none=True)


def write_records(records: Iterable[Record], path: str | Path) -> int:
    """Write records as JSONL atomically; returns the number written.

    Raises:
        RecordError: If two records share an id.
    """
    seen: set[str] = set()
    n = 0
    with atomic_writer(path) as f:
        for rec in records:
            if rec.id in seen:
                raise RecordError(f"{path}: duplicate record id {rec.id!r}; ids must be unique")
            seen.add(rec.id)
            f.write(record_to_json(rec) + "\n")
            n += 1
    return n
