"""Fusion and referring segmentation through the SFT loop: config sections, the wrapped
model, losses, checkpoints (``modules.safetensors``) and loading for evaluation."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from earthvlm.data.collate import Collator
from earthvlm.data.jsonl import read_records
from earthvlm.errors import EarthVLMError
from earthvlm.eval.choice import ChoiceScorer
from earthvlm.models import EarthVLM
from earthvlm.models.fusion import EarthFusion
from earthvlm.models.saved import MODULES_FILE
from earthvlm.models.seg import EarthSeg, SegOutput
from earthvlm.synth.fusion_world import WorldConfig, write_world
from earthvlm.train.config import TrainConfig, apply_overrides, config_from_dict
from earthvlm.train.params import param_groups
from earthvlm.train.sft import model_inputs, train


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fusion_world")
    write_world(out, WorldConfig(n_scenes=8, size_px=64, cloud_prob=0.5, seed=1, layout="scene"))
    return out / "records.jsonl"


@pytest.fixture
def make(world: Path, tmp_path: Path) -> Callable[..., TrainConfig]:
    def make(*overrides: str, **sections: Any) -> TrainConfig:
        data: dict[str, Any] = {
            "stage": 2, "name": "run", "output_dir": str(tmp_path / "runs"), "progress": False,
            "data": {"records": str(world), "sampler": "shuffle", "max_length": 512},
            "adapter": {"kind": "cshlora", "r": 4, "alpha": 8.0},
            "fusion": {"method": "hca"},
            "seg": {"dim": 32, "heads": 2},
            "optim": {"lr": 2e-2, "batch_size": 6, "grad_accum": 1, "max_steps": 3,
                      "warmup_ratio": 0.0},
        }  # fmt: skip
        data.update(sections)
        return config_from_dict(apply_overrides(data, list(overrides)))

    return make


def test_sections_parse_and_name_the_bad_field(make: Callable[..., TrainConfig]) -> None:
    cfg = make("fusion.method=cosine", "seg.loss_weight=0.5")
    assert cfg.fusion is not None and cfg.fusion.build(64).method == "cosine"
    assert cfg.seg is not None and cfg.seg.loss_weight == 0.5
    assert make(fusion=None, seg=None).fusion is None
    with pytest.raises(ValueError, match=r"fusion\.method .*did you mean 'hca'"):
        make("fusion.method=hcaa")
    with pytest.raises(ValueError, match=r"seg\.dim=30 must be a multiple of seg\.heads=4"):
        make("seg.dim=30", "seg.heads=4")
    with pytest.raises(ValueError, match=r"seg\.kind=sam needs seg\.weights_path"):
        make("seg.kind=sam")
    # fusion or seg alone is something to train on a frozen backbone
    make("adapter.kind=none", "adapter.sseu=false")


def test_build_model_wraps_and_freezes(make: Callable[..., TrainConfig]) -> None:
    parts = EarthVLM.build(make().recipe)
    assert isinstance(parts.fusion, EarthFusion) and isinstance(parts.seg, EarthSeg)
    assert parts.seg.net is parts.fusion and parts.scale is not None
    assert parts.scale.fusion is parts.fusion  # gates read the fusion's groups
    trainable = {n for n, p in parts.named_parameters() if p.requires_grad}
    assert any("fusion_lambda_logit" in n for n in trainable)
    assert any("seg_query" in n for n in trainable)
    assert any("cshlora_" in n for n in trainable)
    assert not any("visual" in n for n in trainable)  # the backbone stays frozen
    names = {g["name"] for g in param_groups(make(), parts)}
    assert {"adapter", "fusion", "seg", "seg_token", "sseu"} <= names
    emb = [g for g in param_groups(make(), parts) if g["name"] == "seg_token"]
    assert all(g["weight_decay"] == 0.0 for g in emb)  # frozen rows must not decay


def test_a_fused_segmentation_run_trains_saves_and_loads(
    make: Callable[..., TrainConfig], world: Path
) -> None:
    cfg = make()
    start = EarthVLM.build(cfg.recipe)
    emb0 = start.backbone.model.get_input_embeddings().weight.detach().clone()
    seg_id = start.seg_token_id
    result = train(cfg)
    assert result.finished
    rows = result.metrics
    assert all(math.isfinite(r["loss"]) and r["loss_seg"] > 0 for r in rows)
    weights = [r["fusion_w_optical"] for r in rows if "fusion_w_optical" in r]
    assert weights and all(0.0 < w < 1.0 for w in weights)  # steps with a fused pair
    ckpt = result.checkpoint
    assert ckpt is not None
    with safe_open(str(ckpt / MODULES_FILE), framework="pt") as f:
        keys = set(f.keys())
        meta = f.metadata()
    assert "fusion.fusion_lambda_logit" in keys and "seg.seg_token.embedding" in keys
    assert any(k.startswith("seg.seg_query") for k in keys)
    assert json.loads(meta["provenance"])["config"]["fusion"]["method"] == "hca"
    assert int(meta["seg_token_id"]) == seg_id

    tm = EarthVLM.load(result.run_dir)
    assert tm.fusion_method == "hca" and tm.segments
    saved = load_file(str(ckpt / MODULES_FILE))
    lam = tm.fusion.fusion.fusion_lambda_logit
    assert torch.equal(lam, saved["fusion.fusion_lambda_logit"])
    assert float(lam) != 0.0  # lambda received gradients (initial logit(0.5) = 0)
    emb1 = tm.hf_model.get_input_embeddings().weight
    changed = (emb1 - emb0).abs().sum(1) > 0
    assert changed.nonzero().flatten().tolist() == [seg_id]  # only the [SEG] row learned

    # evaluation: a fused batch with a [SEG] answer gets a mask at the target's size
    recs = [r for r in read_records(world).records if r.meta["setting"] == "fused"]
    seg_rec = next(r for r in recs if r.task == "segmentation" and r.meta["present"])
    mcq_rec = next(r for r in recs if r.task == "mcq")
    batch = tm.collator(world.parent)([seg_rec])
    out = tm.run(tm.model_inputs(batch), batch.gsds, modalities=batch.modalities,
                 mask_images=batch.mask_images)  # fmt: skip
    assert isinstance(out, SegOutput)
    assert out.masks[0] is not None and out.masks[0].shape == (1, 64, 64)
    with pytest.raises(EarthVLMError, match="modalities"):
        tm.run(tm.model_inputs(batch), batch.gsds)
    gen = Collator(tm.backbone, world.parent, mode="generate")([seg_rec, mcq_rec])
    seqs, gen_masks = tm.generate_batch(gen, max_new_tokens=3, do_sample=False)
    assert seqs.shape[0] == 2 and gen_masks is not None and len(gen_masks) == 2
    width = tm.model_inputs(gen)["input_ids"].shape[1]  # the pair collapsed to one slot
    for row, m in zip(seqs[:, width:], gen_masks, strict=True):
        said_seg = bool((row == tm.seg_token_id).any())
        assert (m is not None) == said_seg  # a mask exactly where [SEG] was generated
    scorer = ChoiceScorer(tm, world.parent, mcq_rec.meta["candidates"])
    ll = scorer.logliks([mcq_rec], [None])
    assert ll.shape == (1, 2) and bool((ll < 0).all())


def test_the_mask_loss_needs_seg_in_the_answer(
    make: Callable[..., TrainConfig], world: Path
) -> None:
    parts = EarthVLM.build(make().recipe)
    recs = read_records(world).records
    mcq = next(r for r in recs if r.task == "mcq" and r.meta["setting"] == "fused")
    seg = next(
        r
        for r in recs
        if r.task == "segmentation" and r.meta["present"] and r.meta["setting"] == "sar"
    )
    batch = Collator(parts.backbone, world.parent, read_masks=True)([mcq, seg])
    inputs, extra = model_inputs(parts, batch, "cpu")
    assert extra["modalities"] == [["optical", "sar"], ["sar"]]
    assert extra["masks"][0] is None and extra["masks"][1].shape == (1, 64, 64)
    img = parts.backbone.model.config.image_token_id
    # the pair sits in one slot of the SAR image's 4 tokens, the SAR-only sample in one
    assert (inputs["input_ids"] == img).sum(1).tolist() == [4, 4]
    losses = parts(inputs, batch.gsds, seed=0, **extra)
    assert losses.seg > 0 and losses.vlm > 0
    losses.seg.backward()
    assert parts.fusion.fusion.fusion_lambda_logit.grad is not None


def test_fused_pairs_take_the_sar_views_gate_and_keep_both_gsds(
    make: Callable[..., TrainConfig], world: Path
) -> None:
    from earthvlm.scale.gsd import GSD, GSDSource

    parts = EarthVLM.build(make(seg=None).recipe)
    rec = next(r for r in read_records(world).records if r.meta["setting"] == "fused")
    batch = Collator(parts.backbone, world.parent)([rec])
    inputs, extra = model_inputs(parts, batch, "cpu")
    gsds = [GSD.exact(0.5, GSDSource.USER), GSD.exact(10.0, GSDSource.USER)]
    with torch.no_grad():
        parts.run(inputs, gsds, mode="infer", **extra)
    last = parts.scale.last
    assert torch.allclose(last.s_image, torch.tensor([math.log10(0.5), 1.0]))
    s_tok = parts.scale.context.s
    img = inputs["input_ids"][0] == parts.backbone.model.config.image_token_id
    assert torch.allclose(s_tok[0][img], torch.ones(int(img.sum())))  # the SAR view's GSD


def test_concat_keeps_two_slots_and_a_missing_modules_file_is_an_error(
    make: Callable[..., TrainConfig], world: Path, tmp_path: Path
) -> None:
    parts = EarthVLM.build(make("fusion.method=concat", seg=None).recipe)
    rec = next(r for r in read_records(world).records if r.meta["setting"] == "fused")
    batch = Collator(parts.backbone, world.parent)([rec])
    inputs, extra = model_inputs(parts, batch, "cpu")
    img = parts.backbone.model.config.image_token_id
    assert int((inputs["input_ids"] == img).sum()) == 8  # both views, 4 tokens each
    losses = parts(inputs, batch.gsds, seed=0, **extra)
    assert torch.isfinite(losses.vlm)
    empty = tmp_path / "ckpt"
    (empty / "adapter").mkdir(parents=True)
    with pytest.raises(EarthVLMError, match=r"modules\.safetensors: missing"):
        from earthvlm.models.saved import load_modules

        load_modules(parts, empty)


def test_a_rerun_writes_the_same_bytes(make: Callable[..., TrainConfig]) -> None:
    # modules.safetensors has four metadata keys, which safetensors writes in hash order
    import shutil

    first = train(make("optim.max_steps=1")).checkpoint
    assert first is not None
    saved = {f.relative_to(first): f.read_bytes() for f in first.rglob("*.safetensors")}
    assert Path(MODULES_FILE) in saved
    shutil.rmtree(first.parent)
    again = train(make("optim.max_steps=1")).checkpoint
    assert again == first
    for rel, data in saved.items():
        assert (again / rel).read_bytes() == data, rel
