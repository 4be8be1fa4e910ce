"""The modality attention score (MAS, EarthMind Eq. 1) and the modality gap (Table 4, right).

MAS of modality m at layer l is the share of the attention that visual tokens pay to
visual tokens which goes to tokens of modality m::

    A_l^m = sum_{i in I} sum_{j in T_m} a_{ij}^l / sum_{i in I} sum_{k in I} a_{ik}^l

Pure functions over attention tensors (``output_attentions=True``) and token masks; no
model is run here.

Fused tokens are mixtures: a token fused with weights ``[w_o, w_s]`` is credited to the
optical share by ``w_o`` and to the SAR share by ``w_s`` (its *composition*). For
single-sensor and concatenated tokens the composition is one-hot and the formula is
exactly Eq. 1; with mixtures it gives the per-layer gap for HCA that the paper plots.
The paper computes HCA's gap from the fusion weights alone (Table 4 caption):
:func:`fusion_weight_gap` is that number (the composition weighted uniformly).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from earthvlm.fusion.tokens import FusedTokens, FusionInputError

#: Composition rows must sum to 0 (not visual) or 1 (visual) within this.
_ROW_TOL = 1e-4


def composition_from_masks(optical_mask: torch.Tensor, sar_mask: torch.Tensor) -> torch.Tensor:
    """``(B, K, 2)`` one-hot composition from boolean masks of optical and SAR positions."""
    if optical_mask.shape != sar_mask.shape or optical_mask.dim() != 2:
        raise FusionInputError(
            f"optical_mask {tuple(optical_mask.shape)} and sar_mask {tuple(sar_mask.shape)} "
            "must both be (batch, seq_len)"
        )
    o, s = optical_mask.bool(), sar_mask.bool()
    if bool((o & s).any()):
        raise FusionInputError("a token is marked both optical and SAR")
    return torch.stack([o, s], dim=-1).float()


def composition_from_fused(
    image_mask: torch.Tensor, fused: Sequence[Sequence[FusedTokens]]
) -> torch.Tensor:
    """``(B, K, 2)`` composition of a batch's sequence from its fused groups.

    Args:
        image_mask: ``(B, K)`` bool, the image-token positions of each sequence.
        fused: Per sample, its groups' :class:`FusedTokens` in sequence order.
    """
    if image_mask.dim() != 2 or image_mask.shape[0] != len(fused):
        raise FusionInputError(
            f"image_mask {tuple(image_mask.shape)} must be (batch, seq_len) with one row per "
            f"sample ({len(fused)} samples given)"
        )
    comp = torch.zeros(*image_mask.shape, 2, device=image_mask.device)
    for b, groups in enumerate(fused):
        rows = [g.composition() for g in groups]
        c = torch.cat(rows) if rows else torch.zeros(0, 2)
        positions = image_mask[b].bool().nonzero().squeeze(-1)
        if positions.numel() != c.shape[0]:
            raise FusionInputError(
                f"sample {b}: {positions.numel()} image positions but its fused groups hold "
                f"{c.shape[0]} tokens (the placeholders must match the fused token counts)"
            )
        comp[b, positions] = c.to(comp.device)
    return comp


def _stack(attentions: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    a = attentions if isinstance(attentions, torch.Tensor) else torch.stack(list(attentions))
    if a.dim() != 5:
        raise FusionInputError(
            f"attentions of shape {tuple(a.shape)}: give (layers, batch, heads, q, k) or a "
            "sequence of (batch, heads, q, k), as output_attentions returns"
        )
    return a


def modality_attention_score(
    attentions: torch.Tensor | Sequence[torch.Tensor],
    composition: torch.Tensor,
    query_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Eq. 1 per layer and sample: ``(layers, batch, 2)``, [optical, SAR] summing to 1.

    Heads are pooled (summed in numerator and denominator alike). A sample with no
    visual token, or whose queries pay visual tokens no attention, gives NaN.

    Args:
        attentions: ``(layers, B, H, Q, K)`` or a sequence of ``(B, H, Q, K)``.
        composition: ``(B, K, 2)`` share of each key token that is optical / SAR; rows
            are 0 for text tokens and sum to 1 for visual ones (see
            :func:`composition_from_masks`, :func:`composition_from_fused`).
        query_mask: ``(B, Q)`` bool, the attending tokens. Default: the visual tokens,
            as in Eq. 1 (needs Q == K, a full forward). Pass the text positions to
            measure what the prompt and answer look at instead.
    """
    a = _stack(attentions)
    _, batch, _, q, k = a.shape
    if composition.shape != (batch, k, 2):
        raise FusionInputError(
            f"composition {tuple(composition.shape)} must be (batch={batch}, keys={k}, 2)"
        )
    comp = composition.to(a.device, torch.float32)
    visual = comp.sum(-1)
    if bool(((visual - visual.round()).abs() > _ROW_TOL).any()) or bool((visual > 1.5).any()):
        raise FusionInputError("composition rows must sum to 0 (text) or 1 (visual tokens)")
    if query_mask is None:
        if q != k:
            raise FusionInputError(
                f"attention has {q} queries and {k} keys (a cached decoding step?): pass "
                "query_mask, or use a full forward where queries and keys are the sequence"
            )
        query_mask = visual > 0.5
    if query_mask.shape != (batch, q):
        raise FusionInputError(f"query_mask {tuple(query_mask.shape)} must be ({batch}, {q})")
    qm = query_mask.to(a.device, torch.float32)
    # attention each key receives from the chosen queries, heads summed: (layers, B, K)
    received = torch.einsum("lbhqk,bq->lbk", a.float(), qm)
    per_modality = torch.einsum("lbk,bkm->lbm", received, comp)
    total = torch.einsum("lbk,bk->lb", received, visual)
    return per_modality / total.unsqueeze(-1)


def modality_gap(mas: torch.Tensor) -> torch.Tensor:
    """Optical minus SAR share, ``mas[..., 0] - mas[..., 1]`` (Table 4, right)."""
    return mas[..., 0] - mas[..., 1]


def fusion_weight_gap(fused: Sequence[FusedTokens]) -> torch.Tensor:
    """Mean ``w_o - w_s`` over every fused token of ``fused`` (the paper's HCA gap).

    Raises:
        FusionInputError: If no group holds fused tokens.
    """
    weights = [f.weights for f in fused if f.weights is not None and len(f)]
    if not weights:
        raise FusionInputError("no fused tokens: the groups passed through or were concatenated")
    w = torch.cat(weights).float()
    return (w[:, 0] - w[:, 1]).mean()
