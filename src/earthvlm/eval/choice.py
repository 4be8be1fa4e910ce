"""Closed-set answers by teacher-forced likelihood: which candidate does the model prefer?

For classification-style questions (a class name, a letter, yes/no) the model's answer
is the candidate whose tokens it assigns the highest log-likelihood after the prompt.
This equals greedy decoding when candidates differ in their first token, and stays
well defined when they share a prefix (``small vehicle`` vs ``storage tank``). One
forward pass per candidate scores a whole batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from earthvlm.data.collate import Collator
from earthvlm.data.record import Message, Record
from earthvlm.errors import EarthVLMError
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


def sequence_logliks(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Sum of log-probabilities of the labelled tokens of each row (``-100``: unlabelled)."""
    logp = torch.log_softmax(logits.float()[:, :-1], dim=-1)
    target = labels[:, 1:]
    mask = target != -100
    picked = logp.gather(-1, target.clamp(min=0)[..., None])[..., 0]
    return (picked * mask).sum(dim=1).cpu().numpy()


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
