"""The SFT loop end to end on a tiny Qwen3-VL and synthetic chips (a few CPU seconds each)."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from earthvlm.adapters.cshlora import gated_layers, load_cshlora
from earthvlm.data.jsonl import read_records, write_records
from earthvlm.errors import EarthVLMError
from earthvlm.models import EarthVLM, build_tiny_backbone, load_backbone, save_backbone
from earthvlm.train import TrainConfig, train
from earthvlm.train.checkpoint import COMPLETE_FILE, latest_checkpoint
from earthvlm.train.metrics import read_metrics
from earthvlm.train.params import param_groups

Make = Callable[..., TrainConfig]


def _weights(ckpt: Path, kind: str) -> dict[str, torch.Tensor]:
    if kind in ("cshlora", "moelora"):
        return load_file(str(ckpt / "adapter" / "adapter.safetensors"))
    if kind == "lora":
        return load_file(str(ckpt / "adapter" / "adapter_model.safetensors"))
    return load_file(str(ckpt / "model" / "model.safetensors"))


def test_stage2_logs_the_joint_loss_and_saves_a_loadable_adapter(tiny_config: Make) -> None:
    cfg = tiny_config()
    result = train(cfg)
    assert result.finished and result.step == 6
    rows = read_metrics(cfg.run_dir)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    for r in rows:
        for key in ("loss", "loss_vlm", "loss_nll", "lambda", "lr", "grad_norm", "sseu_abs_err",
                    "gate_object", "gate_structure", "gate_semantic"):  # fmt: skip
            assert r[key] is not None, key
        # Eq. 4, averaged over micro-batches: L = L_VLM + lambda L_nll
        assert r["loss"] == pytest.approx(r["loss_vlm"] + r["lambda"] * r["loss_nll"], rel=1e-5)
        # at GSD of metres the object ranks (tau = 0) are mostly off, semantic ones on
        assert r["gate_object"] < r["gate_structure"] < r["gate_semantic"]
    assert [r["lambda"] for r in rows] == [0.3, 0.1, 0.1, 0.1, 0.1, 0.1]  # first 10% of 6
    assert rows[0]["lr"] < rows[1]["lr"] and rows[-1]["lr"] < rows[2]["lr"]  # warm-up, decay

    ckpt = result.checkpoint
    assert ckpt == cfg.run_dir / "checkpoint-6" and (ckpt / COMPLETE_FILE).is_file()
    assert (cfg.run_dir / "final").resolve() == ckpt.resolve()
    names = {p.name for p in ckpt.rglob("*")}
    assert {"adapter.safetensors", "earthvlm_adapter.json", "optimizer.safetensors",
            "rng.safetensors", "trainer_state.json"} <= names  # fmt: skip
    assert not [p for p in cfg.run_dir.rglob("*") if p.suffix in (".bin", ".pt", ".pkl")]

    # the adapter loads into a fresh backbone, with the SSE-U head as extra tensors
    fresh = build_tiny_backbone("qwen3_vl", "tiny", seed=0).model
    _, extra = load_cshlora(fresh, ckpt / "adapter")
    assert len(gated_layers(fresh)) == 14
    assert {"sseu.trunk.weight", "sseu.mu.bias", "sseu.logvar.weight"} <= set(extra)
    saved = _weights(ckpt, "cshlora")
    trained = {n: p for n, p in fresh.named_parameters() if "cshlora_" in n}
    torch.testing.assert_close(trained, {n: saved[n] for n in trained}, rtol=0, atol=0)
    # the frozen base did not move
    base = build_tiny_backbone("qwen3_vl", "tiny", seed=0).model.state_dict()
    for name, value in fresh.state_dict().items():
        plain = name.replace(".base_layer", "")
        if "cshlora_" not in name and plain in base:
            torch.testing.assert_close(value, base[plain], rtol=0, atol=0)


# 48 chips make 6 steps of 8 per epoch: runs of 8 steps cross an epoch boundary, before
# the interruption, after it, or exactly at it
@pytest.mark.parametrize(("kind", "stop"), [("cshlora", 6), ("lora", 3), ("stage1", 5),
                                            ("moelora", 7)])  # fmt: skip
def test_an_interrupted_run_resumes_to_the_same_weights_and_losses(
    tiny_config: Make, tmp_path: Path, kind: str, stop: int
) -> None:
    over = ["stage=1"] if kind == "stage1" else [f"adapter.kind={kind}"]
    if kind == "lora":
        over.append("adapter.sseu=false")
    over.append("optim.max_steps=8")
    whole = train(tiny_config(*over, output_dir=str(tmp_path / "whole")))
    first = train(tiny_config(*over, f"stop_after={stop}", output_dir=str(tmp_path / "split")))
    assert not first.finished and first.step == stop
    second = train(tiny_config(*over, output_dir=str(tmp_path / "split")))
    assert second.resumed_from == tmp_path / "split" / "run" / f"checkpoint-{stop}"
    assert second.finished and second.step == 8

    a, b = _weights(whole.checkpoint, kind), _weights(second.checkpoint, kind)
    assert a.keys() == b.keys() and a
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    rows_whole = read_metrics(whole.run_dir)
    rows_split = read_metrics(second.run_dir)
    assert [r["step"] for r in rows_split] == list(range(1, 9))
    for key in ("loss", "loss_vlm", "loss_nll", "lr", "grad_norm"):
        assert [r[key] for r in rows_split[stop:]] == [r[key] for r in rows_whole[stop:]], key
    assert [r["loss"] for r in second.metrics] == [r["loss"] for r in rows_whole[stop:]]


def test_only_complete_checkpoints_are_resumed_and_config_changes_are_refused(
    tiny_config: Make,
) -> None:
    cfg = tiny_config("stop_after=2")
    train(cfg)
    half = cfg.run_dir / "checkpoint-5"  # a crash mid-write: no COMPLETE marker
    (half / "adapter").mkdir(parents=True)
    assert latest_checkpoint(cfg.run_dir) == cfg.run_dir / "checkpoint-2"
    with pytest.raises(EarthVLMError, match=r"optim\.lr: 0\.005 -> 0\.001"):
        train(tiny_config("optim.lr=1e-3"))
    with pytest.raises(EarthVLMError, match="earlier run"):
        train(tiny_config("resume=false"))
    result = train(tiny_config())  # stop_after may change
    assert result.resumed_from == cfg.run_dir / "checkpoint-2" and result.finished


def test_a_damaged_newest_checkpoint_is_skipped_on_resume_and_on_load(tiny_config: Make) -> None:
    from rich.console import Console

    from earthvlm.models.saved import CorruptCheckpointError, resolve_run

    cfg = tiny_config("stop_after=4", "save_every=2")
    train(cfg)
    weights = cfg.run_dir / "checkpoint-4" / "adapter" / "adapter.safetensors"
    weights.write_bytes(weights.read_bytes()[:-5])  # COMPLETE is still there
    # loading the run for evaluation: the one before, with a warning naming the file
    with pytest.warns(UserWarning, match=r"adapter\.safetensors"):
        assert resolve_run(cfg.run_dir) == (cfg.run_dir, cfg.run_dir / "checkpoint-2")
    with pytest.raises(CorruptCheckpointError, match=r"adapter\.safetensors"):
        resolve_run(cfg.run_dir / "checkpoint-4")  # the one asked for: refused, named
    console = Console(record=True, width=400)
    result = train(tiny_config(), console=console)
    assert result.resumed_from == cfg.run_dir / "checkpoint-2" and result.finished
    out = console.export_text()
    assert "adapter.safetensors" in out and "not resuming from checkpoint-4" in out


def test_two_identical_runs_write_identical_bytes(tiny_config: Make, tmp_path: Path) -> None:
    runs = [
        train(tiny_config("optim.max_steps=2", output_dir=str(tmp_path / n))).checkpoint
        for n in ("a", "b")
    ]
    files = sorted(runs[0].rglob("*.safetensors"))
    assert {f.name for f in files} >= {"adapter.safetensors", "optimizer.safetensors"}
    for f in files:
        assert f.read_bytes() == (runs[1] / f.relative_to(runs[0])).read_bytes(), f.name


def test_a_checkpoint_written_before_a_config_field_existed_resumes(tiny_config: Make) -> None:
    """A field added to the config later (here ``data.pixel_format``, absent from the
    saved config) takes its default, which keeps the old behaviour: not a change."""
    from earthvlm.train import checkpoint as ckpt_io
    from earthvlm.train.sft import _config_changes, _with_defaults

    cfg = tiny_config("stop_after=2")
    train(cfg)
    state = ckpt_io.load_state(latest_checkpoint(cfg.run_dir))
    saved = state["config"]
    del saved["data"]["pixel_format"]
    assert _config_changes(saved, cfg.to_dict()) == ["data.pixel_format: None -> 'float32'"]
    assert _config_changes(_with_defaults(saved), cfg.to_dict()) == []
    saved["optim"]["lr"] = 0.5  # a real change is still one
    assert _config_changes(_with_defaults(saved), cfg.to_dict()) == ["optim.lr: 0.5 -> 0.005"]


def test_gradient_checkpointing_and_loader_workers_change_nothing(tiny_config: Make) -> None:
    checkpointed = EarthVLM.build(
        tiny_config("model.gradient_checkpointing=true").recipe
    ).backbone.model
    assert checkpointed.is_activation_checkpointing
    plain = train(tiny_config("optim.max_steps=2", "name=plain")).metrics
    ckpt = train(tiny_config("optim.max_steps=2", "name=gc", "model.gradient_checkpointing=true"))
    workers = train(tiny_config("optim.max_steps=2", "name=workers", "data.num_workers=2"))
    for key in ("loss", "loss_nll", "grad_norm"):
        assert [r[key] for r in ckpt.metrics] == [r[key] for r in plain], key
        assert [r[key] for r in workers.metrics] == [r[key] for r in plain], key


def test_a_short_stage2_run_lowers_the_loss(tiny_config: Make) -> None:
    result = train(tiny_config("optim.max_steps=20", "optim.batch_size=8"))
    losses = [r["loss"] for r in result.metrics]
    assert sum(losses[-4:]) / 4 < losses[0] - 0.3, losses


def test_stage1_trains_vision_projector_and_llm_at_their_learning_rates(
    tiny_config: Make,
) -> None:
    cfg = tiny_config("stage=1", "optim.lr=1e-3", "optim.vision_lr=1e-4", "optim.max_steps=2")
    parts = EarthVLM.build(cfg.recipe)
    groups = param_groups(cfg, parts)
    by_name: dict[str, int] = {}
    for g in groups:
        by_name[g["name"]] = by_name.get(g["name"], 0) + sum(p.numel() for p in g["params"])
        assert g["lr"] == {"vision": 1e-4, "llm_projector": 1e-3}[g["name"]]
    assert by_name["vision"] + by_name["llm_projector"] == parts.backbone.num_parameters()
    names = {id(p): n for n, p in parts.named_parameters()}
    vision = [names[id(p)] for g in groups if g["name"] == "vision" for p in g["params"]]
    assert vision and not any("merger" in n for n in vision)  # the projector is with the LLM

    result = train(cfg)
    bb = load_backbone(result.checkpoint / "model")
    before = build_tiny_backbone("qwen3_vl", "tiny", seed=0).model.state_dict()
    after = bb.model.state_dict()
    for key in ("model.visual.blocks.0.attn.qkv.weight", "model.visual.merger.linear_fc1.weight",
                "model.language_model.layers.0.mlp.up_proj.weight"):  # fmt: skip
        assert not torch.equal(before[key], after[key]), key


def test_none_adapter_trains_only_the_sseu_head(tiny_config: Make) -> None:
    cfg = tiny_config("adapter.kind=none", "optim.max_steps=2")
    parts = EarthVLM.build(cfg.recipe)
    groups = param_groups(cfg, parts)
    assert {g["name"] for g in groups} == {"sseu"}
    result = train(cfg)
    head = load_file(str(result.checkpoint / "sseu_head.safetensors"))
    assert "sseu.trunk.weight" in head


def test_failed_samples_are_counted_and_too_many_stop_the_run(
    tiny_config: Make, chips: Path, tmp_path: Path
) -> None:
    records = read_records(chips).records
    broken = [
        r.model_copy(
            update={"images": [r.images[0].model_copy(update={"path": "images/gone.tif"})]}
        )
        if i % 4 == 0
        else r
        for i, r in enumerate(records)
    ]
    path = tmp_path / "broken.jsonl"
    write_records(broken, path)
    data = {"records": str(path), "root": str(chips.parent)}
    with pytest.raises(EarthVLMError, match="samples failed"):
        train(tiny_config(data=data))
    result = train(tiny_config("data.max_failed_fraction=0.5", "resume=false", data=data))
    assert result.finished
    assert result.ledger.failed["missing_image"] > 0 and result.ledger.balanced
    summary = json.loads((result.run_dir / "run.json").read_text())
    assert summary["samples"]["failed"]["missing_image"] == result.ledger.failed["missing_image"]


@pytest.mark.skipif(
    importlib.util.find_spec("bitsandbytes") is not None, reason="bitsandbytes is installed"
)
def test_4bit_without_bitsandbytes_says_what_to_install(tiny_config: Make, tmp_path: Path) -> None:
    save_backbone(build_tiny_backbone("qwen3_vl", "tiny"), tmp_path / "base")
    cfg = tiny_config(f"model.path={tmp_path / 'base'}", "model.load_in_4bit=true")
    with pytest.raises(EarthVLMError, match="pip install"):
        train(cfg)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a GPU")
def test_bf16_on_cpu_is_a_clear_error(tiny_config: Make) -> None:
    with pytest.raises(EarthVLMError, match="bf16"):
        train(tiny_config("precision=bf16"))


def test_missing_records_without_a_synth_recipe_say_what_to_do(tiny_config: Make) -> None:
    with pytest.raises(EarthVLMError, match=r"data\.synth"):
        train(tiny_config("data.records=/nonexistent/records.jsonl"))


def test_gsd_as_text_puts_each_images_gsd_in_the_prompt(tmp_path) -> None:
    from earthvlm.data.jsonl import write_records
    from earthvlm.data.record import ImagePart, ImageRef, Message, Record, TextPart
    from earthvlm.scale.gsd import GSD
    from earthvlm.train.config import DataConfig
    from earthvlm.train.data import read_training_records

    rec = Record(
        id="a", task="vqa", source="t",
        images=[ImageRef(path="a.tif", gsd=GSD.exact(0.3))],
        messages=[
            Message(role="user", content=[ImagePart(index=0), TextPart(text="What is it?")]),
            Message(role="assistant", content="car"),
        ],
    )  # fmt: skip
    write_records([rec], tmp_path / "r.jsonl")
    plain = read_training_records(DataConfig(records=str(tmp_path / "r.jsonl")))
    b3 = read_training_records(DataConfig(records=str(tmp_path / "r.jsonl"), gsd_as_text=True))
    assert plain.records[0].messages[0].text() == "What is it?"
    assert "0.3 m per pixel" in b3.records[0].messages[0].text()
