"""Assemble an :class:`~earthvlm.models.EarthVLM` from a recipe, fresh or from a checkpoint.

* stage 1: every parameter of the backbone trains (vision tower, projector, LLM);
* stage 2: the backbone is frozen (optionally NF4) and an adapter is added:
  ``cshlora`` (CS-HLoRA, gated by the GSD through :class:`ScaleEarth`), ``moelora``
  (the B4 baseline: LoRA experts hard-routed by GSD bucket), ``lora`` (peft LoRA with
  the same rank, alpha and targets: the B2 baseline) or ``none``; with ``adapter.sseu``
  an SSE-U head is trained on the pooled vision features.

With a ``fusion`` section the model is wrapped in
:class:`~earthvlm.models.fusion.EarthFusion` (optical + SAR pairs fused before the
language model), with a ``seg`` section in :class:`~earthvlm.models.seg.EarthSeg`
(``[SEG]`` added to the tokenizer, a mask decoder on its hidden state); both train in
either stage. A ScaleEarth scale path reads the fusion's image groups: each view keeps
its own GSD and a fused pair's tokens take the SAR view's
(:mod:`earthvlm.models.scaleearth`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from earthvlm.adapters.base import METHODS, adapter_info, get_method, inject, load_adapter
from earthvlm.adapters.context import ScaleContext
from earthvlm.adapters.cshlora import CSHLoRAConfig
from earthvlm.adapters.moelora import MoELoRAConfig
from earthvlm.errors import EarthVLMError
from earthvlm.fusion import build_fusion
from earthvlm.models.backbone import Backbone, build_tiny_backbone
from earthvlm.models.checkpoint import load_backbone
from earthvlm.models.earthvlm import EarthVLM
from earthvlm.models.fusion import EarthFusion
from earthvlm.models.recipe import ModelRecipe
from earthvlm.models.scaleearth import ScaleEarth, ScaleEarthConfig
from earthvlm.models.seg import EarthSeg, MaskDecoderConfig, add_seg_token, build_mask_decoder
from earthvlm.models.sseu import SSEUHead


def load_base(
    recipe: ModelRecipe,
    *,
    path: str | Path | None = None,
    device_map: Any = None,
) -> Backbone:
    """The backbone: ``path`` (a checkpoint's model), ``model.path``, or a tiny one.

    Raises:
        EarthVLMError: A missing or malformed folder, or 4-bit without bitsandbytes
            (the message says what to install).
    """
    m = recipe.model
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


def gated_config(recipe: ModelRecipe) -> Any:
    """The adapter config of a GSD-gated method (``cshlora`` or ``moelora``)."""
    a = recipe.adapter
    if a.kind == "moelora":  # B4: K experts of r // K ranks, matched to CS-HLoRA's size
        return MoELoRAConfig(
            r_total=a.r, alpha_lora=a.alpha, dropout=a.dropout,
            target_modules=tuple(a.target_modules),
        )  # fmt: skip
    return CSHLoRAConfig(
        r=a.r, alpha_lora=a.alpha, dropout=a.dropout, target_modules=tuple(a.target_modules),
        sharpness_init=a.sharpness_init,
    )  # fmt: skip


def lora_config(recipe: ModelRecipe) -> Any:
    """peft's ``LoraConfig`` for the B2 baseline: CS-HLoRA's rank, alpha and layers."""
    from peft import LoraConfig

    a = recipe.adapter
    # the same layers CS-HLoRA wraps: named targets inside the language model only
    pattern = r".*language_model\..*\.(" + "|".join(a.target_modules) + r")"
    return LoraConfig(
        r=a.r, lora_alpha=a.alpha, lora_dropout=a.dropout, target_modules=pattern, bias="none"
    )


@dataclass
class _Pieces:
    """What is assembled before the :class:`EarthVLM` is made."""

    backbone: Backbone
    scale: ScaleEarth | None = None
    sseu: SSEUHead | None = None
    peft_model: Any = None
    gated: Any = None
    fusion: EarthFusion | None = None
    seg: EarthSeg | None = None
    outer: nn.Module | None = None


def build_model(
    recipe: ModelRecipe,
    *,
    init_mu: float = 0.0,
    weights_from: str | Path | None = None,
    device_map: Any = None,
    name: str = "model",
    max_length: int = 8192,
) -> EarthVLM:
    """Assemble the model of ``recipe``, fresh (seeded by ``recipe.seed``) or from a
    checkpoint, with the parameters that train marked trainable.

    Args:
        recipe: What the model is made of.
        init_mu: SSE-U's initial mu (the mean log10 GSD of the data).
        weights_from: A checkpoint folder whose weights replace the fresh ones.
        device_map: Passed to ``from_pretrained`` for a 4-bit backbone.
        name: A label for reports.
        max_length: Longest token sequence its collators build.
    """
    from earthvlm.models.saved import SSEU_FILE, SSEU_PREFIX, load_modules

    ckpt = Path(weights_from) if weights_from is not None else None
    # stage 1 resumes from the checkpoint's full model; stage 2 rebuilds the frozen base
    if recipe.stage == 1:
        bb = load_base(recipe, path=ckpt / "model" if ckpt else None)
    else:
        bb = load_base(recipe, device_map=device_map)
    model = bb.model
    if recipe.model.gradient_checkpointing:
        # non-reentrant: gradients reach adapters inside a frozen, checkpointed block
        model.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False}
        )
    seg_id = add_seg_token(model, bb.tokenizer) if recipe.seg is not None else None
    pieces = _Pieces(backbone=bb)
    extra = {"recipe": recipe, "name": name, "max_length": max_length}
    if ckpt is not None:
        extra.update(source=ckpt, origin="run")
    if recipe.stage == 1:
        for p in model.parameters():
            p.requires_grad_(True)
        _wrap(recipe, pieces, model, seg_id)
        out = _make(pieces, extra)
        if ckpt is not None:
            load_modules(out, ckpt)
        return out

    a = recipe.adapter
    for p in model.parameters():
        p.requires_grad_(False)
    ctx: ScaleContext | None = None
    tensors: dict[str, torch.Tensor] = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)  # adapter and head initialisation
        if a.kind in METHODS:  # a GSD-gated method of earthvlm.adapters
            if ckpt is not None:
                ctx, tensors = load_adapter(model, ckpt / "adapter", expect=a.kind)
            else:
                ctx = inject(model, get_method(a.kind), gated_config(recipe))
            pieces.gated = adapter_info(model)["config"]
        elif a.kind == "lora":
            from peft import get_peft_model, load_peft_weights, set_peft_model_state_dict

            pieces.peft_model = get_peft_model(model, lora_config(recipe))
            if ckpt is not None:
                result = set_peft_model_state_dict(
                    pieces.peft_model, load_peft_weights(str(ckpt / "adapter"))
                )
                if result.unexpected_keys:
                    raise EarthVLMError(
                        f"{ckpt / 'adapter'}: LoRA weights do not fit this model "
                        f"(unexpected {result.unexpected_keys[:2]})"
                    )
        if a.sseu:
            hidden = model.config.text_config.hidden_size
            pieces.sseu = SSEUHead(hidden, a.sseu_hidden, init_mu=init_mu)
            if ckpt is not None:
                if not tensors:
                    tensors = load_file(str(ckpt / SSEU_FILE))
                head = {
                    k.removeprefix(SSEU_PREFIX): v
                    for k, v in tensors.items()
                    if k.startswith(SSEU_PREFIX)
                }
                pieces.sseu.load_state_dict(head, strict=True)
    _wrap(recipe, pieces, model, seg_id)
    if pieces.gated is not None or pieces.sseu is not None:
        pieces.scale = ScaleEarth(
            model, ctx or ScaleContext(), pieces.sseu, ScaleEarthConfig(p_e2e=a.p_e2e)
        )
        pieces.scale.attach_fusion(pieces.fusion)
    out = _make(pieces, extra)
    own = out.param_parts
    for pname, p in out.named_parameters():
        p.requires_grad_("lora_" in pname or pname.startswith("net.sseu.") or id(p) in own)
    if out.seg is not None and recipe.seg is not None and recipe.seg.train_token:
        _train_seg_rows(out, model, out.seg.seg_token_id)
    if ckpt is not None:
        load_modules(out, ckpt)
    return out


def _make(pieces: _Pieces, extra: dict[str, Any]) -> EarthVLM:
    out = EarthVLM(
        pieces.backbone,
        scale=pieces.scale,
        outer=pieces.outer,
        sseu=pieces.sseu,
        peft_model=pieces.peft_model,
        gated=pieces.gated,
        fusion=pieces.fusion,
        seg=pieces.seg,
        **extra,
    )
    # which parameters belong to the fusion module and the mask decoder
    if out.fusion is not None:
        out.param_parts.update({id(p): "fusion" for p in out.fusion.fusion.parameters()})
    if out.seg is not None:
        out.param_parts.update({id(p): "seg" for p in out.seg.seg_decoder.parameters()})
    return out


def _wrap(recipe: ModelRecipe, pieces: _Pieces, model: nn.Module, seg_id: int | None) -> None:
    """Wrap ``model`` in EarthFusion and / or EarthSeg as the recipe asks (seeded)."""
    hidden = int(model.config.text_config.hidden_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed + 1)  # fusion and decoder initialisation
        if recipe.fusion is not None:
            pieces.fusion = EarthFusion(model, build_fusion(recipe.fusion.build(hidden)))
            pieces.outer = pieces.fusion
        if recipe.seg is not None and seg_id is not None:
            s = recipe.seg
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
            pieces.seg = EarthSeg(pieces.outer or model, decoder, seg_id)
            pieces.outer = pieces.seg


def _train_seg_rows(module: EarthVLM, hf: nn.Module, seg_id: int) -> None:
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


__all__ = ["build_model", "gated_config", "load_base", "lora_config"]
