"""CS-HLoRA on a whole model: inject, save, load (see :mod:`earthvlm.adapters.base`) and
merge for one fixed GSD."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from earthvlm.adapters.base import (
    AdapterMethod,
    adapter_layers,
    inject,
    load_adapter,
    save_adapter,
)
from earthvlm.adapters.context import ScaleContext
from earthvlm.adapters.cshlora.config import CSHLoRAConfig
from earthvlm.adapters.cshlora.layer import CSHLoRALinear
from earthvlm.adapters.merge import merge_at_log10_gsd

PREFIX = "cshlora_"


def _make_layer(base: nn.Module, config: CSHLoRAConfig, context: ScaleContext) -> CSHLoRALinear:
    return CSHLoRALinear(
        base, r=config.r, alpha_lora=config.alpha_lora, dropout=config.dropout,
        tau_init=config.tau_init(), sharpness_init=config.sharpness_init, context=context,
    )  # fmt: skip


METHOD = AdapterMethod("cshlora", PREFIX, CSHLoRAConfig, CSHLoRALinear, _make_layer)


def inject_cshlora(
    model: nn.Module, config: CSHLoRAConfig, context: ScaleContext | None = None
) -> ScaleContext:
    """Wrap every targeted linear layer of ``model`` in a :class:`CSHLoRALinear`, in place.

    Freezes every parameter that is not a ``cshlora_*`` parameter.

    Returns:
        The shared scale context the layers read (set it before each forward pass).

    Raises:
        EarthVLMError: If no layer matches the config, or the model already has an adapter.
    """
    return inject(model, METHOD, config, context)


def gated_layers(model: nn.Module) -> dict[str, CSHLoRALinear]:
    """Every CS-HLoRA layer of the model by module path."""
    return adapter_layers(model, METHOD)  # type: ignore[return-value]


def save_cshlora(
    model: nn.Module,
    out_dir: str | Path,
    *,
    extra_tensors: dict[str, torch.Tensor] | None = None,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Save the adapter (and e.g. the SSE-U head as ``extra_tensors``) atomically."""
    return save_adapter(model, out_dir, extra_tensors=extra_tensors, provenance=provenance)


def load_cshlora(
    model: nn.Module, adapter_dir: str | Path, context: ScaleContext | None = None
) -> tuple[ScaleContext, dict[str, torch.Tensor]]:
    """Inject CS-HLoRA into ``model`` from a saved adapter and load its weights.

    Raises:
        EarthVLMError: If the folder is incomplete or not CS-HLoRA, or any saved tensor
            does not match a gated layer of this model (or vice versa).
    """
    return load_adapter(model, adapter_dir, context, expect="cshlora")


def merge_cshlora(model: nn.Module, log10_gsd: float) -> int:
    """Fold Delta W(s) for one fixed scale into the base weights and remove the adapters.

    A merged model runs at the base model's speed and gives the unmerged model's output
    at that GSD (see :mod:`earthvlm.adapters.merge`, whose ``merge_at_gsd`` takes metres and
    any gated method). Returns the number of layers merged.

    Raises:
        EarthVLMError: If the model has no CS-HLoRA adapter, the scale is not finite, or a
            base layer is quantised (merge into a full-precision copy).
    """
    return merge_at_log10_gsd(model, log10_gsd, expect="cshlora")
