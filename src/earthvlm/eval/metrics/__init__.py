"""Evaluation metrics: pure functions over predictions and references (numpy, no torch).

Each scorer validates its inputs (``ValueError`` naming the input and the item), keeps a
:class:`~earthvlm.data.ledger.Ledger` in which every item is ok, skipped with a reason
(no reference) or failed with a reason (unparseable prediction, scored as wrong), and
returns a small dataclass with ``to_dict()``. Rules follow the published ones in
``shared/notes/formats.md``; where a release differs from its description, both are
available and the docstring says which is the default.

* :mod:`.mcq`: option letters (XLRS-Bench, OmniEarth-Bench and an abstaining
  extractor), micro / macro scores, the "unable to decide" rate.
* :mod:`.text`: short-answer normalisation, exact match, the LRS-VQA WordNet rule
  (offline only), per-source / per-category accuracy, RSVQA per question type.
* :mod:`.counting`: numbers and yes/no read from text; exact and tolerant counts.
* :mod:`.grounding`: Acc@IoU of the first box in an answer, mean IoU.
* :mod:`.segmentation`: mIoU, cIoU, gIoU (and EarthMind's release variants).
* :mod:`.caption`: BLEU-1..4, ROUGE-L, CIDEr-D and METEOR 1.5 (:mod:`.meteor`) as
  coco-caption computes them, and an exact-only METEOR that needs nothing installed.
* :mod:`.detection`: rotated-box AP_nc (constant / random / given confidences), mAP at
  0.5, 0.75 and 0.5:0.95, mF1, and the val-chosen score threshold protocol.
"""

from earthvlm.eval.metrics._common import AccuracyTable, GroupScore
from earthvlm.eval.metrics.caption import (
    CaptionResult,
    bleu,
    cider_d,
    cider_d_per_image,
    meteor,
    meteor_exact_sentence,
    meteor_exact_simplified,
    ptb_tokenize,
    rouge_l,
    rouge_l_sentence,
    score_captions,
)
from earthvlm.eval.metrics.counting import (
    CountingResult,
    NumberParse,
    YesNo,
    YesNoResult,
    extract_yes_no,
    parse_number,
    score_counts,
    score_yes_no,
)
from earthvlm.eval.metrics.detection import (
    IOU_THRESHOLDS,
    SCORE_THRESHOLDS,
    DetectionResult,
    Objects,
    ThresholdChoice,
    choose_score_threshold,
    evaluate_detections,
)
from earthvlm.eval.metrics.grounding import (
    DEFAULT_THRESHOLDS,
    BoxParse,
    GroundingResult,
    paired_iou_xyxy,
    parse_box,
    score_grounding,
)
from earthvlm.eval.metrics.mcq import (
    OMNIEARTH_PREFIXES,
    XLRS_PREFIXES,
    XLRS_SUBTASKS,
    Choice,
    MCQResult,
    extract_choice,
    extract_omniearth,
    extract_xlrs,
    parse_answer_letters,
    score_choices,
    score_mcq,
    score_omniearth,
    score_xlrs,
)
from earthvlm.eval.metrics.segmentation import SegmentationResult, mask_iou, score_segmentation
from earthvlm.eval.metrics.text import (
    LRS_PATH_SIMILARITY,
    RSVQA_TYPES,
    OpenEndedResult,
    RSVQAResult,
    SynsetProvider,
    WordNetUnavailableError,
    exact_match,
    lrs_match,
    lrs_vqa_source,
    mean_of_source_aa,
    normalise_answer,
    score_lrs_vqa,
    score_open_ended,
    score_rsvqa,
    wordnet_similar,
    wordnet_synsets,
    words_to_digits,
)

__all__ = [
    "DEFAULT_THRESHOLDS",
    "IOU_THRESHOLDS",
    "LRS_PATH_SIMILARITY",
    "OMNIEARTH_PREFIXES",
    "RSVQA_TYPES",
    "SCORE_THRESHOLDS",
    "XLRS_PREFIXES",
    "XLRS_SUBTASKS",
    "AccuracyTable",
    "BoxParse",
    "CaptionResult",
    "Choice",
    "CountingResult",
    "DetectionResult",
    "GroundingResult",
    "GroupScore",
    "MCQResult",
    "NumberParse",
    "Objects",
    "OpenEndedResult",
    "RSVQAResult",
    "SegmentationResult",
    "SynsetProvider",
    "ThresholdChoice",
    "WordNetUnavailableError",
    "YesNo",
    "YesNoResult",
    "bleu",
    "choose_score_threshold",
    "cider_d",
    "cider_d_per_image",
    "evaluate_detections",
    "exact_match",
    "extract_choice",
    "extract_omniearth",
    "extract_xlrs",
    "extract_yes_no",
    "lrs_match",
    "lrs_vqa_source",
    "mask_iou",
    "mean_of_source_aa",
    "meteor",
    "meteor_exact_sentence",
    "meteor_exact_simplified",
    "normalise_answer",
    "paired_iou_xyxy",
    "parse_answer_letters",
    "parse_box",
    "parse_number",
    "ptb_tokenize",
    "rouge_l",
    "rouge_l_sentence",
    "score_captions",
    "score_choices",
    "score_counts",
    "score_grounding",
    "score_lrs_vqa",
    "score_mcq",
    "score_omniearth",
    "score_open_ended",
    "score_rsvqa",
    "score_segmentation",
    "score_xlrs",
    "score_yes_no",
    "wordnet_similar",
    "wordnet_synsets",
    "words_to_digits",
]
