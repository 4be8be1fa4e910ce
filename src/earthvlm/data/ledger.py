"""The ledger: every item a stage reads is ok, skipped with a reason, or failed with one.

Stages that read items (records, images, teacher responses, model outputs) keep one
:class:`Ledger` and the counts must add up: ``read == ok + skipped + failed``. A stage
that loses an item without counting it is a bug, and :meth:`Ledger.check` says so.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from earthvlm.errors import EarthVLMError


@dataclass
class Ledger:
    """Counts of what a stage read and what became of each item.

    Attributes:
        stage: What is being counted (a file, a stage name).
        read: Items seen.
        ok: Items that passed.
        skipped: Reason -> count, for items deliberately left out (e.g. blank lines).
        failed: Reason -> count, for items rejected (quarantined) as invalid.
    """

    stage: str
    read: int = 0
    ok: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)

    def count_ok(self) -> None:
        """Count one item read and accepted."""
        self.read += 1
        self.ok += 1

    def count_skipped(self, reason: str) -> None:
        """Count one item read and deliberately left out."""
        self.read += 1
        self.skipped[reason] += 1

    def count_failed(self, reason: str) -> None:
        """Count one item read and rejected."""
        self.read += 1
        self.failed[reason] += 1

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    @property
    def n_failed(self) -> int:
        return sum(self.failed.values())

    @property
    def balanced(self) -> bool:
        """True when ``read == ok + skipped + failed``."""
        return self.read == self.ok + self.n_skipped + self.n_failed

    def check(self) -> None:
        """Raise if any item went unaccounted for (a bug in the stage, not in the data)."""
        if not self.balanced:
            raise EarthVLMError(
                f"{self.stage}: ledger does not add up: read {self.read} != ok {self.ok} + "
                f"skipped {self.n_skipped} + failed {self.n_failed}"
            )

    def merge(self, other: Ledger) -> None:
        """Add another ledger's counts to this one."""
        self.read += other.read
        self.ok += other.ok
        self.skipped.update(other.skipped)
        self.failed.update(other.failed)

    def merge_left_out(self, other: Ledger) -> None:
        """Add another ledger's skipped and failed items to this one (the items it passed
        on are counted here as they are taken)."""
        self.read += other.n_skipped + other.n_failed
        self.skipped.update(other.skipped)
        self.failed.update(other.failed)

    def summary(self) -> str:
        """One line for people: ``file.jsonl: read 10 = ok 8 + skipped 1 + failed 1 (...)``."""
        parts = [f"{self.stage}: read {self.read} = ok {self.ok}"]
        parts.append(f"skipped {self.n_skipped}")
        parts.append(f"failed {self.n_failed}")
        line = " + ".join(parts)
        reasons = {
            **{f"skipped:{k}": v for k, v in self.skipped.items()},
            **{f"failed:{k}": v for k, v in self.failed.items()},
        }
        if reasons:
            line += " (" + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) + ")"
        return line

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the counts."""
        return {
            "stage": self.stage,
            "read": self.read,
            "ok": self.ok,
            "skipped": dict(sorted(self.skipped.items())),
            "failed": dict(sorted(self.failed.items())),
        }
