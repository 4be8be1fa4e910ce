"""``earthvlm detect MODEL SCENE --out FILE`` and ``earthvlm ask ... --geojson FILE``: the
objects and the answer on the map, a tile ledger, pixels said to be pixels, bad options
refused."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import typer
from rasterio.errors import NotGeoreferencedWarning
from typer.testing import CliRunner

from earthvlm.cli import ask as ask_cli
from earthvlm.cli.ask import ask_command
from earthvlm.cli.detect import detect_command
from earthvlm.geo.raster import write_geotiff
from earthvlm.synth.uhr import UHRScene, write_uhr_scene
from earthvlm.uhr import scene_detect
from earthvlm.uhr.tool import format_tool_call


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("detect")(detect_command)
    app.command("ask")(ask_command)

    @app.callback()
    def main() -> None:
        """earthvlm (test app)."""

    return app


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> UHRScene:
    path = tmp_path_factory.mktemp("detect") / "scene.tif"
    return write_uhr_scene(path, size_px=1024, gsd_m=0.3, kind="farmland", seed=1)


def test_detect_with_a_random_model(runner: CliRunner, scene: UHRScene, tmp_path: Path) -> None:
    pyogrio = pytest.importorskip("pyogrio")
    out = tmp_path / "objects.geojson"
    args = [
        "detect",
        "random",
        str(scene.path),
        "--out",
        str(out),
        "--tile",
        "512",
        "--overlap",
        "0",
        "--max-new-tokens",
        "8",
    ]
    result = runner.invoke(_app(), args)
    assert result.exit_code == 0, result.output
    assert "noise" in result.output and "4 = ok 4 + failed 0" in result.output
    assert pyogrio.read_info(out)["crs"] == "EPSG:4326"  # opens, even with no object
    tiles = json.loads(out.with_suffix(".tiles.json").read_text())
    assert tiles["tiles"]["ok"] == 4 and len(tiles["tile_outcomes"]) == 4
    assert all(isinstance(t["text"], str) for t in tiles["tile_outcomes"])


def test_detect_writes_every_object_in_the_rasters_crs(
    runner: CliRunner, scene: UHRScene, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pyogrio = pytest.importorskip("pyogrio")
    quads = np.stack([lb.quad_px for lb in scene.labels])
    labels = [lb.cls for lb in scene.labels]
    monkeypatch.setattr(  # the model's detector replaced by one writing the true objects
        scene_detect,
        "model_detector",
        lambda model, **kw: scene_detect.oracle_detector(quads, labels),
    )
    out = tmp_path / "objects.gpkg"
    args = [
        "detect",
        "random",
        str(scene.path),
        "--out",
        str(out),
        "--tile",
        "512",
        "--overlap",
        "128",
    ]
    result = runner.invoke(_app(), args)
    assert result.exit_code == 0, result.output
    assert f"{len(labels)} features, crs: affine georeferencing (EPSG:32633)" in result.output
    info = pyogrio.read_info(out, layer="detections")
    assert info["crs"] == "EPSG:32633" and info["features"] == len(labels)
    _, _, wkb, _ = pyogrio.raw.read(out, layer="detections")
    import shapely

    t = scene.transform
    x0, y0 = t @ (0, 0)
    x1, y1 = t @ (1024, 1024)
    footprint = shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
    assert all(footprint.contains(g) for g in shapely.from_wkb(wkb))


def test_detect_on_pixels_says_so(runner: CliRunner, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        path = write_geotiff(
            tmp_path / "plain.tif",
            np.zeros((3, 256, 256), np.uint8),
            crs=None,
            transform=None,
            tiled=True,
        )
    out = tmp_path / "px.geojson"
    args = ["detect", "random", str(path), "--out", str(out), "--max-new-tokens", "4"]
    result = runner.invoke(_app(), args)
    assert result.exit_code == 0, result.output
    assert "not georeferenced" in result.output and "pixel coordinates" in result.output
    doc = json.loads(out.read_text())
    assert "not georeferenced" in doc["earthvlm"]["coordinates"]


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--out", "x.shp"], "unknown vector format"),
        (["--out", "x.geojson", "--overlap", "2000"], "overlap_px"),
        (["--out", "x.geojson", "--box-frame", "px"], "box_frame"),
    ],
)
def test_detect_refuses_bad_options(
    runner: CliRunner, scene: UHRScene, extra: list[str], fragment: str
) -> None:
    result = runner.invoke(_app(), ["detect", "random", str(scene.path), *extra])
    assert result.exit_code == 2 and fragment in result.output


def test_ask_writes_the_answer_on_the_map(
    runner: CliRunner, scene: UHRScene, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    turns = iter([format_tool_call([0, 0, 500, 500]), "It is at [0, 0, 500, 1000]."])

    def scripted(model, captured):  # a zoom, then a grounding answer and one [SEG] mask
        def generate(inputs, gsds, max_new_tokens):
            text = next(turns)
            h = int(inputs["image_grid_thw"][-1][1]) * 16
            w = int(inputs["image_grid_thw"][-1][2]) * 16
            captured["masks"] = np.ones((1, h, w), bool) if "answer" not in text else None
            return model.backbone.tokenizer.encode(text)

        return generate

    monkeypatch.setattr(ask_cli, "_keeping_masks", scripted)
    out = tmp_path / "answer.geojson"
    args = [
        "ask",
        str(scene.path),
        "Where is it?",
        "--max-zooms",
        "1",
        "--out",
        str(tmp_path / "t.png"),
        "--geojson",
        str(out),
    ]
    result = runner.invoke(_app(), args)
    assert result.exit_code == 0, result.output
    assert "1 answer box(es), 1 mask(s)" in result.output
    doc = json.loads(out.read_text())
    kinds = [f["properties"]["kind"] for f in doc["features"]]
    assert kinds == ["view", "view", "requested", "answer", "mask"]
    assert doc["earthvlm"]["answer_frame"] == "norm1000" and doc["earthvlm"]["answer_view"] == 1
    lon, lat = doc["features"][0]["geometry"]["coordinates"][0][0]
    assert 14.9 < lon < 15.1 and 30 < lat < 60  # UTM 33N, near its central meridian
    bad = runner.invoke(_app(), ["ask", str(scene.path), "Q", "--geojson", "x.kml"])
    assert bad.exit_code == 2 and "unknown vector format" in bad.output


def test_answer_boxes_labelled_or_bare(scene: UHRScene) -> None:
    from earthvlm.data.resolution import Resolution
    from earthvlm.uhr.reader import UHRReader

    with UHRReader(scene.path, Resolution(32, 32 * 32, 256 * 256)) as reader:
        view = reader.global_view()
    labelled = ask_cli._answer_boxes("10,20,30,40 plane\n50,60,70,80 ship", view, "norm1000")
    assert [(lb, len(box)) for lb, box in labelled] == [("plane", 8), ("ship", 8)]
    # prose before a box becomes its label (the parser reads "label: box" lines)
    ((label, quad),) = ask_cli._answer_boxes("It is at [1, 2, 3, 4].", view, "norm1000")
    assert label == "It is at" and quad == [1, 2, 3, 2, 3, 4, 1, 4]
    assert ask_cli._answer_boxes("[1, 2, 3, 4]", view, "norm1000") == [("answer", [1, 2, 3, 4])]
    assert ask_cli._answer_boxes("I cannot see it.", view, "norm1000") == []
