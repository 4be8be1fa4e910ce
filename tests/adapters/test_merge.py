"""Merging a gated adapter at one GSD: the merged model is the unmerged one run at that
GSD (as ScaleEarth runs it with a metadata GSD), and a plain transformers model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText

from _vlm_batches import processor_batch
from earthvlm.adapters.base import adapter_info, adapter_layers, load_adapter, save_adapter
from earthvlm.adapters.cshlora import CSHLoRAConfig, inject_cshlora, merge_cshlora
from earthvlm.adapters.merge import merge_at_gsd, merge_at_log10_gsd
from earthvlm.adapters.moelora import MoELoRAConfig, inject_moelora
from earthvlm.errors import EarthVLMError, GSDError
from earthvlm.models import build_tiny_backbone
from earthvlm.models.scaleearth import ScaleEarth
from earthvlm.scale.gsd import GSD

IDS = torch.randint(0, 280, (2, 9), generator=torch.Generator().manual_seed(0))
#: MoE-LoRA buckets for these tests: < 0.5 m, [0.5, 3) m, >= 3 m
BOUNDARIES_M = (0.5, 3.0)
#: fp32 re-association of W x + B (h * A x) into (W + B h A) x
TOL = {"rtol": 1e-5, "atol": 1e-5}


def _image(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))


def _adapted(method: str):
    """A tiny Qwen3-VL with a non-trivial adapter: random B, varied thresholds."""
    bb = build_tiny_backbone("qwen3_vl", "tiny", seed=0)
    model = bb.model.eval()
    with torch.random.fork_rng(devices=[]):  # A's init draws from the global RNG
        torch.manual_seed(0)
        if method == "cshlora":
            ctx = inject_cshlora(model, CSHLoRAConfig(r=8))
        else:
            ctx = inject_moelora(model, MoELoRAConfig(r_total=12, boundaries_m=BOUNDARIES_M))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("cshlora_B", "moelora_B")):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            elif name.endswith("cshlora_tau"):  # thresholds spread over 0.03-300 m
                p.copy_(torch.empty(p.shape).uniform_(-1.5, 2.5, generator=g))
            elif name.endswith("cshlora_sharpness"):
                p.fill_(float(torch.empty(()).uniform_(0.5, 3.0, generator=g)))
    return bb, model, ctx


@pytest.mark.parametrize(
    ("method", "gsd_m"),
    [("cshlora", 0.3), ("cshlora", 10.0), ("moelora", 0.3), ("moelora", 10.0),
     ("moelora", 0.5)],  # 0.5 m: on a bucket edge (the coarser bucket's expert)
)  # fmt: skip
def test_merged_model_equals_the_adapter_at_that_gsd(
    tmp_path: Path, method: str, gsd_m: float
) -> None:
    bb, model, ctx = _adapted(method)
    s = math.log10(gsd_m)
    images = processor_batch(bb, [[_image(0)], [_image(1)]], "What is in the image?")

    # the unmerged references: text only, one scale per sample and per token alike ...
    ctx.set(torch.full((2,), s))
    text_ref = model(input_ids=IDS).logits
    ctx.set(torch.full(IDS.shape, s))
    torch.testing.assert_close(model(input_ids=IDS).logits, text_ref, **TOL)
    # ... and images with a metadata GSD, through ScaleEarth's per-token gates
    image_ref = ScaleEarth(model, ctx).eval()(gsd=[GSD.exact(gsd_m)] * 2, **images).logits
    assert ctx.s.shape == images["input_ids"].shape
    assert torch.equal(ctx.s, torch.full_like(ctx.s, s))
    # the adapter matters, and so does the GSD (else the test proves nothing)
    plain = build_tiny_backbone("qwen3_vl", "tiny", seed=0).model.eval()
    assert (plain(input_ids=IDS).logits - text_ref).abs().max() > 1e-2
    other_m = 0.1 if gsd_m >= 1.0 else 5.0  # in another MoE-LoRA bucket
    ctx.set(torch.full((2,), math.log10(other_m)))
    assert (model(input_ids=IDS).logits - text_ref).abs().max() > 1e-3
    layer = next(iter(adapter_layers(model, adapter_info(model)["method"]).values()))
    if method == "cshlora":  # the gates at s are partly open, not all 0 or 1
        h = layer.gate(torch.tensor(s))
        assert ((h > 0.05) & (h < 0.95)).any()
    elif gsd_m == BOUNDARIES_M[0]:  # an edge goes to the coarser bucket
        assert layer.route(torch.tensor([s])).tolist() == [1]

    # the usual path: load the saved adapter onto the base, merge, save a plain model
    save_adapter(model, tmp_path / "adapter")
    merged = build_tiny_backbone("qwen3_vl", "tiny", seed=0).model.eval()
    load_adapter(merged, tmp_path / "adapter")
    n_layers = len(adapter_layers(merged, adapter_info(merged)["method"]))
    assert merge_at_gsd(merged, gsd_m) == n_layers == 14
    assert adapter_info(merged) is None
    assert not [n for n, _ in merged.named_parameters() if "lora_" in n]
    assert set(merged.state_dict()) == set(plain.state_dict())
    for name, module in plain.named_modules():
        if isinstance(module, torch.nn.Linear):
            m = merged.get_submodule(name)
            assert type(m) is torch.nn.Linear and m.weight.dtype == module.weight.dtype
            assert (m.bias is None) == (module.bias is None)
    torch.testing.assert_close(merged(input_ids=IDS).logits, text_ref, **TOL)
    torch.testing.assert_close(merged(**images).logits, image_ref, **TOL)

    merged.save_pretrained(tmp_path / "merged")
    assert "earthvlm" not in (tmp_path / "merged" / "config.json").read_text()
    assert "auto_map" not in json.loads((tmp_path / "merged" / "config.json").read_text())
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path / "merged").eval()
    assert type(loaded) is type(merged)
    torch.testing.assert_close(loaded(input_ids=IDS).logits, text_ref, **TOL)
    torch.testing.assert_close(loaded(**images).logits, image_ref, **TOL)


def test_bad_gsd_or_no_adapter_is_refused_and_nothing_changes() -> None:
    _, model, _ = _adapted("cshlora")
    before = {n: p.clone() for n, p in model.state_dict().items()}
    for bad in (0.0, -1.0, float("nan"), float("inf"), "ten", True):
        with pytest.raises(GSDError):
            merge_at_gsd(model, bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not finite"):  # GSDError is a ValueError too
        merge_at_log10_gsd(model, float("nan"))
    assert adapter_info(model) is not None
    after = model.state_dict()
    assert all(torch.equal(before[n], after[n]) for n in before)

    plain = build_tiny_backbone("qwen3_vl", "tiny", seed=0).model
    with pytest.raises(EarthVLMError, match="no gated adapter"):
        merge_at_gsd(plain, 1.0)
    assert merge_at_gsd(model, 1.0) == 14
    with pytest.raises(EarthVLMError, match="no gated adapter"):  # merged once already
        merge_at_gsd(model, 1.0)


def test_merge_cshlora_is_the_same_merge_for_cshlora_only() -> None:
    _, a, _ = _adapted("cshlora")
    _, b, _ = _adapted("cshlora")
    assert merge_cshlora(a, math.log10(2.0)) == merge_at_gsd(b, 2.0) == 14
    torch.testing.assert_close(a.state_dict(), b.state_dict(), rtol=0, atol=0)
    _, moe, _ = _adapted("moelora")
    with pytest.raises(EarthVLMError, match="expected 'cshlora'"):
        merge_cshlora(moe, 0.0)
