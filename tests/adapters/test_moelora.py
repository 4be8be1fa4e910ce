"""Bucketed MoE-LoRA (B4): hard routing by GSD bucket, parameter-matched to CS-HLoRA."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from earthvlm.adapters.base import adapter_layers, get_method, load_adapter, save_adapter
from earthvlm.adapters.cshlora import CSHLoRAConfig, inject_cshlora
from earthvlm.adapters.moelora import METHOD, MoELoRAConfig, MoELoRALinear, inject_moelora
from earthvlm.errors import EarthVLMError
from earthvlm.models import build_tiny_backbone

IDS = torch.randint(0, 280, (3, 9), generator=torch.Generator().manual_seed(0))


def _model() -> torch.nn.Module:
    return build_tiny_backbone("qwen3_vl", "tiny", seed=0).model.eval()


def _randomise(model: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "moelora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)


def _trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_parameter_count_matches_cshlora_within_the_rank_remainder() -> None:
    gated, moe = _model(), _model()
    inject_cshlora(gated, CSHLoRAConfig(r=63))
    inject_moelora(moe, MoELoRAConfig(r_total=63))
    # 3 experts x 21 ranks = 63 ranks, the same A and B sizes; CS-HLoRA adds tau + alpha
    n_layers = len(adapter_layers(moe, METHOD))
    assert _trainable(gated) - _trainable(moe) == n_layers * (63 + 1)


def test_routing_is_piecewise_constant_with_jumps_at_bucket_edges() -> None:
    model = _model()
    ctx = inject_moelora(model, MoELoRAConfig(r_total=12))
    _randomise(model)

    def logits(gsd_m: float) -> torch.Tensor:
        ctx.set(torch.full((3,), math.log10(gsd_m)))
        return model(input_ids=IDS).logits

    # inside one bucket the GSD does not matter ...
    assert torch.equal(logits(0.25), logits(0.9))
    assert torch.equal(logits(1.0), logits(25.0))
    # ... across an edge it does (0.2 m belongs to the coarser bucket)
    assert not torch.equal(logits(0.19), logits(0.2))
    layer = next(iter(adapter_layers(model, METHOD).values()))
    assert isinstance(layer, MoELoRALinear)
    s = torch.log10(torch.tensor([0.05, 0.2, 0.5, 1.0, 30.0]))
    assert layer.route(s).tolist() == [0, 1, 1, 2, 2]


def test_only_the_routed_expert_gets_gradients() -> None:
    model = _model()
    ctx = inject_moelora(model, MoELoRAConfig(r_total=12))
    _randomise(model)
    model.train()
    ctx.set(torch.full((3,), math.log10(0.5)))  # every sample in the mid bucket
    model(input_ids=IDS, labels=IDS).loss.backward()
    layer = next(iter(adapter_layers(model, METHOD).values()))
    grads = layer.moelora_B.grad.abs().sum(dim=(1, 2))
    assert grads[1] > 0 and grads[0] == 0 and grads[2] == 0


def test_save_and_load_through_the_registry(tmp_path: Path) -> None:
    model = _model()
    ctx = inject_moelora(model, MoELoRAConfig(r_total=12))
    _randomise(model)
    ctx.set(torch.tensor([-1.0, -0.5, 1.0]))
    before = model(input_ids=IDS).logits
    save_adapter(model, tmp_path / "b4")
    fresh = _model()
    ctx2, _ = load_adapter(fresh, tmp_path / "b4")
    ctx2.set(torch.tensor([-1.0, -0.5, 1.0]))
    torch.testing.assert_close(fresh(input_ids=IDS).logits, before, rtol=0, atol=0)
    with pytest.raises(EarthVLMError, match="expected 'cshlora'"):
        load_adapter(_model(), tmp_path / "b4", expect="cshlora")


def test_registry_knows_the_methods_and_suggests_on_typos() -> None:
    assert get_method("moelora") is METHOD
    assert get_method("cshlora").prefix == "cshlora_"
    with pytest.raises(EarthVLMError, match="did you mean moelora"):
        get_method("moe_lora")


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="boundaries_m"):
        MoELoRAConfig(boundaries_m=(1.0, 0.2))
    assert MoELoRAConfig().r_expert == 21 and MoELoRAConfig().n_experts == 3
