"""CS-HLoRA on a real (tiny, random) Qwen3-VL language model."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from earthvlm.adapters.cshlora import (
    CSHLoRAConfig,
    CSHLoRALinear,
    gated_layers,
    inject_cshlora,
    load_cshlora,
    merge_cshlora,
    save_cshlora,
)
from earthvlm.errors import EarthVLMError
from earthvlm.models import build_tiny_backbone


@pytest.fixture(params=["qwen3_vl", "qwen2_5_vl"])
def family(request: pytest.FixtureRequest) -> str:
    return request.param


def tiny_model(family: str = "qwen3_vl", seed: int = 0) -> torch.nn.Module:
    return build_tiny_backbone(family, "tiny", seed=seed).model.eval()


def randomise_b(model: torch.nn.Module) -> None:
    # B starts at zero (dW = 0); give it values so the adapter changes outputs
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "cshlora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)


IDS = torch.randint(0, 280, (3, 9), generator=torch.Generator().manual_seed(0))
S = torch.tensor([math.log10(0.1), math.log10(3.0), math.log10(20.0)])


def test_wraps_every_language_model_linear_and_freezes_the_rest() -> None:
    model = tiny_model()
    inject_cshlora(model, CSHLoRAConfig(r=8))
    layers = gated_layers(model)
    assert len(layers) == 2 * 7  # q k v o gate up down in each of 2 layers
    assert all("language_model" in n for n in layers)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("cshlora_" in n for n in trainable)


def test_gates_at_init_follow_the_paper_tier_layout() -> None:
    cfg = CSHLoRAConfig()  # r = 64
    taus = cfg.tau_init()
    assert taus[:11] == [0.0] * 11 and taus[11:32] == [1.0] * 21 and taus[32:] == [4.0] * 32
    model = tiny_model()
    inject_cshlora(model, cfg)
    layer = next(iter(gated_layers(model).values()))
    assert layer.cshlora_sharpness.item() == 5.0
    h_fine = layer.gate(torch.tensor(math.log10(0.1)))  # 0.1 m: every tier active
    h_coarse = layer.gate(torch.tensor(math.log10(20.0)))  # 20 m: semantic ranks only
    assert (h_fine > 0.99).all()
    assert (h_coarse[:11] < 0.01).all() and (h_coarse[11:32] < 0.2).all()
    assert (h_coarse[32:] > 0.99).all()
    # r = 8 keeps the shares 11:21:32 of 64 (rank centres at 4, 12, ... of 64)
    assert CSHLoRAConfig(r=8).tau_init() == [0.0, 1.0, 1.0, 1.0, 4.0, 4.0, 4.0, 4.0]


def test_changing_one_samples_gsd_changes_only_that_sample(family: str) -> None:
    model = tiny_model(family)
    ctx = inject_cshlora(model, CSHLoRAConfig(r=8))
    randomise_b(model)
    ctx.set(S)
    a = model(input_ids=IDS).logits
    s2 = S.clone()
    s2[1] = math.log10(0.3)
    ctx.set(s2)
    b = model(input_ids=IDS).logits
    assert torch.equal(a[0], b[0]) and torch.equal(a[2], b[2])
    assert (a[1] - b[1]).abs().max() > 1e-3


def test_gradients_reach_tau_sharpness_a_and_b(family: str) -> None:
    model = tiny_model(family)
    ctx = inject_cshlora(model, CSHLoRAConfig(r=8))
    randomise_b(model)
    model.train()
    ctx.set(S)
    model(input_ids=IDS, labels=IDS).loss.backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_no_gsd_set_is_a_clear_error() -> None:
    model = tiny_model()
    inject_cshlora(model, CSHLoRAConfig(r=8))
    with pytest.raises(EarthVLMError, match="no GSD set"):
        model(input_ids=IDS)


def test_save_then_load_gives_identical_logits(tmp_path: Path, family: str) -> None:
    model = tiny_model(family)
    ctx = inject_cshlora(model, CSHLoRAConfig(r=8))
    randomise_b(model)
    with torch.no_grad():
        for layer in gated_layers(model).values():
            layer.cshlora_tau.add_(0.3)  # trained thresholds must survive the trip
    ctx.set(S)
    before = model(input_ids=IDS).logits
    head = {"sseu.trunk.weight": torch.arange(6.0).reshape(2, 3)}
    save_cshlora(model, tmp_path / "adapter", extra_tensors=head, provenance={"run": "test"})

    fresh = tiny_model(family)
    ctx2, extra = load_cshlora(fresh, tmp_path / "adapter")
    assert len(gated_layers(fresh)) == 14
    assert all(isinstance(m, CSHLoRALinear) for m in gated_layers(fresh).values())
    ctx2.set(S)
    torch.testing.assert_close(fresh(input_ids=IDS).logits, before, rtol=0, atol=0)
    torch.testing.assert_close(extra["sseu.trunk.weight"], head["sseu.trunk.weight"])


def test_loading_into_a_different_backbone_is_refused(tmp_path: Path) -> None:
    model = tiny_model()
    inject_cshlora(model, CSHLoRAConfig(r=8))
    save_cshlora(model, tmp_path / "adapter")
    other = tiny_model()
    other.model.language_model.layers = other.model.language_model.layers[:1]  # 1 layer
    with pytest.raises(EarthVLMError, match="does not fit this model"):
        load_cshlora(other, tmp_path / "adapter")


def test_incomplete_adapter_folder_is_refused(tmp_path: Path) -> None:
    model = tiny_model()
    inject_cshlora(model, CSHLoRAConfig(r=8))
    save_cshlora(model, tmp_path / "adapter")
    (tmp_path / "adapter" / "earthvlm_adapter.json").unlink()
    with pytest.raises(EarthVLMError, match="not a complete"):
        load_cshlora(tiny_model(), tmp_path / "adapter")


@pytest.mark.parametrize("gsd", [0.1, 1.0, 20.0])
def test_merged_model_equals_unmerged_at_that_gsd(gsd: float, family: str) -> None:
    model = tiny_model(family)
    ctx = inject_cshlora(model, CSHLoRAConfig(r=8))
    randomise_b(model)
    s = math.log10(gsd)
    ctx.set(torch.full((3,), s))
    unmerged = model(input_ids=IDS).logits
    assert merge_cshlora(model, s) == 14
    assert not gated_layers(model)
    # float32 re-association only: ~1e-5 on logits of ~0.6 (the adapter moves them ~0.1-1)
    torch.testing.assert_close(model(input_ids=IDS).logits, unmerged, rtol=1e-4, atol=2e-4)


def test_gate_follows_beam_and_return_sequence_expansion(family: str) -> None:
    model = tiny_model(family)
    ctx = inject_cshlora(model, CSHLoRAConfig(r=8))
    randomise_b(model)
    ctx.set(S)
    seen: list[torch.Tensor] = []
    original = ctx.for_batch

    def record(batch: int, seq: int) -> torch.Tensor:
        out = original(batch, seq)
        seen.append(out.clone())
        return out

    ctx.for_batch = record  # type: ignore[method-assign]
    out = model.generate(
        input_ids=IDS, max_new_tokens=3, do_sample=False, num_beams=2, num_return_sequences=2
    )
    assert out.shape[0] == 6
    # every layer call, prefill and decode steps alike, saw each sample's own scale
    # repeated for its two beams (the order transformers expands inputs in)
    assert seen and all(torch.equal(s, S.repeat_interleave(2)) for s in seen)


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="r must be"):
        CSHLoRAConfig(r=0)
    with pytest.raises(ValueError, match="tiers"):
        CSHLoRAConfig(tiers=((0, 10, 0.0), (12, 64, 4.0)))
    with pytest.raises(ValueError, match="unknown CS-HLoRA config"):
        CSHLoRAConfig.from_dict({"rank": 8})
