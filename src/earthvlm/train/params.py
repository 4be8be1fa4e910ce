"""What trains in an :class:`~earthvlm.models.EarthVLM`: its optimiser groups.

The model itself (backbone, adapter, SSE-U head, fusion, mask decoder) is assembled in
:mod:`earthvlm.models.assemble` and saved by :mod:`earthvlm.models.saved`; this module
holds the training-only view of it: one AdamW group per part, with the paper's
learning rates (ScaleEarth Tables 4 and 6).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from earthvlm.adapters.base import adapter_layers, get_method
from earthvlm.errors import EarthVLMError
from earthvlm.models.earthvlm import EarthVLM
from earthvlm.train.config import TrainConfig


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


def gated(model: EarthVLM) -> dict[str, Any]:
    """The CS-HLoRA layers of the model (empty for other adapters)."""
    if model.cshlora is None:
        return {}
    return adapter_layers(model.hf_model, get_method("cshlora"))


__all__ = ["gated", "param_groups"]
