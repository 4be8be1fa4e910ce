"""Whole-scene detection: tiles read by window, text parsed, boxes merged and put on the map.

A scripted "oracle" detector writes each tile's true objects as detection text, so the
path from text to the map is checked with no model in the way: every object of a
synthetic UHR scene comes back, once, at IoU >= 0.5 *in map coordinates* (UTM metres read
back from the written file), from any frame a model may write in; a tile that cannot be
read or on which the detector fails is counted, and the run goes on.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import shapely
from pyproj import Transformer
from rasterio.errors import NotGeoreferencedWarning

from earthvlm.data.resolution import Resolution
from earthvlm.errors import RasterError
from earthvlm.geo.mapping import Georef, view_to_source_px
from earthvlm.synth.uhr import UHRScene, write_uhr_scene
from earthvlm.uhr.reader import UHRReader
from earthvlm.uhr.scene_detect import (
    DETECTOR_ERROR,
    UNREADABLE_TILE,
    SceneDetectConfig,
    SceneDetections,
    detect_scene,
    oracle_detector,
    tile_windows,
)

#: Views up to 1024 x 1024 px: a 1024 px tile is seen natively.
NATIVE = Resolution(32, 32 * 32, 1024 * 1024)
#: Views up to 256 x 256 px: a 1024 px tile is seen 4x downsampled.
SMALL = Resolution(32, 32 * 32, 256 * 256)
CONFIG = SceneDetectConfig(tile_px=1024, overlap_px=200)


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> UHRScene:
    path = tmp_path_factory.mktemp("scene") / "scene.tif"
    return write_uhr_scene(path, size_px=2048, gsd_m=0.3, kind="farmland", seed=1)


def _truth(scene: UHRScene) -> tuple[np.ndarray, list[str]]:
    return np.stack([lb.quad_px for lb in scene.labels]), [lb.cls for lb in scene.labels]


def _utm_polygons_of_truth(scene: UHRScene) -> list[shapely.Polygon]:
    """The labels in UTM metres through the scene's own geotransform (not the code under
    test)."""
    t = scene.transform
    return [
        shapely.Polygon([t @ (float(x), float(y)) for x, y in lb.quad_px]) for lb in scene.labels
    ]


def _matches(pred: list[shapely.Polygon], truth: list[shapely.Polygon]) -> list[float]:
    """Greedy one-to-one matching: for each truth, the IoU of its match (0 if none)."""
    free = set(range(len(pred)))
    out = []
    for t in truth:
        ious = {i: pred[i].intersection(t).area / pred[i].union(t).area for i in free}
        best = max(ious, key=ious.get, default=None)
        if best is not None and ious[best] >= 0.5:
            free.discard(best)
            out.append(ious[best])
        else:
            out.append(0.0)
    return out


def test_tiles_cover_the_scene_and_stay_inside() -> None:
    win = tile_windows(2048, 1500, 1024, 200)
    assert win.tolist() == [
        [0, 0, 1024, 1024],
        [824, 0, 1848, 1024],
        [1024, 0, 2048, 1024],
        [0, 476, 1024, 1500],
        [824, 476, 1848, 1500],
        [1024, 476, 2048, 1500],
    ]
    assert tile_windows(300, 200, 1024, 200).tolist() == [[0, 0, 300, 200]]


def test_every_object_comes_back_once_on_the_map(scene: UHRScene, tmp_path: Path) -> None:
    pyogrio = pytest.importorskip("pyogrio")
    quads, labels = _truth(scene)
    found = detect_scene(scene.path, oracle_detector(quads, labels), CONFIG, resolution=NATIVE)
    assert found.ledger.ok == found.ledger.read == 9 and found.ledger.balanced
    assert len(found) == len(labels) and found.merged_away > 0  # seen by several tiles
    report = found.save(tmp_path / "objects.geojson")
    assert report.written == len(labels) and report.coordinates == "lonlat"
    # read back by GDAL, to UTM metres, against the labels through the scene's transform
    info = pyogrio.read_info(report.path)
    assert info["crs"] == "EPSG:4326" and info["features"] == len(labels)
    _, _, wkb, fields = pyogrio.raw.read(report.path)
    to_utm = Transformer.from_crs("EPSG:4326", scene.crs, always_xy=True)
    pred = [
        shapely.transform(g, lambda xy: np.stack(to_utm.transform(*xy.T), axis=1))
        for g in shapely.from_wkb(wkb)
    ]
    ious = _matches(pred, _utm_polygons_of_truth(scene))
    assert min(ious) >= 0.8  # integer pixels of 15 px objects: about 0.9
    names = list(info["fields"])
    assert sorted(fields[names.index("class")]) == sorted(labels)
    footprint = found.georef.footprint()
    assert all(footprint.contains(shapely.from_wkb(w)) for w in wkb)
    # each feature says where it was found and at what GSD
    doc = json.loads(report.path.read_text())
    props = doc["features"][0]["properties"]
    assert props["gsd_m"] == pytest.approx(scene.gsd_m) and props["score"] is None
    assert len(props["quad_px"]) == 8 and props["tile"] in range(9)
    assert doc["earthvlm"]["tiles"]["ok"] == 9 and doc["earthvlm"]["objects"] == len(labels)


@pytest.mark.parametrize(
    ("frame", "resolution", "gsd_factor"),
    [("norm1000", SMALL, 4.0), ("abs_px_resized", NATIVE, 1.0), ("window_px", SMALL, 4.0)],
)
def test_any_frame_lands_in_the_same_place(
    scene: UHRScene, frame: str, resolution: Resolution, gsd_factor: float
) -> None:
    quads, labels = _truth(scene)
    cfg = SceneDetectConfig(tile_px=1024, overlap_px=200, box_frame=frame)
    found = detect_scene(
        scene.path, oracle_detector(quads, labels, box_frame=frame), cfg, resolution=resolution
    )
    pred = [shapely.Polygon(q) for q in found.quads_px]
    ious = _matches(pred, [shapely.Polygon(q) for q in quads])
    assert len(found) == len(labels) and min(ious) >= 0.5
    gsds = [t.gsd.point_m for t in found.tiles]
    assert gsds == pytest.approx([gsd_factor * scene.gsd_m] * 9)  # each view's own GSD


def test_failed_tiles_are_counted_and_the_run_goes_on(scene: UHRScene) -> None:
    quads, labels = _truth(scene)
    oracle = oracle_detector(quads, labels)

    def flaky(view, prompt):
        if view.window_xyxy_px[:2] == (824, 0):
            raise RuntimeError("CUDA out of memory")
        return oracle(view, prompt)

    with UHRReader(scene.path, NATIVE) as reader:
        read = reader.read

        def unreadable(window):
            if tuple(window)[:2] == (0, 824):
                raise RasterError("scene.tif: pixel data cannot be read (TIFFReadEncodedTile)")
            return read(window)

        reader.read = unreadable  # type: ignore[method-assign]
        found = detect_scene(reader, flaky, CONFIG)
    ledger = found.ledger
    assert (ledger.read, ledger.ok) == (9, 7) and ledger.balanced
    assert ledger.failed == {DETECTOR_ERROR: 1, UNREADABLE_TILE: 1}
    failed = {t.index: t.reason for t in found.tiles if t.status == "failed"}
    assert "CUDA out of memory" in failed[1] and "TIFFReadEncodedTile" in failed[3]
    assert 0 < len(found) <= len(labels)  # overlapping tiles still saw most objects


def test_garbage_and_unknown_classes_are_counted_not_raised(scene: UHRScene) -> None:
    texts = iter(
        [
            "1,2,3 plane",
            "",
            "There is none.",
            "{'bbox_2d': [1, 2, 30, 40]",
            "10,10,40,10,40,30,10,30 plane\n5,5,9,5,9,9,5,9 dragon",
            "x" * 70_000,
            "[]",
            "nan,1,2,3 ship",
            "0,0,1024,1024 storage tank",
        ]
    )
    cfg = SceneDetectConfig(tile_px=1024, overlap_px=200, classes=("plane", "storage tank"))
    found = detect_scene(scene.path, lambda v, p: next(texts), cfg, resolution=NATIVE)
    assert found.ledger.ok == 9
    counts = found.parse_counts
    assert counts["dropped"]["unknown_class"] == 1 and counts["dropped"]["input_too_long"] == 1
    assert sorted(str(c) for c in found.labels) == ["plane", "storage tank"]
    assert "Classes: plane, storage tank." in cfg.instruction


def test_the_prompt_reaches_the_detector_and_the_view_is_the_tile(scene: UHRScene) -> None:
    seen = []

    def detector(view, prompt):
        seen.append((view.window_xyxy_px, view.hw, prompt))
        return "There is none."

    cfg = SceneDetectConfig(tile_px=1024, overlap_px=0, prompt="Find the planes.")
    found = detect_scene(scene.path, detector, cfg, resolution=SMALL)
    assert len(found) == 0 and found.merged_away == 0
    assert [s[0] for s in seen] == [
        (0, 0, 1024, 1024),
        (1024, 0, 2048, 1024),
        (0, 1024, 1024, 2048),
        (1024, 1024, 2048, 2048),
    ]
    assert {s[1] for s in seen} == {(256, 256)} and {s[2] for s in seen} == {"Find the planes."}


def test_a_view_is_a_mapping_view(scene: UHRScene) -> None:
    with UHRReader(scene.path, SMALL) as reader:
        crop = reader.read((512, 256, 1536, 1280))
        overview = reader.global_view()
    box = np.array([[10.0, 20.0, 200.0, 120.0]])
    for view in (crop, overview):
        for frame in ("norm1000", "abs_px_resized"):
            np.testing.assert_allclose(
                view_to_source_px(box, frame, view), view.to_source_px(box, frame)
            )


def test_config_is_checked() -> None:
    for bad in (
        {"tile_px": 16},
        {"overlap_px": 1024},
        {"fmt": "obb"},
        {"box_frame": "px"},
        {"nms_iou": 1.0},
        {"classes": (" plane",)},
    ):
        with pytest.raises(ValueError):
            SceneDetectConfig(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="resolution"):
        detect_scene("x.tif", lambda v, p: "", CONFIG)


def test_a_scene_without_georeferencing_is_written_in_pixels(tmp_path: Path) -> None:
    from earthvlm.geo.raster import write_geotiff

    pixels = np.zeros((3, 600, 800), np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        path = write_geotiff(tmp_path / "plain.tif", pixels, crs=None, transform=None, tiled=True)
    oracle = oracle_detector([[100, 100, 140, 100, 140, 120, 100, 120]], ["ship"])
    found = detect_scene(path, oracle, CONFIG, resolution=NATIVE)
    assert isinstance(found, SceneDetections) and not found.georef.is_georeferenced
    report = found.save(tmp_path / "px.geojson")
    doc = json.loads(report.path.read_text())
    assert report.coordinates == "px" and "not georeferenced" in doc["earthvlm"]["coordinates"]
    ring = doc["features"][0]["geometry"]["coordinates"][0]
    assert {tuple(p) for p in ring} == {(100, 100), (140, 100), (140, 120), (100, 120)}
    assert Georef.from_raster(path).method == "none"
