"""EarthFusion: optical + SAR pairs fused between the projector and the language model in
one forward pass of a tiny real Qwen-VL (EarthMind sec. 3.2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from _vlm_batches import processor_batch
from earthvlm.data.sensors import sar_frames
from earthvlm.fusion import FUSED, FusionConfig, FusionInputError, build_fusion
from earthvlm.fusion.mas import composition_from_fused
from earthvlm.models import build_tiny_backbone
from earthvlm.models.fusion import EarthFusion, image_runs, pairs_from_modalities

PAIR = [["optical", "sar"]]


def _optical(seed: int, side: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8))


def _sar(seed: int, side: int) -> Image.Image:
    """A one-polarisation SAR chip as the zero-padded pseudo-RGB frame (App. H)."""
    rng = np.random.default_rng(seed)
    vv = rng.integers(0, 255, (side, side), dtype=np.uint8)
    return Image.fromarray(sar_frames(vv, bands=["VV"]).frames[0])


def _wrap(family: str = "qwen3_vl", method: str = "hca"):
    bb = build_tiny_backbone(family, "tiny", seed=0)
    hidden = bb.model.config.text_config.hidden_size
    return bb, EarthFusion(bb.model, build_fusion(FusionConfig(dim=hidden, method=method)))


def _inputs(bb, images: list[list[Image.Image]], question: str = "Is the field flooded?"):
    return processor_batch(bb, images, question)


def _pair(bb, seed: int = 0) -> list[Image.Image]:
    """An optical view at 4x the SAR view's token count (16 vs 4 merged tokens)."""
    return [_optical(seed, 4 * bb.factor), _sar(seed, 2 * bb.factor)]


@pytest.fixture(params=["qwen3_vl", "qwen2_5_vl"])
def family(request: pytest.FixtureRequest) -> str:
    return request.param


def test_single_sensor_samples_are_unchanged(family: str) -> None:
    bb, ef = _wrap(family)
    inputs = _inputs(bb, [[_optical(0, 64)], [_sar(1, 96)]])
    with torch.no_grad():
        ref = bb.model(**inputs).logits
        out = ef(modalities=[["optical"], ["sar"]], **inputs).logits
    assert torch.equal(out, ref)
    sources = [f.source.unique().tolist() for f in ef.last.fused]
    assert sources == [[0], [1]]  # optical, SAR: passed through, nothing fused


def test_a_fused_pair_takes_the_sar_token_count(family: str) -> None:
    bb, ef = _wrap(family)
    stock = _inputs(bb, [_pair(bb)])
    inputs = ef.collapse_pairs(stock, modalities=PAIR)
    img = bb.model.config.image_token_id
    p, n = 16, 4
    assert int((stock["input_ids"] == img).sum()) == p + n
    assert int((inputs["input_ids"] == img).sum()) == n  # one slot of N placeholders
    # the optical slot, <|vision_start|> and <|vision_end|> included, is gone
    assert stock["input_ids"].shape[1] - inputs["input_ids"].shape[1] == p + 2
    assert torch.equal(inputs["image_grid_thw"], stock["image_grid_thw"])  # both images kept
    calls = []
    bb.model.model.visual.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        logits = ef(modalities=PAIR, **inputs).logits
    assert calls == [1]  # the vision tower ran once, over both images
    assert logits.shape == (1, inputs["input_ids"].shape[1], bb.model.config.text_config.vocab_size)
    (fused,) = ef.last.fused
    assert len(fused) == n and bool((fused.source == FUSED).all()) and fused.grid == (2, 2)
    assert torch.allclose(fused.weights.sum(-1), torch.ones(n))
    # the modality attention score's composition lines up with the sequence
    comp = composition_from_fused(inputs["input_ids"] == img, ef.last.per_sample(1))
    assert torch.allclose(comp[0][inputs["input_ids"][0] == img].sum(-1), torch.ones(n))


def test_fused_tokens_take_mrope_positions_from_the_sar_grid() -> None:
    bb, ef = _wrap()
    inputs = ef.collapse_pairs(_inputs(bb, [_pair(bb)]), modalities=PAIR)
    seen = {}

    def grab(module, args, kwargs):
        seen["pos"] = kwargs["position_ids"]

    bb.model.model.language_model.register_forward_pre_hook(grab, with_kwargs=True)
    with torch.no_grad():
        ef(modalities=PAIR, **inputs)
    pos = seen["pos"][-3:, 0]  # (t, h, w) rows of the MRoPE positions
    slot = inputs["input_ids"][0] == bb.model.config.image_token_id
    t, h, w = (pos[i][slot] for i in range(3))
    start = int(t[0])
    assert t.unique().tolist() == [start]
    assert h.tolist() == [start, start, start + 1, start + 1]  # the SAR grid: 2 x 2
    assert w.tolist() == [start, start + 1, start, start + 1]
    # the text after the slot continues from the SAR grid's extent, not the optical one
    after = int(slot.nonzero().max()) + 1
    assert int(pos[0][after]) == start + 2
    sar_grid = inputs["image_grid_thw"][1:]
    ref, _ = bb.model.model.get_rope_index(
        inputs["input_ids"], inputs["mm_token_type_ids"], image_grid_thw=sar_grid
    )
    assert torch.equal(seen["pos"][-3:], ref)


@pytest.mark.parametrize("side", ["right", "left"])
def test_each_sample_of_a_mixed_batch_keeps_its_logits(side: str) -> None:
    bb, ef = _wrap()
    bb.processor.tokenizer.padding_side = side
    mods = [["optical"], *PAIR]
    mixed = ef.collapse_pairs(_inputs(bb, [[_optical(5, 96)], _pair(bb)]), modalities=mods)
    alone = _inputs(bb, [[_optical(5, 96)]])
    pair = ef.collapse_pairs(_inputs(bb, [_pair(bb)]), modalities=PAIR)
    valid = mixed["attention_mask"].bool()
    assert valid.sum(1).tolist() == [alone["input_ids"].shape[1], pair["input_ids"].shape[1]]
    with torch.no_grad():
        out = ef(modalities=mods, **mixed).logits
        assert [g.is_pair for g in ef.last.groups] == [False, True]
        ref_single = bb.model(**alone).logits[0]  # the plain model: nothing to fuse
        ref_pair = ef(modalities=PAIR, **pair).logits[0]
    assert torch.allclose(out[0][valid[0]], ref_single, atol=1e-5)
    assert torch.allclose(out[1][valid[1]], ref_pair, atol=1e-5)


def test_gradients_reach_lambda_and_the_projector() -> None:
    bb, ef = _wrap()
    ef.train()
    inputs = ef.collapse_pairs(_inputs(bb, [_pair(bb)]), modalities=PAIR)
    labels = inputs["input_ids"].clone()
    labels[:, :-4] = -100
    out = ef(modalities=PAIR, labels=labels, **inputs)
    out.loss.backward()
    grad = ef.fusion.fusion_lambda_logit.grad
    assert grad is not None and torch.isfinite(grad) and grad.abs() > 0
    merger = bb.model.model.visual.merger
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in merger.parameters())


def test_the_answer_does_not_steer_the_fusion() -> None:
    bb, ef = _wrap()
    inputs = ef.collapse_pairs(_inputs(bb, [_pair(bb)]), modalities=PAIR)
    labels = inputs["input_ids"].clone()
    labels[:, :-4] = -100
    other = {k: v.clone() for k, v in inputs.items()}
    other["input_ids"][0, -4:] = (other["input_ids"][0, -4:] + 7) % 900  # another answer
    with torch.no_grad():
        ef(modalities=PAIR, labels=labels, **inputs)
        a = ef.last.fused[0].tokens
        ef(modalities=PAIR, labels=labels, **other)
        b = ef.last.fused[0].tokens
        ef(modalities=PAIR, **other)  # without labels the whole text guides it
        c = ef.last.fused[0].tokens
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_generate_continues_the_fused_forward() -> None:
    bb, ef = _wrap()
    inputs = ef.collapse_pairs(_inputs(bb, [_pair(bb)]), modalities=PAIR)
    with torch.no_grad():
        first = ef(modalities=PAIR, **inputs).logits[0, -1].argmax()
    seq = ef.generate(modalities=PAIR, max_new_tokens=3, do_sample=False, **inputs)
    assert seq.shape == (1, inputs["input_ids"].shape[1] + 3)
    assert int(seq[0, inputs["input_ids"].shape[1]]) == int(first)


def test_concatenation_keeps_both_slots_and_equals_the_plain_model() -> None:
    bb, ef = _wrap(method="concat")
    stock = _inputs(bb, [_pair(bb)])
    assert ef.collapse_pairs(stock, modalities=PAIR) == dict(stock)
    with torch.no_grad():
        ref = bb.model(**stock).logits
        out = ef(modalities=PAIR, **stock).logits
    assert torch.equal(out, ref)
    assert len(ef.last.fused[0]) == 20 and ef.last.fused[0].source.tolist() == [0] * 16 + [1] * 4


def test_sar_first_pairs_and_explicit_pairs_agree() -> None:
    bb, ef = _wrap()
    opt, sar = _pair(bb)
    inputs = ef.collapse_pairs(_inputs(bb, [[sar, opt]]), pairs=[(1, 0)])
    assert int((inputs["input_ids"] == bb.model.config.image_token_id).sum()) == 4
    with torch.no_grad():
        a = ef(pairs=[(1, 0)], **inputs).logits
        b = ef(modalities=[["sar", "optical"]], **inputs).logits
    assert torch.equal(a, b)
    assert ef.last.groups[0].pair == (1, 0)


def test_bad_layouts_and_pairings_say_what_to_do() -> None:
    bb, ef = _wrap()
    stock = _inputs(bb, [_pair(bb)])
    with pytest.raises(FusionInputError, match="collapse_pairs"):
        ef(modalities=PAIR, **stock)  # the optical slot is still there
    with pytest.raises(FusionInputError, match="adjacent"):
        ef(pairs=[(0, 2)], **stock)
    with pytest.raises(FusionInputError, match="one list per sample"):
        ef(modalities=["optical", "sar"], **stock)
    with pytest.raises(FusionInputError, match="FusionConfig\\(dim=64\\)"):
        EarthFusion(bb.model, build_fusion(FusionConfig(dim=8)))


def test_pairs_from_modalities_and_image_runs() -> None:
    mods = [["optical", "sar"], ["sar", "optical", "optical"], ["optical"], ["sar", "sar"]]
    assert pairs_from_modalities(mods) == [(0, 1), (3, 2)]
    ids = torch.tensor([[5, 9, 9, 5, 9], [9, 5, 5, 5, 5]])
    assert image_runs(ids, 9) == [[(1, 3), (4, 5)], [(0, 1)]]


def test_fusion_parameters_round_trip() -> None:
    _, ef = _wrap()
    state = ef.fusion_state_dict()
    assert list(state) == ["fusion_lambda_logit"]
    _, other = _wrap()
    with torch.no_grad():
        other.fusion.fusion_lambda_logit.fill_(1.5)
    ef.load_fusion_state_dict(other.fusion_state_dict())
    assert float(ef.fusion.fusion_lambda_logit.detach()) == 1.5
