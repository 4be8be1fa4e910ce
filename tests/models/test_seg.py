"""Referring segmentation (EarthMind sec. 3.1, 3.3, App. D): the [SEG] token, the light
mask decoder, BCE + Dice, and "no [SEG] means not present", on a tiny real Qwen3-VL."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import LogitsProcessor, LogitsProcessorList

from _vlm_batches import processor_batch
from earthvlm.data.sensors import sar_frames
from earthvlm.fusion import FusionConfig, build_fusion
from earthvlm.models import build_tiny_backbone
from earthvlm.models.fusion import EarthFusion
from earthvlm.models.seg import (
    PREFIX,
    SEG_TOKEN,
    EarthSeg,
    LightMaskDecoder,
    MaskDecoderConfig,
    SegError,
    SegQuery,
    add_seg_token,
    build_mask_decoder,
    dice_loss,
    mask_loss,
    pixels_from_patches,
)

HIDDEN = 64  # the tiny backbone's text hidden size


def _image(seed: int, side: int = 64) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8))


def _seg_model(dim: int = 32, seed: int = 0):
    bb = build_tiny_backbone("qwen3_vl", "tiny", seed=0)
    seg_id = add_seg_token(bb.model, bb.tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        decoder = build_mask_decoder(MaskDecoderConfig(hidden_size=HIDDEN, dim=dim))
    return bb, EarthSeg(bb.model, decoder, seg_id), seg_id


def _batch(bb, images, answers, question="Segment the flooded field."):
    return processor_batch(bb, images, question, answers)


def _left_half(side: int = 64) -> torch.Tensor:
    m = torch.zeros(1, side, side)
    m[:, :, : side // 2] = 1.0
    return m


def test_seg_token_is_one_atomic_token_with_a_row() -> None:
    bb = build_tiny_backbone("qwen3_vl", "tiny", seed=0)
    n = bb.model.get_input_embeddings().weight.shape[0]
    seg_id = add_seg_token(bb.model, bb.tokenizer)
    assert seg_id == n and bb.model.get_input_embeddings().weight.shape[0] == n + 1
    assert SEG_TOKEN in bb.tokenizer.tokenize(f"here {SEG_TOKEN}.")
    assert SEG_TOKEN in bb.tokenizer.decode([seg_id], skip_special_tokens=True)
    row = bb.model.get_input_embeddings().weight[seg_id].clone()
    assert add_seg_token(bb.model, bb.tokenizer) == seg_id  # a second call keeps the row
    assert torch.equal(bb.model.get_input_embeddings().weight[seg_id], row)


def test_light_decoder_shapes() -> None:
    cfg = MaskDecoderConfig(hidden_size=HIDDEN, dim=32, heads=4, merge=2)
    dec = LightMaskDecoder(cfg)
    q = SegQuery(torch.randn(3, HIDDEN), torch.randn(15, HIDDEN), (3, 5), (96, 160))
    assert dec.patch_logits(q).shape == (3, 6, 10)  # merged grid x merge: the patch grid
    assert dec(q).shape == (3, 96, 160)
    assert all(name.startswith(PREFIX) for name, _ in dec.named_parameters())
    with pytest.raises(SegError, match="do not fill the grid"):
        dec(SegQuery(torch.randn(1, HIDDEN), torch.randn(14, HIDDEN), (3, 5), (8, 8)))


def test_dice_is_zero_for_a_perfect_mask() -> None:
    target = (torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    target[2] = 0.0  # an empty mask predicted empty is perfect too
    assert torch.equal(dice_loss(target, target), torch.zeros(3))
    assert dice_loss(1.0 - target[:2], target[:2]).min() > 0.9
    sharp = mask_loss((2 * target - 1) * 40.0, target)
    assert float(sharp.dice) < 1e-6 and float(sharp.bce) < 1e-6
    with pytest.raises(SegError, match="differ"):
        mask_loss(torch.zeros(1, 4, 4), torch.zeros(1, 4, 5))


def test_loss_decreases_when_overfitting_one_example() -> None:
    bb, seg, seg_id = _seg_model()
    seg.train()
    inputs = _batch(bb, [[_image(0)]], [f"It is here {SEG_TOKEN}."])
    labels = inputs["input_ids"].clone()
    labels[:, :-6] = -100
    target = [_left_half()]
    opt = torch.optim.Adam(seg.parameters(), lr=3e-3)
    losses = []
    for step in range(12):  # ~0.3 s on an idle 2-core CPU
        out = seg(masks=target, labels=labels, **inputs)
        opt.zero_grad()
        (out.lm.loss + out.seg.total).backward()
        if step == 0:  # the mask loss reaches the [SEG] embedding through the LM
            row = bb.model.get_input_embeddings().weight.grad[seg_id]
            assert row.abs().sum() > 0
        opt.step()
        losses.append(float(out.seg.total.detach()))
    assert losses[-1] < 0.5 * losses[0], losses
    assert out.masks[0].shape == (1, 64, 64)
    assert torch.allclose(out.loss, out.lm.loss + out.seg.total)


def test_no_seg_token_means_no_mask() -> None:
    bb, seg, _ = _seg_model()
    inputs = _batch(
        bb, [[_image(0)], [_image(1)]], [f"Here {SEG_TOKEN}.", "There is no flooded field."]
    )
    with torch.no_grad():
        out = seg(masks=[_left_half(), None], **inputs)
    assert out.masks[0].shape == (1, 64, 64) and out.masks[1] is None
    assert out.mask_images == [0, None]
    assert out.seg is not None and torch.isfinite(out.seg.total)
    with pytest.raises(SegError, match="no \\[SEG\\] token"):
        seg(masks=[None, _left_half()], **inputs)


class _Force(LogitsProcessor):
    """Forces one token at the first generated step."""

    def __init__(self, token: int, at: int) -> None:
        self.token, self.at = token, at

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[1] == self.at:
            scores = torch.full_like(scores, -1e9)
            scores[:, self.token] = 0.0
        return scores


def test_generation_without_seg_gives_no_mask_and_with_seg_a_mask() -> None:
    bb, seg, seg_id = _seg_model()
    prompt = _batch(bb, [[_image(0)]], [None])
    n = prompt["input_ids"].shape[1]
    seq, masks = seg.generate(prompt, max_new_tokens=3, do_sample=False, suppress_tokens=[seg_id])
    assert masks == [None] and not bool((seq == seg_id).any())
    forced = LogitsProcessorList([_Force(seg_id, n)])
    seq, masks = seg.generate(prompt, max_new_tokens=3, do_sample=False, logits_processor=forced)
    assert int(seq[0, n]) == seg_id
    assert masks[0].shape == (1, 64, 64)
    # the mask is the one a teacher-forced forward of prompt + answer gives
    types_ = torch.cat([prompt["mm_token_type_ids"], torch.zeros_like(seq[:, n:])], dim=1)
    full = {**prompt, "input_ids": seq, "attention_mask": torch.ones_like(seq)}
    with torch.no_grad():
        ref = seg(**{**full, "mm_token_type_ids": types_})
    assert torch.allclose(masks[0], ref.masks[0], atol=1e-5)


def test_a_fused_pair_feeds_the_decoder_and_the_loss_reaches_lambda() -> None:
    bb = build_tiny_backbone("qwen3_vl", "tiny", seed=0)
    seg_id = add_seg_token(bb.model, bb.tokenizer)
    ef = EarthFusion(bb.model, build_fusion(FusionConfig(dim=HIDDEN)))
    seg = EarthSeg(ef, build_mask_decoder(MaskDecoderConfig(hidden_size=HIDDEN, dim=32)), seg_id)
    vv = np.random.default_rng(3).integers(0, 255, (64, 64), dtype=np.uint8)
    sar = Image.fromarray(sar_frames(vv, bands=["VV"]).frames[0])
    mods = [["optical", "sar"]]
    stock = _batch(bb, [[_image(2, 128), sar]], [f"Here {SEG_TOKEN}."])
    inputs = ef.collapse_pairs(stock, modalities=mods)
    out = seg(masks=[_left_half()], modalities=mods, **inputs)
    assert out.mask_images == [1]  # the sample's last image: the SAR view, 64 x 64
    assert out.masks[0].shape == (1, 64, 64)
    out.seg.total.backward()
    grad = ef.fusion.fusion_lambda_logit.grad
    assert grad is not None and grad.abs() > 0  # the decoder read the fused tokens
    # a mask on the optical view of the pair: predicted at its size, from the same tokens
    with torch.no_grad():
        opt = seg(mask_images=[0], modalities=mods, **inputs)
    assert opt.masks[0].shape == (1, 128, 128)


def test_pixels_from_patches_inverts_the_processor() -> None:
    bb = build_tiny_backbone("qwen3_vl", "tiny", seed=0)
    image = _image(4, 64)
    px = bb.processor.image_processor(images=[image], return_tensors="pt")
    x = pixels_from_patches(px["pixel_values"], px["image_grid_thw"][0], 16, 2, 2)
    mean = torch.tensor(bb.image_mean)[:, None, None]
    std = torch.tensor(bb.image_std)[:, None, None]
    rgb = (x * std + mean) * 255.0
    ref = torch.from_numpy(np.array(image)).permute(2, 0, 1).float()
    assert rgb.shape == ref.shape and torch.allclose(rgb, ref, atol=1e-3)


def test_sam_decoder_is_plugged_in_by_config(tmp_path, monkeypatch) -> None:
    missing = tmp_path / "sam2-hiera-tiny"
    cfg = MaskDecoderConfig(hidden_size=HIDDEN, kind="sam", weights_path=str(missing))
    with pytest.raises(SegError, match=r"no weights at .*sam2-hiera-tiny"):
        build_mask_decoder(cfg)
    with pytest.raises(ValueError, match="weights_path"):
        MaskDecoderConfig(hidden_size=HIDDEN, kind="sam")
    missing.mkdir()
    with pytest.raises(SegError, match="sam_class"):
        build_mask_decoder(cfg)

    seen = {}

    class PixelDecoder(LightMaskDecoder):
        needs_pixels = True

        def forward(self, query: SegQuery) -> torch.Tensor:
            seen["pixels"] = query.pixels.shape
            return super().forward(query)

    module = types.ModuleType("earthvlm_test_decoders")
    module.PixelDecoder = PixelDecoder
    monkeypatch.setitem(sys.modules, "earthvlm_test_decoders", module)
    cfg = MaskDecoderConfig(
        hidden_size=HIDDEN,
        dim=32,
        kind="sam",
        weights_path=str(missing),
        sam_class="earthvlm_test_decoders:PixelDecoder",
    )
    bb = build_tiny_backbone("qwen3_vl", "tiny", seed=0)
    seg_id = add_seg_token(bb.model, bb.tokenizer)
    seg = EarthSeg(bb.model, build_mask_decoder(cfg), seg_id)
    with torch.no_grad():
        out = seg(**_batch(bb, [[_image(0, 96)]], [f"Here {SEG_TOKEN}."]))
    assert seen["pixels"] == (3, 96, 96) and out.masks[0].shape == (1, 96, 96)


def test_seg_parameters_round_trip() -> None:
    _, seg, _ = _seg_model(seed=0)
    state = seg.seg_state_dict()
    assert all(k.startswith(PREFIX) for k in state)
    assert {"seg_token.embedding", "seg_token.lm_head"} <= set(state)
    _, other, _ = _seg_model(seed=1)
    other.load_seg_state_dict(state)
    for k, v in other.seg_state_dict().items():
        assert torch.equal(v, state[k]), k
