"""The fusion baselines of EarthMind's Table 4 (sec. 5.4): concatenation, element-wise
average, and attention from cosine similarity ("native attention").

None has parameters; all take the same groups as HCA and return :class:`FusedTokens`.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from earthvlm.fusion.base import SensorFusion, TokenWeights
from earthvlm.fusion.tokens import OPTICAL, SAR, FusedTokens, Grid


class ConcatFusion(SensorFusion):
    """Optical tokens then SAR tokens, ``(P + N, D)`` (sec. 3.2, "Motivation").

    Nothing is pooled: every token of both sensors reaches the language model, which is
    the setting whose optical bias the modality attention score (Eq. 1) measures.
    """

    def fuse_pair(
        self,
        optical: torch.Tensor,
        sar: torch.Tensor,
        optical_grid: Grid | None,
        sar_grid: Grid | None,
        text: torch.Tensor | None,
    ) -> FusedTokens:
        dev = sar.device
        source = torch.cat(
            [
                torch.full((optical.shape[0],), OPTICAL, dtype=torch.long, device=dev),
                torch.full((sar.shape[0],), SAR, dtype=torch.long, device=dev),
            ]
        )
        return FusedTokens(torch.cat([optical, sar.to(optical.dtype)]), source, None)


class AverageFusion(SensorFusion):
    """``(X-hat_o + X_s) / 2`` per token on the SAR grid (Table 4, "Element-wise Average")."""

    def token_weights(
        self, xo: torch.Tensor, sar: torch.Tensor, text: torch.Tensor | None
    ) -> TokenWeights:
        return torch.full((sar.shape[0], 2), 0.5, device=sar.device), None, None


class CosineFusion(SensorFusion):
    """Token importance from cosine similarity across sensors (Table 4, "Native Attention").

    The paper says only that importance comes from the cosine similarity of SAR and
    optical features. Here it is HCA's Stage 1 without the softmax and without the text
    stage: ``alpha_o_i`` is the mean cosine similarity of optical token i to the SAR
    tokens, ``alpha_s_i`` the converse, and ``[w_o, w_s] = softmax([alpha_o, alpha_s] / T)``.
    (The cosine of the co-located pair alone is symmetric and would give 0.5 / 0.5.)
    """

    def token_weights(
        self, xo: torch.Tensor, sar: torch.Tensor, text: torch.Tensor | None
    ) -> TokenWeights:
        cos = F.normalize(xo.float(), dim=-1) @ F.normalize(sar.float(), dim=-1).t()  # (N, N)
        alpha = torch.stack([cos.mean(dim=1), cos.mean(dim=0)], dim=-1)
        return F.softmax(alpha / self.config.temperature, dim=-1), alpha, None
