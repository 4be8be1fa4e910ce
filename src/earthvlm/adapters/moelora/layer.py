"""One bucketed MoE-LoRA layer: K LoRA experts, each sample (or token) routed to the
expert of its GSD bucket. Hard routing: exactly one expert is active.

    y = W x + (alpha_lora / r_total) * B_e A_e x,   e = bucket(s)
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from earthvlm.adapters.context import ScaleContext
from earthvlm.adapters.linear import AdapterLinear


class MoELoRALinear(AdapterLinear):
    """A linear layer plus K bucket-routed LoRA experts (``moelora_`` parameters)."""

    def __init__(
        self,
        base_layer: nn.Module,
        *,
        n_experts: int,
        r: int,
        scaling: float,
        dropout: float,
        log10_boundaries: list[float],
        context: ScaleContext,
    ) -> None:
        super().__init__(base_layer, context)
        in_f, out_f = base_layer.in_features, base_layer.out_features
        dtype, device = self.adapter_dtype, self.adapter_device
        self.moelora_A = nn.Parameter(torch.empty(n_experts, r, in_f, device=device, dtype=dtype))
        self.moelora_B = nn.Parameter(torch.zeros(n_experts, out_f, r, device=device, dtype=dtype))
        for k in range(n_experts):
            nn.init.kaiming_uniform_(self.moelora_A.data[k], a=math.sqrt(5))
        self.register_buffer(
            "edges", torch.tensor(log10_boundaries, dtype=torch.float32), persistent=False
        )
        self.scaling, self.n_experts, self.r = scaling, n_experts, r
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def route(self, s: torch.Tensor) -> torch.Tensor:
        """Expert index of each scale: the bucket ``s`` falls in (edges go to the coarser)."""
        return torch.bucketize(s.float(), self.edges.to(s.device), right=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base_layer(x)
        batch, seq = self.batch_seq(x)
        expert = self.route(self.context.for_batch(batch, seq))  # (B,) or (B, T)
        if x.dim() == 3 and expert.dim() == 1:
            expert = expert[:, None].expand(batch, seq)
        xd = self.dropout(x)
        delta = torch.zeros_like(y)
        for k in range(self.n_experts):
            mask = (expert == k).to(x.dtype)[..., None]
            if not mask.any():
                continue
            z = F.linear(xd, self.moelora_A[k].to(x.dtype))
            delta = delta + F.linear(z, self.moelora_B[k].to(x.dtype)) * mask
        return y + delta * self.scaling

    def delta_weight(self, log10_gsd: float) -> torch.Tensor:
        """scaling * B_e A_e of the expert one scale routes to: the update to merge
        (float32, ``(out, in)``). Routed as :meth:`forward` routes (float32, edges to the
        coarser bucket)."""
        s = torch.tensor([float(log10_gsd)], device=self.moelora_A.device)
        e = int(self.route(s)[0])
        return (self.moelora_B[e].float() @ self.moelora_A[e].float()) * self.scaling
