"""ScaleEarth's one forward pass: vision -> SSE-U -> Eq. 5 -> per-token gates -> LM."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from _vlm_batches import processor_batch
from earthvlm.adapters.cshlora import CSHLoRAConfig, inject_cshlora
from earthvlm.errors import EarthVLMError
from earthvlm.models import build_tiny_backbone
from earthvlm.models.scaleearth import ScaleEarth, ScaleEarthConfig
from earthvlm.models.sseu import SSEUHead, gaussian_nll
from earthvlm.scale.gsd import GSD
from earthvlm.scale.inference import Branch


def _image(seed: int, size: int = 64) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))


def _wrap(family: str, per_token: bool = True):
    bb = build_tiny_backbone(family, "tiny", seed=0)
    ctx = inject_cshlora(bb.model, CSHLoRAConfig(r=8))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in bb.model.named_parameters():
            if "cshlora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    hidden = bb.model.config.text_config.hidden_size
    se = ScaleEarth(bb.model, ctx, SSEUHead(hidden), ScaleEarthConfig(per_token=per_token)).eval()
    return bb, se, ctx


def _inputs(bb, images_per_sample: list[list[Image.Image]], question: str = "What is it?"):
    return processor_batch(bb, images_per_sample, question)


@pytest.fixture(params=["qwen3_vl", "qwen2_5_vl"])
def family(request: pytest.FixtureRequest) -> str:
    return request.param


def test_one_samples_gsd_changes_only_its_own_output(family: str) -> None:
    bb, se, _ = _wrap(family)
    inputs = _inputs(bb, [[_image(0)], [_image(1)]])
    a = se(gsd=[GSD.exact(0.1), GSD.exact(5.0)], **inputs).logits
    assert [d.branch for d in se.last.decisions] == [Branch.METADATA, Branch.METADATA]
    b = se(gsd=[GSD.exact(0.1), GSD.exact(0.3)], **inputs).logits
    assert torch.equal(a[0], b[0])
    assert (a[1] - b[1]).abs().max() > 1e-3


def test_without_metadata_the_resolver_branches_are_reported(family: str) -> None:
    bb, se, _ = _wrap(family)
    inputs = _inputs(bb, [[_image(0)], [_image(1)]])
    se(gsd=[None, None], **inputs)
    # an untrained head is unsure (sigma ~ 1 > 0.3): the neutral 1 m, reported as such
    assert [d.branch for d in se.last.decisions] == [Branch.NEUTRAL, Branch.NEUTRAL]
    assert se.last.s_image.tolist() == [0.0, 0.0]
    with torch.no_grad():  # a confident head: its estimate is used
        se.sseu.logvar.bias.fill_(-8.0)
        se.sseu.logvar.weight.zero_()
        se.sseu.mu.weight.zero_()
        se.sseu.mu.bias.fill_(-0.5)
    se(gsd=[None, GSD.exact(2.0)], **inputs)
    assert [d.branch for d in se.last.decisions] == [Branch.ESTIMATE, Branch.METADATA]
    assert se.last.s_image.tolist() == pytest.approx([-0.5, math.log10(2.0)])


def test_per_token_gates_follow_the_most_recent_view(family: str) -> None:
    bb, se, ctx = _wrap(family)
    inputs = _inputs(bb, [[_image(0), _image(1, 32)]])
    se(gsd=[GSD.exact(8.0), GSD.exact(1.0)], **inputs)
    s = ctx.s[0]
    ids = inputs["input_ids"][0]
    image_pos = (ids == se.image_token_id).nonzero().flatten()
    second_start = image_pos[(image_pos.diff() > 1).nonzero()[0] + 1].item()
    assert s[:second_start].unique().tolist() == pytest.approx([math.log10(8.0)])
    assert s[second_start:].unique().tolist() == pytest.approx([0.0])
    # one gate per sample instead: the last view's GSD for every token
    _, se2, ctx2 = _wrap(family, per_token=False)
    se2(gsd=[GSD.exact(8.0), GSD.exact(1.0)], **inputs)
    assert ctx2.s.tolist() == pytest.approx([0.0])


def test_training_gradients_reach_gates_and_the_head(family: str) -> None:
    bb, se, _ = _wrap(family)
    se.train()
    inputs = _inputs(bb, [[_image(0)], [_image(1)]])
    gsds = [GSD.exact(0.3), GSD.range(1.0, 4.0)]
    out = se(gsd=gsds, seed=0, labels=inputs["input_ids"], **inputs)
    loss = out.loss + 0.3 * se.last.nll(gsds)
    loss.backward()
    named = dict(se.named_parameters())
    for key in ("cshlora_tau", "cshlora_sharpness", "cshlora_A", "cshlora_B"):
        grads = [p.grad for n, p in named.items() if key in n]
        assert grads and all(g is not None and g.abs().sum() > 0 for g in grads), key
    assert all(p.grad is not None for n, p in named.items() if n.startswith("sseu."))
    # a range is drawn inside its log range in training
    assert 0.0 <= se.last.s_image[1].item() <= math.log10(4.0)


def test_p_e2e_routes_exact_samples_through_the_head() -> None:
    bb, se, _ = _wrap("qwen3_vl")
    se.train()
    inputs = _inputs(bb, [[_image(0)]])
    routed = 0
    for seed in range(40):
        se(gsd=[GSD.exact(0.3)], seed=seed, **inputs)
        mu = se.last.mu[0].item()
        s = se.last.s_image[0].item()
        routed += s == pytest.approx(mu) and s != pytest.approx(math.log10(0.3))
    assert 2 <= routed <= 18  # p_e2e = 0.2 of 40 draws


def test_generation_keeps_each_samples_gate_through_beams(family: str) -> None:
    bb, se, _ = _wrap(family)
    inputs = _inputs(bb, [[_image(0)], [_image(1)]])
    gsds = [GSD.exact(0.1), GSD.exact(5.0)]
    out = se.generate(
        gsd=gsds, max_new_tokens=4, do_sample=False, num_beams=2, num_return_sequences=2, **inputs
    )
    assert out.shape[0] == 4
    cfg = bb.model.config
    # a random model may emit vision tokens; re-feeding those would ask for more images
    vision_ids = [
        cfg.image_token_id,
        cfg.video_token_id,
        cfg.vision_start_token_id,
        cfg.vision_end_token_id,
    ]
    gen = se.generate(
        gsd=gsds, max_new_tokens=4, do_sample=False, output_logits=True,
        return_dict_in_generate=True, suppress_tokens=vision_ids, **inputs,
    )  # fmt: skip
    greedy = gen.sequences
    n = inputs["input_ids"].shape[1]
    full = {
        **inputs,
        "input_ids": greedy,
        "attention_mask": torch.ones_like(greedy),
        "mm_token_type_ids": torch.nn.functional.pad(inputs["mm_token_type_ids"], (0, 4)),
    }
    logits = se(gsd=gsds, **full).logits
    # teacher-forcing the generated tokens gives the logits each decoding step saw: the
    # same gates throughout (a gate reset at decode time would change them)
    stepwise = torch.stack(gen.logits, dim=1)
    allowed = torch.ones(stepwise.shape[-1], dtype=torch.bool)
    allowed[vision_ids] = False  # suppressed logits are -inf in the generated ones
    torch.testing.assert_close(
        logits[:, n - 1 : -1][..., allowed], stepwise[..., allowed], rtol=1e-4, atol=1e-4
    )


def test_a_gsd_count_mismatch_is_a_clear_error() -> None:
    bb, se, _ = _wrap("qwen3_vl")
    inputs = _inputs(bb, [[_image(0)], [_image(1)]])
    with pytest.raises(EarthVLMError, match="2 image"):
        se(gsd=[GSD.exact(1.0)], **inputs)


def test_gaussian_nll_matches_eq3_and_ignores_non_exact() -> None:
    mu = torch.tensor([0.0, 1.0, 2.0])
    logvar = torch.tensor([0.0, math.log(4.0), 0.0])
    target = torch.tensor([1.0, 1.0, 9.0])
    mask = torch.tensor([True, True, False])
    expected = ((0.5 * 1.0 + 0.0) + (0.0 + 0.5 * math.log(4.0))) / 2
    assert gaussian_nll(mu, logvar, target, mask).item() == pytest.approx(expected)
    assert gaussian_nll(mu, logvar, target, torch.zeros(3, dtype=torch.bool)).item() == 0.0


def test_sseu_log_variance_is_clamped() -> None:
    head = SSEUHead(8)
    with torch.no_grad():
        head.logvar.bias.fill_(50.0)
    _, logvar = head(torch.randn(3, 8))
    assert (logvar == 4.0).all()
