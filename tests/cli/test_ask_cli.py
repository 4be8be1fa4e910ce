"""``earthvlm ask IMAGE "question"``: the answer, each view's GSD and the trace picture,
with a tiny random backbone (said to be noise) or a saved one; bad inputs exit cleanly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from earthvlm.cli.ask import ask_command
from earthvlm.models import build_tiny_backbone, save_backbone
from earthvlm.synth.uhr import write_uhr_scene


def _app() -> typer.Typer:
    """An app with ``ask`` as a subcommand, as ``earthvlm`` registers it."""
    app = typer.Typer()
    app.command("ask")(ask_command)

    @app.callback()
    def main() -> None:
        """earthvlm (test app)."""

    return app


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def scene_tif(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ask") / "scene.tif"
    return write_uhr_scene(path, size_px=512, gsd_m=0.25, kind="grassland", seed=2).path


def test_ask_with_a_random_backbone(runner: CliRunner, scene_tif: Path, tmp_path: Path) -> None:
    out = tmp_path / "trace.png"
    args = [
        "ask",
        str(scene_tif),
        "How many planes?",
        "--max-zooms",
        "1",
        "--out",
        str(out),
        "--max-new-tokens",
        "8",
    ]
    result = runner.invoke(_app(), args)
    assert result.exit_code == 0, result.output
    assert "noise" in result.output and "answer:" in result.output
    # the global view (512 px -> 256 px) has twice the source GSD; a plain model ignores it
    assert "0.5 m" in result.output and "not used by this model" in result.output
    with Image.open(out) as im:
        assert im.format == "PNG" and min(im.size) >= 512
    trace = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert trace["question"] == "How many planes?"
    assert trace["views"][0]["gsd"]["m"] == pytest.approx(0.5, rel=1e-3)
    assert 1 <= len(trace["turns"]) <= 3 and all(t["n_tokens"] <= 8 for t in trace["turns"])


def test_ask_with_a_saved_backbone_and_a_gsd(runner: CliRunner, tmp_path: Path) -> None:
    model_dir = save_backbone(build_tiny_backbone("qwen2_5_vl", seed=1), tmp_path / "bb")
    png = tmp_path / "tile.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (448, 448, 3), dtype=np.uint8)).save(png)
    args = [
        "ask",
        str(png),
        "What is here?",
        "--model",
        str(model_dir),
        "--gsd",
        "0.1",
        "--max-zooms",
        "0",
        "--max-new-tokens",
        "4",
        "--out",
        str(tmp_path / "t.png"),
    ]
    result = runner.invoke(_app(), args)
    assert result.exit_code == 0, result.output
    assert "noise" not in result.output and "zooms: 0" in result.output
    # Qwen2.5-VL's default 224 px budget: a 448 px PNG at 0.1 m is seen at 0.2 m
    assert "0.2 m" in result.output
    assert (tmp_path / "t.png").is_file()


def test_ask_refuses_a_folder_that_is_not_a_model(runner, scene_tif, tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(_app(), ["ask", str(scene_tif), "Q?", "--model", str(empty)])
    assert result.exit_code == 2
    assert "not a model folder" in result.output


def test_ask_refuses_an_unreadable_image(runner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a raster at all")
    result = runner.invoke(_app(), ["ask", str(bad), "Q?", "--out", str(tmp_path / "t.png")])
    assert result.exit_code == 1
    assert "error" in result.output and not (tmp_path / "t.png").exists()


@pytest.mark.parametrize("gsd_as_text", [False, True], ids=["plain", "gsd-as-text"])
def test_ask_loads_a_grpo_run(
    runner: CliRunner, scene_tif: Path, tmp_path: Path, gsd_as_text: bool
) -> None:
    """A GRPO run folder answers through ``--model``; a GSD-as-text policy is loaded as
    one (its views' GSDs reach its prompt), a plain one is handed no GSD."""
    import torch

    from earthvlm.train.grpo import grpo_config_from_dict, train_grpo

    cfg = grpo_config_from_dict({
        "output_dir": str(tmp_path), "name": "grpo-run", "loop": {"gsd_as_text": gsd_as_text},
        "grpo": {"num_generations": 2, "batch_size": 2, "max_steps": 1,
                 "max_completion_length": 8},
    })  # fmt: skip
    task = {"source": str(scene_tif), "question": "How many planes?", "answer": "0"}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: intra-op threads only contend on a busy CPU
    try:
        train_grpo(cfg, tasks=[task])
    finally:
        torch.set_num_threads(threads)
    run = str(tmp_path / "grpo-run")
    args = ["ask", str(scene_tif), "How many planes?", "--model", run, "--max-zooms", "1",
            "--max-new-tokens", "4", "--out", str(tmp_path / "t.png")]  # fmt: skip
    result = runner.invoke(_app(), args)
    assert result.exit_code == 0, result.output
    assert "model: grpo-run" in result.output and "noise" not in result.output
    assert ("as given" in result.output) is gsd_as_text
    assert ("not used by this model" in result.output) is not gsd_as_text


def _vrt_over(tif: Path, vrt: Path) -> Path:
    """A minimal VRT over ``tif`` (its three bands, same size), in the same folder."""
    import rasterio

    with rasterio.open(tif) as ds:
        w, h = ds.width, ds.height
    bands = "".join(
        f'<VRTRasterBand dataType="Byte" band="{b}"><SimpleSource>'
        f'<SourceFilename relativeToVRT="1">{tif.name}</SourceFilename>'
        f"<SourceBand>{b}</SourceBand></SimpleSource></VRTRasterBand>"
        for b in (1, 2, 3)
    )
    vrt.write_text(f'<VRTDataset rasterXSize="{w}" rasterYSize="{h}">{bands}</VRTDataset>')
    return vrt


def test_a_vrt_is_refused_with_the_flag_that_allows_it(
    runner: CliRunner, scene_tif: Path, tmp_path: Path
) -> None:
    """The refusal names a fix the user can apply (``--allow-vrt``, not the library's
    ``allow_vrt=True``), and the flag opens the VRT."""
    vrt = _vrt_over(scene_tif, scene_tif.with_name("scene.vrt"))
    out = ["--out", str(tmp_path / "t.png")]
    args = ["ask", str(vrt), "What?", "--max-zooms", "0", "--max-new-tokens", "4", *out]
    refused = runner.invoke(_app(), args)
    assert refused.exit_code == 1
    assert "--allow-vrt" in refused.output and "allow_vrt=True" not in refused.output
    allowed = runner.invoke(_app(), [*args, "--allow-vrt"])
    assert allowed.exit_code == 0, allowed.output


def test_a_random_model_answers_without_replacement_characters(
    runner: CliRunner, scene_tif: Path, tmp_path: Path
) -> None:
    out = ["--out", str(tmp_path / "t.png")]
    args = ["ask", str(scene_tif), "What?", "--max-zooms", "0", "--max-new-tokens", "48", *out]
    result = runner.invoke(_app(), args)
    assert result.exit_code == 0, result.output
    trace = json.loads((tmp_path / "t.json").read_text())
    assert "\ufffd" not in result.output and "\ufffd" not in json.dumps(trace, ensure_ascii=False)
