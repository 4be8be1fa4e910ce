"""``data.pixel_format: uint8``: SFT on packed pixels trains exactly as on float32 ones."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from earthvlm.data.collate import Collator
from earthvlm.train import TrainConfig, sft, train
from earthvlm.train.config import dump_config, load_config

Make = Callable[..., TrainConfig]


def test_packed_pixels_train_to_the_same_losses(
    tiny_config: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[torch.dtype] = []

    class Spy(Collator):
        def __call__(self, records):  # type: ignore[no-untyped-def]
            batch = super().__call__(records)
            seen.append(batch.inputs["pixel_values"].dtype)
            return batch

    monkeypatch.setattr(sft, "Collator", Spy)
    steps = ("optim.max_steps=2", "optim.batch_size=4", "optim.grad_accum=1")
    full = train(tiny_config(*steps, "name=float32"))
    assert set(seen) == {torch.float32}
    seen.clear()
    packed = train(tiny_config(*steps, "name=uint8", "data.pixel_format=uint8"))
    assert set(seen) == {torch.uint8}
    assert full.finished and packed.finished
    keys = ("loss", "loss_vlm", "loss_nll", "grad_norm")
    assert [[r[k] for k in keys] for r in packed.metrics] == [
        [r[k] for k in keys] for r in full.metrics
    ]
    # the field is saved with the run and read back
    saved = load_config(packed.run_dir / "config.yaml")
    assert saved.data.pixel_format == "uint8"
    assert "pixel_format: uint8" in dump_config(saved)


def test_a_bad_pixel_format_names_the_field(tiny_config: Make) -> None:
    with pytest.raises(ValueError, match=r"data\.pixel_format='fp8'.*'float32', 'uint8'"):
        tiny_config("data.pixel_format=fp8")


def test_a_fused_segmentation_run_trains_the_same_on_packed_pixels(tmp_path) -> None:
    from earthvlm.synth.fusion_world import WorldConfig, write_world
    from earthvlm.train.config import apply_overrides, config_from_dict

    world = WorldConfig(n_scenes=4, size_px=64, cloud_prob=0.5, seed=1, layout="scene")
    write_world(tmp_path / "world", world)
    runs = []
    for fmt in ("float32", "uint8"):
        data = {
            "stage": 2, "name": fmt, "output_dir": str(tmp_path / "runs"), "progress": False,
            "data": {"records": str(tmp_path / "world" / "records.jsonl"), "sampler": "shuffle",
                     "max_length": 512},
            "adapter": {"kind": "cshlora", "r": 4, "alpha": 8.0},
            "fusion": {"method": "hca"}, "seg": {"dim": 32, "heads": 2},
            "optim": {"lr": 2e-2, "batch_size": 6, "grad_accum": 1, "max_steps": 2,
                      "warmup_ratio": 0.0},
        }  # fmt: skip
        runs.append(train(config_from_dict(apply_overrides(data, [f"data.pixel_format={fmt}"]))))
    full, packed = runs
    keys = ("loss", "loss_seg", "fusion_w_optical")
    assert [[r.get(k) for k in keys] for r in packed.metrics] == [
        [r.get(k) for k in keys] for r in full.metrics
    ]
    assert any(r.get("fusion_w_optical") is not None for r in packed.metrics)  # pairs fused
