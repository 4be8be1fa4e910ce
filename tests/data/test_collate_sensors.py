"""The collator beyond optical RGB: SAR as zero-padded pseudo-RGB, per-sample modalities
for EarthFusion, and masks at the size the model sees their image (for EarthSeg)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from earthvlm.data.collate import Collator, SampleError
from earthvlm.data.jsonl import read_records
from earthvlm.data.record import ImagePart, ImageRef, Mask, Message, Record, TextPart
from earthvlm.data.resolution import smart_resize
from earthvlm.data.sensors import DbScale, sar_frames
from earthvlm.fusion import FusionConfig, build_fusion
from earthvlm.models import build_tiny_backbone
from earthvlm.models.fusion import EarthFusion
from earthvlm.scale.gsd import GSD
from earthvlm.synth.dataset import SynthConfig, generate_dataset

RNG = np.random.default_rng(0)
VV = RNG.integers(0, 255, (64, 64), dtype=np.uint8)
VH = RNG.integers(0, 255, (64, 64), dtype=np.uint8)
DB = RNG.uniform(-25.0, 5.0, (1, 40, 40)).astype(np.float32)


@pytest.fixture(scope="module")
def bb() -> Any:
    return build_tiny_backbone("qwen3_vl", "tiny", seed=0)


@pytest.fixture
def root(tmp_path: Path, write_geotiff: Callable[..., Path]) -> Path:
    """Optical chips (128 px, 50 x 70 px), SAR views (uint8 VV, uint8 VV/VH, float dB,
    uint16, 3-band), a 4-band multispectral chip and masks for the 50 x 70 chip."""
    ds = tmp_path / "ds"
    (ds / "images").mkdir(parents=True)
    (ds / "masks").mkdir()
    img = ds / "images"
    write_geotiff(img / "opt.tif", data=RNG.integers(0, 255, (3, 128, 128), dtype=np.uint8))
    write_geotiff(img / "rect.tif", data=RNG.integers(0, 255, (3, 50, 70), dtype=np.uint8))
    write_geotiff(img / "vv.tif", data=VV[None])
    write_geotiff(img / "vvvh.tif", data=np.stack([VV, VH]))
    write_geotiff(img / "db.tif", data=DB, dtype="float32")
    write_geotiff(img / "u16.tif", data=VV[None].astype(np.uint16), dtype="uint16")
    write_geotiff(img / "sar3.tif", data=np.stack([VV, VH, VV]))
    write_geotiff(img / "ms.tif", data=RNG.integers(0, 9000, (4, 32, 32)), dtype="uint16")
    ids = np.zeros((50, 70), dtype=np.uint16)
    ids[10:30, 20:50] = 1  # instance 1: the top-left of the chip's middle
    ids[35:50, 0:14] = 2  # instance 2: the bottom-left corner
    Image.fromarray(ids).save(ds / "masks/ids.png")
    Image.fromarray((ids == 2).astype(np.uint8) * 255).save(ds / "masks/binary.png")
    Image.fromarray(np.zeros((20, 20), dtype=np.uint8)).save(ds / "masks/small.png")
    (ds / "masks/corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    return ds


def _record(
    rid: str,
    images: list[tuple[str, str]],
    *,
    order: list[int] | None = None,
    bands: list[list[str] | None] | None = None,
    masks: list[Mask] | None = None,
    meta: dict[str, Any] | None = None,
) -> Record:
    order = order if order is not None else list(range(len(images)))
    bands = bands or [None] * len(images)
    return Record(
        id=rid,
        task="vqa",
        source="test",
        images=[
            ImageRef(path=p, modality=m, bands=b, gsd=GSD.exact(10.0))  # type: ignore[arg-type]
            for (p, m), b in zip(images, bands, strict=True)
        ],
        messages=[
            Message(
                role="user",
                content=[
                    *(ImagePart(index=i) for i in order),
                    TextPart(text="Is the field flooded?"),
                ],
            ),
            Message(role="assistant", content="yes [SEG]"),
        ],
        masks=masks or [],
        meta=meta or {},
    )


def _pixels(collator: Collator, ref: ImageRef, meta: dict[str, Any] | None = None) -> np.ndarray:
    return np.asarray(collator.load_image(ref, meta))


# -- SAR ----------------------------------------------------------------------------------


def test_uint8_sar_becomes_the_zero_padded_pseudo_rgb_frame(bb: Any, root: Path) -> None:
    c = Collator(bb, root)
    one = _pixels(c, ImageRef(path="images/vv.tif", modality="sar", bands=["VV"]))
    assert one.shape == (64, 64, 3)
    assert np.array_equal(one[..., 0], VV) and not one[..., 1:].any()  # VV -> R, zeros
    two = _pixels(c, ImageRef(path="images/vvvh.tif", modality="sar", bands=["VV", "VH"]))
    assert np.array_equal(two, sar_frames(np.stack([VV, VH])).frames[0])
    assert np.array_equal(two[..., 1], VH) and not two[..., 2].any()


def test_float_sar_is_written_through_the_db_map_the_record_names(bb: Any, root: Path) -> None:
    c = Collator(bb, root)
    ref = ImageRef(path="images/db.tif", modality="sar")
    default = _pixels(c, ref)  # float is read as dB, written with the default map
    assert np.array_equal(default[..., 0], DbScale().to_uint8(DB[0]))
    scale = DbScale(min_db=-25.0, span_db=30.0)
    custom = _pixels(c, ref, {"sar_scaling": scale.formula()})
    assert np.array_equal(custom[..., 0], scale.to_uint8(DB[0]))
    assert not np.array_equal(custom, default)
    # the same file said to hold linear power is converted with 10 log10 (negatives: nodata)
    linear = _pixels(c, ref, {"sar_units": "linear_power"})
    expected = sar_frames(DB, units="linear_power").frames[0]
    assert np.array_equal(linear, expected) and not np.array_equal(linear, default)


def test_sar_scaling_is_part_of_the_image_cache_key(bb: Any, root: Path) -> None:
    c = Collator(bb, root, image_cache=4)
    ref = ImageRef(path="images/db.tif", modality="sar")
    a = _pixels(c, ref)
    b = _pixels(c, ref, {"sar_scaling": DbScale(min_db=-25.0, span_db=30.0).formula()})
    assert not np.array_equal(a, b) and len(c.images.cache) == 2


def test_unreadable_sensor_images_are_counted_with_reasons(bb: Any, root: Path) -> None:
    recs = [
        _record("ok", [("images/vv.tif", "sar")], meta={"sar_units": "uint8_db"}),
        _record("ms", [("images/ms.tif", "multispectral")], meta={"ms_grouping": "pairs"}),
        _record("sar3", [("images/sar3.tif", "sar")]),
        _record("u16", [("images/u16.tif", "sar")]),  # not dB-scaled uint8, not float
        _record("bands", [("images/vv.tif", "sar")], bands=[["VV", "VH"]]),
        _record("units", [("images/vv.tif", "sar")], meta={"sar_units": "amplitude"}),
        _record("scaling", [("images/vv.tif", "sar")], meta={"sar_scaling": "dB = 2 x"}),
    ]
    batch = Collator(bb, root)(recs)
    assert batch.ids == ["ok"] and batch.modalities == [["sar"]]
    reasons = {rid: reason for rid, reason, _ in batch.failures}
    assert reasons == {
        "ms": "unsupported_image",
        "sar3": "unsupported_image",
        "u16": "unsupported_image",
        "bands": "unsupported_image",
        "units": "unsupported_image",
        "scaling": "unsupported_image",
    }
    messages = {rid: msg for rid, _, msg in batch.failures}
    assert "sar_units" in messages["u16"] and "dB = value / 255" in messages["scaling"]


# -- modalities and fusion ----------------------------------------------------------------


def test_modalities_follow_the_order_images_are_shown(bb: Any, root: Path) -> None:
    recs = [
        _record("pair", [("images/opt.tif", "optical"), ("images/vv.tif", "sar")]),
        _record("flip", [("images/opt.tif", "optical"), ("images/vv.tif", "sar")], order=[1, 0]),
        _record("single", [("images/rect.tif", "optical")]),
    ]
    batch = Collator(bb, root)(recs)
    assert batch.modalities == [["optical", "sar"], ["sar", "optical"], ["optical"]]
    assert len(batch.gsds) == sum(len(m) for m in batch.modalities)
    assert batch.inputs["image_grid_thw"].shape[0] == 5
    assert batch.masks == [None, None, None] and batch.mask_images == [None, None, None]


@pytest.mark.parametrize("mode", ["train", "generate"])
def test_a_collated_optical_sar_pair_runs_through_earth_fusion(
    bb: Any, root: Path, mode: str
) -> None:
    hidden = bb.model.config.text_config.hidden_size
    ef = EarthFusion(bb.model, build_fusion(FusionConfig(dim=hidden, method="hca")))
    recs = [
        _record("pair", [("images/opt.tif", "optical"), ("images/vv.tif", "sar")]),
        _record("single", [("images/rect.tif", "optical")]),
    ]
    batch = Collator(bb, root, mode=mode)(recs)  # type: ignore[arg-type]
    assert batch.modalities == [["optical", "sar"], ["optical"]]
    inputs = ef.collapse_pairs(batch.inputs, modalities=batch.modalities)
    img = bb.model.config.image_token_id
    grid = batch.inputs["image_grid_thw"]
    merged = (grid.prod(-1) // bb.processor.image_processor.merge_size**2).tolist()
    # the pair keeps one slot of the SAR image's placeholders; both images' pixels stay
    assert int((inputs["input_ids"][0] == img).sum()) == merged[1]
    assert int((inputs["input_ids"][1] == img).sum()) == merged[2]
    assert torch.equal(inputs["image_grid_thw"], grid)
    with torch.no_grad():
        out = ef(modalities=batch.modalities, **inputs)
    vocab = bb.model.config.text_config.vocab_size
    assert out.logits.shape == (2, inputs["input_ids"].shape[1], vocab)
    assert torch.isfinite(out.logits).all()
    assert ef.last.fused[0].grid == tuple(int(v) // 2 for v in grid[1, 1:])
    if mode == "train":
        assert torch.isfinite(out.loss)


# -- masks --------------------------------------------------------------------------------


def _seen_hw(bb: Any, h: int, w: int) -> tuple[int, int]:
    """The transformers image processor's resized size (its own fields, not the collator's)."""
    ip = bb.processor.image_processor
    factor = ip.patch_size * ip.merge_size
    return smart_resize(h, w, factor, ip.size["shortest_edge"], ip.size["longest_edge"])


def test_masks_come_at_the_size_the_model_sees_their_image(bb: Any, root: Path) -> None:
    masks = [
        Mask(label="field", image=1, path="masks/ids.png", instance=1),
        Mask(label="pond", image=1, path="masks/binary.png"),
    ]
    recs = [
        _record("plain", [("images/opt.tif", "optical")]),
        _record(
            "seg", [("images/opt.tif", "optical"), ("images/rect.tif", "optical")], masks=masks
        ),
    ]
    assert Collator(bb, root)(recs).masks == [None, None]  # read only when asked
    batch = Collator(bb, root, read_masks=True)(recs)
    assert batch.masks[0] is None and batch.mask_images == [None, 2]
    m = batch.masks[1]
    h, w = _seen_hw(bb, 50, 70)
    assert (h, w) != (50, 70)  # the processor resizes this chip
    assert m.shape == (2, h, w) and m.dtype == bool
    # the mask's image in the batch has exactly that many pixels (patches x patch size)
    grid = batch.inputs["image_grid_thw"][batch.mask_images[1]].tolist()
    p = bb.processor.image_processor.patch_size
    assert (grid[1] * p, grid[2] * p) == (h, w)
    # each object stays where it was: compare with the source masks resized by area
    for k, (y0, y1, x0, x1) in enumerate([(10, 30, 20, 50), (35, 50, 0, 14)]):
        ys, xs = np.nonzero(m[k])
        sy, sx = h / 50, w / 70
        assert abs(ys.min() - y0 * sy) <= 1 and abs(ys.max() + 1 - y1 * sy) <= 1
        assert abs(xs.min() - x0 * sx) <= 1 and abs(xs.max() + 1 - x1 * sx) <= 1
    assert not (m[0] & m[1]).any()


def test_masks_follow_a_sar_image_and_uncompressed_rle(bb: Any, root: Path) -> None:
    rle_mask = np.zeros((64, 64), dtype=bool)
    rle_mask[8:24, 40:60] = True
    flat = rle_mask.T.ravel()  # COCO RLE runs are column-major, starting with zeros
    edges = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    counts = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    rec = _record(
        "sar-seg",
        [("images/vv.tif", "sar")],
        masks=[Mask(image=0, rle={"size": [64, 64], "counts": counts})],
    )
    batch = Collator(bb, root, read_masks=True)([rec])
    assert batch.ids == ["sar-seg"] and batch.mask_images == [0]
    h, w = _seen_hw(bb, 64, 64)
    expected = Image.fromarray(rle_mask.astype(np.uint8) * 255).resize((w, h), Image.BOX)
    assert np.array_equal(batch.masks[0][0], np.asarray(expected) >= 128)


def test_bad_masks_are_counted_and_the_sample_left_out(
    bb: Any, root: Path, tmp_path: Path, write_geotiff: Callable[..., Path]
) -> None:
    write_geotiff(tmp_path / "outside.tif", data=np.ones((1, 50, 70), dtype=np.uint8))
    (root / "masks/link.tif").symlink_to(tmp_path / "outside.tif")
    one = [("images/rect.tif", "optical")]
    two = [("images/rect.tif", "optical"), ("images/vv.tif", "sar")]
    recs = [
        _record("ok", one, masks=[Mask(path="masks/binary.png")]),
        _record("corrupt", one, masks=[Mask(path="masks/corrupt.png")]),
        _record("missing", one, masks=[Mask(path="masks/nope.png")]),
        _record("size", one, masks=[Mask(path="masks/small.png")]),
        _record("rgb", one, masks=[Mask(path="images/rect.tif")]),
        _record("compressed", one, masks=[Mask(rle={"size": [50, 70], "counts": "a1b2"})]),
        _record("runs", one, masks=[Mask(rle={"size": [50, 70], "counts": [5, 3]})]),
        _record("escape", one, masks=[Mask(path="masks/link.tif")]),
        _record(
            "two",
            two,
            masks=[Mask(image=0, path="masks/binary.png"), Mask(image=1, path="masks/binary.png")],
        ),
    ]
    batch = Collator(bb, root, read_masks=True)(recs)
    assert batch.ids == ["ok"] and batch.ledger.balanced
    assert dict(batch.ledger.failed) == {"unreadable_mask": 6, "path_escape": 1, "mask_image": 1}
    messages = {rid: msg for rid, _, msg in batch.failures}
    assert "20x20" in messages["size"] and "50" in messages["size"]
    assert "uncompressed" in messages["compressed"]
    with pytest.raises(SampleError) as err:
        Collator(bb, root, read_masks=True, on_error="raise")([recs[1]])
    assert err.value.reason == "unreadable_mask"


def test_a_synthetic_sar_scene_collates_with_its_masks(bb: Any, tmp_path: Path) -> None:
    out = tmp_path / "synth"
    generate_dataset(out, SynthConfig(n_scenes=3, size_px=64, views=("sar",), seed=5))
    recs = [r for r in read_records(out / "records.jsonl", root=out).records if r.masks][:4]
    if not recs:
        pytest.skip("this seed drew no scene with labelled objects")
    assert all(r.images[0].modality == "sar" and "sar_scaling" in r.meta for r in recs)
    batch = Collator(bb, out, read_masks=True)(recs)
    assert batch.ledger.ok == len(recs), batch.failures
    assert batch.modalities == [["sar"]] * len(recs)
    h, w = _seen_hw(bb, 64, 64)
    for rec, m in zip(recs, batch.masks, strict=True):
        assert m is not None and m.shape == (len(rec.masks), h, w) and m.any()
