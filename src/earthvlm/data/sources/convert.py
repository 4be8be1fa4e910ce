"""Convert a source into a folder: ``records.jsonl``, its quarantine file and a manifest.

The folder a conversion writes::

    out/
      records.jsonl      one record per line (image paths relative to the root)
      quarantine.jsonl   one rejected source row per line: file, row, reason, fix, raw
      manifest.json      what was converted, from where, with which options and code,
                         the ledger, and the records' SHA-256

The manifest is written last (and removed first): its presence marks a complete
conversion. A stale quarantine file is removed when no row fails. The name is not
``records.quarantine.jsonl``: that is the file :func:`~earthvlm.data.jsonl.read_records`
writes (and removes when clean) for rows of ``records.jsonl`` itself. Image paths in the
records stay relative to the source root, which the manifest records; pass it as
``root`` to :func:`earthvlm.data.jsonl.read_records`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from earthvlm.data.jsonl import write_records
from earthvlm.data.ledger import Ledger
from earthvlm.data.record import Record
from earthvlm.data.sources._base import Problem, SourceReader
from earthvlm.io import atomic_write_text, atomic_writer
from earthvlm.provenance import provenance

#: The quarantine file of a conversion (rows of the source that became no record).
QUARANTINE_FILE = "quarantine.jsonl"

#: Packages whose versions the manifest records (the ones that read the files).
PROVENANCE_PACKAGES = ("pydantic", "numpy", "pillow", "rasterio")


@dataclass(frozen=True)
class Conversion:
    """What :func:`convert_source` wrote.

    Attributes:
        records_path: The JSONL file of records.
        quarantine_path: The quarantine file, or ``None`` when no row failed.
        manifest_path: The manifest (written last).
        written: Records written.
        ledger: Rows read, ok, skipped and failed per reason.
        problems: The quarantined rows.
    """

    records_path: Path
    quarantine_path: Path | None
    manifest_path: Path
    written: int
    ledger: Ledger
    problems: list[Problem]


def reader_options(reader: SourceReader) -> dict[str, Any]:
    """The reader's options as JSON-ready values."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(reader):
        if f.init:
            v = getattr(reader, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


def convert_source(
    reader: SourceReader,
    root: str | Path,
    out_dir: str | Path,
    *,
    progress: Callable[[Ledger], None] | None = None,
) -> Conversion:
    """Read ``root`` with ``reader`` and write the records, quarantine and manifest.

    Args:
        reader: A configured reader (:func:`earthvlm.data.sources.build_reader`).
        root: The source's root folder.
        out_dir: The output folder (created).
        progress: Called with the reader's ledger after each record written.

    Raises:
        SourceError: If the source cannot be read at all (nothing is left half-written:
            the manifest is absent).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.json"
    manifest_path.unlink(missing_ok=True)  # incomplete until rewritten
    records_path = out / "records.jsonl"

    def stream() -> Iterator[Record]:
        for rec in reader.read(root):
            yield rec
            if progress is not None:
                progress(reader.ledger)

    written = write_records(stream(), records_path)
    if progress is not None:
        progress(reader.ledger)
    qpath = out / QUARANTINE_FILE
    if reader.problems:
        with atomic_writer(qpath) as q:
            for p in reader.problems:
                q.write(json.dumps(p.to_dict(), ensure_ascii=False) + "\n")
    else:
        qpath.unlink(missing_ok=True)
    digest = hashlib.sha256(records_path.read_bytes()).hexdigest()
    cls = type(reader)
    manifest = {
        "source": reader.name,
        "reader": f"{cls.__module__}:{cls.__qualname__}",
        "records_source": reader.source_name,
        "task": reader.task,
        "root": os.path.realpath(root),
        "split": reader.split,
        "options": reader_options(reader),
        "gsd": reader.gsd_note,
        "records": written,
        "records_file": records_path.name,
        "records_sha256": digest,
        "quarantine_file": qpath.name if reader.problems else None,
        "quarantined": len(reader.problems),
        "ledger": reader.ledger.to_dict(),
        "provenance": provenance(PROVENANCE_PACKAGES),
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "complete": True,
    }
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return Conversion(
        records_path,
        qpath if reader.problems else None,
        manifest_path,
        written,
        reader.ledger,
        list(reader.problems),
    )


__all__ = [
    "PROVENANCE_PACKAGES",
    "QUARANTINE_FILE",
    "Conversion",
    "convert_source",
    "reader_options",
]
