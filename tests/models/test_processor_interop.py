"""Folders written by ``save_backbone`` load with stock transformers, without earthvlm.

The stock checks run in one subprocess that blocks ``import earthvlm`` (importing
transformers there costs most of its time): for each family's folder it runs
``AutoProcessor`` (with and without ``trust_remote_code``) and ``pipeline("image-text-to-
text")`` and writes what it saw; the tests below compare that with earthvlm's processor.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("trl")

from PIL import Image  # noqa: E402

from earthvlm.models import build_tiny_backbone, load_backbone, save_backbone  # noqa: E402
from earthvlm.models.processor import (  # noqa: E402
    HUB_MODULE,
    HUB_MODULE_SOURCE,
    PROCESSOR_CLASSES,
    STOCK_PROCESSOR_NAMES,
    STOCK_VIDEO_PROCESSOR_NAMES,
)

FAMILIES = ["qwen3_vl", "qwen2_5_vl"]
HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None
IMAGE_SIZE = (70, 90)  # height, width: resized, so the processor's smart resize matters

# Runs in a fresh interpreter with earthvlm unimportable: only what a stock user has.
STOCK_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path


    class _NoEarthVLM:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "earthvlm":
                raise ImportError("earthvlm is blocked in this process")
            return None


    sys.meta_path.insert(0, _NoEarthVLM())

    import numpy as np
    from PIL import Image
    from transformers import AutoProcessor, pipeline


    def check(folder, out, image):
        result = {}
        try:
            plain = AutoProcessor.from_pretrained(folder)
            result["plain"] = {"class": type(plain).__name__}
        except Exception as e:
            result["plain"] = {"error": type(e).__name__, "message": str(e)}

        proc = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
        content = [{"type": "image"}, {"type": "text", "text": "What?"}]
        text = proc.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True
        )
        inputs = proc(images=[image], text=[text], return_tensors="pt")
        np.savez(out / "inputs.npz", **{k: v.numpy() for k, v in inputs.items()})
        result["remote"] = {
            "class": type(proc).__name__,
            "module": type(proc).__module__,
            "image_processor": type(proc.image_processor).__name__,
            "has_video_processor": hasattr(proc, "video_processor"),
        }

        pipe = pipeline("image-text-to-text", model=str(folder), trust_remote_code=True)
        seen = []
        pipe.model.model.visual.register_forward_pre_hook(
            lambda module, args, kwargs: seen.append(
                list((args[0] if args else kwargs["hidden_states"]).shape)
            ),
            with_kwargs=True,
        )
        content[0]["image"] = image
        generated = pipe(
            text=[{"role": "user", "content": content}], max_new_tokens=3, return_full_text=False
        )
        result["pipeline"] = {
            "model": type(pipe.model).__name__,
            "processor": type(pipe.processor).__name__,
            "generated_text": generated[0]["generated_text"],
            "vision_inputs": seen,
        }
        return result


    root, height, width = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    for folder in map(Path, sys.argv[4:]):
        out = root / folder.name
        out.mkdir()
        result = check(folder, out, image)
        result["earthvlm_imported"] = any(m.split(".")[0] == "earthvlm" for m in sys.modules)
        (out / "result.json").write_text(json.dumps(result))
    """
)


def _image() -> Image.Image:
    rng = np.random.default_rng(0)  # the same image as STOCK_SCRIPT's
    return Image.fromarray(rng.integers(0, 256, (*IMAGE_SIZE, 3), dtype=np.uint8))


def _earthvlm_inputs(processor) -> dict:
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    return processor(images=[_image()], text=[text], return_tensors="pt")


def _as_saved_before(folder: Path) -> None:
    """Rewrite ``folder`` as ``save_backbone`` wrote it before the stock class name."""
    family = json.loads((folder / "config.json").read_text())["model_type"]
    ours = PROCESSOR_CLASSES[family].__name__
    config = json.loads((folder / "processor_config.json").read_text())
    del config["auto_map"], config["video_processor"]
    (folder / "processor_config.json").write_text(json.dumps({**config, "processor_class": ours}))
    tokenizer = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(
        json.dumps({**tokenizer, "processor_class": ours})
    )
    (folder / f"{HUB_MODULE}.py").unlink()


@pytest.fixture(scope="module")
def saved_all(tmp_path_factory) -> dict:
    """family -> (tiny backbone, the folder save_backbone wrote); read-only."""
    root = tmp_path_factory.mktemp("ckpt")
    out = {}
    for family in FAMILIES:
        bb = build_tiny_backbone(family, seed=1)
        out[family] = bb, save_backbone(bb, root / family)
    return out


@pytest.fixture(scope="module")
def stock_all(saved_all, tmp_path_factory) -> dict:
    """family -> what STOCK_SCRIPT saw in that folder: its report and the tensors of
    stock ``AutoProcessor``."""
    root = tmp_path_factory.mktemp("stock")
    env = {
        **os.environ,
        "HF_MODULES_CACHE": str(root / "modules"),  # where remote code is copied to
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "TRANSFORMERS_VERBOSITY": "error",
    }
    folders = [str(folder) for _, folder in saved_all.values()]
    script = [sys.executable, "-c", STOCK_SCRIPT, str(root), *map(str, IMAGE_SIZE), *folders]
    run = subprocess.run(script, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-4000:]
    out = {}
    for family in FAMILIES:
        with np.load(root / family / "inputs.npz") as arrays:
            tensors = {k: arrays[k] for k in arrays.files}
        out[family] = json.loads((root / family / "result.json").read_text()), tensors
    return out


@pytest.fixture(params=FAMILIES)
def saved(request, saved_all):
    return saved_all[request.param]


@pytest.fixture
def stock(saved, stock_all):
    return stock_all[saved[0].family]


def test_the_saved_folder_names_the_stock_class_and_ships_image_only_code(saved) -> None:
    bb, folder = saved
    family = bb.family
    config = json.loads((folder / "processor_config.json").read_text())
    assert config["processor_class"] == STOCK_PROCESSOR_NAMES[family]
    ours = PROCESSOR_CLASSES[family].__name__
    assert config["auto_map"] == {"AutoProcessor": f"{HUB_MODULE}.{ours}"}
    video, image = config["video_processor"], config["image_processor"]
    assert video["video_processor_type"] == STOCK_VIDEO_PROCESSOR_NAMES[family]
    for key in ("patch_size", "merge_size", "temporal_patch_size", "image_mean", "image_std"):
        assert video[key] == image[key], key
    tokenizer = json.loads((folder / "tokenizer_config.json").read_text())
    assert tokenizer["processor_class"] == STOCK_PROCESSOR_NAMES[family]
    source = (folder / f"{HUB_MODULE}.py").read_text()
    assert source == HUB_MODULE_SOURCE
    imports = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Import | ast.ImportFrom)]
    assert [(n.module, [a.name for a in n.names]) for n in imports] == [
        ("transformers", ["Qwen2_5_VLProcessor", "Qwen3VLProcessor"])
    ]
    # earthvlm's processor and the saved tokenizer agree (ProcessorMixin wrote ours there)
    assert bb.processor.tokenizer._processor_class == STOCK_PROCESSOR_NAMES[family]


def test_stock_auto_processor_processes_images_exactly_like_earthvlm(saved, stock) -> None:
    bb, _ = saved
    report, tensors = stock
    remote = report["remote"]
    assert remote["class"] == PROCESSOR_CLASSES[bb.family].__name__
    assert remote["module"].startswith("transformers_modules.")  # the saved file, not earthvlm
    assert remote["image_processor"] == "Qwen2VLImageProcessorPil"
    assert not remote["has_video_processor"]
    ours = _earthvlm_inputs(bb.processor)
    assert {"pixel_values", "image_grid_thw"} <= set(tensors)
    assert set(tensors) == set(ours)
    for key, value in ours.items():
        assert tensors[key].dtype == value.numpy().dtype, key
        assert np.array_equal(tensors[key], value.numpy()), key  # bit for bit
    assert report["earthvlm_imported"] is False


@pytest.mark.skipif(HAS_TORCHVISION, reason="with torchvision the stock class loads")
def test_stock_auto_processor_without_remote_code_fails_loudly(stock) -> None:
    """Not the bare tokenizer any more: the stock class needs torchvision and says so."""
    plain = stock[0]["plain"]
    assert plain.get("error") == "ImportError", plain
    assert "torchvision" in plain["message"].lower()


def test_stock_pipeline_reads_the_image_and_generates_text(saved, stock) -> None:
    bb, _ = saved
    report, tensors = stock
    pipe = report["pipeline"]
    assert pipe["model"] == type(bb.model).__name__
    assert pipe["processor"] == PROCESSOR_CLASSES[bb.family].__name__
    assert isinstance(pipe["generated_text"], str) and pipe["generated_text"]
    # the vision tower ran once, on this image's patches
    assert pipe["vision_inputs"] == [list(tensors["pixel_values"].shape)]
    assert report["earthvlm_imported"] is False


def test_load_backbone_reads_folders_saved_before_and_after(saved, tmp_path: Path) -> None:
    bb, folder = saved
    cls = PROCESSOR_CLASSES[bb.family]
    new = load_backbone(folder)
    assert type(new.processor) is cls
    old_folder = tmp_path / "old"
    old_folder.mkdir()
    for path in folder.iterdir():
        (old_folder / path.name).write_bytes(path.read_bytes())
    _as_saved_before(old_folder)
    old = load_backbone(old_folder)
    assert type(old.processor) is cls
    expected = _earthvlm_inputs(bb.processor)
    for loaded in (new, old):
        got = _earthvlm_inputs(loaded.processor)
        assert all(torch.equal(got[k], expected[k]) for k in expected)
    # saving again gives an old folder the stock class name and the code
    again = save_backbone(old, tmp_path / "again")
    config = json.loads((again / "processor_config.json").read_text())
    assert config["processor_class"] == STOCK_PROCESSOR_NAMES[bb.family]
    assert (again / f"{HUB_MODULE}.py").is_file()


def test_save_pretrained_refuses_push_to_hub(saved, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"processor\.push_to_hub"):
        saved[0].processor.save_pretrained(tmp_path, push_to_hub=True)
