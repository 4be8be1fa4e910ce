"""What every scale-conditioned linear layer shares: the wrapped base layer, the shared
scale context, and where new adapter tensors live."""

from __future__ import annotations

import torch
from torch import nn

from earthvlm.adapters.context import ScaleContext


class AdapterLinear(nn.Module):
    """A frozen linear layer (full precision or bitsandbytes 4-bit) that an adapter wraps.

    Args:
        base_layer: The layer wrapped; its output is computed unchanged.
        context: The scale context shared by every layer of the model (a plain
            attribute, not a submodule).
    """

    def __init__(self, base_layer: nn.Module, context: ScaleContext) -> None:
        super().__init__()
        self.base_layer = base_layer
        weight = getattr(base_layer, "weight", None)
        # adapter tensors in the base's float dtype (float32 beside 4-bit weights)
        floating = weight is not None and weight.is_floating_point()
        self.adapter_dtype = weight.dtype if floating else torch.float32
        self.adapter_device = weight.device if weight is not None else None
        object.__setattr__(self, "context", context)

    @property
    def in_features(self) -> int:
        return self.base_layer.in_features

    @property
    def out_features(self) -> int:
        return self.base_layer.out_features

    @staticmethod
    def batch_seq(x: torch.Tensor) -> tuple[int, int]:
        """(batch, tokens) of a layer input: (B, T, D), or (N, D) read as N samples."""
        return (x.shape[0], x.shape[1]) if x.dim() == 3 else (x.shape[0], 1)
