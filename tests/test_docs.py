"""The numbers the docs quote match the code and the committed results
(``scripts/check_docs.py``), so a rerun or a changed default cannot leave them stale."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check_docs.py"


def _load():
    spec = importlib.util.spec_from_file_location("check_docs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_quoted_number_matches_its_source() -> None:
    check = _load()
    assert sum(1 for _ in check.checks()) > 25
    assert check.mismatches() == []


def test_a_drifted_number_is_caught(tmp_path: Path, monkeypatch) -> None:
    check = _load()
    doc = tmp_path / "micro.md"
    text = check.MICRO_DOC.read_text(encoding="utf-8")
    doc.write_text(text.replace("0.927", "0.929"), encoding="utf-8")
    monkeypatch.setattr(check, "MICRO_DOC", doc)
    bad = check.mismatches()
    assert bad and all("0.927" in line for line in bad)
