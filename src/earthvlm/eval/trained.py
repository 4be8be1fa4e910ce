"""A trained run, loaded for evaluation: one forward that takes GSDs, whatever the adapter.

Every variant of the scale experiment answers through the same call, so a diagnostic
never needs to know which adapter it is looking at:

* stage 1 (no adapter) and B2 (peft LoRA) ignore the GSD;
* B3 (LoRA + GSD as text) hears it through the prompt: :meth:`TrainedModel.prepare`
  writes each image's (possibly spoofed) GSD into the question;
* B4 (MoE-LoRA) and CS-HLoRA take it through :class:`~earthvlm.models.ScaleEarth`,
  which also runs SSE-U when the run trained one.

:class:`ChoiceScorer` answers closed-set questions for a list of records and GSDs,
collating each batch once and reusing it across a spoofing sweep when the prompt does
not depend on the GSD (every variant but B3): a 13-point sweep then costs 13 forwards
per candidate and one image decode, not 13.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from earthvlm.data.collate import Collator
from earthvlm.data.gsd_text import with_gsd_text
from earthvlm.data.record import Record
from earthvlm.errors import EarthVLMError
from earthvlm.eval.choice import answer_logliks, candidate_batches, sequence_logliks
from earthvlm.scale.gsd import GSD
from earthvlm.train.checkpoint import COMPLETE_FILE, latest_checkpoint
from earthvlm.train.config import TrainConfig, load_config
from earthvlm.train.model import Parts, build_model


def resolve_run(path: str | Path) -> tuple[Path, Path]:
    """``(run_dir, checkpoint)`` for a run folder or one of its checkpoint folders.

    A run folder resolves to its ``final`` checkpoint, else its newest complete one.

    Raises:
        EarthVLMError: If the folder is neither, or the checkpoint is incomplete.
    """
    p = Path(path)
    if not p.is_dir():
        raise EarthVLMError(f"{p}: no such folder (give a run folder or a checkpoint folder)")
    if (p / "config.yaml").is_file():
        run = p
        final = p / "final"
        ckpt = final if (final / COMPLETE_FILE).is_file() else latest_checkpoint(p)
        if ckpt is None:
            raise EarthVLMError(
                f"{p}: the run has no complete checkpoint yet (train it, or resume it with "
                "`earthvlm train`)"
            )
    elif (p / COMPLETE_FILE).is_file() and (p.parent / "config.yaml").is_file():
        run, ckpt = p.parent, p
    else:
        raise EarthVLMError(
            f"{p}: not a run folder (config.yaml + checkpoint-N/) or a complete checkpoint "
            f"folder ({COMPLETE_FILE} inside, config.yaml beside it)"
        )
    return run, ckpt


@dataclass
class TrainedModel:
    """A run's model in eval mode.

    Attributes:
        name: A label (the run folder's name unless given).
        config: The run's config.
        parts: The assembled network (backbone, adapter, SSE-U head).
        checkpoint: Where the weights came from.
    """

    name: str
    config: TrainConfig
    parts: Parts
    checkpoint: Path

    @property
    def variant(self) -> str:
        """``stage1``, ``lora``, ``gsdtext``, ``moelora``, ``cshlora`` or ``none``."""
        if self.config.stage == 1:
            return "stage1"
        kind = self.config.adapter.kind
        return "gsdtext" if kind == "lora" and self.config.data.gsd_as_text else kind

    @property
    def gsd_as_text(self) -> bool:
        """Whether the prompt states the GSD (B3)."""
        return self.config.data.gsd_as_text

    @property
    def takes_gsd(self) -> bool:
        """Whether the GSD reaches the network (gates, the prompt, or SSE-U's resolver)."""
        return self.parts.scale is not None or self.gsd_as_text

    def trainable_parameters(self) -> int:
        """Parameters the run trained (stage 1: all; stage 2: adapter + SSE-U head)."""
        module = self.parts.module
        if self.config.stage == 1:
            return sum(p.numel() for p in module.parameters())
        return sum(
            p.numel()
            for n, p in module.named_parameters()
            if "lora_" in n or n.startswith("net.sseu.")
        )

    def collator(
        self, root: str | Path, *, max_length: int | None = None, image_cache: int = 4096
    ) -> Collator:
        """A training-mode collator (labels on the answer) for records under ``root``,
        keeping up to ``image_cache`` decoded images for the repeated questions of a sweep."""
        return Collator(
            self.parts.backbone,
            root,
            mode="train",
            max_length=max_length or self.config.data.max_length,
            image_cache=image_cache,
        )

    def prepare(self, record: Record, gsd: GSD | None = None) -> Record:
        """The record as this model reads it: ``gsd`` replaces its image's GSD (every
        image of a multi-image record), and B3 states it in the prompt."""
        if gsd is not None:
            images = [im.model_copy(update={"gsd": gsd}) for im in record.images]
            record = record.model_copy(update={"images": images})
        return with_gsd_text(record) if self.gsd_as_text else record

    @torch.no_grad()
    def forward(self, inputs: dict[str, torch.Tensor], gsds: Sequence[GSD | None]) -> Any:
        """One forward in inference mode (Eq. 5 resolver for the scale path)."""
        if self.parts.scale is not None:
            return self.parts.scale(gsd=list(gsds), scale_mode="infer", use_cache=False, **inputs)
        return self.parts.module.net(**inputs, use_cache=False)

    def logits(self, inputs: dict[str, torch.Tensor], gsds: Sequence[GSD | None]) -> torch.Tensor:
        """The language-model logits of one batch (the :data:`~earthvlm.eval.choice.NetCall`)."""
        return self.forward(inputs, gsds).logits


def load_trained(path: str | Path, *, name: str | None = None) -> TrainedModel:
    """Load a run (or one checkpoint of it) for evaluation, in eval mode.

    Raises:
        EarthVLMError: If the folder is not a finished run or checkpoint, or the
            weights do not fit the config.
    """
    run, ckpt = resolve_run(path)
    cfg = load_config(run / "config.yaml")
    parts = build_model(cfg, weights_from=ckpt)
    parts.module.eval()
    for p in parts.module.parameters():
        p.requires_grad_(False)
    return TrainedModel(name=name or run.name, config=cfg, parts=parts, checkpoint=ckpt)


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
        model: TrainedModel,
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
        self._cache: dict[tuple[str, ...], list[tuple[dict, torch.Tensor, list]]] = {}

    def logliks(self, records: Sequence[Record], gsds: Sequence[GSD | None]) -> np.ndarray:
        """``(len(records), len(candidates))`` answer log-likelihoods under ``gsds``."""
        if len(gsds) != len(records):
            raise ValueError(f"{len(gsds)} GSDs for {len(records)} records")
        out = []
        for start in range(0, len(records), self.batch_size):
            recs = records[start : start + self.batch_size]
            gs = list(gsds[start : start + self.batch_size])
            if self.model.gsd_as_text:  # the prompt changes with the GSD: collate afresh
                prepared = [self.model.prepare(r, g) for r, g in zip(recs, gs, strict=True)]
                out.append(
                    answer_logliks(self.model.logits, self.collator, prepared, self.candidates)
                )
            else:
                out.append(self._cached_logliks(recs, gs))
        return np.concatenate(out) if out else np.zeros((0, len(self.candidates)))

    def predict(self, records: Sequence[Record], gsds: Sequence[GSD | None]) -> list[str]:
        """The preferred candidate per record."""
        ll = self.logliks(records, gsds)
        return [self.candidates[int(k)] for k in ll.argmax(axis=1)]

    def _cached_logliks(self, recs: Sequence[Record], gsds: list[GSD | None]) -> np.ndarray:
        key = tuple(r.id for r in recs)
        if key not in self._cache:  # collate once; the forward is repeated per GSD
            self._cache[key] = candidate_batches(self.collator, recs, self.candidates)
        out = np.zeros((len(recs), len(self.candidates)))
        for j, (inputs, labels, _) in enumerate(self._cache[key]):
            out[:, j] = sequence_logliks(self.model.logits(inputs, gsds), labels)
        return out


__all__ = ["ChoiceScorer", "TrainedModel", "load_trained", "resolve_run"]
