"""UHRReader: global view from the best overview, windowed crops, one GSD per view,
bounded JPEG / PNG decoding, bands and sample types to RGB uint8."""

from __future__ import annotations

import math
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.enums import ColorInterp
from uhr_rasters import HEIGHT, RESOLUTION, SOURCE_GSD, WIDTH, coded_pixels

from earthvlm.data.pixels import decode_image
from earthvlm.data.resolution import Resolution, smart_resize
from earthvlm.errors import RasterError
from earthvlm.geo.raster import write_geotiff
from earthvlm.scale.georef import gsd_from_raster
from earthvlm.scale.gsd import GSD, GSDKind
from earthvlm.uhr import ReaderConfig, UHRReader

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

SHARED_RASTERS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "rasters"


def reader(path: Path, **kwargs) -> UHRReader:
    kwargs.setdefault("gsd", SOURCE_GSD)
    return UHRReader(path, kwargs.pop("resolution", RESOLUTION), **kwargs)


# -- the global view ----------------------------------------------------------------------


def test_global_view_is_the_best_overview_at_the_processor_size(coded_tif: Path) -> None:
    with reader(coded_tif) as r:
        view = r.global_view()
    assert view.hw == (256, 384) and view.pixels.dtype == np.uint8
    assert view.window_xyxy_px == (0, 0, WIDTH, HEIGHT)
    assert view.level == 8  # 3072 / 384: the 8x overview, taken as is
    with rasterio.open(coded_tif, overview_level=2) as ov:
        expected = ov.read().transpose(1, 2, 0)
    np.testing.assert_array_equal(view.pixels, expected)
    assert not view.pixels.flags.writeable


def test_global_view_gsd_is_the_source_gsd_times_the_downsampling(coded_tif: Path) -> None:
    with reader(coded_tif) as r:
        view = r.global_view()
    assert view.downsample == 8.0 and view.scale_xy == (0.125, 0.125)
    assert view.gsd.kind is GSDKind.EXACT and view.gsd.point_m == 4.0
    assert view.gsd.source == SOURCE_GSD.source and "resized 2048x3072 -> 256x384" in (
        view.gsd.detail
    )
    with reader(coded_tif, gsd=GSD.range(0.3, 0.6)) as r:
        assert r.global_view().gsd.bounds_m == (2.4, 4.8)
    with reader(coded_tif, gsd=GSD.unknown("no metadata")) as r:
        assert not r.global_view().gsd.is_known


def test_gsd_defaults_to_the_georeferencing(coded_tif: Path) -> None:
    with UHRReader(coded_tif, RESOLUTION) as r:
        measured = gsd_from_raster(coded_tif).gsd
        assert r.gsd == measured and r.gsd.point_m == pytest.approx(0.5, rel=1e-3)
        assert r.global_view().gsd.point_m == measured.point_m * 8


def test_a_smaller_global_budget_gives_a_coarser_view(coded_tif: Path) -> None:
    with reader(coded_tif) as r:
        view = r.global_view(max_pixels=192 * 128)
    assert view.hw == (128, 192) and view.gsd.point_m == 8.0
    assert view.level == 8  # no 16x overview: the 8x one, resized


def test_views_need_no_further_resize_by_the_processor(coded_tif: Path) -> None:
    res = RESOLUTION
    with reader(coded_tif) as r:
        views = [r.global_view(), r.read((0, 0, 256, 256)), r.read((5, 7, 1900, 1003))]
        views.append(r.read((100, 100, 101, 140)))  # enlarged: below min_pixels
    for v in views:
        assert smart_resize(*v.hw, res.factor, res.min_pixels, res.max_pixels) == v.hw


# -- crops ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "window",
    [(0, 0, 256, 256), (1000, 700, 1384, 956), (2816, 1792, 3072, 2048), (511, 511, 543, 1023)],
)
def test_native_crops_are_the_source_pixels_and_keep_the_gsd(coded_tif: Path, window) -> None:
    with reader(coded_tif) as r:
        view = r.read(window)
    assert view.is_native and view.level == 1 and view.window_xyxy_px == window
    np.testing.assert_array_equal(view.pixels, coded_pixels(*window))
    assert view.gsd == SOURCE_GSD  # the very same value, provenance included


def test_a_crop_over_the_budget_is_resized_from_an_overview_with_its_gsd(coded_tif: Path) -> None:
    with reader(coded_tif) as r:
        view = r.read((0, 0, 512, 512))  # 262,144 px > 98,304: to 288 x 288
        big = r.read((0, 0, 2048, 2048))
    assert view.hw == (288, 288) and not view.is_native and view.level == 1
    assert view.gsd.point_m == pytest.approx(0.5 * 512 / 288, rel=1e-15)
    assert big.hw == (288, 288) and big.level == 4  # 2048 / 288 = 7.1: the 4x overview
    assert big.gsd.point_m == pytest.approx(0.5 * 2048 / 288, rel=1e-15)


def test_memory_follows_the_view_not_the_scene(coded_tif: Path, monkeypatch) -> None:
    from earthvlm.uhr import reader as reader_module

    reads: list[tuple[int, int, int]] = []  # (level width, window width, window height)
    original = reader_module.read_pixels

    def spy(ds, *, window, **kwargs):
        reads.append((ds.width, int(window.width), int(window.height)))
        return original(ds, window=window, **kwargs)

    monkeypatch.setattr(reader_module, "read_pixels", spy)
    with reader(coded_tif) as r:
        r.global_view()
        r.read((1000, 700, 1384, 956))
    assert reads == [(384, 384, 256), (WIDTH, 384, 256)]


def test_crops_of_a_small_raster_equal_a_full_read(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (3, 500, 700), dtype=np.uint8)
    path = write_geotiff(tmp_path / "small.tif", data, crs=None, transform=None)
    with rasterio.open(path) as ds:
        full = ds.read().transpose(1, 2, 0)
    with reader(path) as r:
        for x1, y1, x2, y2 in [(0, 0, 700, 500), (13, 17, 301, 241), (640, 448, 700, 500)]:
            view = r.read((x1, y1, x2, y2))
            crop = full[y1:y2, x1:x2]
            if view.is_native:
                np.testing.assert_array_equal(view.pixels, crop)
            else:  # resized exactly as the processor resizes: PIL bicubic on the crop
                resized = Image.fromarray(crop).resize(view.hw[::-1], Image.Resampling.BICUBIC)
                np.testing.assert_array_equal(view.pixels, np.asarray(resized))
        assert r.read((13, 17, 301, 241)).hw == (224, 288)  # native but whole tokens: resized


@pytest.mark.parametrize(
    "window", [(0, 0, 0, 10), (0, 0, WIDTH + 1, 10), (-1, 0, 10, 10), (0.5, 0, 10, 10), (1, 2, 3)]
)
def test_bad_windows_are_refused(coded_tif: Path, window) -> None:
    with reader(coded_tif) as r, pytest.raises(ValueError, match="window"):
        r.read(window)


def test_a_closed_reader_refuses_reads(coded_tif: Path) -> None:
    r = reader(coded_tif)
    r.close()
    with pytest.raises(RasterError, match="closed"):
        r.global_view()


# -- rasters without overviews, budgets ------------------------------------------------------


def test_without_overviews_large_views_are_decimated_by_gdal(tmp_path: Path) -> None:
    data = np.ascontiguousarray(coded_pixels(0, 0, 1024, 1024).transpose(2, 0, 1))
    path = write_geotiff(tmp_path / "flat.tif", data, crs=None, transform=None, tiled=True)
    config = ReaderConfig(max_decode_pixels=512 * 512, max_scan_pixels=2048 * 2048)
    with reader(path, config=config) as r:
        view = r.global_view()  # 1 Mpx over the decode budget: GDAL's average read
        assert view.hw == (288, 288) and view.level == 1
        assert view.gsd.point_m == pytest.approx(0.5 * 1024 / 288)
        # the blue channel holds the 256 px cell: averaging keeps the cell layout
        assert view.pixels[40, 40, 2] == 0 and view.pixels[40, 110, 2] == 1
    tight = ReaderConfig(max_decode_pixels=512 * 512, max_scan_pixels=512 * 512)
    with reader(path, config=tight) as r, pytest.raises(RasterError, match="build overviews"):
        r.global_view()


def test_a_sidecar_ovr_is_never_shown(tmp_path: Path) -> None:
    # an X.tif.ovr written as VRT XML: GDAL would take it as X.tif's overviews and the
    # global view would show the file it reads
    secret = write_geotiff(
        tmp_path / "secret.tif", np.full((1, 512, 512), 77, np.uint8), crs=None, transform=None
    )
    (tmp_path / "dataset").mkdir()
    path = write_geotiff(
        tmp_path / "dataset" / "flat.tif",
        np.full((1, 1024, 1024), 5, np.uint8),
        crs=None,
        transform=None,
        tiled=True,
    )
    Path(f"{path}.ovr").write_text(
        '<VRTDataset rasterXSize="512" rasterYSize="512"><VRTRasterBand dataType="Byte" '
        f'band="1"><SimpleSource><SourceFilename>{secret}</SourceFilename><SourceBand>1'
        "</SourceBand></SimpleSource></VRTRasterBand></VRTDataset>"
    )
    config = ReaderConfig(max_decode_pixels=512 * 512, max_scan_pixels=2048 * 2048)
    with reader(path, config=config) as r:
        assert r.overviews == ()
        view = r.global_view()
    assert view.level == 1 and int(view.pixels.max()) == 5


def test_a_large_tiled_raster_passes_a_small_decode_budget(coded_tif: Path) -> None:
    config = ReaderConfig(max_decode_pixels=400_000)  # the scene is 6.3 Mpx
    with reader(coded_tif, config=config) as r:
        assert r.global_view().hw == (256, 384)
        crop = r.read((64, 64, 320, 320)).pixels
    np.testing.assert_array_equal(crop, coded_pixels(64, 64, 320, 320))


def test_blocks_larger_than_the_budget_are_refused(tmp_path: Path) -> None:
    data = np.zeros((1, 64, 2048), dtype=np.uint8)
    path = write_geotiff(tmp_path / "strips.tif", data, crs=None, transform=None)
    with pytest.raises(RasterError, match="blocks of 2048 x"):
        reader(path, config=ReaderConfig(max_decode_pixels=2047))


# -- JPEG and PNG: the bounded path ------------------------------------------------------------


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims ``width x height`` (1-bit grey), with one row of
    data: what a decompression bomb looks like before decoding."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = zlib.compress(b"\x00" * (1 + math.ceil(width / 8)))
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", row) + chunk(b"IEND", b"")
    path.write_bytes(png)
    return path


def test_a_decompression_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    path = _png_header_only(tmp_path / "bomb.png", 50_000, 50_000)
    assert path.stat().st_size < 1000
    with pytest.raises(RasterError) as e:
        UHRReader(path, RESOLUTION)
    assert "bomb.png" in str(e.value) and "89,478,485 px" in str(e.value)
    assert "tiled GeoTIFF" in str(e.value)


def test_png_over_a_chosen_budget_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.fromarray(coded_pixels(0, 0, 640, 480)).save(path)
    with pytest.raises(RasterError, match="over the full-decode budget of 300,000 px"):
        reader(path, config=ReaderConfig(max_decode_pixels=300_000))


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_png_and_jpeg_views_match_the_collators_decoder(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"scene{suffix}"
    Image.fromarray(coded_pixels(0, 0, 640, 480)).save(path, quality=95)
    decoded = np.asarray(decode_image(path))
    with reader(path) as r:
        assert r.source_hw == (480, 640) and r.driver in ("PNG", "JPEG")
        view = r.read((64, 32, 448, 288))
        np.testing.assert_array_equal(view.pixels, decoded[32:288, 64:448])
        assert view.gsd == SOURCE_GSD
        overview = r.global_view()
    assert overview.hw == (256, 352)
    assert overview.gsd.point_m == pytest.approx(0.5 * math.sqrt(480 * 640 / (256 * 352)))


# -- bands and sample types ------------------------------------------------------------------


def _write(path: Path, data: np.ndarray, **profile) -> Path:
    count, height, width = data.shape
    with rasterio.open(
        path, "w", driver="GTiff", width=width, height=height, count=count, dtype=data.dtype,
        **profile,
    ) as dst:  # fmt: skip
        dst.write(data)
    return path


def test_one_band_is_grey(tmp_path: Path) -> None:
    grey = coded_pixels(0, 0, 256, 128)[..., 0][None]
    with reader(_write(tmp_path / "grey.tif", grey)) as r:
        pixels = r.read((0, 0, 256, 128)).pixels
    assert r.bands == (1,)
    for c in range(3):
        np.testing.assert_array_equal(pixels[..., c], grey[0])


def test_an_alpha_band_is_composited_onto_white(tmp_path: Path) -> None:
    rgb = coded_pixels(0, 0, 256, 128).transpose(2, 0, 1)
    alpha = np.zeros((1, 128, 256), np.uint8)
    alpha[:, :, 128:] = 255
    rgba = np.concatenate([rgb, alpha])
    path = _write(tmp_path / "rgba.tif", rgba, photometric="RGB", alpha="YES")
    with rasterio.open(path) as ds:
        assert ds.colorinterp[3] == ColorInterp.alpha
    with reader(path) as r:
        pixels = r.read((0, 0, 256, 128)).pixels
    assert (pixels[:, :128] == 255).all()
    np.testing.assert_array_equal(pixels[:, 128:], rgb.transpose(1, 2, 0)[:, 128:])


def test_four_bands_without_alpha_show_bands_1_to_3_or_the_chosen_ones(tmp_path: Path) -> None:
    data = np.stack([np.full((64, 64), v, np.uint8) for v in (10, 20, 30, 40)])
    # (rasterio's default for 4 uint8 bands is RGBA: say these are not)
    path = _write(tmp_path / "bgrn.tif", data, photometric="MINISBLACK")
    with reader(path) as r:
        assert tuple(r.read((0, 0, 64, 64)).pixels[0, 0]) == (10, 20, 30)
    with reader(path, config=ReaderConfig(bands=(3, 2, 1))) as r:
        assert tuple(r.read((0, 0, 64, 64)).pixels[0, 0]) == (30, 20, 10)
    with pytest.raises(RasterError, match="has 4 band"):
        reader(path, config=ReaderConfig(bands=(5, 2, 1)))


def test_a_palette_is_applied(tmp_path: Path) -> None:
    index = np.zeros((1, 64, 64), np.uint8)
    index[:, 32:] = 1
    path = tmp_path / "palette.tif"
    with rasterio.open(
        path, "w", driver="GTiff", width=64, height=64, count=1, dtype="uint8",
        photometric="palette",
    ) as dst:  # fmt: skip
        dst.write(index)
        dst.write_colormap(1, {0: (200, 0, 0, 255), 1: (0, 0, 150, 255)})
    with reader(path) as r:
        pixels = r.read((0, 0, 64, 64)).pixels
    assert tuple(pixels[0, 0]) == (200, 0, 0) and tuple(pixels[63, 63]) == (0, 0, 150)


def test_uint16_is_stretched_with_one_set_of_bounds_for_every_view(tmp_path: Path) -> None:
    y, x = np.mgrid[0:400, 0:640]
    data = np.stack([x * 10, y * 10, np.full_like(x, 1000)]).astype(np.uint16)
    with reader(_write(tmp_path / "u16.tif", data)) as r:
        bounds = r.stretch_bounds
        assert bounds is not None
        np.testing.assert_allclose(bounds[0], np.percentile(data[0], [2, 98]))
        np.testing.assert_allclose(bounds[2], (1000.0, 1001.0))  # a constant band
        dark = r.read((0, 0, 64, 64)).pixels  # the darkest corner is not re-stretched
        whole = r.read((0, 0, 640, 384)).pixels
        np.testing.assert_array_equal(r.stretch_bounds, bounds)
    lo, hi = bounds[0]
    expected = np.clip(np.rint((data[0, :64, :64] - lo) * 255 / (hi - lo)), 0, 255)
    assert np.abs(dark[..., 0].astype(int) - expected).max() <= 1
    assert dark[..., 0].max() < 25 and whole[..., 0].max() == 255 and whole[..., 0].min() == 0
    assert (dark[..., 2] == 0).all()


def test_nodata_and_nan_are_left_out_of_the_stretch(tmp_path: Path) -> None:
    data = np.zeros((1, 100, 100), np.float32)
    data[0, :, 50:] = np.linspace(100, 200, 50, dtype=np.float32)
    data[0, 0, :10] = np.nan
    data[0, 1, :10] = -9999
    with reader(_write(tmp_path / "f32.tif", data, nodata=-9999)) as r:
        lo, hi = r.stretch_bounds[0]
        pixels = r.read((0, 0, 100, 100)).pixels
    assert lo == pytest.approx(np.percentile(np.r_[np.zeros(4990), data[0, :, 50:].ravel()], 2))
    assert hi > 190 and (pixels[0, :10] == 0).all()


# -- real files ---------------------------------------------------------------------------


@pytest.mark.shared_data
def test_real_cog_and_corrupt_file() -> None:
    if not SHARED_RASTERS.is_dir():
        pytest.skip(f"shared rasters not found at {SHARED_RASTERS}")
    res = Resolution(32, 32 * 32, 128 * 128)
    with UHRReader(SHARED_RASTERS / "cogeo.tif", res) as r:  # Web Mercator, overviews 2-64
        assert r.gsd == gsd_from_raster(SHARED_RASTERS / "cogeo.tif").gsd
        view = r.global_view()
        assert view.hw == (128, 128) and view.level == 8
        assert view.gsd.point_m == pytest.approx(r.gsd.point_m * 8)
    corrupt = pytest.raises(RasterError, match=r"corrupt\.tif.*corrupt or truncated")
    with UHRReader(SHARED_RASTERS / "corrupt.tif", res) as r, corrupt:
        r.read((512, 512, 640, 640))  # the damaged tile


def test_the_uhr_package_imports_no_torch() -> None:
    heavy = "('torch', 'transformers')"
    code = f"import sys, earthvlm.uhr; sys.exit(any(m in sys.modules for m in {heavy}))"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
