"""What every source reader shares: rows, the ledger, quarantine, images and their GSD.

A reader turns one public format into :class:`~earthvlm.data.record.Record` rows. Its
subclass only says how to walk the format: :meth:`SourceReader._rows` yields one
:class:`Row` per item of the source (a label file, an image entry, a question, a JSON
line), each with a ``make`` function that builds the record or raises

* :class:`SkipRow` for an item deliberately left out (an inactive RSVQA question, a
  ``Thumbs.db`` in a class folder), counted as skipped with its reason;
* :class:`RowError` for a malformed item, counted as failed and quarantined with the
  file, the row, the reason, what to fix and the raw text.

:meth:`SourceReader.read` runs the rows, validates each record (a schema error becomes
its quarantine reason, as in :mod:`earthvlm.data.jsonl`), refuses duplicate ids, and
keeps the :class:`~earthvlm.data.ledger.Ledger`: ``read == ok + skipped + failed``.

Images go through :meth:`SourceReader._image`: the path is contained in the root
(:func:`~earthvlm.data.paths.resolve_within`), the size comes from the header, and the
GSD from the resolver chain of :mod:`earthvlm.scale.resolve` (per-sample metadata, the
file's georeferencing when asked, a sensor in the name, a dataset-level sensor, value or
range; unknown when nothing resolves).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import re
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from pydantic import TypeAdapter, ValidationError

from earthvlm.data.jsonl import validation_reason
from earthvlm.data.ledger import Ledger
from earthvlm.data.paths import resolve_within
from earthvlm.data.record import ImagePart, ImageRef, Message, Record, TextPart
from earthvlm.data.sources._images import ImageHeaderError, image_size
from earthvlm.errors import EarthVLMError, GSDError, PathEscapeError, RasterError
from earthvlm.io import UntrustedJSONError, loads_untrusted
from earthvlm.registry import did_you_mean
from earthvlm.scale.gsd import GSD
from earthvlm.scale.resolve import resolve_gsd
from earthvlm.scale.sensors import dataset_gsd, lookup_sensor

#: Longest raw text kept per quarantined row (the start of it).
RAW_CHARS = 4000

_SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")

#: What to do about JSON refused by :func:`~earthvlm.io.loads_untrusted`, by reason.
_JSON_FIX = {
    "too_deep": "flatten the item: rows nest a few levels, not hundreds",
    "number_too_long": "write the number with fewer digits (or as a string)",
    "lone_surrogate": "re-export the text as UTF-8 (half of a UTF-16 pair was written)",
}

#: Suffixes whose georeferencing the resolver may read (``read_georef=True``).
_GEOREF_SUFFIXES = frozenset({".tif", ".tiff", ".jp2"})


class SourceError(EarthVLMError, ValueError):
    """A source cannot be read at all: a missing annotation file, a file that is not the
    format, an unknown option. Row-level problems are quarantined instead."""


class RowError(Exception):
    """A malformed row: ``reason`` (short, stable), ``detail`` (what was found) and
    ``fix`` (what to do); ``row`` and ``raw`` name a line inside the item and its text
    (a DOTA label file's object line). Raised inside a row's ``make``; never escapes
    ``read``."""

    def __init__(
        self,
        reason: str,
        detail: str,
        fix: str,
        *,
        row: int | str | None = None,
        raw: Any = None,
    ) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail, self.fix = reason, detail, fix
        self.row, self.raw = row, raw


class SkipRow(Exception):
    """A row deliberately left out; ``reason`` is counted in the ledger."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Row:
    """One item of a source.

    Attributes:
        file: The file it comes from, relative to the root (POSIX).
        row: Where in the file: a line number (from 1), a list index, a key; 0 when the
            row is the whole file (a DOTA label file, an image in a class folder).
        raw: The raw item (text or JSON value), kept for the quarantine file.
        make: Builds the record; raises :class:`SkipRow` or :class:`RowError`.
    """

    file: str
    row: int | str
    raw: Any
    make: Callable[[], Record]


@dataclass(frozen=True)
class Problem:
    """A quarantined row: where it is, why it was refused, and what to fix."""

    source: str
    file: str
    row: int | str
    reason: str
    detail: str
    fix: str
    raw: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        return f"{self.file} row {self.row}: {self.reason}: {self.detail} (fix: {self.fix})"


def _raw_text(raw: Any) -> str:
    if isinstance(raw, bytes):
        text = raw.decode("utf-8", "replace")
    elif isinstance(raw, str):
        text = raw
    else:
        try:
            text = json.dumps(raw, ensure_ascii=False, default=str)
        except (TypeError, ValueError, RecursionError):
            try:
                text = repr(raw)[:RAW_CHARS]
            except RecursionError:
                text = f"<a {type(raw).__name__} nested too deep to show>"
    # a lone surrogate from a JSON escape would make the quarantine file unwritable
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= RAW_CHARS else text[:RAW_CHARS] + " ...[truncated]"


def skip(reason: str) -> Callable[[], Record]:
    """A row ``make`` that skips the row with ``reason``."""

    def make() -> Record:
        raise SkipRow(reason)

    return make


def check_choice(field_name: str, value: object, allowed: tuple[str, ...]) -> None:
    """Raise ``ValueError`` naming the field unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{field_name}={value!r}: choose one of {', '.join(allowed)}")


def posix(rel: str | PurePosixPath) -> str:
    """A relative path as plain POSIX text without ``./`` segments."""
    return PurePosixPath(rel).as_posix()


@dataclass(kw_only=True)
class SourceReader:
    """Base class of the readers under :mod:`earthvlm.data.sources`.

    Subclasses describe their files in class attributes and implement :meth:`_rows`.

    Attributes:
        source: The records' ``source`` and id prefix (default: the reader's name), e.g.
            ``"dior"`` for a COCO export of DIOR.
        split: The split the records get (``train``, ``val``, ``test``); readers whose
            files are per split (RSVQA) also pick the files with it.
        sensor: A dataset-level sensor key of :data:`~earthvlm.scale.sensors.SENSORS`
            (e.g. ``"gaofen-2"``), used where no per-sample GSD resolves.
        dataset: A dataset key of :data:`~earthvlm.scale.sensors.DATASETS`, overriding
            the reader's own :attr:`gsd_dataset`.
        gsd_range_m: A dataset-level GSD range ``(lo, hi)`` in metres (``lo == hi`` for
            a single value), the last step before unknown.
        read_georef: Open GeoTIFF / JPEG 2000 images to read their georeferencing, which
            beats every table (slower: one header read per image).
        verify_images: Decode every image once and quarantine rows whose image does not
            decode; off by default (header reads only). Images above the full-decode
            pixel budget count as unreadable: leave it off for UHR sources (LRS-VQA).
    """

    #: Registry name (also the ``source`` of the records).
    name: ClassVar[str] = ""
    #: The task of the records (``detection``, ``vqa``, ``grounding`` ...).
    task: ClassVar[str] = ""
    #: The files the reader expects under the root, for people and error messages.
    files: ClassVar[tuple[str, ...]] = ()
    #: Dataset key of :data:`~earthvlm.scale.sensors.DATASETS` applied by default.
    gsd_dataset: ClassVar[str | None] = None
    #: How the GSD of a record is decided, for people.
    gsd_note: ClassVar[str] = "unknown unless sensor, dataset or gsd_range_m is given"

    source: str | None = None
    split: str = "train"
    sensor: str | None = None
    dataset: str | None = None
    gsd_range_m: tuple[float, float] | None = None
    read_georef: bool = False
    verify_images: bool = False

    ledger: Ledger = field(init=False, repr=False, compare=False)
    problems: list[Problem] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.split or not self.split.strip() or "/" in self.split:
            raise ValueError(f"split={self.split!r}: give a name such as 'train' or 'test'")
        if self.source is not None and not _SOURCE_NAME.fullmatch(self.source):
            raise ValueError(
                f"source={self.source!r}: use letters, digits, '.', '_' and '-' (e.g. 'dior')"
            )
        if self.sensor is not None:
            lookup_sensor(self.sensor)  # GSDError (a ValueError) with "did you mean"
        if self.dataset is not None:
            dataset_gsd(self.dataset)
        if self.gsd_range_m is not None:
            lo, hi = (float(v) for v in self.gsd_range_m)
            GSD.range(lo, hi, detail="gsd_range_m")  # GSDError naming the problem
            self.gsd_range_m = (lo, hi)
        self.ledger = Ledger(self.name)
        self.problems = []
        self._reset(None)

    @property
    def source_name(self) -> str:
        """The records' ``source``: the ``source`` option, else the reader's name."""
        return self.source or self.name

    # -- the walk ---------------------------------------------------------------------

    def read(self, root: str | Path) -> Iterator[Record]:
        """Convert the source under ``root`` into records, in a deterministic order.

        The ledger (:attr:`ledger`) and the quarantined rows (:attr:`problems`) are reset
        at the start and complete when the iterator is exhausted.

        Raises:
            SourceError: If the root or a file the whole source needs is missing or not
                in the format (row-level problems are quarantined instead).
        """
        root_path = Path(root)
        if not root_path.is_dir():
            raise SourceError(
                f"{root}: no such folder; give the {self.name} root, which holds "
                + ", ".join(self.files or ("the dataset files",))
            )
        self._reset(Path(os.path.realpath(root_path)))
        seen: set[str] = set()
        for row in self._rows(self._root):
            try:
                rec = row.make()
            except SkipRow as s:
                self.ledger.count_skipped(s.reason)
                continue
            except RowError as e:
                self._quarantine(row, e.reason, e.detail, e.fix, at=e.row, raw=e.raw)
                continue
            except ValidationError as e:
                reason, detail = validation_reason(e)
                fix = "correct the annotation so that the record is valid (see the detail)"
                self._quarantine(row, reason, detail, fix)
                continue
            if rec.id in seen:
                self._quarantine(
                    row,
                    "duplicate_id",
                    f"record id {rec.id!r} was produced by an earlier row",
                    "give every item a unique id (or remove the duplicate row)",
                )
                continue
            seen.add(rec.id)
            self.ledger.count_ok()
            yield rec
        self.ledger.check()

    def _rows(self, root: Path) -> Iterator[Row]:
        """The rows of the source under ``root`` (the real path of the root)."""
        raise NotImplementedError

    def _reset(self, root: Path | None) -> None:
        self._root = root or Path(".")
        self.ledger = Ledger(f"{self.name} ({self.split})")
        self.problems = []
        self._sizes: dict[Path, tuple[int, int] | ImageHeaderError] = {}
        self._decoded: dict[Path, str | None] = {}
        self._gsds: dict[tuple[Any, ...], GSD] = {}

    def _quarantine(
        self,
        row: Row,
        reason: str,
        detail: str,
        fix: str,
        *,
        at: int | str | None = None,
        raw: Any = None,
    ) -> None:
        self.ledger.count_failed(reason)
        where = row.row if at is None else at
        text = _raw_text(row.raw if raw is None else raw)
        self.problems.append(Problem(self.name, row.file, where, reason, detail, fix, text))

    # -- files ------------------------------------------------------------------------

    def _path(self, rel: str, *, what: str = "file") -> Path:
        """``rel`` resolved inside the root; a :class:`RowError` if it escapes or is missing."""
        try:
            p = resolve_within(self._root, rel)
        except PathEscapeError as e:
            raise RowError(
                "path_escape",
                str(e),
                f"keep the {what} under the dataset root and name it relative to the root",
            ) from None
        if not p.is_file():
            raise RowError(
                f"missing_{what}",
                f"{rel!r} does not exist under the dataset root",
                f"put the {what} at {rel} (or remove the row that names it)",
            )
        return p

    def _file(self, rel: str) -> Path:
        """A file the whole source needs, inside the root; :class:`SourceError` if not."""
        try:
            p = resolve_within(self._root, rel)
        except PathEscapeError as e:
            raise SourceError(f"{self.name}: {e}") from None
        if not p.is_file():
            raise SourceError(
                f"{self._root / rel}: no such file; the {self.name} reader expects "
                + ", ".join(self.files)
                + " under the root (or set the file's option)"
            )
        return p

    def _dir(self, rel: str) -> Path:
        """A folder the whole source needs, inside the root; :class:`SourceError` if not."""
        try:
            p = resolve_within(self._root, rel or ".")
        except PathEscapeError as e:
            raise SourceError(f"{self.name}: {e}") from None
        if not p.is_dir():
            raise SourceError(
                f"{self._root / rel}: no such folder; the {self.name} reader expects "
                + ", ".join(self.files)
                + " under the root (or set the folder's option)"
            )
        return p

    def _rel(self, p: Path) -> str:
        """A path found by listing a folder under the root, relative to the root."""
        return p.relative_to(self._root).as_posix()

    def _load_json(self, rel: str) -> Any:
        """A whole JSON file the source needs; :class:`SourceError` if it is not JSON
        (or is JSON no reader can take: nested too deep, a number of thousands of digits;
        a lone surrogate is left to the row it sits in)."""
        p = self._file(rel)
        try:
            with open(p, encoding="utf-8-sig") as f:
                # the whole file is walked once, by the rows (records check themselves)
                return loads_untrusted(f.read(), max_depth=None)
        except UnicodeDecodeError as e:
            raise SourceError(f"{p}: not UTF-8 ({e}); re-encode the file as UTF-8") from None
        except UntrustedJSONError as e:
            what = "not valid JSON" if e.reason == "invalid_json" else f"refused ({e.reason})"
            raise SourceError(
                f"{p}: {what}: {e.detail}; "
                + _JSON_FIX.get(e.reason, "re-download the file (it may be truncated)")
            ) from None

    def _release_rows(self, names: Sequence[str], make: Callable[[Any], Record]) -> Iterator[Row]:
        """The rows of the first of ``names`` found under the root: one per line of a
        ``.jsonl`` file (blank lines skipped, broken ones failed), else one per item of a
        JSON list; ``make`` builds a record from one row.

        Raises:
            SourceError: If none of the files exists, or a JSON file is not a list.
        """
        rel = next((n for n in names if (self._root / n).is_file()), None)
        if rel is None:
            raise SourceError(
                f"{self._root}: none of {', '.join(names)} found; put the {self.name} rows "
                "there (or name the file with the reader's option)"
            )
        if rel.endswith(".jsonl"):
            yield from self._jsonl_rows(rel, lambda _line, obj: make(obj))
            return
        rows = self._load_json(rel)
        if not isinstance(rows, list):
            raise SourceError(f"{self._root / rel}: expected a JSON list of rows")
        for i, row in enumerate(rows):
            yield Row(rel, i, row, functools.partial(make, row))

    def _jsonl_rows(self, rel: str, make: Callable[[int, dict[str, Any]], Record]) -> Iterator[Row]:
        """One row per line of a JSONL file; blank lines skipped, broken lines failed."""
        p = self._file(rel)
        with open(p, "rb") as f:
            for lineno, raw_bytes in enumerate(f, start=1):
                yield self._jsonl_row(rel, lineno, raw_bytes, make)

    def _jsonl_row(
        self,
        rel: str,
        lineno: int,
        raw_bytes: bytes,
        make: Callable[[int, dict[str, Any]], Record],
    ) -> Row:
        def build() -> Record:
            try:
                text = raw_bytes.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise RowError("not_utf8", str(e), "re-encode the file as UTF-8") from None
            if not text.strip():
                raise SkipRow("blank_line")
            try:
                obj = loads_untrusted(text)
            except UntrustedJSONError as e:
                fix = _JSON_FIX.get(e.reason, "repair the line so that it is one JSON object")
                raise RowError(e.reason, e.detail, fix) from None
            if not isinstance(obj, dict):
                raise RowError(
                    "not_an_object",
                    f"a line must be a JSON object, got {type(obj).__name__}",
                    "write one JSON object per line",
                )
            return make(lineno, obj)

        return Row(rel, lineno, raw_bytes, build)

    def _one_turn(
        self, key: str, image: ImageRef, prompt: str, answer: str, **fields: Any
    ) -> Record:
        """A record of this source asking one question about one image: id
        ``<source>-<key>``, the image then ``prompt`` in the user turn, ``answer`` as the
        assistant turn, and ``fields`` (``boxes``, ``meta``) as they are.

        Raises:
            ValidationError: If the record is invalid (the row is quarantined).
        """
        return Record(
            id=f"{self.source_name}-{key}",
            task=self.task,
            source=self.source_name,
            split=self.split,
            images=[image],
            messages=[
                Message(role="user", content=[ImagePart(index=0), TextPart(text=prompt)]),
                Message(role="assistant", content=answer),
            ],
            **fields,
        )

    # -- images -----------------------------------------------------------------------

    def _image(
        self,
        rel: str,
        *,
        metadata_gsd: GSD | float | None = None,
        sensor: str | None = None,
        bands: list[str] | None = None,
    ) -> ImageRef:
        """The :class:`ImageRef` of an image named by the source, relative to the root.

        Checks containment and existence, reads the size from the header (once per
        image), optionally decodes it, and resolves its GSD: ``metadata_gsd`` (per
        sample), then the georeferencing (``read_georef``), a sensor in the file name,
        ``sensor`` (per sample) or the reader's ``sensor``, the dataset-level value,
        ``gsd_range_m``; unknown when nothing resolves.

        Raises:
            RowError: ``path_escape``, ``missing_image``, ``unreadable_image``, ``bad_gsd``.
        """
        rel = posix(rel)
        p = self._path(rel, what="image")
        size = self._sizes.get(p)
        if size is None:
            try:
                size = image_size(p)
            except ImageHeaderError as e:
                size = e
            self._sizes[p] = size
        if isinstance(size, ImageHeaderError):
            raise RowError(
                "unreadable_image",
                str(size),
                "replace the image with an intact copy (re-download or re-extract it)",
            )
        if self.verify_images:
            self._verify(p)
        gsd = self._gsd(p, rel, metadata_gsd, sensor)
        return ImageRef(path=rel, width=size[0], height=size[1], bands=bands, gsd=gsd)

    def _verify(self, p: Path) -> None:
        if p not in self._decoded:
            from earthvlm.data.pixels import ImageDecodeError, decode_image

            try:
                decode_image(p)
                self._decoded[p] = None
            except ImageDecodeError as e:
                self._decoded[p] = str(e)
        err = self._decoded[p]
        if err is not None:
            raise RowError("unreadable_image", err, "replace the image with an intact copy")

    def _gsd(self, p: Path, rel: str, metadata: GSD | float | None, sensor: str | None) -> GSD:
        key = (rel, metadata, sensor)
        if key in self._gsds:
            return self._gsds[key]
        georef = self.read_georef and p.suffix.lower() in _GEOREF_SUFFIXES
        try:
            # the relative path, so that only names inside the dataset are parsed for a
            # sensor; the real path when the file itself must be opened
            res = resolve_gsd(
                p if georef else rel,
                metadata_m=metadata,
                sensor=sensor or self.sensor,
                dataset=self.dataset or self.gsd_dataset,
                gsd_range_m=self.gsd_range_m,
                read_georef=georef,
            )
        except RasterError as e:
            raise RowError(
                "unreadable_image", str(e), "replace the image with an intact copy"
            ) from None
        except GSDError as e:
            raise RowError("bad_gsd", str(e), "correct the GSD value (metres per pixel)") from None
        self._gsds[key] = res.gsd
        return res.gsd

    # -- options ----------------------------------------------------------------------

    @classmethod
    def option_types(cls) -> dict[str, Any]:
        """The reader's options (constructor fields) and their types."""
        hints = typing.get_type_hints(cls)
        return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}

    @classmethod
    def option_defaults(cls) -> dict[str, Any]:
        """The reader's options and their defaults."""
        return {
            f.name: f.default
            for f in dataclasses.fields(cls)
            if f.init and f.default is not dataclasses.MISSING
        }


def coerce_option(reader: type[SourceReader], key: str, text: str) -> Any:
    """An option value given as text (``--opt key=value``), converted to its field type.

    Tried in order: the text as JSON (``[0.5, 2]``, ``true``, ``null``), the bare text
    (``1.5`` for the choice ``"1.5"``), the comma-separated parts (``0.5,2``).

    Raises:
        SourceError: For an unknown option (with "did you mean") or a value of the
            wrong type.
    """
    types = reader.option_types()
    if key not in types:
        raise SourceError(
            f"{reader.name}: unknown option {key!r}{did_you_mean(key, types)} "
            f"Options: {', '.join(sorted(types))}"
        )
    hint_type = types[key]
    adapter = TypeAdapter(hint_type)
    candidates: list[Any] = []
    with contextlib.suppress(UntrustedJSONError):
        candidates.append(loads_untrusted(text))  # [0.5, 2], true, null, 3
    candidates.append(text)  # "1.5" for a Literal["1.5"], a plain string
    if "," in text:
        candidates.append([v.strip() for v in text.split(",")])  # 0.5,2 for a tuple
    first: ValidationError | None = None
    for value in candidates:
        try:
            return adapter.validate_python(value)
        except ValidationError as e:
            first = first or e
    msg = first.errors()[0]["msg"] if first else "invalid value"
    raise SourceError(f"{reader.name}: option {key}={text!r}: {msg}")


__all__ = [
    "Problem",
    "Row",
    "RowError",
    "SkipRow",
    "SourceError",
    "SourceReader",
    "check_choice",
    "coerce_option",
    "skip",
    "validation_reason",
]
