"""EarthVLM: one model for every path, and everything a user has loads into it.

The folders here are written by the ecosystem's own writers (transformers'
``save_pretrained``, peft's ``save_pretrained``), not by earthvlm's, so the tests prove
that the formats people already have are read.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from earthvlm.adapters.base import inject, save_adapter
from earthvlm.adapters.cshlora import CSHLoRAConfig
from earthvlm.adapters.cshlora.model import METHOD as CSHLORA
from earthvlm.cli.ask import _load_model as ask_load
from earthvlm.cli.evaluate import eval_command
from earthvlm.data.collate import Collator
from earthvlm.data.jsonl import read_records
from earthvlm.errors import EarthVLMError
from earthvlm.eval.runner import generate_answers
from earthvlm.models import EarthVLM, build_tiny_backbone
from earthvlm.models.saved import BASE_FILE, detect, load_model
from earthvlm.scale.gsd import GSD, GSDSource
from earthvlm.synth.dataset import SynthConfig, generate_dataset
from earthvlm.train import train
from earthvlm.train.config import config_from_dict
from earthvlm.uhr.loop import greedy_ids

IDS = torch.tensor([[1, 5, 9, 13, 17, 21]])


def hf_folder(out: Path, family: str) -> Path:
    """A tiny Qwen-VL written by transformers' own ``save_pretrained`` (model and
    processor), as a downloaded checkpoint is laid out."""
    bb = build_tiny_backbone(family, seed=3)
    bb.model.save_pretrained(out)
    bb.processor.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def chips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("chips")
    generate_dataset(out, SynthConfig(n_scenes=0, n_chips=6, chip_size_px=64, seed=2))
    return out


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen2_5_vl"])
def test_a_plain_hugging_face_folder_loads_zero_shot(tmp_path: Path, family: str) -> None:
    folder = hf_folder(tmp_path / family, family)
    assert detect(folder) == "hf"
    model = load_model(folder)
    assert (model.origin, model.variant, model.takes_gsd) == ("hf", "zero-shot", False)
    assert not any(p.requires_grad for p in model.parameters())
    bb = build_tiny_backbone(family, seed=3)
    with torch.no_grad():
        want = bb.model(input_ids=IDS).logits
    torch.testing.assert_close(model.logits({"input_ids": IDS}, []), want, rtol=0, atol=0)
    bf16 = load_model(folder, dtype="bf16")
    assert next(bf16.hf_model.parameters()).dtype == torch.bfloat16


def test_another_architecture_is_refused_naming_the_families(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava"}))
    with pytest.raises(EarthVLMError, match=r"llava.*qwen3_vl.*qwen2_5_vl"):
        load_model(tmp_path)
    with pytest.raises(EarthVLMError, match="not a model folder"):
        load_model(tmp_path / "..")  # a folder of something else entirely


def test_a_peft_lora_folder_loads_over_its_base(tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    base = hf_folder(tmp_path / "base", "qwen3_vl")
    bb = build_tiny_backbone("qwen3_vl", seed=3)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    peft_model = get_peft_model(bb.model, cfg)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # a non-zero delta, so a dropped adapter shows
        want = peft_model(input_ids=IDS).logits
    peft_model.peft_config["default"].base_model_name_or_path = str(base)
    peft_model.save_pretrained(tmp_path / "lora")
    assert detect(tmp_path / "lora") == "peft"
    model = load_model(tmp_path / "lora")
    assert (model.origin, model.variant) == ("peft", "lora")
    torch.testing.assert_close(model.logits({"input_ids": IDS}, []), want)
    moved = tmp_path / "elsewhere"
    shutil.move(base, moved)
    with pytest.raises(EarthVLMError, match="--base"):
        load_model(tmp_path / "lora")
    again = load_model(tmp_path / "lora", base=moved)
    torch.testing.assert_close(again.logits({"input_ids": IDS}, []), want)


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen2_5_vl"])
def test_a_cshlora_folder_loads_over_a_base_with_its_gates(
    tmp_path: Path, chips: Path, family: str
) -> None:
    from earthvlm.models.scaleearth import ScaleEarth

    base = hf_folder(tmp_path / "base", family)
    bb = build_tiny_backbone(family, seed=3)
    ctx = inject(bb.model, CSHLORA, CSHLoRAConfig(r=4))
    with torch.no_grad():
        for name, p in bb.model.named_parameters():
            if "cshlora_B" in name:
                p.normal_(0, 0.5)  # a non-zero delta, so dropped gates show
    save_adapter(bb.model, tmp_path / "adapter")
    assert detect(tmp_path / "adapter") == "adapter"
    with pytest.raises(EarthVLMError, match="--base"):
        load_model(tmp_path / "adapter")  # no base recorded, none given
    model = load_model(tmp_path / "adapter", base=base)
    assert (model.origin, model.variant, model.takes_gsd) == ("adapter", "cshlora", True)
    reference = ScaleEarth(bb.model, ctx, None).eval()
    records = read_records(chips / "records.jsonl", root=chips).records[:2]
    batch = Collator(bb, chips, mode="generate")(records)
    got = {}
    for gsd_m in (0.3, 10.0):
        gsds = [GSD.exact(gsd_m, GSDSource.USER, "test")] * 2
        with torch.no_grad():
            want = reference.call(
                bb.model, gsd=gsds, scale_mode="infer", use_cache=False, **batch.inputs
            ).logits
        got[gsd_m] = model.logits(batch.inputs, gsds)
        torch.testing.assert_close(got[gsd_m], want, rtol=0, atol=0)
    assert not torch.equal(got[0.3], got[10.0])  # the gates reach the loaded layers


@pytest.fixture(scope="module")
def moved_runs(chips: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stage-2 CS-HLoRA run over a saved base given by a relative path."""
    import os

    home = tmp_path_factory.mktemp("project")
    base = hf_folder(home / "base", "qwen3_vl")
    cwd = Path.cwd()
    os.chdir(home)
    try:
        cfg = config_from_dict({
            "stage": 2, "name": "cs", "output_dir": "runs", "progress": False,
            "model": {"path": "base"},
            "data": {"records": str(chips / "records.jsonl"), "exact_share": 1.0,
                     "min_bins": 2, "max_length": 256},
            "adapter": {"kind": "cshlora", "r": 4, "alpha": 8.0},
            "optim": {"lr": 5e-3, "head_lr": 5e-3, "batch_size": 2, "grad_accum": 1,
                      "max_steps": 2, "warmup_ratio": 0.0},
        })  # fmt: skip
        assert train(cfg).finished
    finally:
        os.chdir(cwd)
    assert base.is_dir() and (home / "runs" / "cs" / BASE_FILE).is_file()
    return home


def test_a_moved_run_finds_its_base_and_says_how(moved_runs: Path, tmp_path: Path) -> None:
    # the run and its base move together: the path relative to the run folder finds it
    project = tmp_path / "moved"
    shutil.copytree(moved_runs, project)
    together = load_model(project / "runs" / "cs")
    assert Path(together.recipe.model.path).resolve() == (project / "base").resolve()
    # the run moves alone: the absolute path recorded at training finds the base
    alone = tmp_path / "alone"
    shutil.copytree(moved_runs / "runs" / "cs", alone)
    assert Path(load_model(alone).recipe.model.path) == (moved_runs / "base").resolve()
    # the base is gone: the error lists each path tried and the fix
    shutil.rmtree(project / "base")
    (project / "runs" / "cs" / BASE_FILE).unlink()
    with pytest.raises(EarthVLMError, match=r"as given.*--base"):
        load_model(project / "runs" / "cs")


def test_one_run_answers_the_same_through_every_path(moved_runs: Path, chips: Path) -> None:
    """Train-time forward, ``eval``, ``ask`` and the zoom loop's decoding give bit-identical
    logits and answers for the same trained run."""
    run = moved_runs / "runs" / "cs"
    records = read_records(chips / "records.jsonl", root=chips).records[:3]
    import os

    cwd = Path.cwd()
    os.chdir(moved_runs)  # the config's relative base path, as at training time
    try:
        from earthvlm.models.saved import latest_checkpoint, read_recipe

        recipe, max_length = read_recipe(run)
        trained = EarthVLM.build(recipe, weights_from=latest_checkpoint(run)).inference()
        evaluated = EarthVLM.load(run)
        asked = ask_load(run)
    finally:
        os.chdir(cwd)
    collator = Collator(trained.backbone, chips, mode="train", max_length=max_length)
    batch = collator(records)
    inputs = trained.model_inputs(batch)
    with torch.no_grad():
        train_time = trained.run(inputs, batch.gsds, mode="infer").logits
    for model in (evaluated, asked):
        torch.testing.assert_close(model.logits(inputs, batch.gsds), train_time, rtol=0, atol=0)
    gen = Collator(trained.backbone, chips, mode="generate", max_length=max_length)
    rows = [generate_answers(m, gen, records, max_new_tokens=4) for m in (evaluated, asked)]
    assert rows[0] == rows[1]
    one = gen(records[:1])
    ids = greedy_ids(asked, trained.model_inputs(one), list(one.gsds), 4)
    text = asked.backbone.tokenizer.decode(ids, skip_special_tokens=True).strip()
    assert text == rows[0][0]["prediction"]


app = typer.Typer()


@app.callback()
def _root() -> None:
    """Stands in for the ``earthvlm`` app."""


app.command("eval")(eval_command)


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen2_5_vl"])
def test_eval_runs_on_a_plain_hugging_face_folder(chips: Path, tmp_path: Path, family: str) -> None:
    folder = hf_folder(tmp_path / family, family)
    out = tmp_path / "eval"
    args = ["eval", "--model", str(folder), "--bench", "synth_chips", "--data", str(chips),
            "--out", str(out), "--limit", "4", "--max-new-tokens", "3"]  # fmt: skip
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, args)
    assert result.exit_code == 0, result.output
    scores = json.loads((out / "synth_chips" / "scores.json").read_text())
    assert scores["generation"]["n_answered"] == 4
    assert f"# Evaluation: {family} (zero-shot)" in (out / "summary.md").read_text()
    wide = CliRunner(env={"COLUMNS": "300"})
    bad = wide.invoke(app, ["eval", "--model", str(tmp_path), "--bench", "synth_chips",
                            "--data", str(chips)])  # fmt: skip
    assert bad.exit_code == 2 and "not a model folder" in bad.output


def test_a_hugging_face_folder_loads_in_nf4_when_bitsandbytes_is_there(tmp_path: Path) -> None:
    pytest.importorskip("bitsandbytes", reason="NF4 needs bitsandbytes (the set-up installs it)")
    folder = hf_folder(tmp_path / "hf", "qwen3_vl")
    model = load_model(folder, load_in_4bit=True)
    assert getattr(model.hf_model, "is_loaded_in_4bit", False)
    logits = model.logits({"input_ids": IDS}, [])
    assert logits.shape[:2] == IDS.shape and bool(torch.isfinite(logits).all())
    with pytest.raises(EarthVLMError, match="NF4"):
        from earthvlm.models.export import export_merged

        export_merged(model, tmp_path / "out")
