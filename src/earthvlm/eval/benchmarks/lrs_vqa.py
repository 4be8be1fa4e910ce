"""``lrs_vqa``: LRS-VQA, open-ended questions about large remote-sensing images.

Reads the release with :class:`earthvlm.data.sources.lrs_vqa.LRSVQA` (no download)::

    root/
      LRS_VQA/LRS_VQA_merged.jsonl   one row per line (formats.md, LRS-VQA)
      LRS_VQA/image/<id>.tif         the images, named relative to root

The prompt is the row's ``text`` (the question and "Answer the question using a single
word or phrase."). Scoring: :func:`earthvlm.eval.metrics.score_lrs_vqa`. An answer is
correct if, lower-cased and without a trailing full stop, it equals the ground truth, or
some WordNet synset pair of the two has path similarity above 0.8. Accuracy is reported
per source (the ``question_id`` prefix: ``FAIR``, ``STAR``, ``GLH``) and category; a
source's AA is the mean over its categories, and the headline is the mean of the
per-source AAs, the paper's arithmetic ((27.37 + 42.42 + 31.77) / 3 = 33.85).

WordNet is loaded when the benchmark is built, so a missing install fails before any
model runs, with the install steps. ``wordnet=False`` scores by exact match only; the
result says so (``metrics["match"] == "exact"``) and does not compare with the paper.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from earthvlm.data.record import Record
from earthvlm.data.sources.lrs_vqa import LRSVQA
from earthvlm.eval.benchmarks.base import Benchmark, BenchmarkError
from earthvlm.eval.metrics.text import (
    Match,
    OpenEndedResult,
    SynsetProvider,
    score_lrs_vqa,
    wordnet_synsets,
)

#: The annotation file under the root, as the release unpacks.
ANNOTATIONS = "LRS_VQA/LRS_VQA_merged.jsonl"


def synonym_provider(
    wordnet: bool, synsets: SynsetProvider | None, wordnet_dir: str | None
) -> SynsetProvider | None:
    """The lexicon of the LRS matching rule (None: exact match only), loaded now.

    Raises:
        ValueError: If ``synsets`` is given with ``wordnet=False``.
        WordNetUnavailableError: If ``wordnet`` and no ``synsets``, and nltk or its
            WordNet data is missing (the message gives the install steps).
    """
    if not wordnet:
        if synsets is not None:
            raise ValueError("synsets is given but wordnet=False; drop one of the two")
        return None
    return synsets or wordnet_synsets(wordnet_dir)


@dataclass(kw_only=True)
class LRSVQABench(Benchmark):
    """LRS-VQA open-ended VQA (mean of the per-source average accuracies).

    Attributes:
        annotations: The JSONL file, relative to the root.
        wordnet: Match with the paper's rule (exact or WordNet path similarity > 0.8);
            False scores by exact match only (not comparable with the paper).
        wordnet_dir: A folder holding ``corpora/wordnet/`` (default: ``$NLTK_DATA``).
        synsets: ``word -> synsets`` in place of nltk's WordNet (tests, other lexicons).
    """

    name: ClassVar[str] = "lrs_vqa"
    version: ClassVar[str] = "1"
    metric: ClassVar[str] = "mean_source_aa"
    max_new_tokens: ClassVar[int] = 16
    files: ClassVar[tuple[str, ...]] = (ANNOTATIONS, "LRS_VQA/image/<id>.tif")

    annotations: str = ANNOTATIONS
    wordnet: bool = True
    wordnet_dir: str | None = None
    synsets: SynsetProvider | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        # loaded now: a missing WordNet fails before the model runs
        self._provider = synonym_provider(self.wordnet, self.synsets, self.wordnet_dir)

    @property
    def match(self) -> Match:
        """The matching rule: ``"lrs"`` (the paper's) or ``"exact"``."""
        return "lrs" if self.wordnet else "exact"

    def options(self) -> dict[str, Any]:
        opts = super().options()
        opts["synsets"] = None if self.synsets is None else "custom"  # JSON-ready
        return opts

    def source_of(self, record: Record) -> str:
        """The record's source (``FAIR``, ``STAR`` or ``GLH``)."""
        return str(record.meta.get("benchmark_source", "unknown"))

    def category(self, record: Record) -> str:
        """``SOURCE/category``: the cells of the paper's table."""
        return f"{self.source_of(record)}/{record.meta.get('category', 'unknown')}"

    def _read(self, root: Path) -> Iterator[Record]:
        if not (root / self.annotations).is_file():
            raise BenchmarkError(
                f"{root}: no {self.annotations}; give the folder that holds LRS_VQA/ "
                "(LRS_VQA_merged.jsonl and image/)"
            )
        return self._records(root)

    def _records(self, root: Path) -> Iterator[Record]:
        reader = LRSVQA(annotations=self.annotations)
        for rec in reader.read(root):
            self.ledger.count_ok()
            yield rec
        self.ledger.merge_left_out(reader.ledger)

    def _score(
        self, records: Sequence[Record], predictions: Sequence[str | None]
    ) -> OpenEndedResult:
        return score_lrs_vqa(
            predictions,
            [self.reference(r) for r in records],
            [str(r.meta.get("category", "unknown")) for r in records],
            [str(r.meta.get("question_id", r.id)) for r in records],
            match=self.match,
            synsets=self._provider,
        )

    def _item(self, record: Record, prediction: str | None) -> float | None:
        r = self._score([record], [prediction])
        if not r.n:
            return None
        return float(r.n_correct)

    def _summary(
        self,
        records: Sequence[Record],
        predictions: Sequence[str | None],
        item_scores: Sequence[float | None],
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        r = self._score(records, predictions)
        metrics: dict[str, Any] = {
            "mean_source_aa": r.headline,
            "overall_accuracy": r.overall,
            **{f"aa_{src}": t.average for src, t in r.by_source.items()},
            "match": r.match,
        }
        return metrics, {"open_ended": r.to_dict()}


__all__ = ["ANNOTATIONS", "LRSVQABench", "synonym_provider"]
