"""``earthvlm gsd --verify`` gives the verdict training gives: a JPEG or PNG is decoded by
PIL (as the collator and ``ask`` decode it), every other raster by GDAL."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from earthvlm.cli.main import app
from earthvlm.data.pixels import ImageDecodeError, decode_image, verify_pixels

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")


def _good(tmp_path: Path, suffix: str) -> bytes:
    rgb = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    path = tmp_path / f"good{suffix}"
    Image.fromarray(rgb).save(path, **({"quality": 90} if suffix == ".jpg" else {}))
    return path.read_bytes()


#: one damaged file per kind: (name, suffix, damage of the good bytes)
DAMAGED = [
    ("png_cut_in_half", ".png", lambda b: b[: len(b) // 2]),  # GDAL read it as fine
    ("png_without_iend", ".png", lambda b: b[:-12]),
    ("png_bad_crc", ".png", lambda b: b[:60] + bytes([b[60] ^ 1]) + b[61:]),
    ("jpeg_cut_in_half", ".jpg", lambda b: b[: len(b) // 2]),
    ("jpeg_zeroed_scan", ".jpg", lambda b: b[:600] + b"\0" * 200 + b[800:]),
    ("jpeg_without_eoi", ".jpg", lambda b: b[:-2]),  # GDAL refused what training reads
]


def _decodes(path: Path) -> bool:
    try:
        decode_image(path)
    except ImageDecodeError:
        return False
    return True


@pytest.mark.parametrize(("name", "suffix", "damage"), DAMAGED, ids=[d[0] for d in DAMAGED])
def test_verify_gives_the_verdict_of_the_training_decoder(
    tmp_path: Path, name: str, suffix: str, damage
) -> None:
    path = tmp_path / f"{name}{suffix}"
    path.write_bytes(damage(_good(tmp_path, suffix)))
    expected = _decodes(path)
    try:
        assert verify_pixels(path) == "PIL"
        verified = True
    except ImageDecodeError:
        verified = False
    assert verified == expected
    result = CliRunner().invoke(app, ["gsd", "--json", "--verify", str(path)])
    (row,) = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert (row.get("pixels") == "ok") == expected, row
    assert (row["status"] == "failed") == (not expected)


def test_the_cut_png_is_refused_and_a_good_file_passes(tmp_path: Path) -> None:
    cut = tmp_path / "cut.png"
    cut.write_bytes(_good(tmp_path, ".png")[:400])
    with pytest.raises(ImageDecodeError, match=r"cut\.png"):
        verify_pixels(cut)
    assert verify_pixels(tmp_path / "good.png") == "PIL"
    tif = tmp_path / "a.tif"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tif)
    assert verify_pixels(tif) == "GDAL"
