"""A saved adapter folder: earthvlm's own config file, never taken for a peft adapter;
folders of the old layout still load; the load recipe in the base module's docstring."""

from __future__ import annotations

import json
import math
import re
import textwrap
from pathlib import Path

import peft
import pytest
import torch

import earthvlm.adapters.base as base_module
from earthvlm.adapters.base import (
    CONFIG_NAME,
    LEGACY_CONFIG_NAME,
    WEIGHTS_NAME,
    adapter_info,
    load_adapter,
    read_adapter_meta,
    save_adapter,
)
from earthvlm.adapters.cshlora import CSHLoRAConfig, inject_cshlora
from earthvlm.adapters.moelora import MoELoRAConfig, inject_moelora
from earthvlm.errors import EarthVLMError
from earthvlm.models import build_tiny_backbone

IDS = torch.randint(0, 280, (2, 7), generator=torch.Generator().manual_seed(0))


def _base() -> torch.nn.Module:
    return build_tiny_backbone("qwen3_vl", "tiny", seed=0).model.eval()


def _randomise(model: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("cshlora_B", "moelora_B")):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)


def _saved(tmp_path: Path, method: str = "cshlora") -> tuple[Path, torch.nn.Module]:
    model = _base()
    if method == "cshlora":
        inject_cshlora(model, CSHLoRAConfig(r=8))
    else:
        inject_moelora(model, MoELoRAConfig(r_total=12))
    _randomise(model)
    out = save_adapter(model, tmp_path / f"{method}_adapter", provenance={"run": "t"})
    return out, model


@pytest.mark.parametrize("method", ["cshlora", "moelora"])
def test_folder_has_earthvlm_config_and_says_its_method(tmp_path: Path, method: str) -> None:
    folder, _ = _saved(tmp_path, method)
    assert sorted(p.name for p in folder.iterdir()) == sorted([CONFIG_NAME, WEIGHTS_NAME])
    assert CONFIG_NAME == "earthvlm_adapter.json"
    meta = read_adapter_meta(folder)
    assert meta is not None and meta["adapter"] == method
    assert meta["provenance"] == {"run": "t"} and "peft_type" not in meta
    assert read_adapter_meta(str(folder)) == meta


def test_peft_refuses_the_folder_with_its_own_message(tmp_path: Path) -> None:
    folder, _ = _saved(tmp_path)
    # peft's plain "no adapter here" (it was a bare KeyError: 'peft_type' before)
    with pytest.raises(ValueError, match=r"Can't find 'adapter_config.json' at"):
        peft.PeftModel.from_pretrained(_base(), str(folder))
    with pytest.raises(ValueError, match=r"Can't find 'adapter_config.json' at"):
        peft.PeftConfig.from_pretrained(str(folder))


@pytest.mark.parametrize("method", ["cshlora", "moelora"])
def test_old_layout_still_loads(tmp_path: Path, method: str) -> None:
    folder, model = _saved(tmp_path, method)
    (folder / CONFIG_NAME).rename(folder / LEGACY_CONFIG_NAME)  # as written before
    s = torch.tensor([math.log10(0.3), math.log10(5.0)])
    adapter_info(model)["context"].set(s)
    before = model(input_ids=IDS).logits
    meta = read_adapter_meta(folder)
    assert meta is not None and meta["adapter"] == method
    fresh = _base()
    ctx, _ = load_adapter(fresh, folder, expect=method)
    ctx.set(s)
    torch.testing.assert_close(fresh(input_ids=IDS).logits, before, rtol=0, atol=0)


def test_other_folders_are_not_adapter_folders(tmp_path: Path) -> None:
    # a Hugging Face model folder
    _base().save_pretrained(tmp_path / "model")
    assert read_adapter_meta(tmp_path / "model") is None
    # a real peft LoRA adapter (its adapter_config.json is not ours)
    lora = peft.get_peft_model(
        _base(), peft.LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False)
    )
    lora.save_pretrained(tmp_path / "peft")
    assert (tmp_path / "peft" / LEGACY_CONFIG_NAME).is_file()
    assert read_adapter_meta(tmp_path / "peft") is None
    with pytest.raises(EarthVLMError, match="a peft adapter"):
        load_adapter(_base(), tmp_path / "peft")
    # nothing there, a file, an empty folder, an unreadable adapter_config.json
    assert read_adapter_meta(tmp_path / "missing") is None
    (tmp_path / "file.json").write_text("{}")
    assert read_adapter_meta(tmp_path / "file.json") is None
    (tmp_path / "empty").mkdir()
    assert read_adapter_meta(tmp_path / "empty") is None
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / LEGACY_CONFIG_NAME).write_text("{not json")
    assert read_adapter_meta(tmp_path / "junk") is None


def test_a_broken_adapter_folder_is_an_error_not_none(tmp_path: Path) -> None:
    folder, _ = _saved(tmp_path)
    cfg = folder / CONFIG_NAME
    meta = json.loads(cfg.read_text())
    (folder / WEIGHTS_NAME).rename(tmp_path / "w.safetensors")
    with pytest.raises(EarthVLMError, match="not a complete earthvlm adapter"):
        read_adapter_meta(folder)
    (tmp_path / "w.safetensors").rename(folder / WEIGHTS_NAME)
    cfg.write_text(json.dumps({**meta, "adapter": "cshlra"}))
    with pytest.raises(EarthVLMError, match="did you mean cshlora"):
        read_adapter_meta(folder)
    cfg.write_text("{")
    with pytest.raises(EarthVLMError, match="unreadable adapter config"):
        read_adapter_meta(folder)


def _docstring_recipe() -> str:
    """The indented code block after '::' in the base module's docstring."""
    doc = base_module.__doc__ or ""
    m = re.search(r"::\n\n((?: {4}.*\n)+)", doc)
    assert m, "the load recipe is missing from earthvlm.adapters.base's docstring"
    return textwrap.dedent(m.group(1))


def test_the_docstring_recipe_loads_an_adapter_onto_a_hugging_face_base(
    tmp_path: Path,
) -> None:
    from transformers import AutoModelForImageTextToText

    folder, model = _saved(tmp_path)
    gsd_m = 0.5
    adapter_info(model)["context"].set(torch.full((2,), math.log10(gsd_m)))
    expected = model(input_ids=IDS).logits
    _base().save_pretrained(tmp_path / "base")  # the base the adapter was trained on

    recipe = _docstring_recipe()
    assert recipe.count("\n") == 3  # the three lines a user writes
    env = {
        "math": math,
        "torch": torch,
        "AutoModelForImageTextToText": AutoModelForImageTextToText,
        "load_adapter": load_adapter,
        "base_dir": str(tmp_path / "base"),
        "adapter_dir": str(folder),
        "gsd_m": gsd_m,
    }
    exec(recipe, env)
    loaded = env["model"].eval()
    assert adapter_info(loaded)["method"].name == "cshlora"
    torch.testing.assert_close(loaded(input_ids=IDS).logits, expected, rtol=1e-6, atol=1e-6)
    # one GSD set for the whole batch reaches every sample, in generate() as well
    out = loaded.generate(input_ids=IDS, max_new_tokens=2, do_sample=False)
    assert out.shape == (2, 9)
