"""Evaluating one trained fusion run in the EarthMind-Bench format, per setting and split.

* **MCQ** (object existence, yes / no): the model's answer is the option it gives the
  highest likelihood after the prompt (:class:`~earthvlm.eval.choice.ChoiceScorer`,
  equal to greedy decoding when options differ in their first token, as here), then
  scored by strict string match with the reference (EarthMind-Bench's MCQ rule).
* **Referring segmentation**: the model first decides whether it answers ``[SEG]`` or
  "There is no <class>." by the probability of each answer's first token, the choice
  greedy decoding makes (App. D: no ``[SEG]`` means not present). Where it answers
  ``[SEG]`` the mask is decoded from the final hidden state at that token (logits > 0);
  otherwise the prediction is missing (IoU 0). mIoU, cIoU and
  gIoU come from :func:`earthvlm.eval.metrics.segmentation.score_segmentation` over items
  whose class is present; absent-class items give the no-object accuracy.
* **Open-ended** ("Which kinds of object are in the scene?"): greedy answers
  (:func:`earthvlm.eval.runner.generate_answers`, the benchmark runner's decoding), scored
  1-5 afterwards by the open-ended judge (:func:`judge_settings`, EarthMind's protocol).
* Splits: ``all``, ``clear`` and ``cloudy`` scenes, and ``cloud_hidden`` items (clouds
  cover most of the pixels of the objects asked about).
* **MAS** (Eq. 1): per layer, the share of visual-to-visual attention that goes to optical
  vs SAR content over the fused test items, with eager attention; fused tokens count by
  their fusion weights (:func:`~earthvlm.fusion.mas.composition_from_fused`). For
  methods that mix per token, also the mean fusion-weight gap (Table 4's HCA number).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from earthvlm.data.collate import Collator
from earthvlm.data.record import Record
from earthvlm.eval.choice import ChoiceScorer, with_answer
from earthvlm.eval.judge import JudgeResult, judge_open_ended
from earthvlm.eval.metrics.segmentation import score_segmentation
from earthvlm.eval.runner import generate_answers
from earthvlm.fusion.mas import (
    composition_from_fused,
    fusion_weight_gap,
    modality_attention_score,
)
from earthvlm.models.earthvlm import EarthVLM
from earthvlm.models.seg import SegOutput
from earthvlm.synth.fusion_world import NO_OBJECT, OPEN_QUESTION, SEG_ANSWER, SETTINGS
from earthvlm.teacher.client import ChatClient

#: The splits every score is reported on.
SPLITS = ("all", "clear", "cloudy", "cloud_hidden")
#: Longest open-ended answer generated (the longest reference is ~20 tokens).
OPEN_MAX_NEW_TOKENS = 32


def split_of(record: Record) -> set[str]:
    """The splits an item belongs to."""
    out = {"all", "cloudy" if record.meta.get("cloudy") else "clear"}
    if record.meta.get("cloud_hidden"):
        out.add("cloud_hidden")
    return out


@dataclass
class SettingScores:
    """One model's per-item outcomes in one setting (``fused``, ``optical``, ``sar``).

    Attributes:
        mcq: ``item -> correct`` (strict match).
        seg_iou: ``item -> IoU`` of present-class items (0 where no ``[SEG]`` was chosen).
        seg_pred: ``item -> predicted mask`` (or None), for the cumulative scores.
        seg_target: ``item -> target mask``.
        no_object: ``item -> correct`` for absent-class items (no ``[SEG]`` chosen).
        open_pred: ``item -> greedy answer`` of open-ended items (None: not generated).
        open_ref: ``item -> reference answer`` of open-ended items.
        open_score: ``item -> judge score`` (1-5; filled by :func:`judge_settings`; an
            item the judge could not score is left out).
        splits: ``item -> its splits``.
    """

    mcq: dict[str, bool] = field(default_factory=dict)
    seg_pred: dict[str, np.ndarray | None] = field(default_factory=dict)
    seg_target: dict[str, np.ndarray] = field(default_factory=dict)
    no_object: dict[str, bool] = field(default_factory=dict)
    open_pred: dict[str, str | None] = field(default_factory=dict)
    open_ref: dict[str, str] = field(default_factory=dict)
    open_score: dict[str, int] = field(default_factory=dict)
    splits: dict[str, set[str]] = field(default_factory=dict)

    def table(self) -> dict[str, dict[str, Any]]:
        """Per split: MCQ accuracy, mIoU / cIoU / gIoU, no-object accuracy, judge score,
        counts."""
        out: dict[str, dict[str, Any]] = {}
        for split in SPLITS:
            mcq = [v for k, v in self.mcq.items() if split in self.splits[k]]
            seg = [k for k in self.seg_target if split in self.splits[k]]
            neg = [v for k, v in self.no_object.items() if split in self.splits[k]]
            judged = [v for k, v in self.open_score.items() if split in self.splits[k]]
            row: dict[str, Any] = {
                "mcq_acc": float(np.mean(mcq)) if mcq else math.nan, "n_mcq": len(mcq),
                "no_object_acc": float(np.mean(neg)) if neg else math.nan, "n_absent": len(neg),
                "n_seg": len(seg),
                "open_score": float(np.mean(judged)) if judged else math.nan,
                "n_open": sum(split in self.splits[k] for k in self.open_ref),
                "n_open_scored": len(judged),
            }  # fmt: skip
            if seg:
                r = score_segmentation([self.seg_pred[k] for k in seg],
                                       [self.seg_target[k] for k in seg])  # fmt: skip
                row.update(miou=r.miou, ciou=r.ciou, giou=r.giou)
            else:
                row.update(miou=math.nan, ciou=math.nan, giou=math.nan)
            out[split] = row
        return out


@dataclass
class MASResult:
    """Modality attention per layer over the fused test items.

    Attributes:
        per_layer: ``(layers, 2)``: mean [optical, SAR] share (Eq. 1).
        weight_gap: Mean ``w_o - w_s`` of the fused tokens (None for concatenation).
        n: Items measured.
    """

    per_layer: np.ndarray
    weight_gap: float | None
    n: int

    @property
    def gap(self) -> np.ndarray:
        """Optical minus SAR share per layer."""
        return self.per_layer[:, 0] - self.per_layer[:, 1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "optical": self.per_layer[:, 0].tolist(),
            "sar": self.per_layer[:, 1].tolist(),
            "gap": self.gap.tolist(),
            "weight_gap": self.weight_gap,
            "n": self.n,
        }


def _chunks(items: Sequence[Any], n: int) -> list[Sequence[Any]]:
    return [items[i : i + n] for i in range(0, len(items), n)]


@torch.no_grad()
def _first_token_logliks(
    tm: EarthVLM, collator: Any, recs: Sequence[Record], answers: list[str]
) -> np.ndarray:
    """Log-probability of the first token of one given answer per record: comparing two
    answers by it is the choice greedy decoding makes at the answer's first step (a
    whole-sequence sum would favour the shorter answer)."""
    batch = collator([with_answer(r, a) for r, a in zip(recs, answers, strict=True)])
    if len(batch) != len(recs):
        raise RuntimeError(f"{len(recs) - len(batch)} record(s) failed: {batch.failures[:2]}")
    inputs = tm.model_inputs(batch)
    labels = inputs.pop("labels")
    logits = tm.logits(inputs, batch.gsds, batch.modalities)
    first = (labels != -100).float().argmax(1)  # the answer's first token
    logp = torch.log_softmax(logits.float()[torch.arange(len(recs)), first - 1], dim=-1)
    return logp.gather(-1, labels[torch.arange(len(recs)), first][:, None])[:, 0].numpy()


def evaluate_setting(
    tm: EarthVLM, records: Sequence[Record], root: Path, *, batch_size: int = 32
) -> SettingScores:
    """Score ``tm`` on one setting's records (MCQ and segmentation items)."""
    scores = SettingScores()
    for r in records:
        scores.splits[r.meta["item"]] = split_of(r)
    mcq = [r for r in records if r.task == "mcq"]
    classes = sorted({c for r in mcq for c in r.meta["candidates"]})
    if mcq:
        scorer = ChoiceScorer(tm, root, classes, batch_size=batch_size)
        ll = scorer.logliks(mcq, [None] * len(mcq))
        for r, row in zip(mcq, ll, strict=True):
            options = r.meta["candidates"]
            pred = max(options, key=lambda c: row[classes.index(c)])
            scores.mcq[r.meta["item"]] = pred == r.messages[-1].text()  # strict match
    opened = [r for r in records if r.task == "open"]
    if opened:
        gen = Collator(tm.backbone, root, mode="generate",
                       max_length=tm.max_length)  # fmt: skip
        for chunk in _chunks(opened, batch_size):
            rows = generate_answers(tm, gen, chunk, max_new_tokens=OPEN_MAX_NEW_TOKENS)
            for r, row in zip(chunk, rows, strict=True):
                scores.open_pred[r.meta["item"]] = row["prediction"]
                scores.open_ref[r.meta["item"]] = r.messages[-1].text()
    seg = [r for r in records if r.task == "segmentation"]
    collator = tm.collator(root)
    for chunk in _chunks(seg, batch_size):
        with_seg = _first_token_logliks(tm, collator, chunk, [SEG_ANSWER] * len(chunk))
        without = _first_token_logliks(
            tm, collator, chunk, [NO_OBJECT.format(cls=r.meta["class"]) for r in chunk]
        )
        says_seg = with_seg > without
        present = [r for r in chunk if r.meta["present"]]
        for r, s in zip(chunk, says_seg, strict=True):
            if not r.meta["present"]:
                scores.no_object[r.meta["item"]] = not bool(s)
        if not present:
            continue
        batch = collator(present)  # their answers are [SEG]: masks read with the batch
        out = tm.run(tm.model_inputs(batch), batch.gsds, modalities=batch.modalities,
                     mask_images=batch.mask_images)  # fmt: skip
        if not isinstance(out, SegOutput):
            raise RuntimeError(f"{tm.name}: a segmentation run gave no masks")
        chosen = {r.id: bool(s) for r, s in zip(chunk, says_seg, strict=True)}
        for rid, logits, target in zip(batch.ids, out.masks, batch.masks, strict=True):
            item = rid.rsplit("-", 1)[0]
            scores.seg_target[item] = np.asarray(target[0], dtype=bool)
            ok = chosen[rid] and logits is not None
            scores.seg_pred[item] = (logits[0] > 0).cpu().numpy() if ok else None
    return scores


@torch.no_grad()
def modality_attention(
    tm: EarthVLM, records: Sequence[Record], root: Path, *, batch_size: int = 16
) -> MASResult:
    """Eq. 1 per layer over fused records, with eager attention (set for the call)."""
    hf = tm.hf_model
    before = hf.config._attn_implementation
    _set_attention(hf, "eager")
    try:
        collator = tm.collator(root)
        img = int(hf.config.image_token_id)
        shares: list[np.ndarray] = []
        fused = []
        for chunk in _chunks(list(records), batch_size):
            batch = collator(chunk)
            inputs = tm.model_inputs(batch)
            inputs.pop("labels", None)
            inputs["output_attentions"] = True
            out = tm.run(inputs, batch.gsds, modalities=batch.modalities)
            lm = out.lm if isinstance(out, SegOutput) else out
            groups = tm.fusion.last.per_sample(len(batch))
            fused += tm.fusion.last.fused
            comp = composition_from_fused(inputs["input_ids"] == img, groups)
            mas = modality_attention_score(lm.attentions, comp)  # (layers, B, 2)
            shares.append(mas.permute(1, 0, 2).cpu().numpy())
        per_item = np.concatenate(shares)  # (items, layers, 2)
    finally:
        _set_attention(hf, before)
    try:
        gap = float(fusion_weight_gap(fused))
    except ValueError:  # concatenation: nothing mixed
        gap = None
    return MASResult(np.nanmean(per_item, axis=0), gap, int(per_item.shape[0]))


def _set_attention(model: Any, impl: str) -> None:
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(impl)
    else:  # older transformers
        model.config._attn_implementation = impl


def judge_settings(
    client: ChatClient, scores: dict[str, SettingScores], *, stage: str = "judge"
) -> JudgeResult:
    """Score every setting's open-ended answers with the judge (EarthMind's rubric, 1-5)
    and store them in each :attr:`SettingScores.open_score`; the judge's result (ledger,
    requests) is returned for the report."""
    keys = [(s, k) for s, sc in scores.items() for k in sorted(sc.open_ref)]
    result = judge_open_ended(
        client,
        [OPEN_QUESTION] * len(keys),
        [scores[s].open_ref[k] for s, k in keys],
        [scores[s].open_pred.get(k) for s, k in keys],
        groups=[s for s, _ in keys],
        stage=stage,
    )
    for (s, k), item in zip(keys, result.items, strict=True):
        if item.score is not None:
            scores[s].open_score[k] = item.score
    return result


def evaluate_model(
    tm: EarthVLM, records: Sequence[Record], root: Path, *, batch_size: int = 32
) -> tuple[dict[str, SettingScores], MASResult]:
    """Every setting's scores and the MAS of ``tm`` on the held-out records."""
    by_setting = {
        s: evaluate_setting(
            tm, [r for r in records if r.meta["setting"] == s], root, batch_size=batch_size
        )
        for s in SETTINGS
    }
    fused = [r for r in records if r.meta["setting"] == "fused"]
    return by_setting, modality_attention(tm, fused, root, batch_size=max(1, batch_size // 2))


__all__ = [
    "SPLITS",
    "MASResult",
    "SettingScores",
    "evaluate_model",
    "evaluate_setting",
    "judge_settings",
    "modality_attention",
    "split_of",
]
