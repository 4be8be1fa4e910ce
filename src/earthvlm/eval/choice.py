"""Closed-set answers by teacher-forced likelihood: which candidate does the model prefer?

For classification-style questions (a class name, a letter, yes/no) the model's answer
is the candidate whose tokens it assigns the highest log-likelihood after the prompt.
This equals greedy decoding when candidates differ in their first token, and stays
well defined when they share a prefix (``small vehicle`` vs ``storage tank``). One
forward pass per candidate scores a whole batch.

The vision tower sees the same pixels for every candidate and, in a spoofing sweep,
for every claimed GSD; where its output cannot depend on the GSD (no adapter inside it,
no fusion) :class:`ChoiceScorer` computes it once per batch of images and reuses it, and
so the rotary position ids of each batch (:class:`VisionCache`): the same numbers in
about half the time on the tiny backbones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from earthvlm.data.collate import Collator
from earthvlm.data.record import Message, Record
from earthvlm.errors import EarthVLMError
from earthvlm.models.earthvlm import EarthVLM, sequence_logliks
from earthvlm.scale.gsd import GSD

#: ``(inputs, gsds) -> logits``: one forward of the model under test (it may ignore
#: the GSDs, as a plain LoRA does).
NetCall = Callable[[dict, list[GSD]], torch.Tensor]


def with_answer(record: Record, answer: str) -> Record:
    """A copy of ``record`` whose last assistant turn is ``answer``."""
    msgs = list(record.messages)
    for k in range(len(msgs) - 1, -1, -1):
        if msgs[k].role == "assistant":
            msgs[k] = Message(role="assistant", content=answer)
            return record.model_copy(update={"messages": msgs})
    raise EarthVLMError(f"record {record.id}: no assistant turn to score an answer in")


def candidate_batches(
    collator: Collator, records: Sequence[Record], candidates: Sequence[str]
) -> list[tuple[dict, torch.Tensor, list[GSD]]]:
    """Per candidate, the collated batch ``(inputs, labels, gsds)`` with that answer.

    Raises:
        EarthVLMError: If the collator drops a record (a result per record is required).
    """
    out = []
    for cand in candidates:
        batch = collator([with_answer(r, cand) for r in records])
        if len(batch) != len(records):
            raise EarthVLMError(
                f"{len(records) - len(batch)} record(s) failed: {batch.failures[:2]}"
            )
        inputs = dict(batch.inputs)
        labels = inputs.pop("labels")
        out.append((inputs, labels, list(batch.gsds)))
    return out


@torch.no_grad()
def answer_logliks(
    net: NetCall, collator: Collator, records: Sequence[Record], candidates: Sequence[str]
) -> np.ndarray:
    """Sum of log-probabilities of each candidate's tokens after each record's prompt.

    Args:
        net: One forward of the model under test.
        collator: A training-mode collator (labels mark the assistant answer's tokens).
        records: The samples (their images carry the GSD the model is to be given).
        candidates: The closed set of answers.

    Returns:
        ``(len(records), len(candidates))`` log-likelihoods.

    Raises:
        EarthVLMError: If the collator drops a record (a result per record is required).
    """
    out = np.zeros((len(records), len(candidates)))
    for j, (inputs, labels, gsds) in enumerate(candidate_batches(collator, records, candidates)):
        out[:, j] = sequence_logliks(net(inputs, gsds), labels)
    return out


def predict(
    net: NetCall,
    collator: Collator,
    records: Sequence[Record],
    candidates: Sequence[str],
    batch_size: int = 32,
) -> list[str]:
    """The preferred candidate for each record, in batches."""
    preds: list[str] = []
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        ll = answer_logliks(net, collator, chunk, candidates)
        preds.extend(candidates[int(k)] for k in ll.argmax(axis=1))
    return preds


#: Entries a :class:`VisionCache` keeps of each kind (one per batch).
MAX_VISION_ENTRIES = 1024


class VisionCache:
    """Reuse what a forward computes from a batch's inputs alone, for inputs already seen:
    the vision tower's output (per pixel tensor) and the 3D rotary position ids (per
    ``input_ids`` and ``attention_mask``).

    Installed on the tower's ``forward`` (its hooks, e.g. SSE-U's pooling, still run on
    every call) and on the model's ``compute_3d_position_ids``. Keyed by the tensors
    themselves, which each entry keeps alive so their identity cannot pass to another
    tensor; the scorer passes the same tensors for every candidate and every GSD of a
    batch. With neither cached, a spoofing sweep spent about 40 % of its time in the
    tower and 20 % in the position ids of the tiny backbones.
    """

    def __init__(self, inner: torch.nn.Module) -> None:
        self.inner = inner
        self.visual = inner.visual
        self.entries: dict[int, tuple[torch.Tensor, torch.Tensor, Any]] = {}
        self.positions: dict[tuple[int, int], tuple[Any, Any, Any, Any]] = {}
        self.hits = self.misses = 0

    @staticmethod
    def applies(model: EarthVLM) -> bool:
        """Whether the tower's output is a function of the pixels alone (no fusion or
        segmentation module around it, no adapter layer inside it) and the model computes
        its position ids in the one method this cache wraps."""
        inner = getattr(model.hf_model, "model", None)
        visual = getattr(inner, "visual", None)
        if visual is None or model.fusion is not None or model.seg is not None:
            return False
        if not hasattr(inner, "compute_3d_position_ids"):
            return False
        own = ("earthvlm.", "peft.")
        return not any(type(m).__module__.startswith(own) for m in visual.modules())

    def clear(self) -> None:
        self.entries.clear()
        self.positions.clear()

    def __enter__(self) -> VisionCache:
        original = type(self.visual).forward.__get__(self.visual)
        inner = self.inner
        positions = type(inner).compute_3d_position_ids.__get__(inner)

        def forward(hidden_states: torch.Tensor, grid_thw: torch.Tensor, **kwargs: Any) -> Any:
            key = id(hidden_states)
            hit = self.entries.get(key)
            if hit is not None and hit[0] is hidden_states and torch.equal(hit[1], grid_thw):
                self.hits += 1
                return _fresh(hit[2])
            self.misses += 1
            out = original(hidden_states, grid_thw, **kwargs)
            if len(self.entries) >= MAX_VISION_ENTRIES:  # e.g. a dtype cast made a new tensor
                self.entries.clear()
            self.entries[key] = (hidden_states, grid_thw.clone(), _fresh(out))
            return out

        def position_ids(*args: Any, **kwargs: Any) -> Any:
            ids, mask = kwargs.get("input_ids"), kwargs.get("attention_mask")
            if args or ids is None or kwargs.get("cache") is not None:
                return positions(*args, **kwargs)
            key = (id(ids), id(mask))
            hit = self.positions.get(key)
            if hit is not None and hit[0] is ids and hit[1] is mask:
                inner.rope_deltas = hit[3]  # the side effect of a computed call
                return hit[2]
            out = positions(*args, **kwargs)
            if len(self.positions) >= MAX_VISION_ENTRIES:
                self.positions.clear()
            self.positions[key] = (ids, mask, out, inner.rope_deltas)
            return out

        self.visual.forward = forward
        inner.compute_3d_position_ids = position_ids
        return self

    def __exit__(self, *exc: Any) -> None:
        # the classes' own methods again
        self.visual.__dict__.pop("forward", None)
        self.inner.__dict__.pop("compute_3d_position_ids", None)


def _fresh(output: Any) -> Any:
    """A new output object holding the same tensors: the caller reassigns its fields
    (``get_image_features`` splits ``pooler_output`` in place), which must not reach the
    cached one."""
    return type(output)(**output) if isinstance(output, dict) else output


class ChoiceScorer:
    """Closed-set answers of one model, with collated batches cached across GSDs.

    Args:
        model: The model under test.
        root: Dataset root of the records' images.
        candidates: The closed set of answers.
        batch_size: Records per forward.
    """

    def __init__(
        self,
        model: EarthVLM,
        root: str | Path,
        candidates: Sequence[str],
        *,
        batch_size: int = 64,
    ) -> None:
        if not candidates:
            raise ValueError("candidates is empty: give the closed set of answers")
        self.model = model
        self.collator = model.collator(root)
        self.candidates = list(candidates)
        self.batch_size = batch_size
        self._cache: dict[tuple[str, ...], list[_Candidate]] = {}

    def logliks(self, records: Sequence[Record], gsds: Sequence[GSD | None]) -> np.ndarray:
        """``(len(records), len(candidates))`` answer log-likelihoods under ``gsds`` (one
        per record, given to each of its images)."""
        if len(gsds) != len(records):
            raise ValueError(f"{len(gsds)} GSDs for {len(records)} records")
        out = []
        cache = self._vision_cache()
        for start in range(0, len(records), self.batch_size):
            recs = records[start : start + self.batch_size]
            gs = list(gsds[start : start + self.batch_size])
            if self.model.gsd_as_text:  # the prompt changes with the GSD: collate afresh
                prepared = [self.model.prepare(r, g) for r, g in zip(recs, gs, strict=True)]
                batches = self._candidates(prepared)
            else:
                key = tuple(r.id for r in recs)
                if key not in self._cache:  # collate once; the forward is repeated per GSD
                    self._cache[key] = self._candidates(recs)
                batches = self._cache[key]
            if cache is None:
                out.append(self._logliks(batches, gs))
                continue
            with cache:  # one vision pass per batch of images, for every candidate and GSD
                out.append(self._logliks(batches, gs))
            if self.model.gsd_as_text:  # collated afresh per GSD: nothing to reuse later
                cache.clear()
        return np.concatenate(out) if out else np.zeros((0, len(self.candidates)))

    def _vision_cache(self) -> VisionCache | None:
        if not hasattr(self, "_vision"):
            applies = VisionCache.applies(self.model)
            self._vision = VisionCache(self.model.hf_model.model) if applies else None
        return self._vision

    def predict(self, records: Sequence[Record], gsds: Sequence[GSD | None]) -> list[str]:
        """The preferred candidate per record."""
        ll = self.logliks(records, gsds)
        return [self.candidates[int(k)] for k in ll.argmax(axis=1)]

    def _candidates(self, recs: Sequence[Record]) -> list[_Candidate]:
        """Per candidate, the batch with that answer, in the model's layout.

        Raises:
            EarthVLMError: If the collator drops a record (a result per record is needed).
        """
        out = []
        for cand in self.candidates:
            batch = self.collator([with_answer(r, cand) for r in recs])
            if len(batch) != len(recs):
                raise EarthVLMError(
                    f"{len(recs) - len(batch)} record(s) failed: {batch.failures[:2]}"
                )
            inputs = self.model.model_inputs(batch)  # labels collapse with the rest
            labels = inputs.pop("labels")
            pixels = inputs.get("pixel_values")
            if out and pixels is not None:  # the same images: one tensor for the cache
                first = out[0].inputs.get("pixel_values")
                if first is not None and first.shape == pixels.shape and torch.equal(first, pixels):
                    inputs["pixel_values"] = first
            out.append(_Candidate(inputs, labels, batch.modalities))
        return out

    def _logliks(self, batches: list[_Candidate], gsds: list[GSD | None]) -> np.ndarray:
        n = batches[0].labels.shape[0] if batches else 0
        out = np.zeros((n, len(self.candidates)))
        fused = self.model.fusion is not None
        for j, b in enumerate(batches):
            # one GSD per record, given to each of its images (one image: as before)
            per_image = [g for g, m in zip(gsds, b.modalities, strict=True) for _ in m]
            out[:, j] = self.model.score(
                b.inputs, b.labels, per_image, b.modalities if fused else None
            )
        return out


@dataclass
class _Candidate:
    """One candidate answer's batch: inputs (model layout), labels, modalities."""

    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor
    modalities: list[list[str]]


__all__ = [
    "ChoiceScorer",
    "VisionCache",
    "answer_logliks",
    "candidate_batches",
    "predict",
    "sequence_logliks",
    "with_answer",
]
