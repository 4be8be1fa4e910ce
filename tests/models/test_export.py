"""``earthvlm export``: a merged model is a plain Hugging Face checkpoint that the stock
classes load, with the same logits as the unmerged model at the export GSD."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from earthvlm.adapters.base import inject, save_adapter
from earthvlm.adapters.cshlora import CSHLoRAConfig
from earthvlm.adapters.cshlora.model import METHOD as CSHLORA
from earthvlm.cli.export import export_command
from earthvlm.data.collate import Collator
from earthvlm.data.jsonl import read_records
from earthvlm.errors import EarthVLMError
from earthvlm.models import build_tiny_backbone
from earthvlm.models.export import EXPORT_FILE, export_merged
from earthvlm.models.saved import load_model
from earthvlm.scale.gsd import GSD, GSDSource
from earthvlm.synth.dataset import SynthConfig, generate_dataset

app = typer.Typer()


@app.callback()
def _root() -> None:
    """Stands in for the ``earthvlm`` app."""


app.command("export")(export_command)


@pytest.fixture(scope="module")
def chips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("chips")
    generate_dataset(out, SynthConfig(n_scenes=0, n_chips=4, chip_size_px=64, seed=5))
    return out


@pytest.fixture(scope="module")
def gated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(base, adapter)``: a Hugging Face folder and a CS-HLoRA folder over it whose
    deltas are non-zero and whose gates open at different GSDs."""
    root = tmp_path_factory.mktemp("gated")
    bb = build_tiny_backbone("qwen3_vl", seed=4)
    bb.model.save_pretrained(root / "base")
    bb.processor.save_pretrained(root / "base")
    inject(bb.model, CSHLORA, CSHLoRAConfig(r=4))
    with torch.no_grad():
        for name, p in bb.model.named_parameters():
            if "cshlora_B" in name:
                p.normal_(0, 0.5)
    save_adapter(bb.model, root / "adapter")
    return root / "base", root / "adapter"


@pytest.mark.parametrize("gsd_m", [0.3, 10.0])
def test_merged_export_equals_the_gated_model_at_that_gsd(
    gated: tuple[Path, Path], chips: Path, tmp_path: Path, gsd_m: float
) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    base, adapter = gated
    model = load_model(adapter, base=base)
    records = read_records(chips / "records.jsonl", root=chips).records[:2]
    batch = Collator(model.backbone, chips, mode="generate")(records)
    gsd = GSD.exact(gsd_m, GSDSource.USER, "test")
    want = model.logits(batch.inputs, [gsd] * len(records))
    out = export_merged(model, tmp_path / "merged", gsd_m=gsd_m)
    record = json.loads((out / EXPORT_FILE).read_text())
    assert record["merged"]["gsd_m"] == gsd_m and record["merged"]["layers"] > 0
    hf = AutoModelForImageTextToText.from_pretrained(out, local_files_only=True).eval()
    assert type(hf).__module__.startswith("transformers.")
    assert not any("cshlora" in n for n, _ in hf.named_parameters())
    with torch.no_grad():
        got = hf(**{k: v for k, v in batch.inputs.items() if k != "labels"}).logits
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # without torchvision the stock Qwen-VL processors cannot be built, so the folder's
    # image-only processor code is the stock route here (models/processor.py)
    processor = AutoProcessor.from_pretrained(out, local_files_only=True, trust_remote_code=True)
    assert getattr(processor, "image_processor", None) is not None  # images are not dropped


def test_a_gated_adapter_needs_a_gsd_and_the_cli_says_so(
    gated: tuple[Path, Path], tmp_path: Path
) -> None:
    base, adapter = gated
    with pytest.raises(EarthVLMError, match="--gsd"):
        export_merged(load_model(adapter, base=base), tmp_path / "x")
    runner = CliRunner(env={"COLUMNS": "300"})
    refused = runner.invoke(app, ["export", str(adapter), "--base", str(base), "--out",
                                  str(tmp_path / "y")])  # fmt: skip
    assert refused.exit_code == 2 and "--gsd" in refused.output
    assert not (tmp_path / "y").exists()
    done = runner.invoke(app, ["export", str(adapter), "--base", str(base), "--out",
                               str(tmp_path / "y"), "--gsd", "0.5"])  # fmt: skip
    assert done.exit_code == 0, done.output
    assert (tmp_path / "y" / "config.json").is_file() and "0.5 m/px" in done.output
    again = runner.invoke(app, ["export", str(adapter), "--base", str(base), "--out",
                                str(tmp_path / "y"), "--gsd", "0.5"])  # fmt: skip
    assert again.exit_code == 2 and "already exists" in again.output


def test_a_peft_lora_merges_as_peft_merges_it(tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    bb = build_tiny_backbone("qwen2_5_vl", seed=4)
    bb.model.save_pretrained(tmp_path / "base")
    bb.processor.save_pretrained(tmp_path / "base")
    peft_model = get_peft_model(bb.model, LoraConfig(r=4, target_modules=["q_proj"]))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    peft_model.peft_config["default"].base_model_name_or_path = str(tmp_path / "base")
    peft_model.save_pretrained(tmp_path / "lora")
    ids = torch.tensor([[1, 4, 9, 16, 25]])
    model = load_model(tmp_path / "lora")
    want = model.logits({"input_ids": ids}, [])
    export_merged(model, tmp_path / "merged")
    hf = AutoModelForImageTextToText.from_pretrained(tmp_path / "merged").eval()
    with torch.no_grad():
        torch.testing.assert_close(hf(input_ids=ids).logits, want, rtol=1e-5, atol=1e-5)
