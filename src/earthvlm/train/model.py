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
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
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
from earthvlm.models.backbone import Backbone, build_tiny_backbone, load_backbone, save_backbone
from earthvlm.models.scaleearth import ScaleEarth, ScaleEarthConfig
from earthvlm.models.sseu import SSEUHead
from earthvlm.scale.gsd import GSD
from earthvlm.train.config import TrainConfig

#: Extra tensors of the SSE-U head are saved as ``sseu.<parameter>``.
SSEU_PREFIX = "sseu."
#: Where lora / none runs keep the SSE-U head in a checkpoint.
SSEU_FILE = "sseu_head.safetensors"


class SFTModel(nn.Module):
    """The network one micro-batch runs through, and the two loss terms it returns.

    Args:
        model: The Qwen-VL model (with its adapter layers, if any).
        scale: The ScaleEarth wrapper around ``model`` (stage 2 with CS-HLoRA or SSE-U),
            or ``None`` to call ``model`` directly (stage 1, plain LoRA).
    """

    def __init__(self, model: nn.Module, scale: ScaleEarth | None) -> None:
        super().__init__()
        self.net = scale if scale is not None else model

    def forward(
        self, inputs: dict[str, torch.Tensor], gsds: list[GSD], seed: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(L_VLM, L_nll)`` of one micro-batch; ``L_nll`` is 0 without an SSE-U head."""
        if not isinstance(self.net, ScaleEarth):
            out = self.net(**inputs, use_cache=False)
            return out.loss, out.loss.new_zeros(())
        # Eq. 4: exact -> log10 g (or mu with p_e2e), range -> uniform draw, unknown -> mu
        out = self.net(gsd=gsds, scale_mode="train", seed=seed, use_cache=False, **inputs)
        last = self.net.last
        nll = last.nll(gsds) if last.mu is not None else out.loss.new_zeros(())
        return out.loss, nll


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
    """

    backbone: Backbone
    module: SFTModel
    scale: ScaleEarth | None = None
    sseu: SSEUHead | None = None
    peft_model: Any = None
    gated: Any = None

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
    if cfg.stage == 1:
        for p in model.parameters():
            p.requires_grad_(True)
        return Parts(backbone=bb, module=SFTModel(model, None))

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
    if parts.gated is not None or parts.sseu is not None:
        parts.scale = ScaleEarth(
            model, ctx or ScaleContext(), parts.sseu, ScaleEarthConfig(p_e2e=a.p_e2e)
        )
    parts.module = SFTModel(model, parts.scale)
    for name, p in parts.module.named_parameters():
        p.requires_grad_(_is_adapter(name) or name.startswith("net.sseu."))
    return parts


def _is_adapter(name: str) -> bool:
    # cshlora_*, moelora_* and peft's lora_* parameters
    return "lora_" in name


def param_groups(cfg: TrainConfig, module: nn.Module) -> list[dict[str, Any]]:
    """AdamW groups: one learning rate per part, no weight decay on vectors and scalars.

    Stage 1 (Table 4): the vision tower at ``optim.vision_lr``, the projector (the
    vision merger) and the LLM at ``optim.lr``. Stage 2 (Table 6): the adapter at
    ``optim.lr``, the SSE-U head at ``optim.head_lr``. Biases, norms, CS-HLoRA
    thresholds and sharpness are not decayed: decay would pull the thresholds to 0.

    Raises:
        EarthVLMError: If nothing is trainable.
    """
    o = cfg.optim
    lrs = {"llm_projector": o.lr, "vision": o.vision_lr, "adapter": o.lr, "sseu": o.head_lr}
    grouped: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, p in module.named_parameters():
        if not p.requires_grad:
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
    """Write the weights a checkpoint needs into ``out`` (``model/`` or ``adapter/``)."""
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


def gated(parts: Parts) -> dict[str, Any]:
    """The CS-HLoRA layers of the run (empty for other adapters)."""
    if parts.cshlora is None:
        return {}
    return adapter_layers(parts.backbone.model, get_method("cshlora"))


__all__ = ["Parts", "SFTModel", "build_model", "load_base", "param_groups", "save_weights"]
