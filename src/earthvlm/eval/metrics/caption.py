"""Caption metrics without Java: BLEU-1..4, ROUGE-L, CIDEr-D, METEOR (nltk) and a simplified one.

Each follows coco-caption (pycocoevalcap) as closely as pure Python allows:

* **Tokenisation** (:func:`ptb_tokenize`) approximates its Stanford PTB tokenizer plus
  punctuation removal: lower-case; split off clitics (``"man's"`` -> ``man 's``,
  ``"don't"`` -> ``do n't``); keep hyphenated words and decimals (``black-and-white``,
  ``3.5``); drop punctuation. Rare PTB rules (abbreviations, special quotes) are not
  reproduced, so scores can differ slightly from the Java pipeline.
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
* **METEOR** (:func:`meteor`): unigram alignment in METEOR 1.0's three stages, exact
  tokens, then Porter stems, then WordNet 3.0 synonyms, each stage on the tokens left by
  the one before and aligning longest common runs first (METEOR searches for the
  maximum alignment with fewest chunks; the greedy runs agree on almost all captions);
  alpha 0.9, beta 3, gamma 0.5; the best reference per caption, the mean over captions.
  No paraphrase table or function-word weights (METEOR 1.5's Java release), so it is
  not METEOR 1.5 either. Not nltk's ``meteor_score``: that one compares *stems* in its
  synonym stage, so "plane" never matches "airplane". It needs nltk and WordNet
  (``earthvlm wordnet``); without them :func:`score_captions` leaves it out (``meteor``
  None) unless asked for it.
* **METEOR, simplified** (:func:`meteor_exact_simplified`): *not* METEOR 1.5 (no
  stems, synonyms, paraphrases, function-word weights). Exact unigram matches aligned
  by longest common runs first; P, R; Fmean = P R / (alpha P + (1 - alpha) R);
  penalty = gamma (chunks / matches)^beta with alpha 0.9, beta 3, gamma 0.5; the best
  reference per caption, the mean over captions. Expect it to read lower than Java
  METEOR; never report it as "METEOR".

On the same tokens, BLEU, ROUGE-L and CIDEr-D agree with pycocoevalcap 1.2 to float
precision (checked on random corpora; the check needs that package, so it is not a test).
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from earthvlm.data.ledger import Ledger
from earthvlm.eval.metrics._common import check_lengths, check_text, json_float, new_ledger

Tokens = Sequence[str]

_CLITIC = re.compile(r"(?<=\w)('(?:s|re|ve|ll|d|m)|n't)\b")
_TOKEN = re.compile(r"n't|'(?:s|re|ve|ll|d|m)\b|[^\W_]+(?:[-./][^\W_]+)*")

#: BLEU's smoothing constants in coco-caption.
_TINY, _SMALL = 1e-15, 1e-9
CIDER_SIGMA = 6.0
ROUGE_BETA = 1.2
METEOR_ALPHA, METEOR_BETA, METEOR_GAMMA = 0.9, 3.0, 0.5


def ptb_tokenize(text: str) -> list[str]:
    """Lower-cased word tokens without punctuation, close to coco-caption's PTB step.

    ``"A man's dog, running!"`` -> ``["a", "man", "'s", "dog", "running"]``.
    """
    s = _CLITIC.sub(r" \1", str(text).lower().replace("\u2019", "'"))
    return _TOKEN.findall(s)


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


def _align(
    hyp: Tokens,
    ref: Tokens,
    same: Callable[[int, int], bool] | None = None,
    free: tuple[list[bool], list[bool]] | None = None,
) -> list[tuple[int, int]]:
    """Unigram alignment, longest common run of unaligned tokens first (ties: the
    earliest in the hypothesis, then in the reference), until no token matches.

    ``same(i, j)`` says whether ``hyp[i]`` matches ``ref[j]`` (default: equal tokens);
    ``free`` holds the hypothesis and reference tokens still unaligned (updated in
    place, so later stages continue from it).
    """
    same = same or (lambda i, j: hyp[i] == ref[j])
    free_h, free_r = free or ([True] * len(hyp), [True] * len(ref))
    pairs: list[tuple[int, int]] = []
    while True:
        best = (0, 0, 0)  # length, hyp end, ref end
        prev = [0] * (len(ref) + 1)
        for i in range(len(hyp)):
            cur = [0] * (len(ref) + 1)
            if free_h[i]:
                for j in range(len(ref)):
                    if free_r[j] and same(i, j):
                        cur[j + 1] = prev[j] + 1
                        if cur[j + 1] > best[0]:
                            best = (cur[j + 1], i, j)
            prev = cur
        k, i, j = best
        if k == 0:
            return sorted(pairs)
        for d in range(k):
            free_h[i - d] = free_r[j - d] = False
            pairs.append((i - d, j - d))


def _meteor_score(
    pairs: Sequence[tuple[int, int]], n_hyp: int, n_ref: int, alpha: float, beta: float,
    gamma: float,
) -> float:  # fmt: skip
    """Fmean x (1 - penalty) of an alignment (``pairs`` sorted by hypothesis index)."""
    m = len(pairs)
    if m == 0:
        return 0.0
    p, r = m / n_hyp, m / n_ref
    fmean = p * r / (alpha * p + (1 - alpha) * r)
    chunks = 1 + sum(
        1 for (h0, r0), (h1, r1) in itertools.pairwise(pairs) if h1 != h0 + 1 or r1 != r0 + 1
    )
    return fmean * (1.0 - gamma * (chunks / m) ** beta)


def meteor_exact_sentence(
    hyp: Tokens,
    ref: Tokens,
    *,
    alpha: float = METEOR_ALPHA,
    beta: float = METEOR_BETA,
    gamma: float = METEOR_GAMMA,
) -> float:
    """Simplified METEOR of one caption against one reference (exact matches only)."""
    return _meteor_score(_align(hyp, ref), len(hyp), len(ref), alpha, beta, gamma)


def meteor_exact_simplified(hyps: Sequence[Tokens], refs: Sequence[Sequence[Tokens]]) -> float:
    """Mean over captions of the best simplified-METEOR score over references.

    Not METEOR 1.5; see the module docstring.
    """
    _check_corpus(hyps, refs)
    per = [max(meteor_exact_sentence(h, r) for r in rs) for h, rs in zip(hyps, refs, strict=True)]
    return math.fsum(per) / len(per)


def meteor_sentence(
    hyp: Tokens,
    ref: Tokens,
    *,
    stem: Callable[[str], str],
    synonyms: Callable[[str], set[str]],
    alpha: float = METEOR_ALPHA,
    beta: float = METEOR_BETA,
    gamma: float = METEOR_GAMMA,
) -> float:
    """METEOR of one caption against one reference, matched in three stages.

    Exact tokens first, then equal stems among the tokens left, then synonyms
    (``ref[j] in synonyms(hyp[i])``) among those still left; each stage aligns longest
    common runs first. The surface words are compared in the synonym stage (nltk's
    ``meteor_score`` compares stems there, so "plane" never meets "airplane").
    """
    free = ([True] * len(hyp), [True] * len(ref))
    pairs = _align(hyp, ref, None, free)
    stems_h, stems_r = [stem(w) for w in hyp], [stem(w) for w in ref]
    pairs += _align(hyp, ref, lambda i, j: stems_h[i] == stems_r[j], free)
    syn = [synonyms(w) if free[0][i] else set() for i, w in enumerate(hyp)]
    pairs += _align(hyp, ref, lambda i, j: ref[j] in syn[i], free)
    return _meteor_score(sorted(pairs), len(hyp), len(ref), alpha, beta, gamma)


def meteor(
    hyps: Sequence[Tokens], refs: Sequence[Sequence[Tokens]], *, data_dir: str | None = None
) -> float:
    """METEOR (exact, Porter-stem and WordNet-synonym stages), mean over captions of the
    best reference.

    Stems from nltk's ``PorterStemmer``; synonyms are the single-word lemma names of
    every WordNet 3.0 synset of the word (METEOR 1.0's synonymy module).

    Args:
        hyps: Tokenised captions (:func:`ptb_tokenize`).
        refs: Tokenised references per caption.
        data_dir: A folder holding ``corpora/wordnet`` (else nltk's search path).

    Raises:
        WordNetUnavailableError: If nltk or WordNet is not installed (nothing is
            downloaded).
    """
    from earthvlm.eval.metrics.text import wordnet_synsets

    _check_corpus(hyps, refs)
    synsets = wordnet_synsets(data_dir)  # raises with install steps if missing
    from nltk.stem.porter import PorterStemmer

    stem = functools.cache(PorterStemmer().stem)

    @functools.cache
    def synonyms(word: str) -> set[str]:
        names = {ln for s in synsets(word) for ln in s.lemma_names() if "_" not in ln}
        return {n.lower() for n in names} | {word}

    per = [
        max(meteor_sentence(h, r, stem=stem, synonyms=synonyms) for r in rs)
        for h, rs in zip(hyps, refs, strict=True)
    ]
    return math.fsum(per) / len(per)


@dataclass(frozen=True)
class CaptionResult:
    """Caption scores over a corpus (coco-caption conventions, no Java).

    Attributes:
        bleu: BLEU-1..4 (corpus level).
        rouge_l: Mean ROUGE-L F (beta 1.2).
        cider_d: CIDEr-D (x10, as coco-caption reports "CIDEr").
        meteor_exact_simplified: The simplified METEOR (not METEOR 1.5).
        n: Captions scored.
        ledger: ``ok`` = a caption was given; ``failed`` = missing or empty (scored as
            an empty caption); ``skipped`` = no reference captions.
        meteor: METEOR with stems and WordNet synonyms (:func:`meteor`); None when it
            was not computed (WordNet not installed).
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
    """BLEU-1..4, ROUGE-L, CIDEr-D, METEOR and simplified METEOR of captions.

    Args:
        predictions: One caption per image (None for a missing one: scored as empty).
        references: Reference captions per image (an image without any is skipped and
            counted).
        with_meteor: METEOR through nltk + WordNet: ``None`` computes it when WordNet is
            installed, ``True`` requires it, ``False`` leaves it out.

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
        from earthvlm.eval.metrics.text import WordNetUnavailableError

        try:
            full = meteor(hyps, refs)
        except WordNetUnavailableError:
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
