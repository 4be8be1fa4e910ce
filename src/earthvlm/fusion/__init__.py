"""Optical + SAR token fusion between the vision projector and the language model.

EarthMind's hierarchical cross-modal attention (HCA, sec. 3.2) and the baselines of its
Table 4, plus the modality attention score (Eq. 1) that measures how much a language
model looks at each sensor. A method is registered once in :data:`METHODS`;
:func:`build_fusion` makes its module from a :class:`FusionConfig`.

Usage::

    fusion = build_fusion(FusionConfig(dim=hidden, method="hca"))
    out = fusion.fuse(optical, sar, (optical_grid, sar_grid), text_embeds)
    out.tokens  # (N, D): replaces the pair's P + N tokens
"""

from earthvlm.fusion.base import PREFIX, SensorFusion, build_fusion, pool_to_grid
from earthvlm.fusion.config import METHODS, FusionConfig
from earthvlm.fusion.mas import (
    composition_from_fused,
    composition_from_masks,
    fusion_weight_gap,
    modality_attention_score,
    modality_gap,
)
from earthvlm.fusion.tokens import (
    FUSED,
    MODALITIES,
    OPTICAL,
    SAR,
    FusedTokens,
    FusionInputError,
    TokenGroup,
    flatten,
)

__all__ = [
    "FUSED",
    "METHODS",
    "MODALITIES",
    "OPTICAL",
    "PREFIX",
    "SAR",
    "FusedTokens",
    "FusionConfig",
    "FusionInputError",
    "SensorFusion",
    "TokenGroup",
    "build_fusion",
    "composition_from_fused",
    "composition_from_masks",
    "flatten",
    "fusion_weight_gap",
    "modality_attention_score",
    "modality_gap",
    "pool_to_grid",
]
