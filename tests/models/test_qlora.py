"""Stage 2 on a 4-bit NF4 base (QLoRA): bitsandbytes' CPU path, when it is installed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

bnb = pytest.importorskip("bitsandbytes", reason="bitsandbytes is not installed")

from earthvlm.adapters.cshlora import CSHLoRAConfig, gated_layers, inject_cshlora  # noqa: E402
from earthvlm.models import build_tiny_backbone, load_backbone, save_backbone  # noqa: E402


def test_cshlora_trains_on_an_nf4_backbone(tmp_path: Path) -> None:
    full = build_tiny_backbone("qwen3_vl", "tiny", seed=0)
    save_backbone(full, tmp_path / "bb")
    q = load_backbone(tmp_path / "bb", load_in_4bit=True, device_map="cpu")
    layers = q.model.model.language_model.layers
    assert isinstance(layers[0].self_attn.q_proj, bnb.nn.Linear4bit)
    ctx = inject_cshlora(q.model, CSHLoRAConfig(r=8))
    assert all(isinstance(m.base_layer, bnb.nn.Linear4bit) for m in gated_layers(q.model).values())
    ids = torch.randint(0, 900, (2, 12), generator=torch.Generator().manual_seed(0))
    ctx.set(torch.tensor([-1.0, 1.0]))
    q.model(input_ids=ids, labels=ids).loss.backward()
    layer = gated_layers(q.model)["model.language_model.layers.0.self_attn.q_proj"]
    assert layer.cshlora_B.grad is not None and layer.cshlora_B.grad.abs().sum() > 0
    assert layer.cshlora_tau.grad is not None
    trainable = {n for n, p in q.model.named_parameters() if p.requires_grad}
    assert trainable and all("cshlora_" in n for n in trainable)
    # the quantised model stays close to the full-precision one it was made from
    ctx.set(torch.zeros(2))
    with torch.no_grad():
        diff = (q.model(input_ids=ids).logits - full.model.eval()(input_ids=ids).logits).abs()
    assert diff.max() < 0.5
