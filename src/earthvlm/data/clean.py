"""Rule-based text cleaning (RSCoVLM sec. III-B2, "Data Processing and Integrating").

The paper's offline step removes "redundant punctuation and spaces" and corrects
"typographical errors" in the integrated data; it gives no rule list, so these are ours,
each small, named and counted:

* ``trailing_spaces``: spaces or tabs before a line break are removed;
* ``duplicate_spaces``: two or more spaces or tabs between two visible characters become
  one space (indentation at a line start is left alone);
* ``space_before_punct``: ``"none ."`` -> ``"none."``;
* ``duplicate_punct``: ``",,"`` / ``"!!"`` / ``"??"`` ... -> one; ``".."`` -> ``"."``
  (an ellipsis ``"..."`` is kept);
* ``typos``: the words of :data:`TYPOS`, whole words only, keeping a leading capital.

Numbers and box coordinates are never changed: no rule edits punctuation or spaces
that touch a digit (``3 .5``, ``1..2`` and ``1,,2`` stay as they are), text inside a
code fence (```` ```json ... ``` ````, the JSON detection targets) is copied as it is,
and every rule's result is checked: if the digit tokens of a text changed, that rule's
edit is reverted and counted as ``reverted:<rule>`` (a bug, not data). Cleaning twice
changes nothing more (the tests check both properties on random text).

:class:`CleanReport` counts the edits per rule over everything cleaned, and how many
texts and records changed. Cleaning a record covers every text part of every message
and the box labels (a grounding box's label is its expression, repeated in the target:
both must change alike).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from earthvlm.data.record import Message, Record, TextPart

#: Common misspellings in remote-sensing captions and questions -> the correct word.
#: Lower case; matched as whole words, case-insensitively, keeping a leading capital.
#: British spellings (harbour, colour) are not typos and are not listed.
TYPOS: dict[str, str] = {
    "teh": "the",
    "adn": "and",
    "buliding": "building",
    "buildng": "building",
    "bulding": "building",
    "buidling": "building",
    "vehical": "vehicle",
    "vehicel": "vehicle",
    "vechicle": "vehicle",
    "vehicels": "vehicles",
    "residental": "residential",
    "airplance": "airplane",
    "aeroplan": "aeroplane",
    "seperate": "separate",
    "occured": "occurred",
    "recieve": "receive",
    "farmand": "farmland",
    "parkling": "parking",
}

_DIGIT_TOKENS = re.compile(r"\d+")
#: Passes over the rules at most (two almost always suffice).
_MAX_PASSES = 8
_FENCE = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
_TYPO = re.compile(r"\b(" + "|".join(sorted(TYPOS, key=len, reverse=True)) + r")\b", re.I)


def _typo(m: re.Match[str]) -> str:
    word = m.group(0)
    fixed = TYPOS[word.lower()]
    return fixed[0].upper() + fixed[1:] if word[0].isupper() else fixed


def _dedupe(m: re.Match[str]) -> str:
    return m.group(1) or "."


_Replacement = str | Callable[[re.Match[str]], str]
#: (rule name, pattern, replacement), applied in this order. No pattern edits next to a
#: digit: the lookarounds keep ``1,,2``, ``3 .5`` and ``1..2`` as they are.
_RULES: tuple[tuple[str, re.Pattern[str], _Replacement], ...] = (
    ("trailing_spaces", re.compile(r"[ \t]+(?=\n)"), ""),
    ("duplicate_spaces", re.compile(r"(?<=\S)[ \t]{2,}(?=\S)"), " "),
    ("space_before_punct", re.compile(r"(?<=[^\s\d])[ \t]+([,.;:!?])(?![\d.])"), r"\1"),
    ("duplicate_punct", re.compile(r"(?<![\d.])(?:([,;:!?])\1+|\.\.(?!\.))(?![\d.])"), _dedupe),
    ("typos", _TYPO, _typo),
)

#: The rules, in the order they are applied.
RULES: tuple[str, ...] = tuple(name for name, _, _ in _RULES)


@dataclass
class CleanReport:
    """What cleaning changed.

    Attributes:
        counts: Rule -> number of edits (``reverted:<rule>`` for edits undone because
            they would have changed a number; never expected).
        texts: Texts looked at.
        texts_changed: Texts that changed.
        records: Records looked at.
        records_changed: Records with at least one changed text or label.
    """

    counts: Counter[str] = field(default_factory=Counter)
    texts: int = 0
    texts_changed: int = 0
    records: int = 0
    records_changed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "counts": dict(sorted(self.counts.items())),
            "texts": self.texts,
            "texts_changed": self.texts_changed,
            "records": self.records,
            "records_changed": self.records_changed,
        }

    def summary(self) -> str:
        """One line for people: ``cleaned 3/10 texts (typos 2, duplicate_spaces 1)``."""
        edits = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        line = f"cleaned {self.texts_changed}/{self.texts} texts"
        if self.records:
            line += f" in {self.records_changed}/{self.records} records"
        return line + (f" ({edits})" if edits else "")


def _check_rules(rules: Sequence[str]) -> None:
    unknown = [r for r in rules if r not in RULES]
    if unknown:
        raise ValueError(f"rules={list(rules)}: unknown rule(s) {unknown}; choose from {RULES}")


def _clean_segment(text: str, rules: Sequence[str], counts: Counter[str]) -> str:
    # one rule's edit can make work for another (": .." -> ": ." -> ":."): repeat the
    # rules until nothing changes, so that cleaning twice changes nothing more
    for _ in range(_MAX_PASSES):
        before = text
        for name, pattern, repl in _RULES:
            if name not in rules:
                continue
            new, n = pattern.subn(repl, text)
            if not n or new == text:
                continue
            if _DIGIT_TOKENS.findall(new) != _DIGIT_TOKENS.findall(text):
                counts[f"reverted:{name}"] += n  # a rule that would change a number: a bug
                continue
            counts[name] += n
            text = new
        if text == before:
            break
    return text


def clean_text(
    text: str, *, rules: Sequence[str] = RULES, report: CleanReport | None = None
) -> str:
    """One text with the cleaning rules applied (see the module docstring).

    Args:
        text: Any text: a question, an answer, a caption, a detection target.
        rules: The rules to apply (default: all of :data:`RULES`).
        report: Edits are added to this report's counts, when given.

    Returns:
        The cleaned text; code fences and numbers are left exactly as they were.

    Raises:
        ValueError: For an unknown rule name.
    """
    _check_rules(rules)
    counts: Counter[str] = Counter()
    pieces: list[str] = []
    end = 0
    for fence in _FENCE.finditer(text):  # code fences are copied as they are
        pieces.append(_clean_segment(text[end : fence.start()], rules, counts))
        pieces.append(fence.group(0))
        end = fence.end()
    pieces.append(_clean_segment(text[end:], rules, counts))
    out = "".join(pieces)
    if report is not None:
        report.texts += 1
        report.texts_changed += out != text
        report.counts.update(counts)
    return out


def clean_record(
    record: Record, *, rules: Sequence[str] = RULES, report: CleanReport | None = None
) -> Record:
    """A copy of ``record`` with every message text and box label cleaned.

    The record is not mutated; an unchanged record is returned as it is.
    """
    _check_rules(rules)
    before = report.texts_changed if report is not None else 0
    local = report if report is not None else CleanReport()
    messages = []
    for m in record.messages:
        if isinstance(m.content, str):
            content: Any = clean_text(m.content, rules=rules, report=local)
        else:
            content = [
                TextPart(text=clean_text(p.text, rules=rules, report=local))
                if isinstance(p, TextPart)
                else p
                for p in m.content
            ]
        messages.append(Message(role=m.role, content=content))
    boxes = []
    for b in record.boxes:
        label = clean_text(b.label, rules=rules, report=local)
        boxes.append(b if label == b.label else b.model_copy(update={"label": label}))
    changed = local.texts_changed > before
    local.records += 1
    local.records_changed += changed
    if not changed:
        return record
    return record.model_copy(update={"messages": messages, "boxes": boxes})


def clean_records(
    records: Iterable[Record], *, rules: Sequence[str] = RULES
) -> tuple[list[Record], CleanReport]:
    """Clean many records; returns the cleaned copies and one report over all of them."""
    report = CleanReport()
    return [clean_record(r, rules=rules, report=report) for r in records], report


__all__ = ["RULES", "TYPOS", "CleanReport", "clean_record", "clean_records", "clean_text"]
