"""Multispectral views through the collator: three-band frames shown as consecutive
images (EarthMind sec. 3.1, App. H), band order and scaling recorded, one GSD per view."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from earthvlm.data.collate import Collator
from earthvlm.data.record import ImagePart, ImageRef, Message, Record, TextPart
from earthvlm.data.sensors import ReflectanceScale, multispectral_frames
from earthvlm.fusion import FusionConfig, build_fusion
from earthvlm.models import build_tiny_backbone
from earthvlm.models.fusion import EarthFusion
from earthvlm.scale.gsd import GSD

BANDS = ["B02", "B03", "B04", "B08", "B11"]
DN = np.random.default_rng(3).integers(0, 6000, (5, 64, 64)).astype(np.uint16)


@pytest.fixture(scope="module")
def bb() -> Any:
    return build_tiny_backbone("qwen3_vl", "tiny", seed=0)


@pytest.fixture
def root(tmp_path: Path, write_geotiff: Callable[..., Path]) -> Path:
    (tmp_path / "images").mkdir()
    write_geotiff(tmp_path / "images/ms.tif", data=DN, dtype="uint16")
    write_geotiff(tmp_path / "images/ms8.tif", data=(DN // 40).astype(np.uint8))
    rgb = np.random.default_rng(4).integers(0, 255, (3, 64, 64), dtype=np.uint8)
    write_geotiff(tmp_path / "images/opt.tif", data=rgb)
    write_geotiff(tmp_path / "images/vv.tif", data=rgb[:1])
    return tmp_path


def _record(rid: str, images: list[tuple[str, str, float]], meta: dict | None = None) -> Record:
    return Record(
        id=rid,
        task="vqa",
        source="test",
        images=[
            ImageRef(
                path=p,
                modality=m,
                gsd=GSD.exact(g),  # type: ignore[arg-type]
                bands=BANDS if m == "multispectral" else None,
            )
            for p, m, g in images
        ],
        messages=[
            Message(
                role="user",
                content=[
                    *(ImagePart(index=i) for i in range(len(images))),
                    TextPart(text="Is the field irrigated?"),
                ],
            ),
            Message(role="assistant", content="yes"),
        ],
        meta=meta or {},
    )


def test_bands_become_three_band_frames_shown_as_images(bb: Any, root: Path) -> None:
    c = Collator(bb, root)
    batch = c([_record("ms", [("images/ms.tif", "multispectral", 10.0)])])
    assert batch.ids == ["ms"]
    # 5 bands -> 2 frames (B02 B03 B04 | B08 B11 0): two images, each 2 x 2 merged tokens
    assert batch.modalities == [["multispectral", "multispectral"]]
    assert batch.inputs["image_grid_thw"].tolist() == [[1, 4, 4], [1, 4, 4]]
    img = bb.model.config.image_token_id
    assert int((batch.inputs["input_ids"] == img).sum()) == 8
    assert [g.point_m for g in batch.gsds] == [10.0, 10.0]  # every frame keeps the view's GSD
    (layout,) = batch.layouts[0]
    assert layout["frame_bands"] == [["B02", "B03", "B04"], ["B08", "B11", None]]
    assert layout["scaling"] == ReflectanceScale().formula() and layout["units"] == "dn"
    frames, _ = c.load_frames(ImageRef(path="images/ms.tif", modality="multispectral",
                                       bands=BANDS))  # fmt: skip
    expected = multispectral_frames(DN, bands=BANDS).frames
    assert np.array_equal(np.asarray(frames[1]), expected[1])
    assert not np.asarray(frames[1])[..., 2].any()  # the short frame is zero-padded


def test_order_grouping_and_scale_come_from_the_record(bb: Any, root: Path) -> None:
    meta = {"ms_order": ["B04", "B03", "B02"], "ms_grouping": "single_band",
            "ms_scale": {"dn_per_unit": 10000, "max_reflectance": 0.3}}  # fmt: skip
    batch = Collator(bb, root)([_record("ms", [("images/ms.tif", "multispectral", 10.0)], meta)])
    (layout,) = batch.layouts[0]
    assert layout["frame_bands"] == [["B04", None, None], ["B03", None, None],
                                     ["B02", None, None]]  # fmt: skip
    assert layout["grouping"] == "single_band" and "0.3" in layout["scaling"]
    assert batch.inputs["image_grid_thw"].shape[0] == 3


def test_bad_multispectral_records_are_counted_with_reasons(bb: Any, root: Path) -> None:
    recs = [
        _record("u8", [("images/ms8.tif", "multispectral", 10.0)]),  # no scale for 8 bit
        _record(
            "u8ok",
            [("images/ms8.tif", "multispectral", 10.0)],
            {"ms_scale": {"dn_per_unit": 255, "max_reflectance": 1.0}},
        ),
        _record("order", [("images/ms.tif", "multispectral", 10.0)], {"ms_order": ["B99"]}),
        _record("fill", [("images/ms.tif", "multispectral", 10.0)], {"ms_fill": "mirror"}),
        _record("scale", [("images/ms.tif", "multispectral", 10.0)], {"ms_scale": {"gain": 2}}),
    ]
    batch = Collator(bb, root)(recs)
    assert batch.ids == ["u8ok"] and batch.ledger.balanced
    reasons = {rid: (reason, msg) for rid, reason, msg in batch.failures}
    assert {r for r, _ in reasons.values()} == {"unsupported_image"}
    assert "ms_scale" in reasons["u8"][1] and "B99" in reasons["order"][1]
    assert "mirror" in reasons["fill"][1] and "gain" in reasons["scale"][1]


def test_frames_pass_through_fusion_next_to_a_fused_pair(bb: Any, root: Path) -> None:
    rec = _record(
        "all",
        [
            ("images/opt.tif", "optical", 0.5),
            ("images/vv.tif", "sar", 5.0),
            ("images/ms.tif", "multispectral", 10.0),
        ],
        {"sar_units": "uint8_db"},
    )
    batch = Collator(bb, root)([rec])
    assert batch.modalities == [["optical", "sar", "multispectral", "multispectral"]]
    assert [g.point_m for g in batch.gsds] == [0.5, 5.0, 10.0, 10.0]
    hidden = bb.model.config.text_config.hidden_size
    ef = EarthFusion(bb.model, build_fusion(FusionConfig(dim=hidden)))
    inputs = ef.collapse_pairs(dict(batch.inputs), modalities=batch.modalities)
    out = ef(modalities=batch.modalities, **inputs)
    assert out.logits.shape[1] == inputs["input_ids"].shape[1]
    kinds = [(g.is_pair, g.images) for g in ef.last.groups]
    assert kinds == [(True, (0, 1)), (False, (2,)), (False, (3,))]
