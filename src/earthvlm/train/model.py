"""What is trained: the backbone, the adapter (stage 2), the SSE-U head, their optimiser groups.

:func:`build_model` assembles an :class:`SFTModel` from the config, fresh or from a
checkpoint's weights:

* stage 1: every parameter of the backbone trains (vision tower, projector, LLM);
* stage 2: the backbone is frozen (optionally NF4) and an adapter is added:
  ``cshlora`` (CS-HLoRA, gated by the GSD through :class:`ScaleEarth`), ``moelora``
  (the B4 baseline: LoRA experts hard-routed by GSD bucket), ``lora`` (peft LoRA with
  the same rank, alpha and targets: the B2 baseline) or ``none``; with ``adapter.sseu``
  an SSE-U head is trained on the pooled vision features.

:func:`save_weights` writes what a checkpoint needs to rebuild it: the full backbone
(stage 1, :func:`save_backbone`), the CS-HLoRA (or MoE-LoRA) adapter with the SSE-U
head as extra tensors (:func:`earthvlm.adapters.base.save_adapter`, which
``save_cshlora`` wraps), or peft's ``save_pretrained`` folder.

With a ``fusion`` section the model is wrapped in
:class:`~earthvlm.models.fusion.EarthFusion` (optical + SAR pairs fused before the
language model), with a ``seg`` section in :class:`~earthvlm.models.seg.EarthSeg`
(``[SEG]`` added to the tokenizer, a mask decoder on its hidden state); both train in
either stage, and their tensors go to ``modules.safetensors`` in the checkpoint
(``fusion.*``, ``seg.*``; the ``[SEG]`` rows of the embeddings included), whose metadata
holds the run's provenance. A ScaleEarth scale path reads the fusion's image groups:
each view keeps its own GSD and a fused pair's tokens take the SAR view's
(:mod:`earthvlm.models.scaleearth`).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from earthvlm.adapters.base import (
    METHODS,
    adapter_info,
    adapter_layers,
    get_method,
    inject,
    load_adapter,
    save_adapter,
)
from earthvlm.adapters.context import ScaleContext
from earthvlm.adapters.cshlora import CSHLoRAConfig
from earthvlm.adapters.moelora import MoELoRAConfig
from earthvlm.errors import EarthVLMError
from earthvlm.fusion import build_fusion
from earthvlm.models.backbone import Backbone, build_tiny_backbone, load_backbone, save_backbone
from earthvlm.models.fusion import EarthFusion
from earthvlm.models.scaleearth import ScaleEarth, ScaleEarthConfig
from earthvlm.models.seg import (
    EarthSeg,
    MaskDecoderConfig,
    SegOutput,
    add_seg_token,
    build_mask_decoder,
)
from earthvlm.models.sseu import SSEUHead
from earthvlm.scale.gsd import GSD
from earthvlm.train.config import TrainConfig

#: Extra tensors of the SSE-U head are saved as ``sseu.<parameter>``.
SSEU_PREFIX = "sseu."
#: Where lora / none runs keep the SSE-U head in a checkpoint.
SSEU_FILE = "sseu_head.safetensors"
#: Where every run keeps its fusion module and mask decoder in a checkpoint.
MODULES_FILE = "modules.safetensors"
#: Key prefixes in :data:`MODULES_FILE`.
FUSION_PREFIX, SEG_PREFIX = "fusion.", "seg."


class Losses(NamedTuple):
    """The loss terms of one micro-batch (each 0 where the run has no such part)."""

    vlm: torch.Tensor
    """Next-token cross-entropy on the answers (L_VLM)."""
    nll: torch.Tensor
    """SSE-U's Gaussian NLL on exact GSDs (ScaleEarth Eq. 3)."""
    seg: torch.Tensor
    """The weighted mask loss, ``seg.loss_weight * (BCE + Dice)`` (EarthMind sec. 3.3)."""


class SFTModel(nn.Module):
    """The network one micro-batch runs through, and the loss terms it returns.

    Args:
        model: The Qwen-VL model (with its adapter layers, if any).
        scale: The ScaleEarth wrapper around ``model`` (stage 2 with CS-HLoRA or SSE-U),
            or ``None``.
        outer: What the batch is fed to: an :class:`EarthSeg` or :class:`EarthFusion`
            around ``model`` (``None``: ``model`` itself). With a scale path it runs
            inside :meth:`ScaleEarth.call`, so gates and SSE-U see the same call.
        seg_weight: Weight of the mask loss in the total.
    """

    def __init__(
        self,
        model: nn.Module,
        scale: ScaleEarth | None,
        outer: nn.Module | None = None,
        seg_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.net = scale if scale is not None else (outer or model)
        # registered after ``net``: shared parameters keep their ``net.`` names and only
        # the fusion module and mask decoder appear under ``outer.``
        self.outer = outer if scale is not None else None
        object.__setattr__(self, "_hf", model)
        self.seg_weight = seg_weight
        #: ``id(parameter) -> part`` for the fusion module (``fusion``), the decoder
        #: (``seg``) and the ``[SEG]``-row-masked embeddings (``seg_token``).
        self.param_parts: dict[int, str] = {}

    @property
    def fusion(self) -> EarthFusion | None:
        """The fusion wrapper, if the run fuses."""
        outer = self.outer if self.outer is not None else self.net
        outer = outer.net if isinstance(outer, EarthSeg) else outer
        return outer if isinstance(outer, EarthFusion) else None

    @property
    def seg(self) -> EarthSeg | None:
        """The segmentation wrapper, if the run segments."""
        outer = self.outer if self.outer is not None else self.net
        return outer if isinstance(outer, EarthSeg) else None

    def run(
        self,
        inputs: dict[str, torch.Tensor],
        gsds: list[GSD | None] | None,
        *,
        mode: str,
        seed: int | None = None,
        modalities: list[list[str]] | None = None,
        masks: list[torch.Tensor | None] | None = None,
        mask_images: list[int | None] | None = None,
    ) -> Any:
        """One forward: the language model's output, or a :class:`SegOutput` with masks.

        Args:
            inputs: The batch, in the fused layout when the run fuses
                (:meth:`EarthFusion.collapse_pairs`).
            gsds: One GSD per image (the scale path's input; ignored without one).
            mode: ``train`` (Eq. 4 draws) or ``infer`` (Eq. 5 resolver).
            seed: Seed of Eq. 4's draws.
            modalities: Per sample, its images' modalities (fusion pairs them).
            masks: Per sample, target masks for its ``[SEG]`` tokens, or ``None``.
            mask_images: Per sample, the image its masks belong to.
        """
        kw: dict[str, Any] = {}
        if self.fusion is not None:
            kw["modalities"] = modalities
        if self.seg is not None:
            kw["masks"], kw["mask_images"] = masks, mask_images
        if isinstance(self.net, ScaleEarth):
            fn = self.outer if self.outer is not None else self.net.model
            return self.net.call(
                fn, gsd=gsds, scale_mode=mode, seed=seed, use_cache=False, **inputs, **kw
            )
        return self.net(**inputs, use_cache=False, **kw)

    def forward(
        self,
        inputs: dict[str, torch.Tensor],
        gsds: list[GSD],
        seed: int,
        *,
        modalities: list[list[str]] | None = None,
        masks: list[torch.Tensor | None] | None = None,
        mask_images: list[int | None] | None = None,
    ) -> Losses:
        """The :class:`Losses` of one micro-batch (training mode)."""
        # Eq. 4: exact -> log10 g (or mu with p_e2e), range -> uniform draw, unknown -> mu
        out = self.run(
            inputs, gsds, mode="train", seed=seed, modalities=modalities, masks=masks,
            mask_images=mask_images,
        )  # fmt: skip
        lm = out.lm if isinstance(out, SegOutput) else out
        zero = lm.loss.new_zeros(())
        nll = zero
        if isinstance(self.net, ScaleEarth) and self.net.last.mu is not None:
            nll = self.net.last.nll(gsds)
        seg = zero
        if isinstance(out, SegOutput) and out.seg is not None:
            seg = self.seg_weight * out.seg.total
        return Losses(lm.loss, nll, seg)


@dataclass
class Parts:
    """The assembled pieces of a run.

    Attributes:
        backbone: The backbone (its ``model`` is trained in place).
        module: The :class:`SFTModel` handed to the accelerator.
        scale: The ScaleEarth wrapper, when the run has a scale path.
        sseu: The SSE-U head, if any.
        peft_model: The ``PeftModel`` of a ``lora`` run (for saving).
        gated: The config of a GSD-gated adapter (``cshlora``, ``moelora``), if any.
        fusion: The optical + SAR fusion wrapper, if the run fuses.
        seg: The segmentation wrapper (``[SEG]`` and mask decoder), if the run segments.
    """

    backbone: Backbone
    module: SFTModel
    scale: ScaleEarth | None = None
    sseu: SSEUHead | None = None
    peft_model: Any = None
    gated: Any = None
    fusion: EarthFusion | None = None
    seg: EarthSeg | None = None

    @property
    def seg_token_id(self) -> int | None:
        """The ``[SEG]`` token's id of a segmentation run."""
        return self.seg.seg_token_id if self.seg is not None else None

    def fused_layout(self, inputs: Any, modalities: list[list[str]]) -> dict[str, Any]:
        """A collated batch in the layout the model reads: each fused pair in one image
        slot (:meth:`EarthFusion.collapse_pairs`); unchanged without fusion."""
        if self.fusion is None:
            return dict(inputs)
        return self.fusion.collapse_pairs(dict(inputs), modalities=modalities)

    @property
    def cshlora(self) -> CSHLoRAConfig | None:
        """The CS-HLoRA config of a ``cshlora`` run."""
        return self.gated if isinstance(self.gated, CSHLoRAConfig) else None


def load_base(cfg: TrainConfig, *, path: str | Path | None = None, device_map: Any = None):
    """The backbone: ``path`` (a checkpoint's model), ``model.path``, or a tiny one.

    Raises:
        EarthVLMError: A missing or malformed folder, or 4-bit without bitsandbytes
            (the message says what to install).
    """
    m = cfg.model
    source = path or m.path
    if source is None:
        return build_tiny_backbone(
            m.family, m.size, seed=m.init_seed, min_pixels=m.min_pixels, max_pixels=m.max_pixels
        )
    return load_backbone(
        source,
        dtype=torch.float32 if not m.load_in_4bit else None,
        load_in_4bit=m.load_in_4bit and path is None,
        device_map=device_map if m.load_in_4bit else None,
        min_pixels=m.min_pixels,
        max_pixels=m.max_pixels,
    )


def _gated_config(cfg: TrainConfig) -> Any:
    a = cfg.adapter
    if a.kind == "moelora":  # B4: K experts of r // K ranks, matched to CS-HLoRA's size
        return MoELoRAConfig(
            r_total=a.r, alpha_lora=a.alpha, dropout=a.dropout,
            target_modules=tuple(a.target_modules),
        )  # fmt: skip
    return CSHLoRAConfig(
        r=a.r, alpha_lora=a.alpha, dropout=a.dropout, target_modules=tuple(a.target_modules),
        sharpness_init=a.sharpness_init,
    )  # fmt: skip


def _lora_config(cfg: TrainConfig):
    from peft import LoraConfig

    a = cfg.adapter
    # the same layers CS-HLoRA wraps: named targets inside the language model only
    pattern = r".*language_model\..*\.(" + "|".join(a.target_modules) + r")"
    return LoraConfig(
        r=a.r, lora_alpha=a.alpha, lora_dropout=a.dropout, target_modules=pattern, bias="none"
    )


def build_model(
    cfg: TrainConfig,
    *,
    init_mu: float = 0.0,
    weights_from: str | Path | None = None,
    device_map: Any = None,
) -> Parts:
    """Assemble the run's network, fresh (seeded by ``cfg.seed``) or from a checkpoint.

    Args:
        cfg: The run config.
        init_mu: SSE-U's initial mu (the mean log10 GSD of the data).
        weights_from: A checkpoint folder whose weights replace the fresh ones.
        device_map: Passed to ``from_pretrained`` for a 4-bit backbone.
    """
    ckpt = Path(weights_from) if weights_from is not None else None
    # stage 1 resumes from the checkpoint's full model; stage 2 rebuilds the frozen base
    if cfg.stage == 1:
        bb = load_base(cfg, path=ckpt / "model" if ckpt else None)
    else:
        bb = load_base(cfg, device_map=device_map)
    model = bb.model
    if cfg.model.gradient_checkpointing:
        # non-reentrant: gradients reach adapters inside a frozen, checkpointed block
        model.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False}
        )
    seg_id = add_seg_token(model, bb.tokenizer) if cfg.seg is not None else None
    if cfg.stage == 1:
        for p in model.parameters():
            p.requires_grad_(True)
        parts = Parts(backbone=bb, module=None)  # type: ignore[arg-type]
        outer = _wrap(cfg, parts, model, seg_id)
        parts.module = SFTModel(model, None, outer, _seg_weight(cfg))
        _mark_parts(parts)
        if ckpt is not None:
            load_modules(parts, ckpt)
        return parts

    a = cfg.adapter
    for p in model.parameters():
        p.requires_grad_(False)
    parts = Parts(backbone=bb, module=None)  # type: ignore[arg-type]
    ctx: ScaleContext | None = None
    extra: dict[str, torch.Tensor] = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)  # adapter and head initialisation
        if a.kind in METHODS:  # a GSD-gated method of earthvlm.adapters
            if ckpt is not None:
                ctx, extra = load_adapter(model, ckpt / "adapter", expect=a.kind)
            else:
                ctx = inject(model, get_method(a.kind), _gated_config(cfg))
            parts.gated = adapter_info(model)["config"]
        elif a.kind == "lora":
            from peft import get_peft_model, load_peft_weights, set_peft_model_state_dict

            parts.peft_model = get_peft_model(model, _lora_config(cfg))
            if ckpt is not None:
                result = set_peft_model_state_dict(
                    parts.peft_model, load_peft_weights(str(ckpt / "adapter"))
                )
                if result.unexpected_keys:
                    raise EarthVLMError(
                        f"{ckpt / 'adapter'}: LoRA weights do not fit this model "
                        f"(unexpected {result.unexpected_keys[:2]})"
                    )
        if a.sseu:
            hidden = model.config.text_config.hidden_size
            parts.sseu = SSEUHead(hidden, a.sseu_hidden, init_mu=init_mu)
            if ckpt is not None:
                if not extra:
                    extra = load_file(str(ckpt / SSEU_FILE))
                head = {
                    k.removeprefix(SSEU_PREFIX): v
                    for k, v in extra.items()
                    if k.startswith(SSEU_PREFIX)
                }
                parts.sseu.load_state_dict(head, strict=True)
    outer = _wrap(cfg, parts, model, seg_id)
    if parts.gated is not None or parts.sseu is not None:
        parts.scale = ScaleEarth(
            model, ctx or ScaleContext(), parts.sseu, ScaleEarthConfig(p_e2e=a.p_e2e)
        )
        parts.scale.attach_fusion(parts.fusion)
    parts.module = SFTModel(model, parts.scale, outer, _seg_weight(cfg))
    _mark_parts(parts)
    own = parts.module.param_parts
    for name, p in parts.module.named_parameters():
        p.requires_grad_(_is_adapter(name) or name.startswith("net.sseu.") or id(p) in own)
    if parts.seg is not None and cfg.seg is not None and cfg.seg.train_token:
        _train_seg_rows(parts.module, parts.backbone.model, parts.seg.seg_token_id)
    if ckpt is not None:
        load_modules(parts, ckpt)
    return parts


def _seg_weight(cfg: TrainConfig) -> float:
    return cfg.seg.loss_weight if cfg.seg is not None else 0.0


def _wrap(cfg: TrainConfig, parts: Parts, model: nn.Module, seg_id: int | None) -> nn.Module | None:
    """Wrap ``model`` in EarthFusion and / or EarthSeg as the config asks (seeded)."""
    hidden = int(model.config.text_config.hidden_size)
    outer: nn.Module | None = None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed + 1)  # fusion and decoder initialisation
        if cfg.fusion is not None:
            parts.fusion = EarthFusion(model, build_fusion(cfg.fusion.build(hidden)))
            outer = parts.fusion
        if cfg.seg is not None and seg_id is not None:
            s = cfg.seg
            decoder = build_mask_decoder(
                MaskDecoderConfig(
                    hidden_size=hidden,
                    dim=s.dim,
                    heads=s.heads,
                    merge=int(model.config.vision_config.spatial_merge_size),
                    kind=s.kind,
                    weights_path=s.weights_path,
                    sam_class=s.sam_class,
                    bce_weight=s.bce_weight,
                    dice_weight=s.dice_weight,
                )
            )
            parts.seg = EarthSeg(outer or model, decoder, seg_id)
            outer = parts.seg
    return outer


def _mark_parts(parts: Parts) -> None:
    """Record which parameters belong to the fusion module and the mask decoder."""
    own = parts.module.param_parts
    if parts.fusion is not None:
        own.update({id(p): "fusion" for p in parts.fusion.fusion.parameters()})
    if parts.seg is not None:
        own.update({id(p): "seg" for p in parts.seg.seg_decoder.parameters()})


def _train_seg_rows(module: SFTModel, hf: nn.Module, seg_id: int) -> None:
    """Stage 2: let only the ``[SEG]`` rows of the embeddings (and an untied output head)
    learn: the matrices train with every other row's gradient zeroed (and no weight
    decay, so that those rows stay exactly as loaded)."""
    weights = [hf.get_input_embeddings().weight]
    head = hf.get_output_embeddings()
    if head is not None and head.weight is not weights[0]:
        weights.append(head.weight)
    for w in weights:
        keep = torch.zeros(w.shape[0], 1, dtype=w.dtype, device=w.device)
        keep[seg_id] = 1.0
        w.requires_grad_(True)
        w.register_hook(lambda g, keep=keep: g * keep.to(g.device, g.dtype))
        module.param_parts[id(w)] = "seg_token"


def _is_adapter(name: str) -> bool:
    # cshlora_*, moelora_* and peft's lora_* parameters
    return "lora_" in name


def param_groups(cfg: TrainConfig, module: nn.Module) -> list[dict[str, Any]]:
    """AdamW groups: one learning rate per part, no weight decay on vectors and scalars.

    Stage 1 (Table 4): the vision tower at ``optim.vision_lr``, the projector (the
    vision merger) and the LLM at ``optim.lr``. Stage 2 (Table 6): the adapter at
    ``optim.lr``, the SSE-U head at ``optim.head_lr``. Either stage: the fusion module
    at ``fusion.lr``, the mask decoder and the ``[SEG]`` rows at ``seg.lr`` (default
    ``optim.lr``). Biases, norms, CS-HLoRA thresholds and sharpness are not decayed:
    decay would pull the thresholds to 0.

    Raises:
        EarthVLMError: If nothing is trainable.
    """
    o = cfg.optim
    lrs = {"llm_projector": o.lr, "vision": o.vision_lr, "adapter": o.lr, "sseu": o.head_lr}
    lrs["fusion"] = cfg.fusion.lr if cfg.fusion and cfg.fusion.lr is not None else o.lr
    lrs["seg"] = lrs["seg_token"] = cfg.seg.lr if cfg.seg and cfg.seg.lr is not None else o.lr
    own: dict[int, str] = getattr(module, "param_parts", {})
    grouped: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        if id(p) in own and not (cfg.stage == 1 and own[id(p)] == "seg_token"):
            part = own[id(p)]
            # the [SEG]-masked matrices: decay would shrink the rows that do not learn
            grouped.setdefault((part, p.ndim >= 2 and part != "seg_token"), []).append(p)
            continue
        if cfg.stage == 1:
            is_vision = ".visual." in name and "merger" not in name
            part = "vision" if is_vision else "llm_projector"
        else:
            part = "sseu" if name.startswith("net.sseu.") else "adapter"
        grouped.setdefault((part, p.ndim >= 2), []).append(p)
    if not grouped:
        raise EarthVLMError("no trainable parameter: check stage and adapter.kind")
    return [
        {
            "params": params,
            "lr": lrs[part],
            "base_lr": lrs[part],
            "weight_decay": o.weight_decay if decay else 0.0,
            "name": part,
        }
        for (part, decay), params in sorted(grouped.items(), key=lambda kv: kv[0])
    ]


def save_weights(cfg: TrainConfig, parts: Parts, out: Path, info: dict[str, Any]) -> None:
    """Write the weights a checkpoint needs into ``out`` (``model/`` or ``adapter/``, and
    ``modules.safetensors`` for fusion and segmentation)."""
    save_modules(parts, out, info)
    if cfg.stage == 1:
        save_backbone(parts.backbone, out / "model", overwrite=True)
        return
    head = (
        {SSEU_PREFIX + k: v.detach().float() for k, v in parts.sseu.state_dict().items()}
        if parts.sseu is not None
        else {}
    )
    if parts.gated is not None:  # save_cshlora / the MoE-LoRA save: one generic writer
        save_adapter(parts.backbone.model, out / "adapter", extra_tensors=head, provenance=info)
        return
    if parts.peft_model is not None:
        parts.peft_model.save_pretrained(str(out / "adapter"))
    if head:
        save_file({k: v.contiguous() for k, v in head.items()}, str(out / SSEU_FILE))


def modules_state_dict(parts: Parts) -> dict[str, torch.Tensor]:
    """The fusion module's (``fusion.*``) and segmentation's (``seg.*``) tensors."""
    out: dict[str, torch.Tensor] = {}
    if parts.fusion is not None:
        out.update({FUSION_PREFIX + k: v for k, v in parts.fusion.fusion_state_dict().items()})
    if parts.seg is not None:
        out.update({SEG_PREFIX + k: v for k, v in parts.seg.seg_state_dict().items()})
    return out


def save_modules(parts: Parts, out: Path, info: dict[str, Any]) -> Path | None:
    """Write :data:`MODULES_FILE` into ``out`` (a checkpoint's temporary folder, renamed
    into place whole), the run's provenance in its metadata; nothing without modules."""
    if parts.fusion is None and parts.seg is None:
        return None
    tensors = {k: v.detach().cpu().contiguous() for k, v in modules_state_dict(parts).items()}
    meta = {
        "format": "pt",
        "fusion": json.dumps(parts.fusion.fusion.config.to_dict()) if parts.fusion else "",
        "seg_token_id": str(parts.seg_token_id) if parts.seg is not None else "",
        "provenance": json.dumps(info, default=str, sort_keys=True),
    }
    path = Path(out) / MODULES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=meta)
    return path


def load_modules(parts: Parts, ckpt: str | Path) -> None:
    """Load :data:`MODULES_FILE` of checkpoint ``ckpt`` into the run's fusion module and
    mask decoder (strict; unknown keys are ignored with a warning).

    Raises:
        EarthVLMError: If the file is missing, or its tensors do not fit the modules.
    """
    if parts.fusion is None and parts.seg is None:
        return
    path = Path(ckpt) / MODULES_FILE
    if not path.is_file():
        raise EarthVLMError(
            f"{path}: missing; the run's config has a fusion / seg section but the checkpoint "
            "holds no fusion or segmentation weights (was it written with another config?)"
        )
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    saved_seg = meta.get("seg_token_id")
    if parts.seg is not None and saved_seg and int(saved_seg) != parts.seg_token_id:
        raise EarthVLMError(
            f"{path}: [SEG] was token {saved_seg} when saved but is {parts.seg_token_id} "
            "now: the tokenizer differs from the run's"
        )
    state = load_file(str(path))
    fusion = {k.removeprefix(FUSION_PREFIX): v for k, v in state.items()
              if k.startswith(FUSION_PREFIX)}  # fmt: skip
    seg = {k.removeprefix(SEG_PREFIX): v for k, v in state.items() if k.startswith(SEG_PREFIX)}
    unknown = sorted(k for k in state if not k.startswith((FUSION_PREFIX, SEG_PREFIX)))
    if unknown:
        warnings.warn(f"{path}: ignoring unknown tensors {unknown[:4]}", stacklevel=2)
    try:
        if parts.fusion is not None:
            parts.fusion.load_fusion_state_dict(fusion)
        if parts.seg is not None:
            parts.seg.load_seg_state_dict(seg)
    except RuntimeError as e:
        raise EarthVLMError(f"{path}: the saved modules do not fit this config: {e}") from None


def gated(parts: Parts) -> dict[str, Any]:
    """The CS-HLoRA layers of the run (empty for other adapters)."""
    if parts.cshlora is None:
        return {}
    return adapter_layers(parts.backbone.model, get_method("cshlora"))


__all__ = [
    "MODULES_FILE",
    "Losses",
    "Parts",
    "SFTModel",
    "build_model",
    "load_base",
    "load_modules",
    "modules_state_dict",
    "param_groups",
    "save_modules",
    "save_weights",
]
