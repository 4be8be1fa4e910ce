"""Packed uint8 pixels: the vision tower's pre-hook gives the processor's float rows, bit
for bit, on tiny real Qwen3-VL (patch 16) and Qwen2.5-VL (patch 14) backbones."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from _vlm_batches import processor_batch
from earthvlm.data.pixels import PixelProcessor, normalised_table
from earthvlm.data.sensors import sar_frames
from earthvlm.fusion import FusionConfig, build_fusion
from earthvlm.models import build_tiny_backbone, load_backbone, save_backbone
from earthvlm.models.fusion import EarthFusion
from earthvlm.models.pixels import (
    PackedPixels,
    PackedPixelsError,
    install_packed_pixels,
    installed_packed_pixels,
)
from earthvlm.models.seg import (
    SEG_TOKEN,
    EarthSeg,
    LightMaskDecoder,
    MaskDecoderConfig,
    SegError,
    SegQuery,
    add_seg_token,
)

FAMILIES = ("qwen3_vl", "qwen2_5_vl")


@pytest.fixture(scope="module", params=FAMILIES)
def bb(request: pytest.FixtureRequest) -> Any:
    return build_tiny_backbone(request.param, "tiny", seed=0)


def _image(seed: int, h: int, w: int | None = None) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w or h, 3), dtype=np.uint8))


def _sar(seed: int, side: int) -> Image.Image:
    vv = np.random.default_rng(seed).integers(0, 255, (side, side), dtype=np.uint8)
    return Image.fromarray(sar_frames(vv, bands=["VV"]).frames[0])


def _batches(bb: Any, images: list[list[Image.Image]], answers: list[str | None],
             question: str = "What is in the image?") -> tuple[dict, dict]:  # fmt: skip
    """The processor's batch (float32 pixel_values) and the same batch with packed rows."""
    full = processor_batch(bb, images, question, answers)
    packed = PixelProcessor.from_image_processor(bb.processor.image_processor).pack(images)
    assert np.array_equal(packed["image_grid_thw"], full["image_grid_thw"].numpy())
    return dict(full), {**full, "pixel_values": torch.from_numpy(packed["pixel_values"])}


def _tower_input(model: Any, inputs: dict) -> torch.Tensor:
    """What the patch embedding computes on (after the packed-pixels hook)."""
    seen = []
    embed = model.model.visual.patch_embed
    handle = embed.register_forward_pre_hook(lambda m, a: seen.append(a[0].clone()))
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        handle.remove()
    return seen[0]


def test_packed_rows_expand_to_the_processor_rows_bit_for_bit(bb: Any) -> None:
    images = [[_image(0, 70, 130)], [_image(1, 96), _image(2, 40, 300)]]
    full, packed = _batches(bb, images, ["a field", "two roads"])
    p = bb.patch_size
    assert packed["pixel_values"].dtype == torch.uint8
    assert packed["pixel_values"].shape == (full["pixel_values"].shape[0], 3 * p * p)
    pk = installed_packed_pixels(bb.model)
    assert pk is not None and pk.full_dim == full["pixel_values"].shape[1] == 3 * 2 * p * p
    assert torch.equal(pk.expand(packed["pixel_values"]), full["pixel_values"])
    # as the tower gets them: transformers casts to its dtype first (0..255 stay exact)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        got = pk.expand(packed["pixel_values"].to(dtype))
        assert got.dtype == dtype and torch.equal(got, full["pixel_values"].to(dtype)), dtype


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_model_sees_and_computes_the_same(dtype: torch.dtype) -> None:
    for family in FAMILIES:
        bb = build_tiny_backbone(family, "tiny", seed=0)
        bb.model.to(dtype)
        images = [[_image(3, 64)], [_image(4, 50, 90), _image(5, 32)]]
        full, packed = _batches(bb, images, ["a harbour", "ships"])
        labels = full["input_ids"].clone()
        labels[:, :-3] = -100
        seen_full, seen_packed = _tower_input(bb.model, full), _tower_input(bb.model, packed)
        assert seen_packed.dtype == dtype and torch.equal(seen_packed, seen_full), family
        out_full = bb.model(**full, labels=labels)
        out_packed = bb.model(**packed, labels=labels)
        assert torch.equal(out_packed.logits, out_full.logits), family
        assert torch.equal(out_packed.loss, out_full.loss), family
        if dtype == torch.float32:  # and the same gradients
            embed = bb.model.model.visual.patch_embed.proj.weight
            g_full = torch.autograd.grad(out_full.loss, embed)[0]
            g_packed = torch.autograd.grad(out_packed.loss, embed)[0]
            assert torch.equal(g_packed, g_full), family


def test_generate_reads_packed_pixels() -> None:
    bb = build_tiny_backbone("qwen3_vl", "tiny", seed=0)
    full, packed = _batches(bb, [[_image(6, 64)]], [None])
    kw = {"max_new_tokens": 4, "do_sample": False}
    with torch.no_grad():
        assert torch.equal(bb.model.generate(**packed, **kw), bb.model.generate(**full, **kw))


def test_float_rows_pass_through_and_wrong_widths_are_refused(bb: Any) -> None:
    pk = installed_packed_pixels(bb.model)
    assert pk is not None
    embed = bb.model.model.visual.patch_embed
    x = torch.zeros(4, pk.full_dim)
    assert pk(embed, (x,), {}) is None  # untouched
    full, packed = _batches(bb, [[_image(7, 64)]], ["a field"])
    wide = torch.cat([packed["pixel_values"], packed["pixel_values"][:, :1]], 1)
    with pytest.raises(PackedPixelsError, match=rf"rows have {pk.packed_dim + 1} values.*reads "
                       rf"{pk.full_dim} \(float32.*{pk.packed_dim} \(packed uint8"):  # fmt: skip
        bb.model(**{**packed, "pixel_values": wide})
    normalised = full["pixel_values"][:, : pk.packed_dim]  # floats of the packed width
    with pytest.raises(PackedPixelsError, match=r"values in \[-.*uint8 pixels 0\.\.255"):
        bb.model(**{**packed, "pixel_values": normalised})


def test_install_is_idempotent_checks_sizes_and_survives_copies(tmp_path) -> None:
    bb = build_tiny_backbone("qwen2_5_vl", "tiny", seed=0)
    embed = bb.model.model.visual.patch_embed
    first = install_packed_pixels(bb.model, bb.processor.image_processor)
    again = install_packed_pixels(bb.model, bb)  # a backbone gives the same numbers
    assert again is first and len(embed._forward_pre_hooks) == 1
    with pytest.raises(ValueError, match=r"\(14, 2, 3\) but the processor gives \(16, 2, 3\)"):
        install_packed_pixels(bb.model, build_tiny_backbone("qwen3_vl").processor)
    with pytest.raises(ValueError, match="no vision tower"):
        install_packed_pixels(torch.nn.Linear(2, 2), bb)
    full, packed = _batches(bb, [[_image(8, 56)]], ["a road"])
    with torch.no_grad():
        ref = bb.model(**full).logits
        assert torch.equal(copy.deepcopy(bb.model)(**packed).logits, ref)
    # a saved and loaded backbone reads packed rows too
    loaded = load_backbone(save_backbone(bb, tmp_path / "bb"))
    assert installed_packed_pixels(loaded.model) == installed_packed_pixels(bb.model)
    with torch.no_grad():
        assert torch.equal(loaded.model(**packed).logits, ref)
    first.remove()
    assert installed_packed_pixels(bb.model) is None


def test_the_table_path_is_exact_where_the_arithmetic_is_not() -> None:
    values = torch.arange(256, dtype=torch.uint8)
    for rescale, exact in ((1 / 255, True), (0.0039, False)):
        pk = PackedPixels(14, 2, (0.48, 0.45, 0.40), (0.26, 0.26, 0.27), rescale)
        rows = values.repeat(3 * 196 // 256 + 1)[: 3 * 196].view(1, -1).repeat(2, 1)
        got = pk.expand(rows).view(2, 3, 2, 196)
        table = torch.from_numpy(normalised_table(pk.image_mean, pk.image_std, rescale))
        idx = rows.view(2, 3, 196).long()
        want = torch.stack([table[c][idx[:, c]] for c in range(3)], 1)
        assert pk._exact[torch.device("cpu")] is exact
        assert torch.equal(got[:, :, 0], want) and torch.equal(got[:, :, 1], want)
    with pytest.raises(ValueError, match="temporal_patch_size=1"):
        PackedPixels(14, 1, (0.5,) * 3, (0.5,) * 3, 1 / 255)


@pytest.mark.parametrize("rescale", [1 / 255, 0.0039])
def test_many_rows_expand_across_blocks(rescale: float) -> None:
    """1000 rows: the CPU works on blocks of a few hundred, the last one partial."""
    pk = PackedPixels(16, 2, (0.5, 0.4, 0.3), (0.5, 0.2, 0.1), rescale)
    rows = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1000, 768), np.uint8))
    table = normalised_table(pk.image_mean, pk.image_std, rescale)
    values = table[np.arange(3)[None, :, None], rows.numpy().reshape(1000, 3, 256)]
    want = torch.from_numpy(np.repeat(values[:, :, None], 2, axis=2).reshape(1000, -1))
    assert torch.equal(pk.expand(rows), want)
    assert torch.equal(pk.expand(rows.to(torch.bfloat16)), want.to(torch.bfloat16))
    assert pk.expand(rows[:0]).shape == (0, 1536)


def test_fusion_takes_packed_batches(bb: Any) -> None:
    hidden = bb.model.config.text_config.hidden_size
    ef = EarthFusion(bb.model, build_fusion(FusionConfig(dim=hidden)))
    pair = [[_image(9, 4 * bb.factor), _sar(9, 2 * bb.factor)]]
    mods = [["optical", "sar"]]
    full, packed = _batches(bb, pair, [None], "Is the field flooded?")
    with torch.no_grad():
        ref = ef(modalities=mods, **ef.collapse_pairs(full, modalities=mods)).logits
        got = ef(modalities=mods, **ef.collapse_pairs(packed, modalities=mods)).logits
    assert torch.equal(got, ref)


class _PixelDecoder(LightMaskDecoder):
    """The light decoder, keeping the pixels it was given (as a SAM-style decoder reads)."""

    needs_pixels = True

    def forward(self, query: SegQuery) -> torch.Tensor:
        self.pixels = query.pixels
        return super().forward(query)


def test_segmentation_reads_packed_rows_back_as_the_image() -> None:
    bb = build_tiny_backbone("qwen3_vl", "tiny", seed=0)
    seg_id = add_seg_token(bb.model, bb.tokenizer)
    hidden = bb.model.config.text_config.hidden_size
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        decoder = _PixelDecoder(MaskDecoderConfig(hidden_size=hidden, dim=32))
    seg = EarthSeg(bb.model, decoder, seg_id)
    full, packed = _batches(bb, [[_image(10, 96, 64)]], [f"Here {SEG_TOKEN}."])
    with torch.no_grad():
        ref = seg(**full)
        ref_pixels = decoder.pixels
        got = seg(**packed)
    assert ref_pixels.shape == (3, 96, 64)
    assert torch.equal(decoder.pixels, ref_pixels) and torch.equal(got.masks[0], ref.masks[0])
    install_packed_pixels(bb.model, bb).remove()
    with pytest.raises(SegError, match="packed uint8 rows but the model does not expand them"):
        seg._pixels(packed, 0)
