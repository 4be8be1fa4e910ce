"""Reading detections back from text a model wrote: plain lines or JSON, damaged or not.

:func:`parse_detections` inverts :func:`earthvlm.data.detection_text.serialise_detections`
and reads what models actually emit. It never raises on any string, runs in time linear
in the input (capped at ``max_chars``; no regex here can backtrack catastrophically), and
accounts for every candidate object: ``candidates == ok + repaired + sum(dropped)``.

What it reads:

* ``"There is none."`` (also the release's "There are none.", any case, with or without
  the full stop, inside a code fence): no objects. ``[]`` likewise.
* Plain lines ``x1,y1,...,x4,y4 class`` or ``x1,y1,x2,y2 class``. Every non-blank line
  that is not a code fence or bare brackets is a candidate.
* JSON objects ``{"bbox_2d" | "quadrant bbox" | "quad" | "bbox" | "polygon" ...: [...],
  "label" | "class" | "category" ...: "..."}`` anywhere in the text (with or without the
  enclosing list, a code fence, or prose around them). Every ``{`` opens a candidate,
  except inside a value (``"attributes": {...}`` is skipped with its object). The
  text is read as JSON when an object holds a geometry or label key, else as lines.

Repairs (the object is kept and counted *repaired*; ``report.repairs`` counts each kind):
``single_quotes``, ``parentheses`` (instead of brackets), ``trailing_comma``,
``unclosed_bracket``, ``unclosed_object``, ``unterminated_string``, ``bad_escape``,
``unquoted_key``, ``unquoted_label``, ``quoted_numbers``, ``unbracketed`` (numbers without
a list); in plain lines ``list_marker`` ("1. ", "- "), ``separators`` (not plain commas),
``label_first`` ("plane: 1,2,3,4"), ``extra_text``, ``label_punctuation``; for classes
``class_normalised`` (case, ``_``, ``-``, spaces), ``class_plural``, ``class_fuzzy``
(:func:`difflib.get_close_matches` above ``fuzzy_cutoff``); for geometry the repairs of
:func:`earthvlm.geo.boxes.normalise_box` (``swapped_corners``, ``vertex_order``,
``clipped``) and ``hbox_as_quad`` / ``quad_as_hbox`` (the other format than ``fmt``).
Damage around the objects is counted once per text without making an object repaired:
``prose``, ``unclosed_list``, ``trailing_comma``, ``parentheses``, ``none_wording``.

Drops (``report.dropped``, reason -> count): the ``box_*`` reasons of
:func:`earthvlm.geo.boxes.normalise_box` (wrong number of values, NaN/inf, degenerate,
nothing left inside the image), ``bad_coordinates`` (non-numbers in the list),
``no_box``, ``no_label``, ``label_too_long``, ``unknown_class`` (only with a class
list), ``not_an_object`` (a line without a box), ``none_with_objects`` ("There is none."
beside objects), ``too_many_objects`` (past ``max_objects``), ``input_too_long`` (the
tail past ``max_chars``, one candidate).

Objects come back in the order written (grounding scores the first box), with
coordinates in pixels clipped to the image, quads in canonical vertex order.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from earthvlm.data.detection_text import NONE_TARGET, DetectionFormat
from earthvlm.geo.boxes import (
    BOX_WRONG_LENGTH,
    BoxKind,
    normalise_box,
    quad_to_xyxy,
    xyxy_to_quad,
)

#: Characters read at most; the rest is counted as one ``input_too_long`` candidate. No
#: model answer is longer: a whole context of 8,192 tokens (``data.max_length``) at a
#: generous 8 characters a token (detection text runs about 1.3: Qwen tokenizes digits
#: one by one). Parsing costs about 1-3 microseconds a character, so a hostile reply
#: costs at most about 0.2 s (200,000 characters took 0.6 s).
MAX_CHARS = 65_536
#: Candidate objects read at most; the rest are counted as ``too_many_objects``.
MAX_OBJECTS = 5_000
#: Longer labels are dropped (``label_too_long``): prose, not a class name.
MAX_LABEL_CHARS = 100
#: Similarity (:class:`difflib.SequenceMatcher` ratio) a misspelt class name needs.
FUZZY_CUTOFF = 0.8

ParseStyle = Literal["blank", "none", "plain", "json"]

_GEOMETRY_KEYS = frozenset(
    {"bbox 2d", "box 2d", "bbox", "box", "quadrant bbox", "quad", "quad bbox", "polygon", "poly"}
)
_KINDS: dict[int, BoxKind] = {4: "xyxy", 8: "quad"}
_LABEL_KEYS = frozenset({"label", "class", "class name", "category", "name", "object"})
_NONE_PHRASES = ("there is none", "there are none")

# Every pattern below is linear: alternatives start with disjoint characters and no
# quantified group can match the same text in two ways.
_FENCE = re.compile(r"```[\w-]*")
_BRACKETS_ONLY = re.compile(r"[\[\](){},;.\s]*")
_KEY_SEPARATORS = re.compile(r"[\s_\-]+")
_LIST_MARKER = re.compile(r"(?:[-*•]|\d{1,3}[.)])[ \t]+")
# a number not glued to a word ("x1" holds none)
_NUM = re.compile(r"(?<![^\W\d])[-+]?(?:\d+(?:\.\d*)?|\.\d+)")
_GAP = re.compile(r"[\s,;()\[\]]+")
_TOKEN = re.compile(
    r"""
      (?P<dq>"(?:[^"\\\n]|\\.)*(?P<dq_end>")?)    # string (unterminated at a line end)
    | (?P<sq>'(?:[^'\\\n]|\\.)*(?P<sq_end>')?)
    | (?P<num>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)
    | (?P<word>[^\W\d]\w*(?:[ \t]+[^\W\d]\w*)*)    # bare words: keys, labels, prose
    | (?P<punct>[{}\[\]():,])
    """,
    re.VERBOSE,
)
_JSON_STRING = json.JSONDecoder(strict=False)


class ParsedObject(NamedTuple):
    """One object read back: its class and its box (8 quad values or 4 ``xyxy``), in px."""

    label: str
    coords: tuple[float, ...]


@dataclass
class ParseReport:
    """What the parser made of one text; every candidate is ok, repaired or dropped.

    Attributes:
        style: How the text was read: ``none`` (the empty-image target), ``json``,
            ``plain``, or ``blank`` (nothing but white space).
        candidates: Candidate objects (see the module docstring for what counts).
        ok: Kept as written.
        repaired: Kept after at least one repair.
        dropped: Reason -> number of candidates left out.
        repairs: Repair -> count over the kept objects (one object may have several),
            plus, once per text, the damage around the objects.
        truncated_chars: Characters past ``max_chars``, not read.
    """

    style: ParseStyle = "blank"
    candidates: int = 0
    ok: int = 0
    repaired: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    repairs: Counter[str] = field(default_factory=Counter)
    truncated_chars: int = 0

    @property
    def n_dropped(self) -> int:
        return sum(self.dropped.values())

    @property
    def balanced(self) -> bool:
        """True when ``candidates == ok + repaired + n_dropped`` (always, unless a bug)."""
        return self.candidates == self.ok + self.repaired + self.n_dropped


@dataclass
class ParsedDetections:
    """The objects read from a text, in the order written, and the report."""

    objects: list[ParsedObject]
    report: ParseReport


# -- class names -----------------------------------------------------------------------


def _class_key(s: str) -> str:
    """Lower case, ``_`` / ``-`` / runs of white space as one space, outer punctuation off."""
    return _KEY_SEPARATORS.sub(" ", s.lower()).strip(" .,;:!?\"'")


def _singular_forms(key: str) -> list[str]:
    """The singulars a plural key may stand for (ships, buses, lorries)."""
    head, _, last = key.rpartition(" ")
    forms = []
    if last.endswith("ies") and len(last) > 3:
        forms.append(last[:-3] + "y")
    if last.endswith("es") and len(last) > 2:
        forms.append(last[:-2])
    if last.endswith("s") and not last.endswith("ss") and len(last) > 1:
        forms.append(last[:-1])
    return [f"{head} {f}" if head else f for f in forms]


class _ClassMatcher:
    """Maps what a model wrote to a known class name: exact, normalised, plural, fuzzy."""

    def __init__(self, classes: Sequence[str], cutoff: float) -> None:
        self.exact = set(classes)
        self.cutoff = cutoff
        self.by_key: dict[str, str] = {}
        for c in classes:
            self.by_key.setdefault(_class_key(c), c)
        self.cache: dict[str, tuple[str, str] | None] = {}

    def match(self, label: str) -> tuple[str, str | None] | None:
        """``(class, repair or None)``, or None for an unknown class."""
        if label in self.exact:
            return label, None
        if label not in self.cache:
            self.cache[label] = self._match(_class_key(label))
        return self.cache[label]

    def _match(self, key: str) -> tuple[str, str] | None:
        if key in self.by_key:
            return self.by_key[key], "class_normalised"
        for form in _singular_forms(key):  # a plural label, a singular class name
            if form in self.by_key:
                return self.by_key[form], "class_plural"
        # difflib is quadratic in the length, and too lenient on very short strings
        if 3 <= len(key) <= 2 * MAX_LABEL_CHARS // 3:
            close = difflib.get_close_matches(key, list(self.by_key), n=1, cutoff=self.cutoff)
            if close:
                return self.by_key[close[0]], "class_fuzzy"
        return None


# -- plain lines -----------------------------------------------------------------------


def _fit(nums: list[re.Match[str]], gaps: list[str]) -> list[re.Match[str]] | None:
    """The numbers of a run that make a box: all 4 or 8, or the first 8 or 4 when a
    space without a comma follows them (a class name that starts with a digit)."""
    if len(nums) in (4, 8):
        return nums
    for k in (8, 4):
        if len(nums) > k and "," not in gaps[k - 1]:
            return nums[:k]
    return None


def _parse_line(line: str) -> tuple[str, list[float], set[str]] | str:
    """``(label, values, repairs)`` of one stripped plain line, or the reason it is none."""
    repairs: set[str] = set()
    marker = _LIST_MARKER.match(line)
    if marker:
        line = line[marker.end() :]
        repairs.add("list_marker")
    runs: list[tuple[list[re.Match[str]], list[str]]] = []
    prev: re.Match[str] | None = None
    for m in _NUM.finditer(line):
        gap = line[prev.end() : m.start()] if prev is not None else ""
        if prev is not None and _GAP.fullmatch(gap):
            runs[-1][0].append(m)
            runs[-1][1].append(gap)
        else:
            runs.append(([m], []))
        prev = m
    if not runs:
        return "not_an_object"
    for nums, gaps in runs:
        box = _fit(nums, gaps)
        if box is not None:
            break
    else:
        return BOX_WRONG_LENGTH
    if any(g != "," for g in gaps[: len(box) - 1]):
        repairs.add("separators")
    after = line[box[-1].end() :].lstrip(" \t,;:)]}").rstrip()
    label = after.rstrip(".,;:").rstrip()
    if label != after:
        repairs.add("label_punctuation")
    prefix = line[: box[0].start()].strip().rstrip(":=-([{ \t")
    if prefix and not label:
        label = prefix
        repairs.add("label_first")
    elif prefix:
        repairs.add("extra_text")
    return label, [float(m.group()) for m in box], repairs


# -- JSON ------------------------------------------------------------------------------


class _Token(NamedTuple):
    kind: str  # "s" string, "n" number, "w" bare word, or the punctuation itself
    value: Any  # str for "s" and "w", float for "n"
    start: int
    end: int
    flag: str | None = None  # a string's damage: single_quotes, unterminated_string, ...


def _tokens(text: str) -> list[_Token]:
    out = []
    for m in _TOKEN.finditer(text):
        tok = m.group()
        kind = next(k for k in ("dq", "sq", "num", "word", "punct") if m.group(k) is not None)
        if kind == "dq" or kind == "sq":
            quote = tok[0]
            closed = m.group(kind + "_end") is not None
            flag = None if quote == '"' else "single_quotes"
            if not closed:
                value, flag = tok[1:], "unterminated_string"
            elif quote == '"':
                try:
                    value = _JSON_STRING.decode(tok)
                except ValueError:
                    value, flag = tok[1:-1], "bad_escape"
            else:
                value = tok[1:-1].replace("\\'", "'").replace('\\"', '"')
            out.append(_Token("s", value, m.start(), m.end(), flag))
        elif kind == "num":
            out.append(_Token("n", float(tok), m.start(), m.end()))
        elif kind == "word":
            out.append(_Token("w", tok, m.start(), m.end()))
        else:
            out.append(_Token(tok, tok, m.start(), m.end()))
    return out


@dataclass
class _Candidate:
    label: str | None = None
    values: list[float] | None = None
    bad_values: bool = False
    repairs: set[str] = field(default_factory=set)


class _JsonReader:
    """One pass over the tokens: every ``{`` starts a candidate, keys fill it in."""

    def __init__(self, text: str, limit: int) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.limit = limit
        self.found: list[_Candidate] = []
        self.overflow = 0
        self.text_repairs: set[str] = set()
        self.saw_key = False

    def _is_key(self, k: int) -> bool:
        toks = self.toks
        return toks[k].kind in ("s", "w") and k + 1 < len(toks) and toks[k + 1].kind == ":"

    def _next_is(self, k: int, kinds: tuple[str, ...]) -> bool:
        return k + 1 < len(self.toks) and self.toks[k + 1].kind in kinds

    def read(self) -> None:
        toks, n = self.toks, len(self.toks)
        cur: _Candidate | None = None
        outer = 0  # open brackets around the objects
        span: list[int] = []  # start and end of the JSON part, for "prose" around it
        i = 0
        while i < n:
            tok = toks[i]
            if tok.kind == "{":
                if cur is not None:
                    cur.repairs.add("unclosed_object")
                elif not span:
                    j = i
                    while j > 0 and toks[j - 1].kind in ("[", "("):
                        j -= 1
                        outer += 1
                        if toks[j].kind == "(":
                            self.text_repairs.add("parentheses")
                    span = [toks[j].start, tok.end]
                if len(self.found) < self.limit:
                    cur = _Candidate()
                    self.found.append(cur)
                else:
                    self.overflow += 1
                    cur = _Candidate()  # read and thrown away
            elif tok.kind == "}":
                if cur is not None:
                    cur = None
                    span[1] = tok.end
            elif cur is None:
                if not span:
                    pass
                elif tok.kind in ("[", "("):
                    outer += 1
                elif tok.kind in ("]", ")"):
                    if outer:
                        outer -= 1
                        span[1] = tok.end
                elif tok.kind == ",":
                    if self._next_is(i, ("]", ")")):
                        self.text_repairs.add("trailing_comma")
                elif tok.kind in ("s", "n", "w"):
                    self.text_repairs.add("prose")
            elif self._is_key(i):
                key = _class_key(tok.value)
                self.saw_key = self.saw_key or key in _GEOMETRY_KEYS or key in _LABEL_KEYS
                if tok.kind == "w":
                    cur.repairs.add("unquoted_key")
                elif tok.flag:
                    cur.repairs.add(tok.flag)
                i = self._value(i + 2, key, cur)
                continue
            elif tok.kind == "," and self._next_is(i, ("}",)):
                cur.repairs.add("trailing_comma")
            i += 1
        if cur is not None:
            cur.repairs.add("unclosed_object")
            span[1] = len(self.text)
        if outer > 0:
            self.text_repairs.add("unclosed_list")
        if span:
            around = self.text[: span[0]] + " " + self.text[span[1] :]
            if _FENCE.sub("", around).strip():
                self.text_repairs.add("prose")

    def _value(self, j: int, key: str, cur: _Candidate) -> int:
        """Read the value at token ``j`` into ``cur``; the index after it."""
        toks, n = self.toks, len(self.toks)
        if j >= n:
            return j
        tok = toks[j]
        if key in _GEOMETRY_KEYS and cur.values is None and not cur.bad_values:
            if tok.kind in ("[", "("):
                return self._numbers(j, cur)
            if tok.kind == "n":
                k, values = j, []
                while k < n and toks[k].kind in ("n", ","):
                    if toks[k].kind == "n":
                        values.append(toks[k].value)
                    k += 1
                cur.values = values
                cur.repairs.add("unbracketed")
                return k
            if tok.kind == "s" and _NUM.search(tok.value):  # "bbox_2d": "10, 10, 50, 30"
                cur.values = [float(v) for v in _NUM.findall(tok.value)]
                cur.repairs.add("quoted_numbers")
                return j + 1
            cur.bad_values = True
        elif key in _LABEL_KEYS and cur.label is None and not self._is_key(j):
            if tok.kind == "s":
                cur.label = tok.value
                if tok.flag:
                    cur.repairs.add(tok.flag)
                return j + 1
            if tok.kind == "w":
                cur.label = tok.value
                cur.repairs.add("unquoted_label")
                return j + 1
        return self._skip(j)

    def _numbers(self, j: int, cur: _Candidate) -> int:
        """Read a (possibly nested, possibly unclosed) list of numbers starting at ``j``."""
        toks, n = self.toks, len(self.toks)
        depth, k, values = 0, j, []
        while k < n:
            tok = toks[k]
            if tok.kind in ("[", "(", "]", ")"):
                if tok.kind in ("(", ")"):
                    cur.repairs.add("parentheses")
                depth += 1 if tok.kind in ("[", "(") else -1
                if depth == 0:
                    k += 1
                    break
            elif tok.kind == "n":
                values.append(tok.value)
            elif tok.kind == ",":
                if self._next_is(k, ("]", ")")):
                    cur.repairs.add("trailing_comma")
            elif tok.kind in ("{", "}") or self._is_key(k):
                cur.repairs.add("unclosed_bracket")
                break
            elif tok.kind == "s":
                try:
                    values.append(float(tok.value))
                    cur.repairs.add("quoted_numbers")
                except ValueError:
                    cur.bad_values = True
            else:  # null, true, a stray ":"
                cur.bad_values = True
            k += 1
        else:
            cur.repairs.add("unclosed_bracket")
        cur.values = values
        return k

    def _skip(self, j: int) -> int:
        """Skip an uninteresting value: the index of what follows it."""
        toks, n = self.toks, len(self.toks)
        depth, k = 0, j
        while k < n:
            kind = toks[k].kind
            if kind in ("[", "(", "{"):
                depth += 1
            elif kind in ("]", ")", "}"):
                if depth == 0:
                    return k  # the object's own "}": the caller closes it
                depth -= 1
            elif depth == 0 and kind == ",":
                return k + 1
            elif depth == 0 and k > j and self._is_key(k):
                return k
            k += 1
        return n


# -- the parser ------------------------------------------------------------------------


class _Collector:
    """Turns candidates into objects or drops, keeping the report's counts."""

    def __init__(
        self,
        report: ParseReport,
        width: float,
        height: float,
        fmt: DetectionFormat,
        matcher: _ClassMatcher | None,
    ) -> None:
        self.report, self.width, self.height = report, width, height
        self.fmt, self.matcher = fmt, matcher
        self.objects: list[ParsedObject] = []

    def drop(self, reason: str, n: int = 1) -> None:
        self.report.candidates += n
        self.report.dropped[reason] += n

    def add(self, label: str | None, values: list[float] | None, repairs: set[str]) -> None:
        if values is None:
            return self.drop("no_box")
        kind = _KINDS.get(len(values))
        if kind is None:
            return self.drop(BOX_WRONG_LENGTH)
        fix = normalise_box(values, kind, width=self.width, height=self.height)
        if fix.values is None:
            return self.drop(fix.problem or "box_invalid")
        label = (label or "").strip()
        if "\n" in label or "\r" in label:
            label = " ".join(label.split())
        if not label:
            return self.drop("no_label")
        if len(label) > MAX_LABEL_CHARS:
            return self.drop("label_too_long")
        if self.matcher is not None:
            matched = self.matcher.match(label)
            if matched is None:
                return self.drop("unknown_class")
            label, how = matched
            if how:
                repairs.add(how)
        repairs.update(fix.repairs)
        coords = fix.values
        if self.fmt == "quad" and kind == "xyxy":
            coords = tuple(float(v) for v in xyxy_to_quad(coords).reshape(-1))
            repairs.add("hbox_as_quad")
        elif self.fmt == "hbox" and kind == "quad":
            coords = tuple(float(v) for v in quad_to_xyxy(coords))
            repairs.add("quad_as_hbox")
        self.report.candidates += 1
        if repairs:
            self.report.repaired += 1
            self.report.repairs.update(repairs)
        else:
            self.report.ok += 1
        self.objects.append(ParsedObject(label, coords))


def _is_none_phrase(text: str) -> bool:
    s = _FENCE.sub("", text).strip().rstrip(".!").rstrip().lower()
    return s in _NONE_PHRASES


def _check_args(
    width: float,
    height: float,
    classes: Sequence[str] | None,
    fmt: str,
    caps: tuple[int, int],
    cutoff: float,
) -> None:
    if fmt not in ("quad", "hbox"):
        raise ValueError(f"fmt must be 'quad' or 'hbox', got {fmt!r}")
    try:
        size_ok = all(math.isfinite(float(v)) and float(v) > 0 for v in (width, height))
    except (TypeError, ValueError):
        size_ok = False
    if not size_ok:
        raise ValueError(f"width and height must be finite and positive, got {width}, {height}")
    if classes is not None and (
        isinstance(classes, str) or not all(isinstance(c, str) and c.strip() for c in classes)
    ):
        raise ValueError(f"classes must be a list of non-empty names, got {classes!r}")
    if min(caps) < 1:
        raise ValueError(f"max_chars and max_objects must be at least 1, got {caps}")
    if not 0 <= cutoff <= 1:
        raise ValueError(f"fuzzy_cutoff must be in [0, 1], got {cutoff}")


def parse_detections(
    text: str | bytes | None,
    *,
    width: float,
    height: float,
    classes: Sequence[str] | None = None,
    fmt: DetectionFormat = "quad",
    max_chars: int = MAX_CHARS,
    max_objects: int = MAX_OBJECTS,
    fuzzy_cutoff: float = FUZZY_CUTOFF,
) -> ParsedDetections:
    """Read the objects a model wrote, repairing what can be repaired and counting the rest.

    Args:
        text: The model's answer (None or bytes are read as empty or UTF-8 text).
        width: Width in pixels of the image the coordinates refer to.
        height: Its height in pixels.
        classes: The known class names; a label is mapped to one of them (exact, then
            case / separators, plural, close spelling) or dropped as ``unknown_class``.
            None keeps every non-empty label as written.
        fmt: The geometry returned: ``"quad"`` (8 values, canonical vertex order) or
            ``"hbox"`` (``x1, y1, x2, y2``); the other kind is converted.
        max_chars: Characters read at most.
        max_objects: Candidate objects read at most.
        fuzzy_cutoff: The similarity a misspelt class name needs (0..1).

    Returns:
        The objects in the order written and a :class:`ParseReport`. For the text of
        ``serialise_detections(objects, fmt, style)`` the objects are exactly the
        serialised ones (integers, canonical, sorted) and all count as ok.

    Raises:
        ValueError: For bad arguments (size, format, classes, caps); never for the text.
        TypeError: When ``text`` is not a string, bytes or None.
    """
    if classes is not None and not isinstance(classes, str):
        classes = list(classes)
    _check_args(width, height, classes, fmt, (max_chars, max_objects), fuzzy_cutoff)
    if text is None:
        text = ""
    elif isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8", errors="replace")
    elif not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    report = ParseReport()
    matcher = _ClassMatcher(classes, fuzzy_cutoff) if classes is not None else None
    out = _Collector(report, float(width), float(height), fmt, matcher)
    if len(text) > max_chars:
        report.truncated_chars = len(text) - max_chars
        text = text[:max_chars]
        out.drop("input_too_long")
    stripped = text.strip()
    if not stripped:
        return ParsedDetections(out.objects, report)
    if stripped == NONE_TARGET or (len(stripped) < 64 and _is_none_phrase(stripped)):
        report.style = "none"
        if stripped != NONE_TARGET:
            report.repairs["none_wording"] += 1
        return ParsedDetections(out.objects, report)
    if "{" in text:
        reader = _JsonReader(text, max_objects)
        reader.read()
        if reader.saw_key:
            report.style = "json"
            for c in reader.found:
                if c.bad_values:
                    out.drop("bad_coordinates")
                else:
                    out.add(c.label, c.values, c.repairs)
            if reader.overflow:
                out.drop("too_many_objects", reader.overflow)
            report.repairs.update(reader.text_repairs)
            return ParsedDetections(out.objects, report)
    report.style = "plain"
    seen = 0
    for raw in text.splitlines():
        line = raw.strip()
        if not line or _FENCE.fullmatch(line) or _BRACKETS_ONLY.fullmatch(line):
            continue
        seen += 1
        if seen > max_objects:
            out.drop("too_many_objects")
        elif _is_none_phrase(line):
            out.drop("none_with_objects")
        else:
            got = _parse_line(line)
            if isinstance(got, str):
                out.drop(got)
            else:
                out.add(*got)
    if seen == 0 and report.candidates == 0 and "[" in text:
        report.style = "json"  # "[]": an empty JSON list
    return ParsedDetections(out.objects, report)


__all__ = [
    "FUZZY_CUTOFF",
    "MAX_CHARS",
    "MAX_LABEL_CHARS",
    "MAX_OBJECTS",
    "ParseReport",
    "ParseStyle",
    "ParsedDetections",
    "ParsedObject",
    "parse_detections",
]
