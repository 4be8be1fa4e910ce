"""One CS-HLoRA layer: a frozen linear layer plus a GSD-gated low-rank update.

    y = W x + (alpha_lora / r) * B diag(h(s)) A x,   h_k(s) = sigmoid(alpha * (tau_k - s))

(ScaleEarth Eq. 1). ``tau`` (one threshold per rank) and ``alpha`` (one sharpness per
layer) are learnable; ``s = log10 GSD`` comes from the shared :class:`ScaleContext`, per
sample (B,) or per token (B, T). The gate depends on ``s`` and the gate parameters only,
so it is cached and reused across decoding steps until either changes (the GSD is fixed
during generation).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from earthvlm.adapters.context import ScaleContext
from earthvlm.adapters.linear import AdapterLinear


class CSHLoRALinear(AdapterLinear):
    """A linear layer with a CS-HLoRA update. Parameter names carry the ``cshlora_`` prefix
    (what is trained, saved and loaded)."""

    def __init__(
        self,
        base_layer: nn.Module,
        *,
        r: int,
        alpha_lora: float,
        dropout: float,
        tau_init: list[float],
        sharpness_init: float,
        context: ScaleContext,
    ) -> None:
        super().__init__(base_layer, context)
        in_f, out_f = base_layer.in_features, base_layer.out_features
        self.r, self.scaling = r, alpha_lora / r
        dtype, device = self.adapter_dtype, self.adapter_device
        self.cshlora_A = nn.Parameter(torch.empty(r, in_f, device=device, dtype=dtype))
        self.cshlora_B = nn.Parameter(torch.zeros(out_f, r, device=device, dtype=dtype))
        nn.init.kaiming_uniform_(self.cshlora_A, a=math.sqrt(5))  # as LoRA: B = 0, so dW = 0
        self.cshlora_tau = nn.Parameter(torch.tensor(tau_init, device=device, dtype=torch.float32))
        self.cshlora_sharpness = nn.Parameter(
            torch.tensor(float(sharpness_init), device=device, dtype=torch.float32)
        )
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        # a plain attribute, not a submodule: shared by every layer of the model
        self._gate_cache: tuple[tuple, torch.Tensor] | None = None

    def gate(self, s: torch.Tensor) -> torch.Tensor:
        """h(s): (..., r) for a scale tensor ``s`` of any shape."""
        return torch.sigmoid(self.cshlora_sharpness * (self.cshlora_tau - s.float()[..., None]))

    def _cached_gate(self, batch: int, seq: int) -> torch.Tensor:
        ctx: ScaleContext = self.context
        needs_grad = torch.is_grad_enabled() and (
            self.cshlora_tau.requires_grad or self.cshlora_sharpness.requires_grad
        )
        key = (
            ctx.version, batch, seq if ctx.s is not None and ctx.s.dim() == 2 else 0,
            self.cshlora_tau._version, self.cshlora_sharpness._version,
        )  # fmt: skip
        if not needs_grad and self._gate_cache is not None and self._gate_cache[0] == key:
            return self._gate_cache[1]
        g = self.gate(ctx.for_batch(batch, seq))
        if not needs_grad:
            self._gate_cache = (key, g)
        return g

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base_layer(x)
        batch, seq = self.batch_seq(x)
        h = self._cached_gate(batch, seq).to(x.dtype)  # (B, r) or (B, T, r)
        z = F.linear(self.dropout(x), self.cshlora_A.to(x.dtype))
        if x.dim() == 3 and h.dim() == 2:
            h = h[:, None, :]
        delta = F.linear(z * h, self.cshlora_B.to(x.dtype)) * self.scaling
        return y + delta.to(y.dtype)

    def delta_weight(self, log10_gsd: float) -> torch.Tensor:
        """(alpha_lora / r) * B diag(h(s)) A for one scale: the update to merge."""
        h = self.gate(torch.tensor(float(log10_gsd), device=self.cshlora_tau.device))
        return (self.cshlora_B.float() * h[None, :]) @ self.cshlora_A.float() * self.scaling

    def extra_repr(self) -> str:
        return f"r={self.r}, scaling={self.scaling:g}"
