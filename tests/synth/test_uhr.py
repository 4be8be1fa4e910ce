"""UHR scenes: tiled GeoTIFF with overviews, GSD read back, seamless tiles, sparse
targets, determinism, bounded memory, windowed reads, dataset records."""

from __future__ import annotations

import json
import tracemalloc
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from earthvlm.data.jsonl import read_records
from earthvlm.errors import RasterError
from earthvlm.geo.raster import open_raster, read_pixels
from earthvlm.scale.resolve import resolve_gsd
from earthvlm.synth import questions
from earthvlm.synth.dataset import SynthConfig, generate_dataset
from earthvlm.synth.georef import utm_transform
from earthvlm.synth.uhr import (
    UHR_KINDS,
    TileRenderer,
    UHRScene,
    make_uhr_scene,
    overview_factors,
    snap_gsd,
    write_uhr_scene,
)

SIZE = 2048


@pytest.fixture(scope="module")
def uhr(tmp_path_factory: pytest.TempPathFactory) -> UHRScene:
    path = tmp_path_factory.mktemp("uhr") / "scene.tif"
    return write_uhr_scene(path, size_px=SIZE, gsd_m=0.3, kind="farmland", seed=3)


def test_file_is_tiled_compressed_with_overviews(uhr: UHRScene) -> None:
    with rasterio.open(uhr.path) as ds:
        assert (ds.width, ds.height, ds.count, ds.dtypes[0]) == (SIZE, SIZE, 3, "uint8")
        assert ds.block_shapes == [(512, 512)] * 3
        assert ds.profile["tiled"] and ds.compression.value.lower() == "deflate"
        assert ds.overviews(1) == [2, 4, 8] == list(uhr.overviews)
        assert ds.tags()["EARTHVLM_UHR_KIND"] == "farmland"
    assert overview_factors(8192) == (2, 4, 8, 16, 32)


def test_gsd_read_back_matches(uhr: UHRScene) -> None:
    res = resolve_gsd(uhr.path)
    assert res.decided_by == "georef"
    assert res.gsd.point_m == pytest.approx(uhr.gsd_m, rel=1e-5)
    assert uhr.gsd_m == snap_gsd(0.3) and abs(uhr.gsd_m - 0.3) < 1e-3
    # the same georeferencing as the dataset writer's scenes
    north = uhr.transform.f - SIZE * uhr.transform.a / 2
    assert uhr.transform.almost_equals(utm_transform(uhr.gsd_m, SIZE, SIZE, north))


@pytest.mark.parametrize("kind", UHR_KINDS)
def test_tiles_join_without_seams(kind: str) -> None:
    g = snap_gsd(0.37)
    renderer = TileRenderer(make_uhr_scene(kind, SIZE, g, 11), 11)
    obj = renderer.scene.objects[0]  # a window over an object, shapes cross the seams
    c0, r0 = round(obj.x_m / g) - 48, round(obj.y_m / g) - 40
    whole = renderer.optical(c0, r0, 96, 80)
    left, right = renderer.optical(c0, r0, 48, 80), renderer.optical(c0 + 48, r0, 48, 80)
    top, bottom = renderer.optical(c0, r0, 96, 33), renderer.optical(c0, r0 + 33, 96, 47)
    assert np.array_equal(whole, np.concatenate([left, right], axis=2))
    assert np.array_equal(whole, np.concatenate([top, bottom], axis=1))
    assert whole.std() > 1.0  # not a flat window


def test_objects_lie_inside_and_are_sparse(uhr: UHRScene) -> None:
    labels = uhr.labels
    assert 6 <= len(labels) <= 12
    assert len(labels) == len(uhr.scene.objects)
    for lb in labels:
        assert lb.quad_px.min() >= 0 and lb.quad_px.max() <= SIZE
        assert lb.detectable
    # all targets together cover well under 1 % of the scene
    covered = sum(lb.length_px * lb.width_px for lb in labels)
    assert covered < 0.005 * SIZE * SIZE
    centres = np.array([lb.centre_px for lb in labels])
    d = np.hypot(*(centres[:, None, :] - centres[None, :, :]).transpose(2, 0, 1))
    assert d[~np.eye(len(labels), dtype=bool)].min() >= SIZE / 6 - 1e-6


def test_labels_point_at_painted_pixels(uhr: UHRScene) -> None:
    bare = TileRenderer(replace(uhr.scene, objects=[]), uhr.seed)
    with open_raster(uhr.path) as ds:
        for lb in uhr.labels:
            cx, cy = (round(v) for v in lb.centre_px)
            win = Window(cx - 8, cy - 8, 16, 16)
            crop = read_pixels(ds, window=win).astype(int)
            empty = bare.optical(cx - 8, cy - 8, 16, 16).astype(int)
            assert np.abs(crop - empty).max() > 20, lb.cls


def test_native_crop_through_read_pixels(uhr: UHRScene) -> None:
    lb = uhr.labels[0]
    cx, cy = (round(v) for v in lb.centre_px)
    c0, r0 = min(max(cx - 200, 0), SIZE - 400), min(max(cy - 150, 0), SIZE - 300)
    renderer = TileRenderer(uhr.scene, uhr.seed)
    with open_raster(uhr.path) as ds:
        crop = read_pixels(ds, window=Window(c0, r0, 400, 300))
        assert crop.shape == (3, 300, 400) and crop.dtype == np.uint8
        # what the file holds is what the renderer draws (across the 1024 px tile grid)
        assert np.array_equal(crop, renderer.optical(c0, r0, 400, 300))
        across = read_pixels(ds, window=Window(1000, 1000, 48, 48))
        assert np.array_equal(across, renderer.optical(1000, 1000, 48, 48))
        with pytest.raises(RasterError, match="budget"):
            read_pixels(ds, max_pixels=1_000_000)
        overview = ds.read(out_shape=(3, SIZE // 8, SIZE // 8))
        assert overview.shape == (3, 256, 256)


def test_same_seed_same_bytes_and_memory_stays_per_tile(uhr: UHRScene, tmp_path: Path) -> None:
    again = write_uhr_scene(tmp_path / "a.tif", size_px=SIZE, gsd_m=0.3, kind="farmland", seed=3)
    assert again.path.read_bytes() == uhr.path.read_bytes()
    # smaller render tiles: same pixels (block order in the file may differ), and the
    # Python-side peak stays near one tile's canvas (the full canvas would be 185 MB)
    tracemalloc.start()
    try:
        small = write_uhr_scene(
            tmp_path / "b.tif", size_px=SIZE, gsd_m=0.3, kind="farmland", seed=3, tile_px=512
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 80 * 2**20
    with rasterio.open(uhr.path) as a, rasterio.open(small.path) as b:
        assert np.array_equal(a.read(), b.read())
    other = make_uhr_scene("farmland", SIZE, uhr.gsd_m, 4)
    assert [o.x_m for o in other.objects] != [o.x_m for o in uhr.scene.objects]


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="kind"):
        make_uhr_scene("moon", SIZE, 0.25, 0)
    with pytest.raises(ValueError, match="size_px"):
        write_uhr_scene(tmp_path / "x.tif", size_px=100)
    with pytest.raises(ValueError, match="tile_px"):
        write_uhr_scene(tmp_path / "x.tif", size_px=SIZE, tile_px=700)
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="uhr_size_px"):
        SynthConfig(n_uhr=1, uhr_size_px=1024)
    with pytest.raises(ValueError, match="n_uhr"):
        SynthConfig(n_uhr=-1)
    assert SynthConfig(n_scenes=0, n_uhr=1).n_uhr == 1


def test_dataset_writes_uhr_records(tmp_path: Path) -> None:
    cfg = SynthConfig(n_scenes=1, n_uhr=1, uhr_size_px=SIZE, seed=5)
    generate_dataset(tmp_path, cfg)
    rs = read_records(tmp_path / "records.jsonl", root=tmp_path, must_exist=True)
    assert rs.ledger.failed == {}
    uhr = [r for r in rs.records if r.meta.get("mode") == "uhr"]
    assert uhr and all(r.images[0].path == "images/uhr-0000.tif" for r in uhr)
    img = uhr[0].images[0]
    assert (img.width, img.height) == (SIZE, SIZE)
    gsd = img.gsd.point_m
    assert 0.15 - 1e-3 <= gsd <= 0.6 + 1e-3
    assert resolve_gsd(tmp_path / img.path).gsd.point_m == pytest.approx(gsd, rel=1e-5)
    assert uhr[0].meta["scene_kind"] in UHR_KINDS and uhr[0].meta["uhr"]["overviews"]
    for r in uhr:
        for box in r.boxes:
            assert box.quad_px is not None
            assert all(0 <= v <= SIZE for v in box.quad_px)
    if hasattr(questions, "roi_questions"):  # region-of-interest questions, pixel ROIs
        rois = [r.meta["roi_xyxy_px"] for r in uhr if r.meta.get("roi_type")]
        assert rois and all(0 <= v <= SIZE for roi in rois for v in roi)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["images"] == 2 and manifest["config"]["n_uhr"] == 1
    assert sum(v for k, v in manifest["per_kind"].items() if k.startswith("uhr-")) == 1
