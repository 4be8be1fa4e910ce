"""Gabor energy and Canny edge density respond to what they should."""

from __future__ import annotations

import numpy as np
import pytest

from earthvlm.eval.diagnostics import canny_edge_density, canny_edges, gabor_energy, image_factors

N = 64


def stripes(period: float = 8.0) -> np.ndarray:
    x = np.arange(N)
    return 0.5 + 0.25 * np.sin(2 * np.pi * x / period)[None, :].repeat(N, 0)


def noise_like(img: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return img.mean() + img.std() * rng.standard_normal(img.shape)


def test_gabor_energy_prefers_stripes_at_the_bank_frequency() -> None:
    s = stripes(8.0)
    noise = noise_like(s)
    assert noise.std() == pytest.approx(s.std(), rel=0.05)
    assert gabor_energy(s) > 3 * gabor_energy(noise)
    assert gabor_energy(s.T) == pytest.approx(gabor_energy(s), rel=0.05)  # any orientation
    assert gabor_energy(np.full((N, N), 0.7)) == pytest.approx(0.0, abs=1e-12)


def checkerboard(square: int = 8) -> np.ndarray:
    y, x = np.mgrid[:N, :N]
    return (((y // square) + (x // square)) % 2).astype(float)


def test_edge_density_is_higher_for_a_checkerboard_than_a_gradient() -> None:
    ramp = np.linspace(0, 1, N)[None, :].repeat(N, 0)
    assert canny_edge_density(checkerboard()) > 0.15
    assert canny_edge_density(ramp) == 0.0
    assert canny_edge_density(np.zeros((N, N))) == 0.0


def test_canny_draws_thin_closed_contours() -> None:
    img = np.zeros((N, N))
    img[16:48, 16:48] = 1.0
    edges = canny_edges(img)
    assert 100 < edges.sum() < 160  # one or two pixels wide along a 4 x 32 px perimeter
    assert edges[32, 14:19].any() and not edges[32, 20:44].any()  # on the border, not inside


def test_integer_and_colour_images_mean_the_same_contrast() -> None:
    cb = checkerboard()
    u8 = (cb * 255).astype(np.uint8)
    rgb = np.repeat(cb[..., None], 3, axis=-1)
    assert canny_edge_density(u8) == canny_edge_density(cb) == canny_edge_density(rgb)
    f = image_factors([cb, stripes()], scene_kinds=["urban", "farmland"])
    assert set(f) == {"texture", "geometry", "scene"} and f["texture"].shape == (2,)
    with pytest.raises(ValueError, match="shape"):
        gabor_energy(np.zeros((2, N, N, 3)))
