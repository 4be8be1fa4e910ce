"""HCA (EarthMind sec. 3.2): the equations on a worked example, the learnable lambda,
text guidance that matters, and the fixed-lambda variant."""

from __future__ import annotations

import math

import pytest
import torch

from earthvlm.fusion import PREFIX, FusionConfig, build_fusion
from earthvlm.fusion.hca import HCAFusion

D = 8


def _t(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _reference(
    xo: torch.Tensor, xs: torch.Tensor, xt: torch.Tensor | None, lam: float
) -> torch.Tensor:
    """Eq. 2-7 term by term, with loops (beta normalised over visual tokens; scores x N)."""
    n, d = xs.shape
    a_o2s = torch.softmax(xo @ xs.t() / math.sqrt(d), dim=1)  # Eq. 2
    a_s2o = torch.softmax(xs @ xo.t() / math.sqrt(d), dim=1)
    alpha_o = torch.tensor([sum(a_s2o[j, i] for j in range(n)) / n for i in range(n)])  # Eq. 3
    alpha_s = torch.tensor([sum(a_o2s[j, i] for j in range(n)) / n for i in range(n)])
    gamma_o, gamma_s = alpha_o * n, alpha_s * n
    if xt is not None:
        L = xt.shape[0]
        a_t2o = torch.softmax(xt @ xo.t() / math.sqrt(d), dim=1)
        a_t2s = torch.softmax(xt @ xs.t() / math.sqrt(d), dim=1)
        beta_o = torch.tensor([sum(a_t2o[j, i] for j in range(L)) / L for i in range(n)])
        beta_s = torch.tensor([sum(a_t2s[j, i] for j in range(L)) / L for i in range(n)])
        gamma_o = lam * gamma_o + (1 - lam) * beta_o * n  # Eq. 6
        gamma_s = lam * gamma_s + (1 - lam) * beta_s * n
    w = torch.softmax(torch.stack([gamma_o, gamma_s], dim=-1), dim=-1)  # Eq. 7
    return w[:, :1] * xo + w[:, 1:] * xs


@pytest.mark.parametrize("with_text", [True, False])
def test_matches_the_equations_term_by_term(with_text: bool) -> None:
    xo, xs, xt = _t(6, D, seed=0), _t(6, D, seed=1), _t(4, D, seed=2)
    fusion = build_fusion(FusionConfig(dim=D, method="hca", lambda_init=0.3))
    out = fusion.fuse(xo, xs, ((2, 3), (2, 3)), xt if with_text else None)
    expected = _reference(xo, xs, xt if with_text else None, 0.3)
    torch.testing.assert_close(out.tokens.detach(), expected, rtol=1e-5, atol=1e-6)
    assert (out.beta is not None) == with_text


def test_lambda_receives_gradients_and_so_do_the_tokens() -> None:
    fusion = build_fusion(FusionConfig(dim=D, method="hca"))
    xo = _t(24, D, seed=0).requires_grad_()
    xs = _t(6, D, seed=1).requires_grad_()
    out = fusion.fuse(xo, xs, ((4, 6), (2, 3)), _t(5, D, seed=2))
    (out.tokens * _t(6, D, seed=3)).sum().backward()
    grad = fusion.fusion_lambda_logit.grad
    assert grad is not None and math.isfinite(float(grad)) and abs(float(grad)) > 0
    assert xo.grad is not None and xo.grad.abs().sum() > 0
    assert xs.grad is not None and xs.grad.abs().sum() > 0
    trainable = [n for n, p in fusion.named_parameters() if p.requires_grad]
    assert trainable == ["fusion_lambda_logit"] and all(n.startswith(PREFIX) for n in trainable)


def test_training_moves_lambda_and_keeps_it_in_the_unit_interval() -> None:
    fusion = build_fusion(FusionConfig(dim=D, method="hca", lambda_init=0.5))
    assert isinstance(fusion, HCAFusion)
    xo, xs, xt, target = _t(6, D, seed=0), _t(6, D, seed=1), _t(5, D, seed=2), _t(6, D, seed=3)
    opt = torch.optim.SGD(
        fusion.parameters(), lr=1e4
    )  # absurd steps: lambda must stay put in [0, 1]
    before = float(fusion.lam.detach())
    for _ in range(5):
        opt.zero_grad()
        out = fusion.fuse(xo, xs, ((2, 3), (2, 3)), xt)
        ((out.tokens - target) ** 2).mean().backward()
        opt.step()
        lam = float(fusion.lam.detach())
        assert 0.0 <= lam <= 1.0
    assert lam != before


def test_without_a_prompt_lambda_gets_no_gradient_and_gamma_is_alpha() -> None:
    fusion = build_fusion(FusionConfig(dim=D, method="hca"))
    xo, xs = _t(6, D, seed=0).requires_grad_(), _t(6, D, seed=1).requires_grad_()
    out = fusion.fuse(xo, xs, ((2, 3), (2, 3)))
    (out.tokens * _t(6, D, seed=3)).sum().backward()
    assert fusion.fusion_lambda_logit.grad is None
    assert out.beta is None
    torch.testing.assert_close(out.weights, torch.softmax(out.alpha, dim=-1))


def test_the_prompt_pulls_weight_toward_the_sensor_it_matches() -> None:
    # optical tokens all alike (no token more relevant than another), SAR token 2 singled
    # out by the prompt
    xo, xs = _t(1, D, seed=0).expand(6, D), _t(6, D, seed=1)
    text = 4 * xs[2:3]
    fusion = build_fusion(FusionConfig(dim=D, method="hca", lambda_init=0.01))
    w_text = fusion.fuse(xo, xs, ((2, 3), (2, 3)), text).weights.detach()
    w_none = fusion.fuse(xo, xs, ((2, 3), (2, 3))).weights.detach()
    assert int(w_text[:, 1].argmax()) == 2 and float(w_text[2, 1]) > 0.8
    assert not torch.allclose(w_text, w_none)


def test_literal_scores_give_near_uniform_weights_on_many_tokens() -> None:
    # why score_scale="tokens" is the default: alpha and beta sum to 1 over N tokens
    xo, xs, xt = _t(64, D, seed=0), _t(64, D, seed=1), _t(5, D, seed=2)
    spread = {}
    for scale in ("none", "tokens"):
        fusion = build_fusion(FusionConfig(dim=D, method="hca", score_scale=scale))
        w = fusion.fuse(xo, xs, ((8, 8), (8, 8)), xt).weights.detach()
        spread[scale] = float((w - 0.5).abs().max())
    assert spread["none"] < 0.02 and spread["tokens"] > 0.2


def test_fixed_variant_has_no_parameters_and_equals_hca_at_the_same_lambda() -> None:
    fixed = build_fusion(FusionConfig(dim=D, method="fixed", lambda_init=0.3))
    hca = build_fusion(FusionConfig(dim=D, method="hca", lambda_init=0.3))
    assert list(fixed.parameters()) == [] and "fusion_lambda_logit" in dict(fixed.named_buffers())
    args = (_t(24, D, seed=0), _t(6, D, seed=1), ((4, 6), (2, 3)), _t(5, D, seed=2))
    torch.testing.assert_close(fixed.fuse(*args).tokens, hca.fuse(*args).tokens.detach())
    assert "fixed" in repr(fixed) and "learned" in repr(hca)


def test_state_dict_round_trip_restores_lambda() -> None:
    a = build_fusion(FusionConfig(dim=D, method="hca"))
    with torch.no_grad():
        a.fusion_lambda_logit.fill_(1.25)
    b = build_fusion(FusionConfig(dim=D, method="hca"))
    b.load_state_dict(a.state_dict())
    assert float(b.lam.detach()) == pytest.approx(1 / (1 + math.exp(-1.25)))
