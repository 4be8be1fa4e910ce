"""Caption metrics as coco-caption (pycocoevalcap 1.2) computes them, without Java.

* **Tokenisation** (:func:`ptb_tokenize`): its Stanford PTB tokenizer step, lower-cased,
  with its punctuation list removed (brackets stay, as ``-lrb-`` ...); equal to the Java
  tokenizer on all but 3 of 9,988 random captions (rare lexer rules, see the function).
* **BLEU** (:func:`bleu`): corpus level. Clipped n-gram counts and hypothesis lengths
  are summed over the corpus, the reference length per caption is the closest one
  (ties to the shorter), p_n = (correct + 1e-15) / (guessed + 1e-9), BLEU-n =
  (p_1 ... p_n)^(1/n) x exp(1 - r/c) when c < r.
* **ROUGE-L** (:func:`rouge_l`): per caption, max LCS precision and max LCS recall over
  its references (maxima taken separately), F = (1 + b^2) P R / (R + b^2 P) with b = 1.2;
  the mean over captions.
* **CIDEr-D** (:func:`cider_d`): n = 1..4 tf-idf vectors with document frequencies
  over the reference sets of the corpus, idf = log(N images) - log(max(1, df)); per
  reference, the clipped cosine (hypothesis weights capped by the reference's), times
  exp(-delta^2 / (2 x 6^2)) where delta is the length difference (counted, as
  coco-caption does, in bigrams); mean over n and references, x 10. It needs a corpus:
  one image gives idf 0 and a score of 0, as in coco-caption.
* **METEOR** (:func:`meteor`): METEOR 1.5 as coco-caption runs the jar, ported in
  :mod:`.meteor` (same statistics, same score); it reads METEOR's synonym files and
  paraphrase table from the pycocoevalcap package and stems with nltk. Without them
  :func:`score_captions` leaves it out (``meteor`` None) unless asked for it.
* **METEOR, exact module only** (:func:`meteor_exact_simplified`): METEOR 1.5's scoring
  with exact matches only (the jar's ``-m exact``), which needs nothing installed. It
  reads lower than METEOR (0.115 against 0.152 on caption-like text): a progress signal,
  never to be reported as "METEOR".

On the same tokens, BLEU, ROUGE-L and CIDEr-D agree with pycocoevalcap 1.2 to float
precision (checked on random corpora; the check needs that package, so it is not a test).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from earthvlm.data.ledger import Ledger
from earthvlm.eval.metrics._common import check_lengths, check_text, json_float, new_ledger
from earthvlm.eval.metrics.meteor import (
    EXACT_ONLY,
    MeteorUnavailableError,
    load_resources,
    meteor_corpus,
    normalise,
    pair_stats,
)
from earthvlm.eval.metrics.meteor import score as meteor_score

Tokens = Sequence[str]

#: What coco-caption's PTB step does, as a few rules (Stanford PTBLexer 3.4.1, then the
#: removal of a fixed punctuation list; see :func:`ptb_tokenize`).
_PTB_SPLITS = (
    (re.compile(r"\b(can)(not)\b"), r"\1 \2"),
    (re.compile(r"\b(gon|wan)(na)\b"), r"\1 \2"),
    (re.compile(r"\b(got)(ta)\b"), r"\1 \2"),
    (re.compile(r"(?<=[^\W_])(n't|'(?:s|re|ve|ll|d|m))(?![^\W_])"), r" \1"),
)
_PTB_ABBREV = (
    "mr mrs ms dr st jr sr prof etc vs inc ltd corp jan feb mar apr jun jul aug sep sept "
    "oct nov dec"
)
_PTB_TOKEN = re.compile(
    r"n't|'(?:s|re|ve|ll|d|m)(?![^\W_])"
    # abbreviations keep their full stop: "u.s.", "e.g.", a single letter "m.", titles
    rf"|(?<![^\W_.])(?:[^\W\d_](?:\.[^\W\d_])*|{'|'.join(_PTB_ABBREV.split())})\.(?![^\W_])"
    # words, with inner hyphens, dots, slashes and apostrophes ("black-and-white", "3.5",
    # "and/or", "o'clock"), and numbers with inner commas and colons ("1,000", "10:30")
    r"|(?:[#@](?=[^\W\d_]))?[^\W_]+(?:(?:[-./']|(?<=\d)[,:](?=\d))[^\W_]+)*"
    # brackets are tokens (-lrb- ...: coco's removal list names them in upper case, so
    # after lower-casing they stay), and so are symbols
    r"|[()\[\]{}$%&=<>~^*+|#@]"
    # runs of ! and ? are one token, not in the removal list ("!!", "?!")
    r"|[!?]{2,}"
)
_PTB_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'})
_PTB_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}

#: BLEU's smoothing constants in coco-caption.
_TINY, _SMALL = 1e-15, 1e-9
CIDER_SIGMA = 6.0
ROUGE_BETA = 1.2


def ptb_tokenize(text: str) -> list[str]:
    """Lower-cased tokens as coco-caption's PTB step makes them.

    pycocoevalcap runs Stanford's PTBTokenizer (CoreNLP 3.4.1, ``-lowerCase``) and
    drops the tokens ``'' ' `` ` . ? ! , : - -- ... ;`` (its list also names ``-LRB-``
    and friends, in upper case, which the lower-cased output never matches: brackets
    stay as ``-lrb-``, ``-rrb-``, ``-lsb-``, ``-rsb-``, ``-lcb-``, ``-rcb-``). Rules kept
    here: clitics split (``"man's"`` -> ``man 's``, ``"don't"`` -> ``do n't``,
    ``cannot`` -> ``can not``, ``gonna`` -> ``gon na``); hyphenated words, decimals,
    ``1,000``, ``10:30``, ``and/or`` whole; abbreviations keep their full stop (``u.s.``,
    ``e.g.``, ``mr.``, a single letter ``m.``); symbols (``$ % & = + ...``) and runs such
    as ``!!`` are tokens.
    The lexer's rarer rules (``2.5km`` -> ``2.5 km``, ``rock'n'roll``, its full
    abbreviation lists) are not reproduced.

    ``"A man's dog (left), running!"`` -> ``["a", "man", "'s", "dog", "-lrb-", "left",
    "-rrb-", "running"]``.
    """
    s = str(text).lower().translate(_PTB_QUOTES)
    for pattern, repl in _PTB_SPLITS:
        s = pattern.sub(repl, s)
    return [_PTB_BRACKETS.get(t, t) for t in _PTB_TOKEN.findall(s)]


def _ngrams(tokens: Tokens, n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _check_corpus(hyps: Sequence[Tokens], refs: Sequence[Sequence[Tokens]]) -> None:
    check_lengths(hypotheses=hyps, references=refs)
    if not hyps:
        raise ValueError("no captions to score; pass at least one hypothesis")
    for i, r in enumerate(refs):
        if isinstance(r, str) or not r:
            raise ValueError(
                f"references[{i}] must be a non-empty list of token lists (one per "
                "reference caption)"
            )


def bleu(hyps: Sequence[Tokens], refs: Sequence[Sequence[Tokens]], n: int = 4) -> list[float]:
    """Corpus BLEU-1..n as coco-caption computes it (see the module docstring).

    Args:
        hyps: Tokenised hypothesis per image.
        refs: Tokenised references per image.
        n: Highest n-gram order.

    Returns:
        ``[BLEU-1, ..., BLEU-n]``.

    Raises:
        ValueError: On mismatched lengths, an image without references, or ``n < 1``.
    """
    _check_corpus(hyps, refs)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    correct = [0] * n
    guess = [0] * n
    test_len = ref_len = 0
    for hyp, rs in zip(hyps, refs, strict=True):
        c = len(hyp)
        test_len += c
        ref_len += min((abs(len(r) - c), len(r)) for r in rs)[1]
        for k in range(1, n + 1):
            h = _ngrams(hyp, k)
            max_ref: Counter[tuple[str, ...]] = Counter()
            for r in rs:
                max_ref |= _ngrams(r, k)
            correct[k - 1] += sum(min(cnt, max_ref[g]) for g, cnt in h.items())
            guess[k - 1] += max(0, c - k + 1)
    ratio = (test_len + _TINY) / (ref_len + _SMALL)
    bp = math.exp(1.0 - 1.0 / ratio) if ratio < 1.0 else 1.0
    out, prod = [], 1.0
    for k in range(n):
        prod *= (correct[k] + _TINY) / (guess[k] + _SMALL)
        out.append(prod ** (1.0 / (k + 1)) * bp)
    return out


def _lcs(a: Tokens, b: Tokens) -> int:
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l_sentence(hyp: Tokens, refs: Sequence[Tokens], beta: float = ROUGE_BETA) -> float:
    """ROUGE-L F of one caption against its references (coco-caption's form)."""
    if not hyp:
        return 0.0
    lcs = [_lcs(r, hyp) for r in refs]
    p = max(x / len(hyp) for x in lcs)
    r = max((x / len(ref) if ref else 0.0) for x, ref in zip(lcs, refs, strict=True))
    if p == 0 or r == 0:
        return 0.0
    return (1 + beta**2) * p * r / (r + beta**2 * p)


def rouge_l(hyps: Sequence[Tokens], refs: Sequence[Sequence[Tokens]]) -> float:
    """Mean ROUGE-L F (beta 1.2) over captions."""
    _check_corpus(hyps, refs)
    return math.fsum(rouge_l_sentence(h, r) for h, r in zip(hyps, refs, strict=True)) / len(hyps)


def _cider_vec(
    counts: Counter[tuple[str, ...]], df: Counter[tuple[str, ...]], log_n: float, n: int
) -> tuple[list[dict[tuple[str, ...], float]], list[float], int]:
    vec: list[dict[tuple[str, ...], float]] = [{} for _ in range(n)]
    norm = [0.0] * n
    length = 0
    for g, tf in counts.items():
        k = len(g) - 1
        w = tf * (log_n - math.log(max(1.0, df[g])))
        vec[k][g] = w
        norm[k] += w * w
        if k == 1:  # coco-caption counts the length in bigrams
            length += tf
    return vec, [math.sqrt(x) for x in norm], length


def cider_d_per_image(
    hyps: Sequence[Tokens], refs: Sequence[Sequence[Tokens]], n: int = 4
) -> list[float]:
    """CIDEr-D of each image (coco-caption's ``Cider``: sigma 6, clipping, x10)."""
    _check_corpus(hyps, refs)

    def counts(tokens: Tokens) -> Counter[tuple[str, ...]]:
        c: Counter[tuple[str, ...]] = Counter()
        for k in range(1, n + 1):
            c.update(_ngrams(tokens, k))
        return c

    ref_counts = [[counts(r) for r in rs] for rs in refs]
    df: Counter[tuple[str, ...]] = Counter()
    for rcs in ref_counts:
        df.update({g for rc in rcs for g in rc})
    log_n = math.log(float(len(refs)))
    scores = []
    for hyp, rcs in zip(hyps, ref_counts, strict=True):
        vh, nh, lh = _cider_vec(counts(hyp), df, log_n, n)
        total = [0.0] * n
        for rc in rcs:
            vr, nr, lr = _cider_vec(rc, df, log_n, n)
            penalty = math.exp(-((lh - lr) ** 2) / (2 * CIDER_SIGMA**2))
            for k in range(n):
                val = sum(min(w, vr[k].get(g, 0.0)) * vr[k].get(g, 0.0) for g, w in vh[k].items())
                if nh[k] != 0 and nr[k] != 0:
                    val /= nh[k] * nr[k]
                total[k] += val * penalty
        scores.append(sum(total) / n / len(rcs) * 10.0)
    return scores


def cider_d(hyps: Sequence[Tokens], refs: Sequence[Sequence[Tokens]], n: int = 4) -> float:
    """Corpus CIDEr-D: the mean of :func:`cider_d_per_image`."""
    per = cider_d_per_image(hyps, refs, n)
    return math.fsum(per) / len(per)


def _joined(tokens: Tokens) -> list[str]:
    """PTB tokens as the METEOR jar reads them: joined by spaces, then normalised."""
    return normalise(" ".join(tokens))


def meteor_exact_sentence(hyp: Tokens, ref: Tokens) -> float:
    """METEOR 1.5's score of one caption against one reference, exact module only."""
    return meteor_score(pair_stats(_joined(hyp), _joined(ref), EXACT_ONLY))


def meteor_exact_simplified(hyps: Sequence[Tokens], refs: Sequence[Sequence[Tokens]]) -> float:
    """METEOR 1.5 with its exact module only (the jar's ``-m exact``), corpus level.

    Not METEOR: it misses stem, synonym and paraphrase matches and reads lower.
    """
    _check_corpus(hyps, refs)
    strings = [" ".join(h) for h in hyps]
    return meteor_corpus(strings, [[" ".join(r) for r in rs] for rs in refs], EXACT_ONLY)[0]


def meteor(
    hyps: Sequence[Tokens], refs: Sequence[Sequence[Tokens]], *, meteor_dir: str | None = None
) -> float:
    """METEOR 1.5, corpus level, as coco-caption reports it (see :mod:`.meteor`).

    Args:
        hyps: Tokenised captions (:func:`ptb_tokenize`).
        refs: Tokenised references per caption.
        meteor_dir: A folder with ``meteor-1.5.jar`` and ``data/paraphrase-en.gz``
            (default: pycocoevalcap's).

    Raises:
        MeteorUnavailableError: If nltk or METEOR's files are not installed (nothing is
            downloaded).
    """
    _check_corpus(hyps, refs)
    hn = [" ".join(h) for h in hyps]
    rn = [[" ".join(r) for r in rs] for rs in refs]
    vocab = {w for s in [*hn, *(r for rs in rn for r in rs)] for w in normalise(s)}
    return meteor_corpus(hn, rn, load_resources(vocab, meteor_dir=meteor_dir))[0]


@dataclass(frozen=True)
class CaptionResult:
    """Caption scores over a corpus (coco-caption conventions, no Java).

    Attributes:
        bleu: BLEU-1..4 (corpus level).
        rouge_l: Mean ROUGE-L F (beta 1.2).
        cider_d: CIDEr-D (x10, as coco-caption reports "CIDEr").
        meteor_exact_simplified: METEOR 1.5 with exact matches only (not METEOR).
        n: Captions scored.
        ledger: ``ok`` = a caption was given; ``failed`` = missing or empty (scored as
            an empty caption); ``skipped`` = no reference captions.
        meteor: METEOR 1.5 (:func:`meteor`); None when it was not computed (its
            resources are not installed).
    """

    bleu: tuple[float, ...]
    rouge_l: float
    cider_d: float
    meteor_exact_simplified: float
    n: int
    ledger: Ledger
    meteor: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "n": self.n,
            **{f"bleu_{k + 1}": json_float(b) for k, b in enumerate(self.bleu)},
            "rouge_l": json_float(self.rouge_l),
            "cider_d": json_float(self.cider_d),
            "meteor_exact_simplified": json_float(self.meteor_exact_simplified),
            "meteor": None if self.meteor is None else json_float(self.meteor),
            "ledger": self.ledger.to_dict(),
        }


def score_captions(
    predictions: Sequence[str | None],
    references: Sequence[Sequence[str]],
    *,
    with_meteor: bool | None = None,
) -> CaptionResult:
    """BLEU-1..4, ROUGE-L, CIDEr-D, METEOR and exact-only METEOR of captions.

    Args:
        predictions: One caption per image (None for a missing one: scored as empty).
        references: Reference captions per image (an image without any is skipped and
            counted).
        with_meteor: METEOR 1.5 (pycocoevalcap's files and nltk): ``None`` computes it
            when they are installed, ``True`` requires them, ``False`` leaves it out.

    Returns:
        The :class:`CaptionResult`.

    Raises:
        ValueError: On mismatched lengths, a reference that is not a string, or no
            image with references.
    """
    n = check_lengths(predictions=predictions, references=references)
    ledger = new_ledger("captions")
    hyps: list[list[str]] = []
    refs: list[list[list[str]]] = []
    for i in range(n):
        rs = references[i]
        if isinstance(rs, str):
            raise ValueError(
                f"references[{i}] is a single string; give a list of reference captions"
            )
        if not rs or all(not str(r).strip() for r in rs):
            ledger.count_skipped("no reference captions")
            continue
        for j, r in enumerate(rs):
            if not isinstance(r, str):
                raise ValueError(f"references[{i}][{j}] must be a string, got {type(r).__name__}")
        pred = check_text(predictions[i], "predictions", i)
        tokens = ptb_tokenize(pred) if pred is not None else []
        if not tokens:
            ledger.count_failed("missing caption" if pred is None else "empty caption")
        else:
            ledger.count_ok()
        hyps.append(tokens)
        refs.append([ptb_tokenize(r) for r in rs if r.strip()])
    if not hyps:
        raise ValueError("no image has reference captions; nothing to score")
    full: float | None = None
    if with_meteor is not False:
        try:
            full = meteor(hyps, refs)
        except MeteorUnavailableError:
            if with_meteor:
                raise
    return CaptionResult(
        tuple(bleu(hyps, refs, 4)),
        rouge_l(hyps, refs),
        cider_d(hyps, refs),
        meteor_exact_simplified(hyps, refs),
        len(hyps),
        ledger,
        full,
    )
