"""Bucketed MoE-LoRA on a whole model (inject / save / load through adapters.base)."""

from __future__ import annotations

from torch import nn

from earthvlm.adapters.base import AdapterMethod, inject
from earthvlm.adapters.context import ScaleContext
from earthvlm.adapters.moelora.config import MoELoRAConfig
from earthvlm.adapters.moelora.layer import MoELoRALinear


def _make_layer(base: nn.Module, config: MoELoRAConfig, context: ScaleContext) -> MoELoRALinear:
    return MoELoRALinear(
        base, n_experts=config.n_experts, r=config.r_expert,
        scaling=config.alpha_lora / config.r_total, dropout=config.dropout,
        log10_boundaries=config.log10_boundaries, context=context,
    )  # fmt: skip


METHOD = AdapterMethod("moelora", "moelora_", MoELoRAConfig, MoELoRALinear, _make_layer)


def inject_moelora(
    model: nn.Module, config: MoELoRAConfig, context: ScaleContext | None = None
) -> ScaleContext:
    """Wrap every targeted linear layer in a :class:`MoELoRALinear`; freeze the rest."""
    return inject(model, METHOD, config, context)
