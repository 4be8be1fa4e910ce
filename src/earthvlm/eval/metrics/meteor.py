"""METEOR 1.5 in Python, as coco-caption (pycocoevalcap) runs the Java release.

pycocoevalcap calls ``java -jar meteor-1.5.jar - - -stdio -l en -norm``: English, the
default ("rank") task, text normalised, one ``SCORE`` line per caption (its stats against
the best of its references) and one ``EVAL`` line that sums the stats of all captions and
scores the sums. This module follows the Java source (``edu.cmu.meteor``) step by step:

* **Normalisation** (:func:`normalise`): ``Normalizer.normalizeLine`` for English with
  punctuation kept (symbols split off, ``black-and-white`` -> ``black and white``,
  clitics, dots of abbreviations), then lower case.
* **Matching**: every candidate match of four modules, in order *exact*, *stem* (Snowball
  English, different words with equal stems), *synonym* (WordNet synsets shared, through
  METEOR's own morphology and exception lists), *paraphrase* (phrase pairs from its
  table). A pair of identical sentences uses exact matches only.
* **Alignment**: matches that no other match overlaps are fixed; the rest are resolved
  by a beam search (beam 40) from left to right over the reference, ranking partial
  alignments by matched words (weights 1, 0.5, 0.5, 0.5, summed into Java ``int`` s, so
  a one-word stem or synonym match adds nothing to the rank), then fewer chunks, then
  less distance. Quirks kept as the Java has them: the distance of a new match is added
  to the path that *skips* it.
* **Score** (``MeteorScorer.computeMetrics``): content and function words (METEOR's list)
  weighted delta and 1 - delta, module weights 1.0 / 0.6 / 0.8 / 0.6; P and R;
  ``Fmean = P R / (alpha P + (1 - alpha) R)``; ``penalty = gamma (chunks / matches)^beta``
  (0 when the sentences are identical); score = ``Fmean (1 - penalty)``, with alpha 0.85,
  beta 0.20, gamma 0.60, delta 0.75. The corpus score scores the summed statistics.

Resources. METEOR's synonym files and paraphrase table ship inside pycocoevalcap on the
package index (``pip install pycocoevalcap``: ``meteor/meteor-1.5.jar``, a zip, and
``meteor/data/paraphrase-en.gz``); :func:`load_resources` reads them from there (no Java
is run) and the table only for the corpus' words (about 5 s). Without them there is no
METEOR: WordNet through nltk instead of METEOR's synonym files, and no paraphrases, read
0.025 lower on caption-like text (0.127 against 0.152), too far to carry its name. The
function-word and abbreviation lists are METEOR's (``resources/`` of the release),
written out below; the exact module needs nothing else (:data:`EXACT_ONLY`).

Checked against the jar as pycocoevalcap runs it: the same 23 statistics for every
caption and the same corpus score, to the last bit, on 4,000 random captions
(``tests/eval/metrics/make_meteor_fixture.py`` records a small set for the tests).
Where it could depart: the Snowball stemmer is nltk's, which differs from the 2015 Java
build on rare ``-ization`` / ``-ational`` forms (24 of 153,744 WordNet word forms, e.g.
"realization": nltk "realize", Java "realiz").
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import io
import re
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from earthvlm.errors import EarthVLMError

#: The "rank" task's English parameters and module weights (``Constants.PARAM_RANK``,
#: ``WEIGHT_RANK``), the default task of METEOR 1.5.
ALPHA, BETA, GAMMA, DELTA = 0.85, 0.20, 0.60, 0.75
MODULE_WEIGHTS = (1.0, 0.6, 0.8, 0.6)  # exact, stem, synonym, paraphrase
#: The weights the aligner ranks partial alignments with (``MeteorScorer``'s setWeights).
_ALIGN_WEIGHTS = (1.0, 0.5, 0.5, 0.5)
BEAM_SIZE = 40
EXACT, STEM, SYNONYM, PARAPHRASE = range(4)

#: METEOR 1.5's ``resources/function/english.words``, space-separated.
_FUNCTION_WORDS_TEXT = (
    "the , . to of and a in that for \" is on 's it with was as said at he by be from have "
    "has are his but an this not i will \u2019 they ) -rrb- ( -lrb- who their had we which "
    "were been more or s its would about new one after you : also up when there than $ all "
    "out her people she year two - can if last first \u201c over other \u201d into some what "
    "so -- no time years could ? 't \u2014 '"
)
FUNCTION_WORDS = frozenset(_FUNCTION_WORDS_TEXT.split(" "))
#: METEOR 1.5's ``resources/nonbreaking/english.prefixes`` (Moses'): abbreviations whose
#: full stop stays, always, or (the second list) before a number.
_NBP_TEXT = (
    "A B C D E F G H I J K L M N O P Q R S T U V W X Y Z Adj Adm Adv Asst Bart Bldg Brig "
    "Bros Capt Cmdr Col Comdr Con Corp Cpl DR Dr Drs Ens Gen Gov Hon Hr Hosp Insp Lt MM MR "
    "MRS MS Maj Messrs Mlle Mme Mr Mrs Ms Msgr Op Ord Pfc Ph Prof Pvt Rep Reps Res Rev Rt "
    "Sen Sens Sfc Sgt Sr St Supt Surg v vs i.e rev e.g Nos Nr"
)
_NBP_ANY = frozenset(_NBP_TEXT.split())
_NBP_NUMERIC = frozenset({"No", "Art", "pp"})


# -- normalisation (Normalizer.normalizeLine, English, punctuation kept) -------------------

_ALPHA = "A-Za-z\u0160\u017d\u0161\u017e\u0178\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u017e" + (
    "\u0400-\u04ff\u0500-\u0527\ua640-\ua66e\ua67e-\ua697\u1d00-\u1d7f"
)
_ALNUM = "0-9" + _ALPHA
_JAVA_SPACE = " \t\n\x0b\f\r"  # Java's \s
_SEP_OTHER = re.compile(f"([^{_ALNUM}{_JAVA_SPACE}.'`,\\-\u2018\u2019])")
_MULTI_DOT = re.compile(r"\.([.]+)")
_MULTI_DOT2 = re.compile(r"DOTMULTI\.([^.])")
_COMMAS = (
    re.compile(r"([^0-9]),([^0-9])"),
    re.compile(r"([0-9]),([^0-9])"),
    re.compile(r"([^0-9]),([0-9])"),
)
_QUOTE1 = re.compile("[`\u2018\u2019]")
_QUOTE2 = re.compile("[\u201c\u201d]|''")
_RM_DASH = re.compile(f"([{_ALNUM}.])-([{_ALNUM}])")
_CONT = (
    (re.compile(f"([^{_ALPHA}])'([^{_ALPHA}])"), r"\1 ' \2"),
    (re.compile(f"([^{_ALPHA}0-9])'([{_ALPHA}])"), r"\1 ' \2"),
    (re.compile(f"([{_ALPHA}])'([^{_ALPHA}])"), r"\1 ' \2"),
    (re.compile(f"([{_ALPHA}])'([{_ALPHA}])"), r"\1 '\2"),
    (re.compile(r"([0-9])'(s)"), r"\1 '\2"),
)
_NBP_ALPHA = re.compile(f"[{_ALPHA}]")
_WHITE = re.compile("[ \u2000-\u200a\u202f\u205f\u3000\u00a0]+")


def _java_split(s: str) -> list[str]:
    return re.split(r"[ \t\n\r\f]+", s.strip(" \t\n\r\f")) if s.strip(" \t\n\r\f") else []


def normalise(text: str) -> list[str]:
    """Tokens of ``text`` as METEOR 1.5 ``-norm`` makes them (English), lower-cased."""
    s = _SEP_OTHER.sub(r" \1 ", f" {text} ")
    s = _MULTI_DOT.sub(r" DOTMULTI\1", s)
    while "DOTMULTI." in s:
        s = _MULTI_DOT2.sub(r"DOTDOTMULTI \1", s).replace("DOTMULTI.", "DOTDOTMULTI")
    for pattern in _COMMAS:
        s = pattern.sub(r"\1 , \2", s)
    s = _QUOTE2.sub(' " ', _QUOTE1.sub("'", s))
    s = s.replace("\u2013", "-").replace("--", "-")
    s = _RM_DASH.sub(r"\1 \2", s)
    for pattern, repl in _CONT:
        s = pattern.sub(repl, s)
    words = _java_split(s)
    out = []
    for i, w in enumerate(words):
        if len(w) > 1 and w.endswith("."):
            pre = w[:-1]
            nxt = words[i + 1] if i + 1 < len(words) else ""
            if "." in pre and _NBP_ALPHA.search(pre):
                out.append(w.replace(".", ""))  # U.S. -> US
            elif (
                pre in _NBP_ANY
                or re.match("[a-z]", nxt)  # Java's \p{Lower}: ASCII only
                or (pre in _NBP_NUMERIC and re.match("[0-9]", nxt))
            ):
                out.append(w)
            else:
                out.append(pre + " .")
        else:
            out.append(w)
    s = " ".join(out)
    while "DOTDOTMULTI" in s:
        s = s.replace("DOTDOTMULTI", "DOTMULTI.")
    s = s.replace("DOTMULTI", ".")
    s = _WHITE.sub(" ", s).strip("".join(map(chr, range(33))))  # Java's trim()
    return _java_split(s.lower())


# -- resources -----------------------------------------------------------------------------


class MeteorUnavailableError(EarthVLMError):
    """METEOR's resources (nltk's stemmer, METEOR 1.5's files) are not installed."""


_INSTALL = (
    "METEOR 1.5 reads its synonym files and paraphrase table from the pycocoevalcap package "
    "and stems with nltk: `pip install pycocoevalcap nltk` (no Java is run), or pass "
    "meteor_dir=<folder with meteor-1.5.jar and data/paraphrase-en.gz>."
)


@dataclass(frozen=True)
class MeteorResources:
    """What METEOR's English modules read; a module whose resource is None is left out.

    Attributes:
        stem: Word -> Snowball stem.
        synsets: Word -> ids of the WordNet synsets it (or its base form) belongs to.
        paraphrases: Phrase -> its paraphrases, in the table's order.
        source: Where they came from (for the record).
        function_words: METEOR's function words.
        prefixes: Every prefix of a phrase in ``paraphrases``.
    """

    stem: Callable[[str], str] | None
    synsets: Callable[[str], frozenset[int]] | None
    paraphrases: Mapping[tuple[str, ...], Sequence[tuple[str, ...]]] | None
    source: str
    function_words: frozenset[str] = FUNCTION_WORDS
    prefixes: frozenset[tuple[str, ...]] = field(default=frozenset(), repr=False)


#: METEOR with its exact module only (``-m exact``): needs no resources.
EXACT_ONLY = MeteorResources(None, None, None, "exact module only")


def pycocoevalcap_meteor_dir() -> Path | None:
    """The folder of pycocoevalcap's ``meteor-1.5.jar`` if that package is installed."""
    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        folder = Path(root) / "meteor"
        if (folder / "meteor-1.5.jar").is_file():
            return folder
    return None


#: The English suffix rules of METEOR's ``SynonymDictionary.morph`` (WordNet 3.0's
#: morphology): (suffix, ending) pairs tried in order.
_SUFFIXES = "s ses xes zes ches shes men ies s ies es es ed ed ing ing er est er est"
_ENDINGS = ("", "s", "x", "z", "ch", "sh", "man", "y", "", "y", "e", "", "e", "", "e", "", "",
            "", "e", "e")  # fmt: skip
_MORPH = tuple(zip(_SUFFIXES.split(), _ENDINGS, strict=True))


@functools.cache
def _jar_synsets(jar: Path) -> Callable[[str], frozenset[int]]:
    """METEOR's own synonym lookup from its jar (``SynonymDictionary``)."""
    with zipfile.ZipFile(jar) as z:
        syn_lines = z.read("synonym/english.synsets").decode("utf-8").split("\n")
        exc_lines = z.read("synonym/english.exceptions").decode("utf-8").split("\n")
    table: dict[str, frozenset[int]] = {}
    for word, ids in zip(syn_lines[0::2], syn_lines[1::2], strict=False):
        table[word] = frozenset(int(x) for x in ids.split())
    bases: dict[str, list[str]] = {}
    for base, forms in zip(exc_lines[0::2], exc_lines[1::2], strict=False):
        for form in forms.split():
            bases.setdefault(form, []).append(base)

    def morph(word: str) -> str:
        if word.endswith("ss") or len(word) <= 2:
            return word
        for suffix, ending in _MORPH:
            if word.endswith(suffix):
                base = word[: len(word) - len(suffix)] + ending
                if base in table:
                    return base
        return ""

    @functools.cache
    def synsets(word: str) -> frozenset[int]:
        own = table.get(word, frozenset())
        if word in bases:
            return own.union(*(table.get(b, frozenset()) for b in bases[word]))
        return own | table.get(morph(word), frozenset())

    return synsets


def read_paraphrases(
    path: Path, vocabulary: Iterable[str]
) -> dict[tuple[str, ...], list[tuple[str, ...]]]:
    """The paraphrase pairs of a METEOR table (gzip: probability, phrase, paraphrase per
    three lines) whose words are all in ``vocabulary``: no other pair can match."""
    vocab = set(vocabulary)
    table: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    with gzip.open(path, "rb") as raw, io.TextIOWrapper(raw, encoding="utf-8") as f:
        while f.readline():
            ref, par = f.readline().split(), f.readline().split()
            if vocab.issuperset(ref) and vocab.issuperset(par):
                table.setdefault(tuple(ref), []).append(tuple(par))
    return table


def load_resources(
    vocabulary: Iterable[str] = (), *, meteor_dir: str | Path | None = None
) -> MeteorResources:
    """METEOR 1.5's English resources: its own files and nltk's Snowball stemmer.

    Args:
        vocabulary: Every normalised word of the corpus (the paraphrase table is read for
            these only).
        meteor_dir: A folder holding ``meteor-1.5.jar`` and ``data/paraphrase-en.gz``;
            default: pycocoevalcap's, if installed.

    Raises:
        MeteorUnavailableError: If nltk or METEOR's files are missing (the message says
            how to install them).
    """
    try:
        from nltk.stem.snowball import SnowballStemmer
    except ImportError as e:
        raise MeteorUnavailableError(f"nltk is not installed ({e}). " + _INSTALL) from e
    folder = Path(meteor_dir) if meteor_dir else pycocoevalcap_meteor_dir()
    jar = folder / "meteor-1.5.jar" if folder else None
    table_path = folder / "data" / "paraphrase-en.gz" if folder else None
    if jar is None or table_path is None or not jar.is_file() or not table_path.is_file():
        where = (
            f"{folder} lacks meteor-1.5.jar or data/paraphrase-en.gz"
            if folder
            else ("pycocoevalcap is not installed")
        )
        raise MeteorUnavailableError(f"METEOR 1.5's files are not found ({where}). " + _INSTALL)
    try:
        synsets = _jar_synsets(jar)
        table = read_paraphrases(table_path, vocabulary)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise MeteorUnavailableError(f"{folder}: cannot read METEOR's files ({e})") from e
    prefixes = frozenset(p[:k] for p in table for k in range(1, len(p) + 1))
    stem = functools.cache(SnowballStemmer("english").stem)
    return MeteorResources(stem, synsets, table, f"METEOR 1.5 files in {folder}",
                           FUNCTION_WORDS, prefixes)  # fmt: skip


# -- alignment (Aligner.align) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Match:
    start: int  # in the reference
    length: int
    match_start: int  # in the hypothesis
    match_length: int
    module: int


class _Path:
    """A partial alignment (``PartialAlignment``)."""

    __slots__ = ("all1", "all2", "chunks", "distance", "idx", "last", "m1", "m2", "matches",
                 "used1", "used2")  # fmt: skip

    def __init__(self, n1: int, n2: int) -> None:
        self.matches: list[_Match | None] = [None] * n2
        self.used1, self.used2 = [False] * n1, [False] * n2
        self.m1 = self.m2 = self.all1 = self.all2 = self.chunks = self.idx = self.distance = 0
        self.last = -1

    def copy(self) -> _Path:
        p = _Path.__new__(_Path)
        p.matches, p.used1, p.used2 = self.matches[:], self.used1[:], self.used2[:]
        p.m1, p.m2, p.all1, p.all2 = self.m1, self.m2, self.all1, self.all2
        p.chunks, p.idx, p.distance, p.last = self.chunks, self.idx, self.distance, self.last
        return p

    def free(self, m: _Match) -> bool:
        return not (
            any(self.used2[m.start : m.start + m.length])
            or any(self.used1[m.match_start : m.match_start + m.match_length])
        )

    def take(self, m: _Match) -> None:
        self.used2[m.start : m.start + m.length] = [True] * m.length
        self.used1[m.match_start : m.match_start + m.match_length] = [True] * m.match_length
        # Java adds a double to an int field: the sum is truncated each time
        w = _ALIGN_WEIGHTS[m.module]
        self.m1 = int(self.m1 + m.match_length * w)
        self.m2 = int(self.m2 + m.length * w)
        self.all1 += m.match_length
        self.all2 += m.length
        if self.last != -1 and m.match_start != self.last:
            self.chunks += 1
        self.idx = m.start + m.length
        self.last = m.match_start + m.match_length


def _rank(p: _Path) -> tuple[int, int, int]:
    """``PARTIAL_COMPARE_TOTAL``: more weighted matches, then fewer chunks, less distance."""
    return (-(p.m1 + p.m2), p.chunks, p.distance)


def _candidates(h: list[str], r: list[str], res: MeteorResources) -> list[list[_Match]]:
    """Every match of every module, per reference start (in the Java's order)."""
    out: list[list[_Match]] = [[] for _ in r]
    identical = h == r
    for j, rw in enumerate(r):
        for i, hw in enumerate(h):
            if hw == rw:
                out[j].append(_Match(j, 1, i, 1, EXACT))
    if identical:  # "prevents beam search errors"
        return out
    if res.stem is not None:
        sh, sr = [res.stem(w) for w in h], [res.stem(w) for w in r]
        for j in range(len(r)):
            for i in range(len(h)):
                if sh[i] == sr[j] and h[i] != r[j]:
                    out[j].append(_Match(j, 1, i, 1, STEM))
    if res.synsets is not None:
        yh, yr = [res.synsets(w) for w in h], [res.synsets(w) for w in r]
        for j in range(len(r)):
            for i in range(len(h)):
                if h[i] != r[j] and not yh[i].isdisjoint(yr[j]):
                    out[j].append(_Match(j, 1, i, 1, SYNONYM))
    if res.paraphrases:
        table, prefixes = res.paraphrases, res.prefixes

        def paths(words: list[str], start: int) -> Iterable[tuple[int, tuple[str, ...]]]:
            for k in range(1, len(words) - start + 1):
                key = tuple(words[start : start + k])
                if key not in prefixes:
                    break
                for par in table.get(key, ()):
                    yield k, par

        def found(words: list[str], phrase: tuple[str, ...]) -> Iterable[int]:
            n = len(phrase)
            return (i for i in range(len(words)) if tuple(words[i : i + n]) == phrase)

        for j in range(len(r)):  # paraphrases of the reference found in the hypothesis
            for k, par in paths(r, j):
                for i in found(h, par):
                    out[j].append(_Match(j, k, i, len(par), PARAPHRASE))
        for i in range(len(h)):  # and of the hypothesis found in the reference
            for k, par in paths(h, i):
                for j in found(r, par):
                    out[j].append(_Match(j, len(par), i, k, PARAPHRASE))
    return out


def _align(h: list[str], r: list[str], res: MeteorResources) -> list[_Match | None]:
    """The chosen matches, indexed by their start in the reference."""
    cands = _candidates(h, r, res)
    cover1, cover2 = [0] * len(h), [0] * len(r)
    for ms in cands:
        for m in ms:
            for k in range(m.match_length):
                cover1[m.match_start + k] += 1
            for k in range(m.length):
                cover2[m.start + k] += 1
    start = _Path(len(h), len(r))
    for j, ms in enumerate(cands):  # one-to-one matches that nothing overlaps are fixed
        if len(ms) == 1:
            m = ms[0]
            lone = all(cover2[m.start + k] == 1 for k in range(m.length)) and all(
                cover1[m.match_start + k] == 1 for k in range(m.match_length)
            )
            if lone:
                start.matches[j] = m
                start.used2[m.start : m.start + m.length] = [True] * m.length
                start.used1[m.match_start : m.match_start + m.match_length] = [True] * (
                    m.match_length
                )
    nxt = [start]
    for current in range(len(r) + 1):
        paths = sorted(nxt, key=_rank)
        nxt = []
        for path in paths[:BEAM_SIZE]:
            if current == len(r):
                if path.last != -1:
                    path.chunks += 1
                nxt.append(path)
                continue
            if path.used2[current]:
                if current < path.idx:
                    nxt.append(path)
                elif (m := path.matches[path.idx]) is not None:  # a fixed match
                    path.take(m)
                    path.distance += abs(m.start - m.match_start)
                    nxt.append(path)
                continue
            for m in cands[current]:
                if not path.free(m):
                    continue
                new = path.copy()
                new.take(m)
                new.matches[current] = m
                path.distance += abs(m.start - m.match_start)  # sic: the Java adds it here
                nxt.append(new)
            if path.last != -1:  # skip this reference word
                path.chunks += 1
                path.last = -1
            path.idx += 1
            nxt.append(path)
        if not nxt:
            nxt.append(paths[0])
    return min(nxt, key=_rank).matches  # min is the first of the sorted order


# -- statistics and score (MeteorScorer, MeteorStats) --------------------------------------


@dataclass
class MeteorStats:
    """METEOR's sufficient statistics of one caption (or, summed, of a corpus).

    ``test_*`` is the hypothesis, ``ref_*`` the reference; ``*_content[k]`` and
    ``*_function[k]`` count the words matched by module ``k``.
    """

    test_len: float = 0.0
    ref_len: float = 0.0
    test_function: float = 0.0
    ref_function: float = 0.0
    test_content_matches: list[float] = field(default_factory=lambda: [0.0] * 4)
    ref_content_matches: list[float] = field(default_factory=lambda: [0.0] * 4)
    test_function_matches: list[float] = field(default_factory=lambda: [0.0] * 4)
    ref_function_matches: list[float] = field(default_factory=lambda: [0.0] * 4)
    chunks: float = 0.0

    @property
    def test_matches(self) -> float:
        return sum(self.test_content_matches) + sum(self.test_function_matches)

    @property
    def ref_matches(self) -> float:
        return sum(self.ref_content_matches) + sum(self.ref_function_matches)

    @property
    def identical(self) -> bool:
        """Every word matched in one chunk: no fragmentation penalty."""
        return (
            self.test_matches == self.test_len
            and self.ref_matches == self.ref_len
            and self.chunks == 1
        )

    def add(self, other: MeteorStats) -> None:
        """Sum ``other`` into these (``MeteorStats.addStats``: the chunks of an identical
        pair are not added)."""
        self.test_len += other.test_len
        self.ref_len += other.ref_len
        self.test_function += other.test_function
        self.ref_function += other.ref_function
        for mine, theirs in (
            (self.test_content_matches, other.test_content_matches),
            (self.ref_content_matches, other.ref_content_matches),
            (self.test_function_matches, other.test_function_matches),
            (self.ref_function_matches, other.ref_function_matches),
        ):
            for k in range(4):
                mine[k] += theirs[k]
        if not other.identical:
            self.chunks += other.chunks

    def to_list(self) -> list[float]:
        """The 23 numbers of the Java's stats line, in its order."""
        out = [self.test_len, self.ref_len, self.test_function, self.ref_function]
        for k in range(4):
            out += [self.test_content_matches[k], self.ref_content_matches[k],
                    self.test_function_matches[k], self.ref_function_matches[k]]  # fmt: skip
        return [*out, self.chunks, self.test_matches, self.ref_matches]

    @classmethod
    def from_list(cls, values: Sequence[float]) -> MeteorStats:
        """Stats from the Java's 23 numbers (``MeteorStats(String)``)."""
        v = [float(x) for x in values]
        if len(v) != 23:
            raise ValueError(f"METEOR stats are 23 numbers, got {len(v)}")
        return cls(v[0], v[1], v[2], v[3], v[4:20:4], v[5:20:4], v[6:20:4], v[7:20:4], v[20])


def score(stats: MeteorStats) -> float:
    """The METEOR score of (summed) statistics (``computeMetrics``)."""
    t_len = DELTA * (stats.test_len - stats.test_function) + (1 - DELTA) * stats.test_function
    r_len = DELTA * (stats.ref_len - stats.ref_function) + (1 - DELTA) * stats.ref_function
    t = r = 0.0
    for k, w in enumerate(MODULE_WEIGHTS):
        t += stats.test_content_matches[k] * w * DELTA
        r += stats.ref_content_matches[k] * w * DELTA
    for k, w in enumerate(MODULE_WEIGHTS):
        t += stats.test_function_matches[k] * w * (1 - DELTA)
        r += stats.ref_function_matches[k] * w * (1 - DELTA)
    try:
        p, rec = t / t_len, r / r_len
        fmean = 1.0 / ((1 - ALPHA) / p + ALPHA / rec)
    except ZeroDivisionError:
        return 0.0  # the Java's NaN -> 0
    frag = 0.0 if stats.identical else stats.chunks / ((stats.test_matches + stats.ref_matches) / 2)
    return max(fmean * (1.0 - GAMMA * frag**BETA), 0.0)


def pair_stats(hyp: list[str], ref: list[str], res: MeteorResources) -> MeteorStats:
    """Statistics of one normalised hypothesis against one normalised reference."""
    matches = _align(hyp, ref, res)
    fw = res.function_words
    func_h = [w in fw for w in hyp]
    func_r = [w in fw for w in ref]
    st = MeteorStats(float(len(hyp)), float(len(ref)), float(sum(func_h)), float(sum(func_r)))
    chunks, idx, last = 0, 0, -1
    while idx < len(ref):
        m = matches[idx]
        if m is None:
            if last != -1:
                chunks, last = chunks + 1, -1
            idx += 1
            continue
        for k in range(m.match_start, m.match_start + m.match_length):
            (st.test_function_matches if func_h[k] else st.test_content_matches)[m.module] += 1
        for k in range(m.start, m.start + m.length):
            (st.ref_function_matches if func_r[k] else st.ref_content_matches)[m.module] += 1
        if last != -1 and m.match_start != last:
            chunks += 1
        idx, last = m.start + m.length, m.match_start + m.match_length
    st.chunks = float(chunks + (last != -1))
    return st


def caption_stats(hyp: list[str], refs: Sequence[list[str]], res: MeteorResources) -> MeteorStats:
    """The statistics against the best-scoring reference (the first of equal ones)."""
    best, best_score = MeteorStats(), -1.0
    for ref in refs:
        st = pair_stats(hyp, ref, res)
        if (s := score(st)) > best_score:
            best, best_score = st, s
    return best


def meteor_corpus(
    hyps: Sequence[str], refs: Sequence[Sequence[str]], res: MeteorResources | None = None
) -> tuple[float, list[float]]:
    """Corpus METEOR (the summed statistics) and each caption's score.

    Args:
        hyps: One caption per image, as the METEOR jar reads it (coco-caption passes the
            PTB-tokenised caption joined by spaces).
        refs: Its references, the same way.
        res: The resources; default :func:`load_resources` for the corpus' words.

    Raises:
        MeteorUnavailableError: Without ``res``, if METEOR's resources are missing.
    """
    hn = [normalise(h) for h in hyps]
    rn = [[normalise(r) for r in rs] for rs in refs]
    if res is None:
        res = load_resources({w for s in [*hn, *(r for rs in rn for r in rs)] for w in s})
    total = MeteorStats()
    per = []
    for h, rs in zip(hn, rn, strict=True):
        st = caption_stats(h, rs, res)
        per.append(score(st))
        total.add(st)
    return score(total), per


__all__ = [
    "EXACT_ONLY",
    "FUNCTION_WORDS",
    "MeteorResources",
    "MeteorStats",
    "MeteorUnavailableError",
    "caption_stats",
    "load_resources",
    "meteor_corpus",
    "normalise",
    "pair_stats",
    "pycocoevalcap_meteor_dir",
    "read_paraphrases",
    "score",
]
