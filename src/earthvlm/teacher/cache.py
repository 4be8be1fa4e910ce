"""The response cache: one JSON file per request, so a rerun calls each finished request zero times.

The key is a SHA-256 over the request *content* (model, messages, sampling parameters),
never over the endpoint: the same request sent to another host or port of the same
model is a hit. Only successful replies are stored; failures are retried on the next run.

Why one file per key rather than one JSONL file:

* Writers need no coordination. Many threads finish at once; each writes its own file
  atomically (:func:`earthvlm.io.atomic_write_text`), so there is no shared append
  handle to lock and no interleaved or torn line after a crash: an entry is either
  complete or absent.
* A lookup is one ``open`` of a known path; a JSONL cache would have to be read whole
  (and kept in memory) before the first request, and compacted from time to time.
* The cost is many small files; they are spread over 256 sub-folders (the first two hex
  digits of the key), which every common file system handles well into the millions.

A cache entry records the whole request (so it can be audited or re-scored), the reply
and the earthvlm version that wrote it. An entry that cannot be read, or that belongs to
another request, is reported and treated as a miss (and overwritten by the next success).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from earthvlm import __version__
from earthvlm.io import atomic_write_text

#: The ``format`` field of every cache entry; bump it when the entry layout changes.
CACHE_FORMAT = "earthvlm.chat-cache/1"
#: Entries larger than this are refused as unreadable (replies are capped far below it).
MAX_ENTRY_BYTES = 64 * 1024 * 1024


def canonical_json(obj: Any) -> str:
    """The one JSON spelling of ``obj`` that keys are hashed from (sorted keys, no spaces)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def request_key(request: Mapping[str, Any]) -> str:
    """The cache key of a request body: SHA-256 hex of its canonical JSON.

    ``request`` is the body sent to ``/chat/completions`` (model, messages, temperature,
    max_tokens and any extra parameters); the endpoint URL and the API key are not part
    of it, by design.
    """
    return hashlib.sha256(canonical_json({"v": 1, **request}).encode("utf-8")).hexdigest()


class ResponseCache:
    """Successful chat replies on disk, one JSON file per request key.

    Args:
        root: The cache folder (created on first write).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        """Where the entry of ``key`` lives: ``root/ab/abcdef....json``."""
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise ValueError(f"a cache key is 64 lower-case hex digits, got {key!r}")
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str, request: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
        """The stored reply of ``request``, and a problem found on the way.

        Returns:
            ``(reply, None)`` on a hit, ``(None, None)`` on a plain miss and
            ``(None, problem)`` when an entry exists but cannot be used (unreadable, not
            JSON, another format, another request); the caller counts the problem.
            ``reply`` has ``text`` (str), ``finish_reason`` and ``usage``.
        """
        path = self.path(key)
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_ENTRY_BYTES + 1)
        except FileNotFoundError:
            return None, None
        except OSError as e:
            return None, f"unreadable entry ({type(e).__name__})"
        if len(raw) > MAX_ENTRY_BYTES:
            return None, "oversized entry"
        try:
            entry = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return None, "corrupt entry"
        if not isinstance(entry, dict) or entry.get("format") != CACHE_FORMAT:
            return None, "entry of another format"
        if entry.get("key") != key or entry.get("request") != json.loads(canonical_json(request)):
            return None, "entry of another request"
        reply = entry.get("response")
        if not isinstance(reply, dict) or not isinstance(reply.get("text"), str):
            return None, "entry without a reply text"
        return reply, None

    def put(self, key: str, request: Mapping[str, Any], reply: Mapping[str, Any]) -> None:
        """Store a successful reply atomically (a reader sees the old entry or the new one).

        Raises:
            OSError: When the file cannot be written; the caller counts it.
        """
        entry = {
            "format": CACHE_FORMAT,
            "key": key,
            "earthvlm": __version__,
            "request": request,
            "response": dict(reply),
        }
        atomic_write_text(self.path(key), json.dumps(entry, ensure_ascii=False) + "\n")

    def __len__(self) -> int:
        """How many entries are stored (a directory walk; for tests and reports)."""
        return sum(1 for _ in self.root.glob("??/*.json")) if self.root.exists() else 0
