"""Every fusion method on batches of groups with 0, 1 and 2 sensors: token counts,
sources, convex weights, pooling, the registry and the errors people will meet."""

from __future__ import annotations

import pytest
import torch

from earthvlm.fusion import (
    FUSED,
    METHODS,
    OPTICAL,
    SAR,
    FusionConfig,
    FusionInputError,
    TokenGroup,
    build_fusion,
    flatten,
    pool_to_grid,
)
from earthvlm.fusion.baselines import AverageFusion, ConcatFusion, CosineFusion
from earthvlm.fusion.hca import HCAFusion

D = 8
ALL = sorted(METHODS)
POINTWISE = [m for m in ALL if m != "concat"]


def _tokens(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, D, generator=torch.Generator().manual_seed(seed))


def _batch() -> list[TokenGroup]:
    """A sample with a pair (optical 4x6 on a finer grid than SAR 2x3), an optical-only
    image, a SAR-only image, and a text-only sample."""
    text = _tokens(5, 9)
    return [
        TokenGroup(_tokens(24, 1), _tokens(6, 2), (4, 6), (2, 3), text),
        TokenGroup(optical=_tokens(4, 3), optical_grid=(2, 2), text=text),
        TokenGroup(sar=_tokens(9, 4), sar_grid=(3, 3)),
        TokenGroup(text=text),
    ]


@pytest.mark.parametrize("method", ALL)
def test_token_counts_and_sources_for_zero_one_and_two_sensors(method: str) -> None:
    fusion = build_fusion(FusionConfig(dim=D, method=method))
    batch = _batch()
    pair, optical_only, sar_only, empty = fusion(batch)
    if method == "concat":
        assert len(pair) == 24 + 6 and pair.grid is None and pair.weights is None
        assert pair.source.tolist() == [OPTICAL] * 24 + [SAR] * 6
    else:  # the fused pair replaces both blocks: the sequence does not grow
        assert len(pair) == 6 and pair.grid == (2, 3)
        assert (pair.source == FUSED).all()
    # a single sensor passes through untouched
    assert optical_only.tokens is batch[1].optical and optical_only.grid == (2, 2)
    assert (optical_only.source == OPTICAL).all() and optical_only.weights is None
    assert sar_only.tokens is batch[2].sar and (sar_only.source == SAR).all()
    assert empty.tokens.shape == (0, D) and len(empty.source) == 0
    tokens, source = flatten([pair, optical_only, sar_only, empty])
    assert tokens.shape == (len(pair) + 4 + 9, D) and source.shape == (tokens.shape[0],)


@pytest.mark.parametrize("method", POINTWISE)
def test_fused_tokens_are_convex_combinations_of_the_aligned_pair(method: str) -> None:
    fusion = build_fusion(FusionConfig(dim=D, method=method))
    g = _batch()[0]
    out = fusion([g])[0]
    w = out.weights
    assert w is not None and w.shape == (6, 2)
    torch.testing.assert_close(w.sum(-1), torch.ones(6))
    assert bool(((w >= 0) & (w <= 1)).all())
    xo = pool_to_grid(g.optical, (4, 6), (2, 3))
    torch.testing.assert_close(out.tokens, w[:, :1] * xo + w[:, 1:] * g.sar)
    # each fused coordinate lies between the two sensors' values
    lo, hi = torch.minimum(xo, g.sar), torch.maximum(xo, g.sar)
    assert bool(((out.tokens >= lo - 1e-6) & (out.tokens <= hi + 1e-6)).all())


def test_methods_differ_where_they_should() -> None:
    g = _batch()[0]
    avg = build_fusion(FusionConfig(dim=D, method="average"))([g])[0]
    assert torch.equal(avg.weights, torch.full((6, 2), 0.5))
    for method in ("hca", "cosine"):
        w = build_fusion(FusionConfig(dim=D, method=method))([g])[0].weights
        assert w is not None and float((w.detach() - 0.5).abs().max()) > 1e-3, method


def test_registry_builds_each_class() -> None:
    expected = {
        "hca": HCAFusion,
        "fixed": HCAFusion,
        "concat": ConcatFusion,
        "average": AverageFusion,
        "cosine": CosineFusion,
    }
    assert set(expected) == set(METHODS)
    for name, cls in expected.items():
        assert type(build_fusion(FusionConfig(dim=D, method=name))) is cls


def test_pooling_maps_the_optical_grid_onto_the_sar_grid() -> None:
    # a 4x4 grid whose 2x2 blocks are constant pools to those constants
    block = torch.arange(4.0).reshape(2, 2).repeat_interleave(2, 0).repeat_interleave(2, 1)
    tokens = block.reshape(16, 1).repeat(1, D)
    pooled = pool_to_grid(tokens, (4, 4), (2, 2))
    torch.testing.assert_close(pooled[:, 0], torch.tensor([0.0, 1.0, 2.0, 3.0]))
    peaks = pool_to_grid(torch.arange(16.0)[:, None], (4, 4), (2, 2), "max")
    assert peaks[:, 0].tolist() == [5.0, 7.0, 13.0, 15.0]
    # a coarser optical grid is spread onto a finer SAR grid
    assert pool_to_grid(_tokens(4, 0), (2, 2), (4, 4)).shape == (16, D)


def test_pooling_none_needs_matching_grids() -> None:
    fusion = build_fusion(FusionConfig(dim=D, method="fixed", pooling="none"))
    same = fusion.fuse(_tokens(6, 1), _tokens(6, 2), ((2, 3), (2, 3)))
    assert len(same) == 6
    with pytest.raises(FusionInputError, match="pooling is 'none'"):
        fusion.fuse(_tokens(24, 1), _tokens(6, 2), ((4, 6), (2, 3)))


def test_grids_given_as_lists_work_like_tuples() -> None:
    fusion = build_fusion(FusionConfig(dim=D, method="average"))
    out = fusion.fuse(_tokens(6, 1), _tokens(6, 2), ([2, 3], [2, 3]))  # type: ignore[arg-type]
    assert out.grid == (2, 3)


@pytest.mark.parametrize(
    ("group", "fragment"),
    [
        (TokenGroup(_tokens(24, 1), _tokens(6, 2)), "give both grids"),
        (TokenGroup(_tokens(24, 1), _tokens(6, 2), (4, 5), (2, 3)), "holds 20 tokens"),
        (TokenGroup(torch.randn(2, 4, D), _tokens(6, 2)), "split a batch"),
        (TokenGroup(_tokens(6, 1), torch.randn(6, D + 1)), f"(n_tokens, {D})"),
        (TokenGroup(sar_grid=(2, 3)), "without sar tokens"),
        (TokenGroup(_tokens(6, 1), _tokens(6, 2), (1, 2, 3), (2, 3)), "(rows, cols)"),
        (TokenGroup(_tokens(6, 1), _tokens(6, 2), text=torch.randn(3, D - 1)), "(L, 8)"),
    ],
)
def test_bad_groups_say_what_to_do(group: TokenGroup, fragment: str) -> None:
    fusion = build_fusion(FusionConfig(dim=D, method="hca"))
    with pytest.raises(FusionInputError) as e:
        fusion([group])
    assert fragment in str(e.value)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"method": "hac"}, "did you mean 'hca'"),
        ({"dim": 0}, "dim must be"),
        ({"pooling": "mean"}, "pooling must be"),
        ({"lambda_init": 1.0}, "strictly between 0 and 1"),
        ({"score_scale": "sqrt"}, "score_scale"),
        ({"temperature": 0.0}, "temperature"),
    ],
)
def test_config_validation_names_the_field(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ValueError) as e:
        FusionConfig(**{"dim": D, **kwargs})
    assert fragment in str(e.value)


def test_config_round_trips_and_rejects_unknown_fields() -> None:
    cfg = FusionConfig(dim=D, method="cosine", pooling="max", temperature=0.5)
    assert FusionConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown fusion config"):
        FusionConfig.from_dict({"dim": D, "lambda": 0.3})


@pytest.mark.parametrize("method", ALL)
def test_outputs_depend_on_the_inputs_not_on_the_global_rng(method: str) -> None:
    # fusion modules draw nothing at construction or in forward: any seed, same tokens
    outs = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        fusion = build_fusion(FusionConfig(dim=D, method=method))
        outs.append(fusion(_batch())[0].tokens)
    assert torch.equal(outs[0], outs[1])


def test_bf16_tokens_keep_their_dtype() -> None:
    fusion = build_fusion(FusionConfig(dim=D, method="hca"))
    g = _batch()[0]
    out = fusion.fuse(g.optical.bfloat16(), g.sar.bfloat16(), ((4, 6), (2, 3)), g.text.bfloat16())
    assert out.tokens.dtype == torch.bfloat16 and out.weights.dtype == torch.float32
