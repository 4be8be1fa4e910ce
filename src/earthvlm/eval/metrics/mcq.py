"""Multiple-choice answers: letter extraction and micro / macro scores.

Three extractors, all returning a :class:`Choice` (a set of letters, empty with a reason
when nothing usable was found):

* :func:`extract_xlrs`: XLRS-Bench's published rule. Strip "The answer is"-style
  prefixes; a response without an uppercase A-E yields nothing; otherwise take the
  letters in ``(X)``, else the standalone letters, else every a-e letter. The release
  (lmms-eval ``xlrs`` task) writes the "standalone" regex with both anchors optional,
  so it matches *every* a-e letter (``"B. Forest"`` -> {B, E}); ``release=True``
  reproduces that, the default follows the rule as described.
* :func:`extract_omniearth`: OmniEarth-Bench's rule: the same steps with a longer
  prefix list. Its release still searches only A-E although questions have up to eight
  options (so the final "unable to decide" option F..H can never be extracted);
  the default searches the letters of the item's options, ``release=True`` only A-E.
* :func:`extract_choice`: the project's extractor. It reads bare letters and letter
  lists (also alone on the first line, before an explanation), answer declarations
  (``"the answer is B"``, ``"答案是B"``: the last one wins, so a corrected answer
  counts), leading markers (``"B. forest"``, ``"(B) forest"``, ``"B。"``), mentions
  (``"option (B)"``, a letter set in Chinese or Japanese text) and, given the options,
  the option text; it returns nothing, with a reason, when the response is ambiguous
  (two letters for a single answer, a negated verbose answer, no letter) rather than
  guessing.

Scoring (:func:`score_choices`): an item is correct iff the extracted set equals the
answer set; an empty extraction counts as wrong and as a failed item in the ledger.
Micro = correct over all items, macro = mean accuracy over the named subtasks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from earthvlm.data.ledger import Ledger
from earthvlm.data.letters import OPTION_LETTERS, answer_letters
from earthvlm.eval.metrics._common import (
    AccuracyTable,
    accuracy_table,
    check_lengths,
    check_text,
    group_names,
    json_float,
    mean,
    new_ledger,
    ratio,
)

LETTERS = OPTION_LETTERS

#: Prefixes the XLRS-Bench release strips. (It lists two more entries whose missing
#: commas fuse them into strings no response contains; they are left out here.)
XLRS_PREFIXES: tuple[str, ...] = (
    "The best answer is",
    "The correct answer is",
    "The answer is",
    "The answer",
)
#: Prefixes the OmniEarth-Bench release strips.
OMNIEARTH_PREFIXES: tuple[str, ...] = (
    *XLRS_PREFIXES,
    "The best option is",
    "The correct option is",
    "Best answer:",
    "Best option:",
)
#: The 13 XLRS-Bench VQA subtasks ("L2/L3" category strings) the macro score averages.
XLRS_SUBTASKS: tuple[str, ...] = (
    "Complex reasoning/Anomaly Detection and Interpretation",
    "Complex reasoning/Environmental condition reasoning",
    "Complex reasoning/Route planning",
    "Counting/Counting with changing detection",
    "Counting/Counting with complex reasoning",
    "Counting/Overall counting",
    "Counting/Regional counting",
    "Land use classification/Overall Land use classification",
    "Land use classification/Regional Land use classification",
    "Object properties/Object classification",
    "Object properties/Object color",
    "Object properties/Object motion state",
    "Object spatial relationship/Object spatial relationship",
)
#: OmniEarth-Bench's last option in every question.
UNABLE_TO_DECIDE = "unable to decide"


@dataclass(frozen=True)
class Choice:
    """The letters read from one response.

    Attributes:
        letters: Upper-case option letters; empty when nothing usable was found.
        reason: Why ``letters`` is empty (None when letters were found).
    """

    letters: frozenset[str]
    reason: str | None = None

    @property
    def ok(self) -> bool:
        """True when at least one letter was extracted."""
        return bool(self.letters)

    def __str__(self) -> str:
        return "".join(sorted(self.letters))


def _none(reason: str) -> Choice:
    return Choice(frozenset(), reason)


def _letter_range(n_options: int) -> str:
    if not 2 <= n_options <= len(LETTERS):
        raise ValueError(
            f"n_options must be between 2 and {len(LETTERS)}, got {n_options}; "
            "pass the number of options of the question"
        )
    return LETTERS[:n_options]


def _regex_rule(text: str | None, prefixes: Sequence[str], letters: str, release: bool) -> Choice:
    """The XLRS-Bench / OmniEarth-Bench extraction steps over ``letters``."""
    if text is None:
        return _none("no response")
    s = text.strip()
    for prefix in prefixes:
        s = s.replace(prefix, "")
    upper = f"[{letters}]"
    both = f"[{letters}{letters.lower()}]"
    if not re.search(upper, s):
        return _none(f"no upper-case letter {letters[0]}-{letters[-1]}")
    found = re.findall(rf"\(({both})\)", s)
    if not found:
        if release:
            # the release's (?:^|\s)?([a-eA-E])(?:$|[\s,.])? has both anchors optional
            found = re.findall(both, s)
        else:
            found = re.findall(rf"(?<![A-Za-z0-9])({both})(?![A-Za-z0-9])", s)
    if not found:
        found = re.findall(both, s)
    return Choice(frozenset(f.upper() for f in found))


def extract_xlrs(text: str | None, *, release: bool = False) -> Choice:
    """Letters by XLRS-Bench's rule (see the module docstring).

    Args:
        text: The model's response (None for a missing one).
        release: Reproduce the released regex, whose "standalone letter" step matches
            every a-e letter.

    Returns:
        The letter set; empty, with a reason, when the response has no upper-case A-E.
    """
    return _regex_rule(text, XLRS_PREFIXES, "ABCDE", release)


def extract_omniearth(text: str | None, *, n_options: int = 5, release: bool = False) -> Choice:
    """Letters by OmniEarth-Bench's rule (see the module docstring).

    Args:
        text: The model's response (None for a missing one).
        n_options: Options of the question (the last is "unable to decide").
        release: Search A-E only, as the release does whatever the option count.

    Returns:
        The letter set; empty, with a reason, when no upper-case option letter is found.

    Raises:
        ValueError: If ``n_options`` is outside 2..10.
    """
    letters = "ABCDE" if release else _letter_range(n_options)
    return _regex_rule(text, OMNIEARTH_PREFIXES, letters, release)


# -- the project's extractor --------------------------------------------------------------

_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.S | re.I)
_ANSWER_TAG = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.S | re.I)
_PREFIX = re.compile(
    r"^(?:(?:so|thus|therefore|hence)\s*,?\s*)?"
    r"(?:(?:the|my)\s+)?(?:best\s+|correct\s+|final\s+|right\s+)?"
    r"(?:answer|option|choice)(?:s|\(s\))?(?![a-z])"
    r"(?:\s+(?:is|are|would\s+be|should\s+be)(?:\(are\))?)?\s*[:\-]?\s*"
    r"|^i\s+(?:would\s+)?(?:choose|pick|select)\s*:?\s*",
    re.I,
)
_LIST_SEP = r"(?:\s*(?:,|;|/|&|\band\b|\s|[，、；和])\s*)"
#: Brackets, ASCII and full-width (CJK text writes （B） and 【B】).
_OPEN, _CLOSE = r"[\(\[（【]", r"[\)\]）】]"
_ONE = rf"{_OPEN}?[A-Za-z]{_CLOSE}?"
_LETTER_LIST = re.compile(rf"{_ONE}(?:{_LIST_SEP}{_ONE})*\s*[.!。！]?")
#: Han, kana, hangul and the full-width forms: text in which a Latin capital standing
#: alone can only be an option letter.
_CJK = "\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uff00-\uffef"
_LEADING = re.compile(rf"^(?:{_OPEN}([A-Z]){_CLOSE}|([A-Z])[.:)\]。．、：）])(?:\s|$|(?=[{_CJK}]))")
_LEADING_AFTER_PREFIX = re.compile(rf"^{_OPEN}?([A-Z]){_CLOSE}?(?![A-Za-z0-9])")
_PARENS = re.compile(rf"{_OPEN}([A-Z]){_CLOSE}")
_A_LETTER = rf"{_OPEN}?([A-Z]){_CLOSE}?(?![A-Za-z0-9])"
#: One letter or a list of them ("B", "(B)", "A and C", "A、C") after a declaration.
_LETTERS_AFTER = (
    rf"({_OPEN}?[A-Z]{_CLOSE}?(?:{_LIST_SEP}(?:or\s+|或)?{_OPEN}?[A-Z]{_CLOSE}?)*)(?![A-Za-z0-9])"
)
#: Explicit answer declarations; when a response makes several, the last one is its
#: answer ("The answer is A. Wait: the answer is C."). Mentions such as "option A" are
#: not declarations ("Option B is right, option A is wrong").
_DECLARATION = re.compile(
    r"(?:(?i:\b(?:(?:final|correct|best|right)\s+)?answers?(?:\(s\))?\s*"
    r"(?:(?:is|are|would\s+be|should\s+be|will\s+be|must\s+be)\s*)?[:：]?\s*"
    r"|\b(?:correct|best|right)\s+(?:option|choice)s?\s+(?:is|are)\s*[:：]?\s*"
    r"|\bi\s+(?:would\s+|will\s+)?(?:choose|pick|select|go\s+with)\s*[:：]?\s*)"
    r"(?i:(?:options?|choices?)\s*)?"
    r"|(?:最终|正确)?答案\s*(?:应该|应)?\s*(?:是|为|选)?\s*[:：]?\s*(?:选项)?\s*"
    r"|(?:故|应|我)?选择?\s*(?:选项)?\s*"
    r"|(?:正解|答え)\s*(?:は|が)?\s*[:：]?\s*(?:選択肢)?\s*)" + _LETTERS_AFTER
)
#: A capital standing alone next to CJK text ("我认为B是对的", "B选项").
_CJK_LETTER = re.compile(
    rf"(?:(?<=[{_CJK}])\s*{_A_LETTER}|(?<![A-Za-z0-9]){_OPEN}?([A-Z]){_CLOSE}?\s*(?=[{_CJK}]))"
)
_MENTION = re.compile(
    r"(?i:\b(?:answer|option|choice)(?:\s+(?:is|would\s+be|should\s+be))?\s*:?)\s*" + _A_LETTER
)
_IS_LETTER = re.compile(r"(?i:\b(?:is|be|choose|select|pick)\s+)" + _A_LETTER)
_NEGATION = re.compile(r"\b(?:not|no|isn't|aren't|neither|nor|never)\b|n't\b", re.I)
_OPTION_LABEL = re.compile(r"^\s*(?:\(([A-Za-z])\)|([A-Za-z])[.:)])\s+")
_WORDS = re.compile(r"[a-z0-9]+")


def _lines(text: str) -> list[str]:
    """The non-empty lines of the answer: ``<answer>`` when present, else the text
    without ``<think>``, markdown emphasis removed, whitespace collapsed."""
    m = _ANSWER_TAG.search(text)
    s = m.group(1) if m else _THINK.sub(" ", text)
    s = re.sub(r"[*`#_]+", " ", s)
    return [" ".join(line.split()) for line in s.splitlines() if line.strip()]


def _strip_prefix(s: str) -> tuple[str, bool]:
    """``s`` without leading answer prefixes ("So the answer is"), and whether any was."""
    stripped = False
    while m := _PREFIX.match(s):
        if not m.group(0):
            break
        s, stripped = s[m.end() :].strip(), True
    return s, stripped


def _list_letters(s: str) -> set[str]:
    return {x.upper() for x in re.findall(r"[A-Za-z]", re.sub(r"\band\b", " ", s))}


def _declared(lines: list[str]) -> str | None:
    """The letters of the response's last answer declaration, or None.

    A bare letter list alone on the first line, before an explanation, counts as the
    first declaration; "answer is X" / "答案是X" / "I choose X" anywhere count too.
    """
    last: str | None = None
    if len(lines) > 1:
        first, _ = _strip_prefix(lines[0])
        if first and _LETTER_LIST.fullmatch(first):
            last = "".join(sorted(_list_letters(first)))
    for m in _DECLARATION.finditer(" ".join(lines)):
        got = m.group(1)
        rest = m.string[m.end() :]
        if got == "I" and re.match(r"\s+[a-z]", rest):
            continue  # "the answer, I think, ...": the pronoun
        last = "".join(sorted(set(re.findall(r"[A-Z]", got))))
    return last


def _norm_words(text: str) -> str:
    return " ".join(_WORDS.findall(text.lower()))


def _option_text(option: str) -> str:
    """An option without its "(A) " / "A. " label, normalised to words."""
    m = _OPTION_LABEL.match(option)
    return _norm_words(option[m.end() :] if m else option)


def _has_phrase(text: str, phrase: str) -> bool:
    return re.search(rf"(?<![a-z0-9]){re.escape(phrase)}(?![a-z0-9])", text) is not None


def _from_options(s: str, options: Sequence[str], multi: bool) -> Choice | None:
    texts = [_option_text(o) for o in options]
    said = _norm_words(s)
    if not said:
        return None
    exact = [LETTERS[i] for i, t in enumerate(texts) if t and t == said]
    if exact:
        return Choice(frozenset(exact[:1]))
    hits = [i for i, t in enumerate(texts) if t and _has_phrase(said, t)]
    # an option whose text is part of another matched option's text is not a separate hit
    hits = [i for i in hits if not any(j != i and texts[i] in texts[j] for j in hits)]
    if not hits:
        return None
    if _NEGATION.search(s):
        return _none("negation in a verbose answer")
    if len(hits) > 1 and not multi:
        named = ", ".join(LETTERS[i] for i in hits)
        return _none(f"the response names several options ({named})")
    return Choice(frozenset(LETTERS[i] for i in hits))


def _checked(letters: set[str], valid: str, multi: bool, how: str) -> Choice:
    bad = sorted(x for x in letters if x not in valid)
    if bad:
        return _none(f"letter {', '.join(bad)} is not an option ({valid[0]}-{valid[-1]})")
    if len(letters) > 1 and not multi:
        return _none(f"several letters ({', '.join(sorted(letters))}) {how}")
    return Choice(frozenset(letters))


def extract_choice(
    text: str | None,
    *,
    options: Sequence[str] | None = None,
    n_options: int | None = None,
    multi: bool = False,
) -> Choice:
    """Letters of a response, abstaining (empty, with a reason) rather than guessing.

    The steps, first hit wins: (1) the response is only letters (``"B"``, ``"(b)"``,
    ``"B, D"``, ``"A and C"``); (2) the last answer declaration: a letter list alone on
    the first line before an explanation (``"B\\nThe lake is ..."``), ``"the answer is
    B"``, ``"I choose B"``, ``"答案是B"``, ``"选B"`` (so "The answer is A. No wait, the
    answer is C." reads C); (3) it starts with a letter marker (``"B. forest"``,
    ``"(B) forest"``, ``"B。"``), or with a bare letter right after an answer prefix;
    (4) upper-case letters in parentheses (ASCII or full-width), after "option",
    "choice", "is", or standing alone in Chinese or Japanese text (``"我认为B是对的"``);
    (5) with ``options``, the option whose text the response gives.
    ``<answer>...</answer>`` is read when present and ``<think>...</think>`` ignored.
    Lower-case letters count only in bare letter lists, so the article "a" is never
    read as option A.

    Args:
        text: The model's response (None for a missing one).
        options: The option strings, labelled (``"(A) forest"``) or not; they set the
            valid letters and allow step (4).
        n_options: Number of options when ``options`` is not given (default 5: A-E).
        multi: Several letters are allowed (multi-answer questions).

    Returns:
        The letters, or an empty :class:`Choice` whose ``reason`` says why.

    Raises:
        ValueError: If ``n_options`` (or ``len(options)``) is outside 2..10.
    """
    valid = _letter_range(len(options) if options is not None else (n_options or 5))
    if text is None:
        return _none("no response")
    lines = _lines(text)
    s = " ".join(lines)
    if not s:
        return _none("empty response")
    s, stripped = _strip_prefix(s)
    if not s:
        return _none("an answer prefix with no answer")
    if _LETTER_LIST.fullmatch(s):
        return _checked(_list_letters(s), valid, multi, "for a single-answer question")
    declared = _declared(lines)
    if declared:
        return _checked(set(declared), valid, multi, "in the last answer declaration")
    m = _LEADING.match(s) or (_LEADING_AFTER_PREFIX.match(s) if stripped else None)
    if m:
        letter = next(g for g in m.groups() if g)
        return _checked({letter}, valid, multi, "")
    found = set(_PARENS.findall(s)) | set(_MENTION.findall(s)) | set(_IS_LETTER.findall(s))
    found = {x for x in found if x != "I"}  # "I" is the pronoun, never option I
    found |= {a or b for a, b in _CJK_LETTER.findall(s)}
    if found:
        return _checked(found, valid, multi, "in a single-answer response")
    if options is not None:
        picked = _from_options(s, options, multi)
        if picked is not None:
            return picked
    return _none("no option letter or option text found")


# -- scoring -----------------------------------------------------------------------------


def parse_answer_letters(answer: Any, index: int = 0) -> frozenset[str]:
    """The reference letter set from ``"A"``, ``"AB"``, ``"A,B"``, ``"(A)"`` or ``["A", "B"]``
    (the release readers' rule, :func:`earthvlm.data.letters.answer_letters`).

    Raises:
        ValueError: If no upper-case letter is found.
    """
    try:
        return answer_letters(answer)
    except ValueError:
        raise ValueError(
            f"answers[{index}] = {answer!r} holds no option letters; give letters such as "
            "'A', 'AC' or ['A', 'C']"
        ) from None


@dataclass(frozen=True)
class MCQResult:
    """Scores of a multiple-choice run.

    Attributes:
        table: Accuracy per subtask (one group ``"all"`` when no subtasks were named).
        n_unable: Responses that chose exactly the item's "unable to decide" letter
            (None when no such letters were given).
        macro_subtasks: The subtasks the macro score averages.
        ledger: ``ok`` = letters extracted; ``failed`` = nothing usable (reason), scored
            as wrong.
    """

    table: AccuracyTable
    n_unable: int | None
    macro_subtasks: tuple[str, ...]
    ledger: Ledger

    @property
    def n(self) -> int:
        return self.table.n

    @property
    def n_correct(self) -> int:
        return self.table.n_correct

    @property
    def micro(self) -> float:
        """Correct items over all items."""
        return self.table.overall

    @property
    def macro(self) -> float:
        """Mean accuracy over :attr:`macro_subtasks`."""
        return mean([self.table.by_group[s].accuracy for s in self.macro_subtasks])

    @property
    def unable_rate(self) -> float | None:
        """Share of items answered "unable to decide" (None when not tracked)."""
        return None if self.n_unable is None else ratio(self.n_unable, self.n)

    @property
    def abstain_rate(self) -> float:
        """Share of items where no letter could be extracted."""
        return ratio(self.ledger.n_failed, self.n)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "n": self.n,
            "n_correct": self.n_correct,
            "micro": json_float(self.micro),
            "macro": json_float(self.macro),
            "macro_subtasks": list(self.macro_subtasks),
            "abstain_rate": json_float(self.abstain_rate),
            "n_unable": self.n_unable,
            "unable_rate": json_float(self.unable_rate),
            "by_subtask": {k: v.to_dict() for k, v in self.table.by_group.items()},
            "ledger": self.ledger.to_dict(),
        }


def score_choices(
    choices: Sequence[Choice],
    answers: Sequence[Any],
    *,
    subtasks: Sequence[str] | None = None,
    expected_subtasks: Sequence[str] | None = None,
    unable_letters: Sequence[str | None] | None = None,
    stage: str = "mcq",
) -> MCQResult:
    """Score extracted choices against answer letters (set equality).

    Args:
        choices: One :class:`Choice` per item (from any extractor).
        answers: Reference letters per item (see :func:`parse_answer_letters`).
        subtasks: Subtask name per item, for per-subtask accuracy and the macro score.
        expected_subtasks: Subtasks the macro score must average (e.g.
            :data:`XLRS_SUBTASKS`); by default, those present.
        unable_letters: Per item, the letter of its "unable to decide" option (or None);
            counted when a response is exactly that letter.
        stage: Name for the ledger.

    Returns:
        The :class:`MCQResult`.

    Raises:
        ValueError: On mismatched lengths, an answer without letters, or an expected
            subtask with no items.
    """
    named: dict[str, Sequence[Any]] = {"choices": choices, "answers": answers}
    if subtasks is not None:
        named["subtasks"] = subtasks
    if unable_letters is not None:
        named["unable_letters"] = unable_letters
    n = check_lengths(**named)
    if n == 0:
        raise ValueError("no items to score; pass at least one choice and answer")
    groups = group_names(subtasks, n, "subtasks")
    ledger = new_ledger(stage)
    correct: list[bool] = []
    n_unable = 0
    for i, (choice, answer) in enumerate(zip(choices, answers, strict=True)):
        if not isinstance(choice, Choice):
            raise ValueError(f"choices[{i}] must be a Choice, got {type(choice).__name__}")
        truth = parse_answer_letters(answer, i)
        if choice.ok:
            ledger.count_ok()
        else:
            ledger.count_failed(choice.reason or "no letter extracted")
        correct.append(choice.ok and choice.letters == truth)
        if unable_letters is not None and unable_letters[i] is not None:
            n_unable += choice.letters == frozenset({unable_letters[i]})
    table = accuracy_table(correct, groups)
    macro = tuple(expected_subtasks) if expected_subtasks is not None else tuple(table.by_group)
    missing = [s for s in macro if s not in table.by_group]
    if missing:
        raise ValueError(
            f"expected_subtasks names {len(missing)} subtask(s) with no items "
            f"(first: {missing[0]!r}); score the full benchmark or leave expected_subtasks out"
        )
    return MCQResult(table, n_unable if unable_letters is not None else None, macro, ledger)


def score_mcq(
    predictions: Sequence[str | None],
    answers: Sequence[Any],
    *,
    extract: Callable[[str | None], Choice] = extract_choice,
    subtasks: Sequence[str] | None = None,
    expected_subtasks: Sequence[str] | None = None,
) -> MCQResult:
    """Extract letters from raw responses with ``extract`` and score them.

    Args:
        predictions: Model responses (None for a missing one: failed, wrong).
        answers: Reference letters per item.
        extract: ``text -> Choice``; bind options with ``functools.partial`` when needed.
        subtasks: Subtask name per item.
        expected_subtasks: Subtasks the macro score must average.

    Returns:
        The :class:`MCQResult`.

    Raises:
        ValueError: As :func:`score_choices`, or when a prediction is not a string.
    """
    check_lengths(predictions=predictions, answers=answers)
    choices = [extract(check_text(p, "predictions", i)) for i, p in enumerate(predictions)]
    return score_choices(choices, answers, subtasks=subtasks, expected_subtasks=expected_subtasks)


def score_xlrs(
    predictions: Sequence[str | None],
    answers: Sequence[Any],
    categories: Sequence[str],
    *,
    release: bool = False,
    expected_subtasks: Sequence[str] | None = None,
) -> MCQResult:
    """XLRS-Bench: its extraction rule, micro score and macro over "L2/L3" subtasks.

    Args:
        predictions: Model responses.
        answers: The ``answer`` field (letters; several for overall land-use).
        categories: The ``category`` field ("L2/L3"), one per item.
        release: Use the release's regex (see :func:`extract_xlrs`).
        expected_subtasks: Pass :data:`XLRS_SUBTASKS` to insist on the full benchmark.

    Returns:
        The :class:`MCQResult`; ``macro`` is the paper's macro score on a full run. (On
        a partial run the release still divides by all 13 subtasks, counting absent ones
        as 0; here the macro averages the subtasks present, and ``expected_subtasks``
        refuses a partial run instead.)
    """
    check_lengths(predictions=predictions, answers=answers, categories=categories)
    choices = [
        extract_xlrs(check_text(p, "predictions", i), release=release)
        for i, p in enumerate(predictions)
    ]
    return score_choices(
        choices,
        answers,
        subtasks=categories,
        expected_subtasks=expected_subtasks,
        stage="xlrs-bench",
    )


def score_omniearth(
    predictions: Sequence[str | None],
    answers: Sequence[Any],
    options: Sequence[Sequence[str]],
    *,
    l1_tasks: Sequence[str] | None = None,
    release: bool = False,
) -> MCQResult:
    """OmniEarth-Bench: its extraction rule, accuracy, and the "unable to decide" rate.

    Args:
        predictions: Model responses.
        answers: The ``answer`` field.
        options: The ``multi-choice options`` of each item; the last must be
            "unable to decide".
        l1_tasks: The ``L1-task`` field (sphere), for per-sphere accuracy.
        release: Search A-E only, as the release does.

    Returns:
        The :class:`MCQResult`; ``micro`` is the release's overall accuracy and
        ``unable_rate`` how often the last option was chosen.

    Raises:
        ValueError: If an item's last option is not "unable to decide".
    """
    check_lengths(predictions=predictions, answers=answers, options=options)
    unable: list[str | None] = []
    choices = []
    for i, (p, opts) in enumerate(zip(predictions, options, strict=True)):
        if isinstance(opts, str) or not opts or UNABLE_TO_DECIDE not in str(opts[-1]).lower():
            raise ValueError(
                f"options[{i}] must be the item's option list ending in "
                f"{UNABLE_TO_DECIDE!r}, got {opts!r}"
            )
        unable.append(LETTERS[len(opts) - 1])
        text = check_text(p, "predictions", i)
        choices.append(extract_omniearth(text, n_options=len(opts), release=release))
    return score_choices(
        choices,
        answers,
        subtasks=l1_tasks,
        unable_letters=unable,
        stage="omniearth-bench",
    )
