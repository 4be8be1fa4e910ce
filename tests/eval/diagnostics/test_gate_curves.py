"""Gate curves and bottleneck capture on a tiny Qwen3-VL with CS-HLoRA injected."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from earthvlm.adapters.cshlora import CSHLoRAConfig, gated_layers, inject_cshlora
from earthvlm.eval.diagnostics import (
    BottleneckRecorder,
    bottleneck_layer,
    gate_curves,
    plot_gate_curves,
    rank_groups,
)
from earthvlm.models import build_tiny_backbone


@pytest.fixture(scope="module")
def model_r64() -> torch.nn.Module:
    model = build_tiny_backbone("qwen3_vl", "tiny", seed=0).model.eval()
    inject_cshlora(model, CSHLoRAConfig())  # r = 64, the paper's tiers
    return model


def test_groups_follow_the_initial_tiers() -> None:
    g = rank_groups(CSHLoRAConfig().tau_init())
    assert list(g) == ["object", "structure", "semantic"]
    assert g["object"].tolist() == list(range(11)) and g["semantic"].tolist() == list(range(32, 64))
    small = rank_groups(CSHLoRAConfig(r=8).tau_init())
    assert [v.tolist() for v in small.values()] == [[0], [1, 2, 3], [4, 5, 6, 7]]


def test_fresh_gates_follow_the_paper_init(model_r64: torch.nn.Module) -> None:
    c = gate_curves(model_r64)
    assert len(c.layer_names) == 14 and c.taus.shape == (14, 64)
    assert c.gsd_m[0] == pytest.approx(0.01) and c.gsd_m[-1] == pytest.approx(30.0)
    assert c.at("object", 0.1) > 0.99 and c.at("object", 20.0) < 0.01
    assert c.at("structure", 0.1) > 0.99 and c.at("structure", 20.0) < 0.2
    assert c.mean("semantic").min() > 0.999  # open over the whole range
    # tau = 0 and 1: half open at 1 m and 10 m; semantic never closes in range
    assert c.half_open_gsd_m("object") == pytest.approx(1.0, rel=0.03)
    assert c.half_open_gsd_m("structure") == pytest.approx(10.0, rel=0.03)
    assert c.half_open_gsd_m("semantic") is None
    lo, hi = c.spread("object")
    np.testing.assert_allclose(lo, hi)  # every layer starts alike
    assert "object" in c.to_markdown() and "1 m" in c.to_markdown()


def test_curves_read_what_training_changed(model_r64: torch.nn.Module) -> None:
    layer = next(iter(gated_layers(model_r64).values()))
    with torch.no_grad():
        old = layer.cshlora_tau.clone()
        layer.cshlora_tau[:11] = -1.0  # one layer's object ranks now close at 0.1 m
    try:
        c = gate_curves(model_r64)
    finally:
        with torch.no_grad():
            layer.cshlora_tau.copy_(old)
    lo, hi = c.spread("object")
    i = int(np.argmin(np.abs(c.log10_gsd - math.log10(0.5))))
    assert lo[i] < 0.05 and hi[i] > 0.8  # at 0.5 m one layer is closed, the others open
    assert c.to_dict()["groups"]["object"]["tau_std"] > 0


def test_the_recorder_captures_the_gated_bottleneck() -> None:
    model = build_tiny_backbone("qwen3_vl", "tiny", seed=0).model.eval()
    ctx = inject_cshlora(model, CSHLoRAConfig(r=8))
    ids = torch.randint(0, 280, (3, 9), generator=torch.Generator().manual_seed(0))
    ctx.set(torch.tensor([math.log10(0.1), math.log10(3.0), math.log10(20.0)]))
    layer = bottleneck_layer(model, "layers.1.mlp.down_proj")
    seen: list[torch.Tensor] = []
    grab = layer.register_forward_hook(lambda m, a, o: seen.append(a[0].detach()))
    with BottleneckRecorder(layer) as rec, torch.no_grad():
        model(input_ids=ids)
        rec.token_mask = torch.zeros(3, 9)
        rec.token_mask[:, 0] = 1  # pool over the first token only
        model(input_ids=ids)
    grab.remove()
    z = rec.latents()
    assert z.shape == (6, 8)
    # by hand: h(s) * (A x), mean over tokens
    with torch.no_grad():
        x, h = seen[0], layer.gate(ctx.s)  # h: (3, 8)
        manual = (torch.nn.functional.linear(x, layer.cshlora_A) * h[:, None, :]).mean(1)
        first = torch.nn.functional.linear(x[:, 0], layer.cshlora_A) * h
    np.testing.assert_allclose(z[:3], manual.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(z[3:], first.numpy(), rtol=1e-5, atol=1e-6)
    # the object rank (0) is closed at 20 m: its latent is ~0 there, not at 0.1 m
    assert abs(z[2, 0]) < 0.01 * abs(z[0, 0])
    # the hook is gone after the block
    model(input_ids=ids)
    assert rec.latents().shape == (6, 8)


def test_layer_lookup_says_what_exists(model_r64: torch.nn.Module) -> None:
    with pytest.raises(ValueError, match="several"):
        bottleneck_layer(model_r64, "down_proj")
    with pytest.raises(ValueError, match="no CS-HLoRA layer"):
        bottleneck_layer(model_r64, "nope")


def test_gate_plot_is_written(model_r64: torch.nn.Module, tmp_path: Path) -> None:
    out = plot_gate_curves(gate_curves(model_r64), tmp_path / "gates.png", true_gsd_m=0.15)
    assert out.read_bytes()[:4] == b"\x89PNG" and out.stat().st_size > 10_000
