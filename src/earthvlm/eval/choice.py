"""Closed-set answers by teacher-forced likelihood: which candidate does the model prefer?

For classification-style questions (a class name, a letter, yes/no) the model's answer
is the candidate whose tokens it assigns the highest log-likelihood after the prompt.
This equals greedy decoding when candidates differ in their first token, and stays
well defined when they share a prefix (``small vehicle`` vs ``storage tank``). One
forward pass per candidate scores a whole batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

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
        for start in range(0, len(records), self.batch_size):
            recs = records[start : start + self.batch_size]
            gs = list(gsds[start : start + self.batch_size])
            if self.model.gsd_as_text:  # the prompt changes with the GSD: collate afresh
                prepared = [self.model.prepare(r, g) for r, g in zip(recs, gs, strict=True)]
                out.append(self._logliks(self._candidates(prepared), gs))
            else:
                key = tuple(r.id for r in recs)
                if key not in self._cache:  # collate once; the forward is repeated per GSD
                    self._cache[key] = self._candidates(recs)
                out.append(self._logliks(self._cache[key], gs))
        return np.concatenate(out) if out else np.zeros((0, len(self.candidates)))

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
    "answer_logliks",
    "candidate_batches",
    "predict",
    "sequence_logliks",
    "with_answer",
]
