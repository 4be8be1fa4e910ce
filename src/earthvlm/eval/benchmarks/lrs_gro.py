"""``lrs_gro``: LRS-GRO (ZoomEarth), questions about large images with a region of interest.

Reads the release's rows from a local folder (no download), checked by
:func:`earthvlm.data.sources.lrs_gro.parse_lrs_gro_row` (the parser the training reader
``lrs-gro`` shares; the layout and row fields are described there)::

    root/
      LRS-GRO.jsonl        one row per line (also read: lrs_gro.jsonl, lrs_gro.json)
      image/<image_name>   the images (the release's inference reads ./image/)

Boxes live on a grid whose longer side is 1024 px.

The prompt asks for the region of interest as ``[x1, y1, x2, y2]`` on a grid whose longer
side is :attr:`LRSGROBench.box_grid_px` (1024, the annotation grid; 512 for ZoomEarth's
global view: the box is rescaled to 1024 before scoring), then for a short answer inside
``<answer></answer>``. Scoring:

* the answer: the text of the last ``<answer>`` tag, else the response without its
  ``<think>`` part and boxes (its last non-empty line); correct by the LRS-VQA rule
  (``answer_rule="lrs"``: lower-case, trailing full stop stripped, equal or WordNet path
  similarity > 0.8; see :mod:`earthvlm.eval.benchmarks.lrs_vqa`), or by the release's
  rule (``answer_rule="release"``, to compare with the paper like for like:
  ``src/eval/eval.py`` lower-cases, compares the strings, else lemmatises both (nltk's
  WordNet lemmatiser, nouns) and accepts a path similarity >= 0.8). Path similarity is
  ``1 / (1 + path length)``, so no pair scores exactly 0.8 and the thresholds agree; the
  rules differ by the lemmatising and by the release keeping a trailing full stop.
  Accuracy overall (the headline) and by type. The per-item score and the RL reward are
  the answer's correctness.
* APO IoU: the mean IoU of the first box in the response against ``bbox`` over the rows
  that have one, a missing or invalid box scoring 0. There is no official script; this
  follows the paper's description. In the zoom arm (``earthvlm eval --zoom``) the box is
  the executed crop's, not text: the runner puts the crop's APO IoU here
  (:mod:`earthvlm.eval.zoom_report`), per ROI type; ``global`` rows have no ROI and are
  scored on the answer alone.

The zoom arm asks ``meta["zoom_question"]`` (the question and the answer format, no box
line: :func:`~earthvlm.data.sources.lrs_gro.lrs_gro_zoom_prompt`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import ValidationError

from earthvlm.data.ledger import Ledger
from earthvlm.data.record import ImagePart, ImageRef, Message, Record, TextPart, primary_error
from earthvlm.data.sources._base import RowError
from earthvlm.data.sources.lrs_gro import (
    ANNOTATION_FILES,
    GRID_PX,
    TYPES,
    lrs_gro_prompt,
    parse_lrs_gro_row,
)
from earthvlm.eval.benchmarks.base import (
    BadRow,
    Benchmark,
    BenchmarkError,
    release_rows,
    unique_records,
)
from earthvlm.eval.benchmarks.lrs_vqa import synonym_provider
from earthvlm.eval.metrics import (
    AccuracyTable,
    GroupScore,
    OpenEndedResult,
    SynsetProvider,
    parse_box,
    score_grounding,
    score_open_ended,
    wordnet_similar,
)
from earthvlm.eval.metrics.text import LRS_PATH_SIMILARITY

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_BOXES = re.compile(r"\[[^\[\]]*\]|\{[^{}]*\}")


def extract_answer(text: str | None) -> str | None:
    """The answer in a response: the last ``<answer>`` tag, else the last non-empty line
    once the ``<think>`` part and any box lists or JSON objects are removed."""
    if text is None:
        return None
    tags = _ANSWER.findall(text)
    if tags:
        return str(tags[-1]).strip()
    rest = _BOXES.sub(" ", _THINK.sub(" ", text))
    lines = [line.strip() for line in rest.splitlines() if line.strip()]
    return lines[-1] if lines else ""


#: The release's threshold is inclusive (``>= 0.8``); ``wordnet_similar`` counts a
#: similarity strictly above its threshold, and above the float just below 0.8 is >= 0.8.
RELEASE_THRESHOLD = math.nextafter(LRS_PATH_SIMILARITY, 0.0)

AnswerRule = Literal["lrs", "release"]


def nltk_lemmatizer() -> Callable[[str], str]:
    """nltk's WordNet lemmatiser (nouns), as the release's ``eval.py`` calls it; the word
    unchanged where it fails (the release catches every error the same way)."""
    from nltk.stem import WordNetLemmatizer

    lemmatizer = WordNetLemmatizer()

    def lemma(word: str) -> str:
        try:
            return str(lemmatizer.lemmatize(word))
        except Exception:
            return word

    return lemma


def release_match(
    prediction: str | None,
    reference: str,
    synsets: SynsetProvider,
    lemmatize: Callable[[str], str],
) -> bool:
    """LRS-GRO's release rule (``src/eval/eval.py``): the lower-cased reference equals the
    lower-cased, stripped answer, or their lemmas have WordNet path similarity >= 0.8.
    A missing or empty answer is wrong."""
    if prediction is None or not prediction.strip():
        return False
    p, r = prediction.lower().strip(), reference.lower()
    return p == r or wordnet_similar(
        lemmatize(p), lemmatize(r), synsets, threshold=RELEASE_THRESHOLD
    )


@dataclass(kw_only=True)
class LRSGROBench(Benchmark):
    """LRS-GRO: answer accuracy (overall and by type) and APO IoU of the region.

    Attributes:
        annotation: The rows file under the root (default: the first of
            :data:`ANNOTATION_FILES` found).
        image_dir: The folder under the root that ``image_name`` is relative to.
        split: Keep only rows whose ``split`` is this, case-insensitive (the release
            writes ``sft``, ``RL``, ``test``; None: every row).
        box_grid_px: Longer side of the grid the model gives its box on (the prompt says
            it); boxes are rescaled to the 1024 grid of the annotations.
        wordnet: Match with the LRS rule (exact or WordNet path similarity > 0.8);
            False scores by exact match only (said in ``metrics["match"]``).
        answer_rule: ``lrs`` (the LRS-VQA rule, > 0.8) or ``release`` (the release's
            ``eval.py``: lemmatised, >= 0.8; needs ``wordnet``); said in
            ``metrics["match"]``.
        wordnet_dir: A folder holding ``corpora/wordnet/`` (default: ``$NLTK_DATA``).
        synsets: ``word -> synsets`` in place of nltk's WordNet (tests, other lexicons).
        lemmatize: ``word -> lemma`` for ``answer_rule="release"``; default nltk's
            WordNet lemmatiser, or no lemmatising with custom ``synsets``.
    """

    name: ClassVar[str] = "lrs_gro"
    version: ClassVar[str] = "1"
    metric: ClassVar[str] = "accuracy"
    max_new_tokens: ClassVar[int] = 128
    files: ClassVar[tuple[str, ...]] = ("LRS-GRO.jsonl (or lrs_gro.jsonl)", "image/<image_name>")

    annotation: str | None = None
    image_dir: str = "image"
    split: str | None = None
    box_grid_px: int = GRID_PX
    wordnet: bool = True
    answer_rule: AnswerRule = "lrs"
    wordnet_dir: str | None = None
    synsets: SynsetProvider | None = field(default=None, repr=False, compare=False)
    lemmatize: Callable[[str], str] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.box_grid_px < 1:
            raise ValueError(f"box_grid_px={self.box_grid_px}: give the grid's longer side")
        if self.answer_rule not in ("lrs", "release"):
            raise ValueError(f"answer_rule={self.answer_rule!r}: choose 'lrs' or 'release'")
        if self.answer_rule == "release" and not self.wordnet:
            raise ValueError("answer_rule='release' needs WordNet: drop wordnet=false")
        # loaded now: a missing WordNet fails before the model runs
        self._provider = synonym_provider(self.wordnet, self.synsets, self.wordnet_dir)
        self._lemma: Callable[[str], str] | None = None
        if self.answer_rule == "release":
            self._lemma = self.lemmatize or (
                nltk_lemmatizer() if self.synsets is None else (lambda w: w)
            )

    def options(self) -> dict[str, Any]:
        opts = super().options()
        opts["synsets"] = None if self.synsets is None else "custom"  # JSON-ready
        opts["lemmatize"] = None if self.lemmatize is None else "custom"
        return opts

    def category(self, record: Record) -> str:
        """The question type: ``global``, ``region`` or ``object``."""
        return str(record.meta.get("type", "unknown"))

    def reference_box(self, record: Record) -> list[float] | None:
        """The region of interest on the 1024 grid (None for a global question)."""
        box = record.meta.get("bbox")
        return [float(v) for v in box] if box else None

    def roi_xyxy_px(
        self, record: Record, source_hw: tuple[int, int]
    ) -> tuple[str, list[float] | None]:
        """``(roi type, the region of interest in source pixels)`` for the zoom arm's
        summary: the 1024-grid box scaled to the image's longer side (None for a global
        question)."""
        box = self.reference_box(record)
        k = max(source_hw) / GRID_PX
        return self.category(record), None if box is None else [v * k for v in box]

    def predicted_box(self, prediction: str | None) -> list[float] | None:
        """The first box of a response, rescaled to the 1024 grid (None if none)."""
        box = parse_box(prediction).box_xyxy
        if box is None:
            return None
        k = GRID_PX / self.box_grid_px
        return [v * k for v in box]

    # -- reading ---------------------------------------------------------------------

    def _annotation(self, root: Path) -> Path:
        if root.is_file():
            return root
        names = (self.annotation,) if self.annotation else ANNOTATION_FILES
        for name in names:
            if (root / name).is_file():
                return root / name
        raise BenchmarkError(
            f"{root}: none of {', '.join(names)} found; put the LRS-GRO rows there "
            "(see earthvlm.eval.benchmarks.lrs_gro for the layout)"
        )

    def _read(self, root: Path) -> Iterator[Record]:
        return self._records(self._annotation(root))

    def _records(self, path: Path) -> Iterator[Record]:
        return unique_records(
            self._this_split(release_rows(path, self.ledger)),
            self._record,
            self.ledger,
            duplicate_reason="duplicate_question_id",
        )

    def _this_split(self, rows: Iterable[Any]) -> Iterator[Any]:
        for row in rows:
            if (
                self.split is not None
                and isinstance(row, dict)
                and row.get("split") is not None
                and str(row["split"]).lower() != self.split.lower()
            ):
                self.ledger.count_skipped("other_split")
                continue
            yield row

    def _record(self, row: Any) -> Record:
        try:
            g = parse_lrs_gro_row(row)
        except RowError as e:
            raise BadRow(e.reason) from None
        rel = f"{self.image_dir}/{g.image_name}" if self.image_dir else g.image_name
        try:
            return Record(
                id=f"lrs-gro-{g.question_id}",
                task="vqa",
                source="lrs-gro",
                split=g.split or "test",
                images=[ImageRef(path=rel)],
                messages=[
                    Message(
                        role="user",
                        content=[
                            ImagePart(index=0),
                            TextPart(text=lrs_gro_prompt(g.question, self.box_grid_px)),
                        ],
                    ),
                    Message(role="assistant", content=g.answer),
                ],
                meta=g.meta,
            )
        except ValidationError as e:
            raise BadRow(str(primary_error(e)["type"])) from None

    # -- scoring ---------------------------------------------------------------------

    def _answers(
        self, records: Sequence[Record], predictions: Sequence[str | None]
    ) -> OpenEndedResult:
        answers = [extract_answer(p) for p in predictions]
        refs = [self.reference(r) for r in records]
        types = [self.category(r) for r in records]
        provider, lemma = self._provider, self._lemma
        if provider is None or lemma is None:  # the LRS rule, or exact match
            return score_open_ended(
                answers,
                refs,
                sources=types,
                match="lrs" if provider is not None else "exact",
                synsets=provider,
            )
        return _release_answers(answers, refs, types, provider, lemma)

    def _item(self, record: Record, prediction: str | None) -> float | None:
        r = self._answers([record], [prediction])
        if not r.n:
            return None
        return float(r.n_correct)

    def _summary(
        self,
        records: Sequence[Record],
        predictions: Sequence[str | None],
        item_scores: Sequence[float | None],
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        answers = self._answers(records, predictions)
        boxed = [i for i, r in enumerate(records) if self.reference_box(r) is not None]
        iou = score_grounding(
            [self.predicted_box(predictions[i]) for i in boxed],
            [self.reference_box(records[i]) for i in boxed],
        )
        metrics: dict[str, Any] = {
            "accuracy": answers.overall,
            **{f"acc_{t}": answers.by_source[t].overall for t in TYPES if t in answers.by_source},
            "apo_iou": iou.mean_iou,
            "match": answers.match,
        }
        return metrics, {"answers": answers.to_dict(), "apo_iou": iou.to_dict()}


def _release_answers(
    answers: list[str | None],
    refs: list[str],
    types: list[str],
    synsets: SynsetProvider,
    lemmatize: Callable[[str], str],
) -> OpenEndedResult:
    """The release rule per type, counted as :func:`score_open_ended` counts (an empty
    reference is skipped, a missing or empty answer is wrong)."""
    ledger = Ledger("open-ended (release)")
    groups: dict[str, list[bool]] = {}
    for answer, ref, kind in zip(answers, refs, types, strict=True):
        if not ref.strip():
            ledger.count_skipped("no ground truth")
            continue
        if answer is None or not answer.strip():
            ledger.count_failed("missing prediction" if answer is None else "empty prediction")
        else:
            ledger.count_ok()
        groups.setdefault(kind, []).append(release_match(answer, ref, synsets, lemmatize))
    by_type = {
        kind: AccuracyTable({"all": GroupScore(len(ok), sum(ok))})
        for kind, ok in sorted(groups.items())
    }
    return OpenEndedResult("release", by_type, ledger)


__all__ = [
    "ANNOTATION_FILES",
    "GRID_PX",
    "RELEASE_THRESHOLD",
    "TYPES",
    "LRSGROBench",
    "extract_answer",
    "lrs_gro_prompt",
    "nltk_lemmatizer",
    "release_match",
]
