"""The modality attention score (EarthMind Eq. 1): a worked example, shares that sum to 1,
fused tokens credited by their weights, and real attention maps of a tiny Qwen LM."""

from __future__ import annotations

import pytest
import torch

from earthvlm.fusion import (
    FusionConfig,
    FusionInputError,
    TokenGroup,
    build_fusion,
    composition_from_fused,
    composition_from_masks,
    flatten,
    fusion_weight_gap,
    modality_attention_score,
    modality_gap,
)

D = 8


def _t(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _random_attention(layers: int, batch: int, heads: int, n: int, seed: int) -> torch.Tensor:
    return _t(layers, batch, heads, n, n, seed=seed).softmax(dim=-1)


def test_worked_example() -> None:
    # sequence: [text, optical, optical, sar, text]; one layer, one head
    attn = torch.tensor(
        [
            [1.0, 0.0, 0.0, 0.0, 0.0],
            [0.2, 0.8, 0.0, 0.0, 0.0],  # optical 1: 0.8 to optical
            [0.1, 0.3, 0.6, 0.0, 0.0],  # optical 2: 0.9 to optical
            [0.2, 0.2, 0.2, 0.4, 0.0],  # sar: 0.4 to optical, 0.4 to SAR
            [0.2, 0.2, 0.2, 0.2, 0.2],
        ]
    )[None, None, None]
    comp = composition_from_masks(torch.tensor([[0, 1, 1, 0, 0]]), torch.tensor([[0, 0, 0, 1, 0]]))
    mas = modality_attention_score(attn, comp)
    # visual queries only (Eq. 1): optical 0.8 + 0.9 + 0.4 = 2.1, SAR 0.4, total 2.5
    torch.testing.assert_close(mas, torch.tensor([[[2.1 / 2.5, 0.4 / 2.5]]]))
    torch.testing.assert_close(modality_gap(mas), torch.tensor([[1.7 / 2.5]]))
    # the text queries instead (positions 0 and 4): optical 0.4, SAR 0.2
    text_q = torch.tensor([[True, False, False, False, True]])
    by_text = modality_attention_score(attn, comp, query_mask=text_q)
    torch.testing.assert_close(by_text, torch.tensor([[[0.4 / 0.6, 0.2 / 0.6]]]))


def test_shares_sum_to_one_for_every_layer_and_sample() -> None:
    n = 12
    attn = _random_attention(3, 2, 4, n, seed=0)
    optical = torch.zeros(2, n, dtype=torch.bool)
    sar = torch.zeros(2, n, dtype=torch.bool)
    optical[0, 2:6], sar[0, 6:9] = True, True
    optical[1, 1:3], sar[1, 3:11] = True, True
    mas = modality_attention_score(list(attn), composition_from_masks(optical, sar))
    assert mas.shape == (3, 2, 2)
    torch.testing.assert_close(mas.sum(-1), torch.ones(3, 2))
    assert bool(((mas >= 0) & (mas <= 1)).all())
    # a tuple of per-layer maps, as output_attentions returns, is the same as the stack
    torch.testing.assert_close(
        mas, modality_attention_score(attn, composition_from_masks(optical, sar))
    )


def test_a_sample_without_visual_tokens_gives_nan() -> None:
    attn = _random_attention(1, 1, 1, 4, seed=1)
    none = torch.zeros(1, 4, dtype=torch.bool)
    assert torch.isnan(modality_attention_score(attn, composition_from_masks(none, none))).all()


def _fused_batch(method: str) -> tuple[list, torch.Tensor, torch.Tensor]:
    """Two samples: [text(3), pair, text(2)] and [text(2), SAR-only(4), text(1)]."""
    fusion = build_fusion(FusionConfig(dim=D, method=method))
    text = _t(3, D, seed=5)
    s0 = fusion([TokenGroup(_t(16, D, seed=1), _t(4, D, seed=2), (4, 4), (2, 2), text)])
    s1 = fusion([TokenGroup(sar=_t(4, D, seed=3), sar_grid=(2, 2))])
    n0 = len(flatten(s0)[0])
    k = 3 + n0 + 2
    mask = torch.zeros(2, k, dtype=torch.bool)
    mask[0, 3 : 3 + n0] = True
    mask[1, 2:6] = True
    return [s0, s1], mask, composition_from_fused(mask, [s0, s1])


def test_concatenated_tokens_have_one_hot_composition() -> None:
    _, mask, comp = _fused_batch("concat")
    assert comp.shape == (2, 3 + 20 + 2, 2)
    assert comp[0, 3:19, 0].eq(1).all() and comp[0, 19:23, 1].eq(1).all()
    assert comp[1, 2:6, 1].eq(1).all() and comp[1, 2:6, 0].eq(0).all()
    assert comp[~mask].eq(0).all()


def test_fused_tokens_are_credited_by_their_weights() -> None:
    fused, mask, comp = _fused_batch("hca")
    w = fused[0][0].weights.detach()
    torch.testing.assert_close(comp[0, 3:7], w)
    # attention spread evenly over the visual keys: MAS is the mean composition, so the
    # per-layer gap equals the gap the paper derives from the fusion weights
    k = mask.shape[1]
    even = mask[:, None, None, :].float().expand(2, 1, k, k)
    attn = (even / even.sum(-1, keepdim=True))[None]
    mas = modality_attention_score(attn, comp)
    torch.testing.assert_close(modality_gap(mas)[0, 0], fusion_weight_gap(fused[0]))
    torch.testing.assert_close(mas[0, 1], torch.tensor([0.0, 1.0]))  # the SAR-only sample


def test_fusion_weight_gap_needs_fused_tokens() -> None:
    fused, _, _ = _fused_batch("concat")
    with pytest.raises(FusionInputError, match="no fused tokens"):
        fusion_weight_gap(fused[0])
    avg, _, _ = _fused_batch("average")
    assert float(fusion_weight_gap(avg[0])) == 0.0


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (
            lambda: modality_attention_score(torch.rand(1, 1, 1, 1, 5), torch.zeros(1, 5, 2)),
            "pass query_mask",
        ),
        (
            lambda: modality_attention_score(torch.rand(1, 1, 1, 5, 5), torch.full((1, 5, 2), 0.7)),
            "sum to 0",
        ),
        (lambda: modality_attention_score(torch.rand(1, 5, 5), torch.zeros(1, 5, 2)), "layers"),
        (
            lambda: composition_from_masks(torch.ones(1, 3), torch.ones(1, 3)),
            "both optical and SAR",
        ),
        (
            lambda: composition_from_fused(torch.ones(1, 3, dtype=torch.bool), [[]]),
            "3 image positions",
        ),
    ],
)
def test_errors_say_what_to_do(call, fragment: str) -> None:
    with pytest.raises(FusionInputError) as e:
        call()
    assert fragment in str(e.value)


def test_on_attention_maps_of_a_tiny_qwen_language_model() -> None:
    from earthvlm.models import build_tiny_backbone

    lm = build_tiny_backbone("qwen3_vl", "tiny", seed=0).model.model.language_model.eval()
    lm.config._attn_implementation = "eager"  # sdpa returns no attention maps
    dim = lm.config.hidden_size
    fusion = build_fusion(FusionConfig(dim=dim, method="concat"))
    out = fusion.fuse(_t(16, dim, seed=1), _t(4, dim, seed=2), ((4, 4), (2, 2)))
    prompt = _t(5, dim, seed=3)
    embeds = torch.cat([out.tokens, prompt])[None]
    mask = torch.zeros(1, embeds.shape[1], dtype=torch.bool)
    mask[0, : len(out)] = True
    with torch.no_grad():
        attentions = lm(inputs_embeds=embeds, output_attentions=True).attentions
    comp = composition_from_fused(mask, [[out]])
    mas = modality_attention_score(attentions, comp)
    assert mas.shape == (lm.config.num_hidden_layers, 1, 2)
    torch.testing.assert_close(mas.sum(-1), torch.ones(lm.config.num_hidden_layers, 1))
    # causal attention: the optical block comes first, so its queries see no SAR token
    # and optical takes most of the visual attention among visual tokens
    assert bool((modality_gap(mas) > 0).all())
    by_prompt = modality_attention_score(attentions, comp, query_mask=~mask)
    assert torch.isfinite(by_prompt).all()
