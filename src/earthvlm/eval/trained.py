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

Runs with optical + SAR fusion or referring segmentation load with their modules
(``modules.safetensors``): :meth:`TrainedModel.model_inputs` puts a collated batch in
the layout the model reads (each fused pair in one image slot), :meth:`TrainedModel.run`
takes the batch's modalities and masks, and :class:`ChoiceScorer` routes both itself.
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
from earthvlm.eval.choice import sequence_logliks, with_answer
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
    def fusion_method(self) -> str | None:
        """The run's fusion method (``hca``, ``concat``, ...), or ``None``."""
        return self.config.fusion.method if self.config.fusion is not None else None

    @property
    def segments(self) -> bool:
        """Whether the run has a ``[SEG]`` token and a mask decoder."""
        return self.parts.seg is not None

    @property
    def takes_gsd(self) -> bool:
        """Whether the GSD reaches the network (gates, the prompt, or SSE-U's resolver)."""
        return self.parts.scale is not None or self.gsd_as_text

    def trainable_parameters(self) -> int:
        """Parameters the run trained (stage 1: all; stage 2: adapter + SSE-U head)."""
        module = self.parts.module
        if self.config.stage == 1:
            return sum(p.numel() for p in module.parameters())
        own = module.param_parts
        return sum(
            p.numel()
            for n, p in module.named_parameters()
            if "lora_" in n or n.startswith("net.sseu.") or own.get(id(p)) in ("fusion", "seg")
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
            read_masks=self.segments,
        )

    def model_inputs(self, batch: Any) -> dict[str, torch.Tensor]:
        """A collated batch's inputs in the layout the model reads (fused pairs in one
        image slot; unchanged without fusion)."""
        return self.parts.fused_layout(batch.inputs, batch.modalities)

    def prepare(self, record: Record, gsd: GSD | None = None) -> Record:
        """The record as this model reads it: ``gsd`` replaces its image's GSD (every
        image of a multi-image record), and B3 states it in the prompt."""
        if gsd is not None:
            images = [im.model_copy(update={"gsd": gsd}) for im in record.images]
            record = record.model_copy(update={"images": images})
        return with_gsd_text(record) if self.gsd_as_text else record

    @torch.no_grad()
    def run(
        self,
        inputs: dict[str, torch.Tensor],
        gsds: Sequence[GSD | None],
        *,
        modalities: list[list[str]] | None = None,
        masks: list[Any] | None = None,
        mask_images: list[int | None] | None = None,
    ) -> Any:
        """One forward in inference mode: the LM output, or a
        :class:`~earthvlm.models.seg.SegOutput` (masks for every ``[SEG]``) for a
        segmentation run. ``modalities`` pair the images of a fusion run."""
        if self.parts.fusion is not None and modalities is None:
            raise EarthVLMError(
                f"{self.name} fuses optical + SAR pairs: pass the batch's modalities "
                "(CollatedBatch.modalities) and its inputs through model_inputs()"
            )
        return self.parts.module.run(
            inputs, list(gsds), mode="infer", modalities=modalities, masks=masks,
            mask_images=mask_images,
        )  # fmt: skip

    @torch.no_grad()
    def generate(self, batch: Any, **generate_kwargs: Any) -> tuple[torch.Tensor, list | None]:
        """Generate answers for a collated batch (``mode="generate"``), whatever the run:
        the scale path's gates, fused pairs, and a mask wherever an answer holds ``[SEG]``.

        The prompt part of the sequences is :meth:`model_inputs`' ``input_ids`` (a fused
        pair takes one image slot), so new tokens start at its width.

        Returns:
            The sequences (prompt included) and, for a segmentation run, per sample the
            ``(K, H, W)`` mask logits of its ``[SEG]`` tokens or ``None`` (not present);
            ``None`` for other runs.
        """
        device = next(self.parts.module.parameters()).device
        inputs = {k: v.to(device) for k, v in self.model_inputs(batch).items() if k != "labels"}
        route = {"modalities": batch.modalities} if self.parts.fusion is not None else {}
        seg, fusion = self.parts.seg, self.parts.fusion
        if seg is not None:
            keys = set(inputs)
            mask_images = (
                batch.mask_images if any(m is not None for m in batch.mask_images) else None
            )

            def fn(**kw: Any) -> Any:
                model_inputs = {k: kw.pop(k) for k in list(kw) if k in keys}
                return seg.generate(model_inputs, mask_images=mask_images, **kw)
        elif fusion is not None:
            fn = fusion.generate
        else:
            fn = (
                self.parts.module.net.model.generate
                if self.parts.scale
                else self.parts.module.net.generate
            )
        kwargs = {**inputs, **route, **generate_kwargs}
        if self.parts.scale is not None:
            out = self.parts.scale.call(fn, gsd=list(batch.gsds), scale_mode="infer", **kwargs)
        else:
            out = fn(**kwargs)
        return out if seg is not None else (out, None)

    @torch.no_grad()
    def forward(
        self,
        inputs: dict[str, torch.Tensor],
        gsds: Sequence[GSD | None],
        *,
        modalities: list[list[str]] | None = None,
    ) -> Any:
        """One forward in inference mode (Eq. 5 resolver for the scale path): the
        language model's output."""
        out = self.run(inputs, gsds, modalities=modalities)
        return getattr(out, "lm", out)

    def logits(
        self,
        inputs: dict[str, torch.Tensor],
        gsds: Sequence[GSD | None],
        modalities: list[list[str]] | None = None,
    ) -> torch.Tensor:
        """The language-model logits of one batch (the :data:`~earthvlm.eval.choice.NetCall`)."""
        return self.forward(inputs, gsds, modalities=modalities).logits


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
        fused = self.model.parts.fusion is not None
        for j, b in enumerate(batches):
            # one GSD per record, given to each of its images (one image: as before)
            per_image = [g for g, m in zip(gsds, b.modalities, strict=True) for _ in m]
            logits = self.model.logits(b.inputs, per_image, b.modalities if fused else None)
            out[:, j] = sequence_logliks(logits, b.labels)
        return out


@dataclass
class _Candidate:
    """One candidate answer's batch: inputs (model layout), labels, modalities."""

    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor
    modalities: list[list[str]]


__all__ = ["ChoiceScorer", "TrainedModel", "load_trained", "resolve_run"]
