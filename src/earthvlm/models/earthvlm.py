"""The assembled model: one class that every path trains, evaluates and asks through.

:class:`EarthVLM` is a Qwen-VL backbone and what earthvlm adds to it, whatever the run:

* stage 1 or a plain Hugging Face checkpoint: the backbone alone;
* stage 2: a frozen backbone with an adapter (CS-HLoRA, MoE-LoRA, or peft LoRA) and
  optionally the SSE-U head; gated adapters and SSE-U run through
  :class:`~earthvlm.models.scaleearth.ScaleEarth`, which sets each sample's (or
  token's) gates from one GSD per view before the language model runs (ScaleEarth
  sec. 3.3) and keeps them through decoding;
* optionally optical + SAR fusion (:class:`~earthvlm.models.fusion.EarthFusion`) and a
  ``[SEG]`` mask decoder (:class:`~earthvlm.models.seg.EarthSeg`).

Three calls cover every use, with one GSD per image (``None``: unknown, resolved by
SSE-U or the neutral value):

* :meth:`EarthVLM.forward`: the training forward, returning the :class:`Losses` (this is
  what the SFT loop hands to ``accelerate``);
* :meth:`EarthVLM.generate`: decoding (the evaluation runner, ``ask``, the zoom loop,
  serving);
* :meth:`EarthVLM.score`: teacher-forced log-likelihoods of labelled tokens (closed-set
  answers, spoofing sweeps).

Build one from a :class:`~earthvlm.models.recipe.ModelRecipe` with :meth:`EarthVLM.build`
(fresh or from a checkpoint), or load whatever a user has with :meth:`EarthVLM.load`
(a run folder or checkpoint, a plain Hugging Face Qwen-VL folder, a peft LoRA adapter
folder or an earthvlm adapter folder over a base): :mod:`earthvlm.models.saved` says
what is on disk.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from earthvlm.adapters.cshlora import CSHLoRAConfig
from earthvlm.data.gsd_text import with_gsd_text
from earthvlm.data.record import Record
from earthvlm.errors import EarthVLMError
from earthvlm.models.backbone import Backbone
from earthvlm.models.fusion import EarthFusion
from earthvlm.models.recipe import ModelRecipe
from earthvlm.models.scaleearth import ScaleEarth
from earthvlm.models.seg import EarthSeg, SegOutput
from earthvlm.models.sseu import SSEUHead
from earthvlm.scale.gsd import GSD


class Losses(NamedTuple):
    """The loss terms of one micro-batch (each 0 where the model has no such part)."""

    vlm: torch.Tensor
    """Next-token cross-entropy on the answers (L_VLM)."""
    nll: torch.Tensor
    """SSE-U's Gaussian NLL on exact GSDs (ScaleEarth Eq. 3)."""
    seg: torch.Tensor
    """The weighted mask loss, ``seg.loss_weight * (BCE + Dice)`` (EarthMind sec. 3.3)."""


def sequence_logliks(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Sum of log-probabilities of the labelled tokens of each row (``-100``: unlabelled)."""
    logp = torch.log_softmax(logits.float()[:, :-1], dim=-1)
    target = labels[:, 1:]
    mask = target != -100
    picked = logp.gather(-1, target.clamp(min=0)[..., None])[..., 0]
    return (picked * mask).sum(dim=1).cpu().numpy()


class EarthVLM(nn.Module):
    """A Qwen-VL backbone with earthvlm's adapter, SSE-U head, fusion and mask decoder.

    Construct with :meth:`build`, :meth:`load` or :meth:`from_backbone`; the keyword
    arguments of ``__init__`` are the assembled parts.

    Args:
        backbone: The backbone (its ``model`` carries any injected adapter layers).
        recipe: What the model is made of (``None``: the backbone alone, as given).
        scale: The ScaleEarth wrapper (gated adapter and / or SSE-U), or ``None``.
        outer: What a batch is fed to: an :class:`EarthSeg` or :class:`EarthFusion`
            around the backbone's model (``None``: the model itself).
        sseu: The SSE-U head, if any.
        peft_model: The ``PeftModel`` of a peft LoRA model (saving, merging).
        gated: The config of a GSD-gated adapter (``cshlora``, ``moelora``), if any.
        fusion: The fusion wrapper, if the model fuses optical + SAR pairs.
        seg: The segmentation wrapper, if the model has ``[SEG]``.
        name: A label for reports.
        source: Where it was loaded from (a folder), if anywhere.
        origin: What ``source`` is (``run``, ``hf``, ``peft``, ``adapter``, ``memory``).
        max_length: Longest token sequence the collators build for it.
    """

    def __init__(
        self,
        backbone: Backbone,
        *,
        recipe: ModelRecipe | None = None,
        scale: ScaleEarth | None = None,
        outer: nn.Module | None = None,
        sseu: SSEUHead | None = None,
        peft_model: Any = None,
        gated: Any = None,
        fusion: EarthFusion | None = None,
        seg: EarthSeg | None = None,
        name: str = "model",
        source: str | Path | None = None,
        origin: str = "memory",
        max_length: int = 8192,
    ) -> None:
        super().__init__()
        model = backbone.model
        # the registration order fixes parameter names (optimiser state and checkpoints
        # are keyed by them): shared parameters keep their ``net.`` names and only the
        # fusion module and mask decoder appear under ``outer.``
        self.net = scale if scale is not None else (outer or model)
        self.outer = outer if scale is not None else None
        for key, value in {
            "backbone": backbone, "scale": scale, "sseu": sseu, "peft_model": peft_model,
            "fusion": fusion, "seg": seg, "_hf": model,
        }.items():  # fmt: skip
            object.__setattr__(self, key, value)  # parts, not submodules: named once above
        self.recipe = recipe or ModelRecipe(stage=1, model=_model_section(backbone))
        self.gated = gated
        self.seg_weight = self.recipe.seg.loss_weight if self.recipe.seg is not None else 0.0
        self.name = name
        self.source = Path(source) if source is not None else None
        self.origin = origin
        self.max_length = int(max_length)
        #: ``id(parameter) -> part`` for the fusion module (``fusion``), the decoder
        #: (``seg``) and the ``[SEG]``-row-masked embeddings (``seg_token``).
        self.param_parts: dict[int, str] = {}

    # -- construction -----------------------------------------------------------------

    @classmethod
    def build(
        cls,
        recipe: ModelRecipe,
        *,
        init_mu: float = 0.0,
        weights_from: str | Path | None = None,
        device_map: Any = None,
        name: str = "model",
        max_length: int = 8192,
    ) -> EarthVLM:
        """Assemble the model of ``recipe``, fresh (seeded by ``recipe.seed``) or with a
        checkpoint's weights (:func:`earthvlm.models.assemble.build_model`)."""
        from earthvlm.models.assemble import build_model

        return build_model(
            recipe,
            init_mu=init_mu,
            weights_from=weights_from,
            device_map=device_map,
            name=name,
            max_length=max_length,
        )

    @classmethod
    def load(cls, path: str | Path, **kwargs: Any) -> EarthVLM:
        """Load any model a user has, in eval mode (:func:`earthvlm.models.saved.load_model`:
        a run folder or checkpoint, a Hugging Face Qwen-VL folder, a peft LoRA or an
        earthvlm adapter folder over ``base``)."""
        from earthvlm.models.saved import load_model

        return load_model(path, **kwargs)

    @classmethod
    def from_backbone(cls, backbone: Backbone, *, name: str = "model") -> EarthVLM:
        """The backbone alone (no adapter, no GSD input), e.g. a zero-shot model."""
        return cls(backbone, name=name)

    def save(self, out: str | Path, info: dict[str, Any] | None = None) -> None:
        """Write this model's weights into ``out`` as a checkpoint holds them
        (:func:`earthvlm.models.saved.save_weights`)."""
        from earthvlm.models.saved import save_weights

        save_weights(self, Path(out), info or {})

    def inference(self) -> EarthVLM:
        """Eval mode with every parameter frozen; returns ``self``."""
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self

    # -- what it is -------------------------------------------------------------------

    @property
    def variant(self) -> str:
        """``stage1``, ``lora``, ``gsdtext``, ``moelora``, ``cshlora``, ``none``, or
        ``zero-shot`` for a Hugging Face checkpoint used as released."""
        return "zero-shot" if self.origin == "hf" else self.recipe.variant

    @property
    def gsd_as_text(self) -> bool:
        """Whether the prompt states the GSD (B3)."""
        return self.recipe.gsd_as_text

    @property
    def takes_gsd(self) -> bool:
        """Whether the GSD reaches the network (gates, the prompt, or SSE-U's resolver)."""
        return self.scale is not None or self.gsd_as_text

    @property
    def fusion_method(self) -> str | None:
        """The fusion method (``hca``, ``concat``, ...), or ``None``."""
        return self.recipe.fusion.method if self.recipe.fusion is not None else None

    @property
    def segments(self) -> bool:
        """Whether the model has a ``[SEG]`` token and a mask decoder."""
        return self.seg is not None

    @property
    def seg_token_id(self) -> int | None:
        """The ``[SEG]`` token's id of a segmenting model."""
        return self.seg.seg_token_id if self.seg is not None else None

    @property
    def cshlora(self) -> CSHLoRAConfig | None:
        """The CS-HLoRA config of a ``cshlora`` model."""
        return self.gated if isinstance(self.gated, CSHLoRAConfig) else None

    @property
    def hf_model(self) -> nn.Module:
        """The transformers model (with any injected adapter layers)."""
        return self._hf

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def trainable_parameters(self) -> int:
        """Parameters the model trains (stage 1: all; stage 2: adapter, SSE-U head,
        fusion module and mask decoder)."""
        if self.recipe.stage == 1:
            return sum(p.numel() for p in self.parameters())
        own = self.param_parts
        return sum(
            p.numel()
            for n, p in self.named_parameters()
            if "lora_" in n or n.startswith("net.sseu.") or own.get(id(p)) in ("fusion", "seg")
        )

    # -- inputs -----------------------------------------------------------------------

    def collator(
        self,
        root: str | Path,
        *,
        mode: str = "train",
        max_length: int | None = None,
        image_cache: int = 4096,
        **kwargs: Any,
    ) -> Any:
        """A :class:`~earthvlm.data.collate.Collator` for this model and records under
        ``root`` (``mode="train"`` labels the answer, for :meth:`score`)."""
        from earthvlm.data.collate import Collator

        return Collator(
            self.backbone,
            root,
            mode=mode,
            max_length=max_length or self.max_length,
            image_cache=image_cache,
            read_masks=self.segments and mode == "train",
            **kwargs,
        )

    def fused_layout(self, inputs: Any, modalities: list[list[str]]) -> dict[str, Any]:
        """A collated batch's inputs in the layout the model reads: each fused pair in one
        image slot (:meth:`EarthFusion.collapse_pairs`); unchanged without fusion."""
        if self.fusion is None:
            return dict(inputs)
        return self.fusion.collapse_pairs(dict(inputs), modalities=modalities)

    def model_inputs(self, batch: Any) -> dict[str, torch.Tensor]:
        """A :class:`~earthvlm.data.collate.CollatedBatch`'s inputs in the model's layout."""
        return self.fused_layout(batch.inputs, batch.modalities)

    def prepare(self, record: Record, gsd: GSD | None = None) -> Record:
        """The record as this model reads it: ``gsd`` replaces its images' GSD, and a
        GSD-as-text model (B3) states it in the prompt."""
        if gsd is not None:
            images = [im.model_copy(update={"gsd": gsd}) for im in record.images]
            record = record.model_copy(update={"images": images})
        return with_gsd_text(record) if self.gsd_as_text else record

    # -- the three calls --------------------------------------------------------------

    def run(
        self,
        inputs: Mapping[str, torch.Tensor],
        gsds: Sequence[GSD | None] | None,
        *,
        mode: str = "infer",
        seed: int | None = None,
        modalities: list[list[str]] | None = None,
        masks: list[torch.Tensor | None] | None = None,
        mask_images: list[int | None] | None = None,
    ) -> Any:
        """One forward: the language model's output, or a :class:`SegOutput` with masks.

        Args:
            inputs: The batch in the model's layout (:meth:`model_inputs`).
            gsds: One GSD per image (read by the scale path; ignored without one).
            mode: ``train`` (Eq. 4 draws) or ``infer`` (Eq. 5 resolver).
            seed: Seed of Eq. 4's draws.
            modalities: Per sample, its images' modalities (fusion pairs them).
            masks: Per sample, target masks for its ``[SEG]`` tokens, or ``None``.
            mask_images: Per sample, the image its masks belong to.
        """
        if self.fusion is not None and modalities is None:
            raise EarthVLMError(
                f"{self.name} fuses optical + SAR pairs: pass the batch's modalities "
                "(CollatedBatch.modalities) and its inputs through model_inputs()"
            )
        kw: dict[str, Any] = {}
        if self.fusion is not None:
            kw["modalities"] = modalities
        if self.seg is not None:
            kw["masks"], kw["mask_images"] = masks, mask_images
        if isinstance(self.net, ScaleEarth):
            fn = self.outer if self.outer is not None else self.net.model
            gs = list(gsds) if gsds is not None else None
            return self.net.call(
                fn, gsd=gs, scale_mode=mode, seed=seed, use_cache=False, **inputs, **kw
            )
        return self.net(**inputs, use_cache=False, **kw)

    def forward(
        self,
        inputs: Mapping[str, torch.Tensor],
        gsds: Sequence[GSD | None],
        seed: int,
        *,
        modalities: list[list[str]] | None = None,
        masks: list[torch.Tensor | None] | None = None,
        mask_images: list[int | None] | None = None,
    ) -> Losses:
        """The training forward: the :class:`Losses` of one micro-batch (``inputs`` hold
        ``labels``; Eq. 4's draws are seeded by ``seed``)."""
        out = self.run(
            inputs, gsds, mode="train", seed=seed, modalities=modalities, masks=masks,
            mask_images=mask_images,
        )  # fmt: skip
        lm = out.lm if isinstance(out, SegOutput) else out
        zero = lm.loss.new_zeros(())
        nll = zero
        if isinstance(self.net, ScaleEarth) and self.net.last.mu is not None:
            nll = self.net.last.nll(list(gsds))
        seg = zero
        if isinstance(out, SegOutput) and out.seg is not None:
            seg = self.seg_weight * out.seg.total
        return Losses(lm.loss, nll, seg)

    @torch.no_grad()
    def logits(
        self,
        inputs: Mapping[str, torch.Tensor],
        gsds: Sequence[GSD | None],
        modalities: list[list[str]] | None = None,
    ) -> torch.Tensor:
        """The language model's logits of one batch in inference mode (Eq. 5 resolver)."""
        inputs = {k: v for k, v in inputs.items() if k != "labels"}
        out = self.run(inputs, gsds, mode="infer", modalities=modalities)
        return getattr(out, "lm", out).logits

    @torch.no_grad()
    def score(
        self,
        inputs: Mapping[str, torch.Tensor],
        labels: torch.Tensor,
        gsds: Sequence[GSD | None],
        modalities: list[list[str]] | None = None,
    ) -> np.ndarray:
        """Teacher-forced log-likelihood of each row's labelled tokens (``-100``:
        unlabelled), summed over the row: ``(batch,)``."""
        return sequence_logliks(self.logits(inputs, gsds, modalities), labels)

    @torch.no_grad()
    def generate(
        self,
        inputs: Mapping[str, Any],
        gsds: Sequence[GSD | None] | None = None,
        *,
        modalities: list[list[str]] | None = None,
        mask_images: list[int | None] | None = None,
        **generate_kwargs: Any,
    ) -> tuple[torch.Tensor, list | None]:
        """Decode from a batch in the model's layout, with one GSD per image: gates fixed
        per sample for the whole decode, fused pairs, and a mask wherever an answer
        holds ``[SEG]``. ``labels`` in ``inputs`` are ignored.

        Returns:
            The sequences (prompt included; new tokens start at ``input_ids``' width)
            and, for a segmenting model, per sample the ``(K, H, W)`` mask logits of its
            ``[SEG]`` tokens or ``None``; ``None`` for other models.
        """
        device = self.device
        batch = {
            k: (v.to(device) if isinstance(v, torch.Tensor) else v)
            for k, v in inputs.items()
            if k != "labels"
        }
        if self.fusion is not None and modalities is None:
            raise EarthVLMError(f"{self.name} fuses optical + SAR pairs: pass modalities")
        route = {"modalities": modalities} if self.fusion is not None else {}
        seg, fusion = self.seg, self.fusion
        if seg is not None:
            keys = set(batch)
            images = (
                mask_images if mask_images and any(m is not None for m in mask_images) else None
            )

            def fn(**kw: Any) -> Any:
                model_inputs = {k: kw.pop(k) for k in list(kw) if k in keys}
                return seg.generate(model_inputs, mask_images=images, **kw)
        elif fusion is not None:
            fn = fusion.generate
        else:
            fn = self.net.model.generate if self.scale is not None else self.net.generate
        kwargs = {**batch, **route, **generate_kwargs}
        if self.scale is not None:
            gs = list(gsds) if gsds is not None else None
            out = self.scale.call(fn, gsd=gs, scale_mode="infer", **kwargs)
        else:
            out = fn(**kwargs)
        return out if seg is not None else (out, None)

    def generate_batch(
        self, batch: Any, **generate_kwargs: Any
    ) -> tuple[torch.Tensor, list | None]:
        """:meth:`generate` for a :class:`~earthvlm.data.collate.CollatedBatch`."""
        return self.generate(
            self.model_inputs(batch),
            list(batch.gsds),
            modalities=batch.modalities,
            mask_images=batch.mask_images,
            **generate_kwargs,
        )


def _model_section(backbone: Backbone) -> Any:
    """The recipe's ``model`` section describing a backbone given in memory."""
    from earthvlm.models.recipe import ModelConfig

    size = (
        backbone.size
        if isinstance(backbone.size, str) and backbone.size in ("tiny", "small")
        else "tiny"
    )
    return ModelConfig(
        path=backbone.source,
        family=backbone.family,
        size=size,
        init_seed=backbone.seed or 0,
    )


__all__ = ["EarthVLM", "Losses", "sequence_logliks"]
