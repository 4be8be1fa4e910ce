"""Visual factors of an image for the rank probe (ScaleEarth App. A.4), in numpy.

* texture: :func:`gabor_energy`, the mean squared response of a quadrature Gabor bank;
* geometry: :func:`canny_edge_density`, the share of pixels a Canny detector (Gaussian
  blur, Sobel gradient, non-maximum suppression, double threshold, hysteresis) marks as
  edges;
* semantics: the scene kind, passed to the probe as a label (no function needed).

The paper names the measures but not their parameters; the defaults here are ours and
are recorded in :func:`factor_config` for the report. Images are ``(H, W)`` or
``(H, W, C)`` arrays (transpose rasterio's ``(C, H, W)`` first); integer images are
scaled by their dtype's maximum, float images are taken as already in [0, 1], so the
absolute Canny thresholds mean the same contrast on every image.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

#: Gabor wavelengths (pixels per cycle) and orientations of the default bank.
GABOR_WAVELENGTHS_PX: tuple[float, ...] = (4.0, 8.0)
GABOR_ORIENTATIONS = 4
#: Canny: Gaussian blur sigma (px) and hysteresis thresholds on the gradient magnitude,
#: in intensity units per pixel (a sharp unit step has magnitude 1; see _sobel).
CANNY_SIGMA_PX = 1.0
CANNY_LOW, CANNY_HIGH = 0.1, 0.2


def to_gray(image: np.ndarray) -> np.ndarray:
    """A float64 ``(H, W)`` image in [0, 1] (channel mean for ``(H, W, C)``).

    Raises:
        ValueError: For an array that is not 2-D or 3-D, or smaller than 3x3.
    """
    a = np.asarray(image)
    if a.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {a.shape}")
    if np.issubdtype(a.dtype, np.integer):
        a = a.astype(np.float64) / float(np.iinfo(a.dtype).max)
    else:
        a = a.astype(np.float64)
    if a.ndim == 3:
        a = a.mean(axis=-1)
    if min(a.shape) < 3:
        raise ValueError(f"image must be at least 3x3 pixels, got shape {a.shape}")
    return a


def _convolve_same(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """2-D convolution with reflect padding, output the size of ``image`` (FFT)."""
    kh, kw = kernel.shape
    ph, pw = kh // 2, kw // 2
    # reflect padding needs the pad to be smaller than the image; wrap around otherwise
    mode = "reflect" if ph < image.shape[0] and pw < image.shape[1] else "symmetric"
    padded = np.pad(image, ((ph, ph), (pw, pw)), mode=mode)
    shape = (padded.shape[0] + kh - 1, padded.shape[1] + kw - 1)
    spec = np.fft.rfft2(padded, shape) * np.fft.rfft2(kernel, shape)
    full = np.fft.irfft2(spec, shape)
    return full[kh - 1 : kh - 1 + image.shape[0], kw - 1 : kw - 1 + image.shape[1]]


def gabor_kernel(
    wavelength_px: float, theta: float, *, sigma_px: float | None = None, gamma: float = 0.5
) -> np.ndarray:
    """A complex Gabor kernel (even part real, odd part imaginary).

    The even part is made zero-mean (flat regions give no response) and the kernel is
    scaled so that a unit-amplitude sinusoid at ``wavelength_px`` along ``theta`` gives a
    response of magnitude ~1. ``sigma_px`` defaults to 0.56 wavelengths (a one-octave
    bandwidth).
    """
    sigma = 0.56 * wavelength_px if sigma_px is None else float(sigma_px)
    half = math.ceil(3 * sigma)
    y, x = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    xr = x * math.cos(theta) + y * math.sin(theta)
    yr = -x * math.sin(theta) + y * math.cos(theta)
    env = np.exp(-(xr**2 + (gamma * yr) ** 2) / (2 * sigma**2))
    phase = 2 * math.pi * xr / wavelength_px
    even = env * np.cos(phase)
    even -= env * (even.sum() / env.sum())
    odd = env * np.sin(phase)
    return (even + 1j * odd) / (0.5 * env.sum())


def gabor_energy(
    image: np.ndarray,
    *,
    wavelengths_px: Sequence[float] = GABOR_WAVELENGTHS_PX,
    n_orientations: int = GABOR_ORIENTATIONS,
) -> float:
    """Texture: mean over a Gabor bank of the mean squared quadrature response.

    Energy = mean over wavelengths, orientations and pixels of ``even**2 + odd**2``. The
    image mean is removed first, so energy measures oriented contrast at the bank's
    frequencies (a flat image gives 0; white noise spreads its power over all
    frequencies and gives little).
    """
    g = to_gray(image)
    g = g - g.mean()
    energies = []
    for lam in wavelengths_px:
        for i in range(n_orientations):
            k = gabor_kernel(lam, math.pi * i / n_orientations)
            re = _convolve_same(g, k.real)
            im = _convolve_same(g, k.imag)
            energies.append(float(np.mean(re**2 + im**2)))
    return float(np.mean(energies))


def _gaussian_blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    if sigma_px <= 0:
        return image
    half = max(1, math.ceil(3 * sigma_px))
    t = np.arange(-half, half + 1, dtype=np.float64)
    k = np.exp(-(t**2) / (2 * sigma_px**2))
    k /= k.sum()
    return _convolve_same(_convolve_same(image, k[None, :]), k[:, None])


def _sobel(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sobel gradients divided by 4: a sharp unit step gives magnitude 1."""
    p = np.pad(image, 1, mode="edge")
    gx = (
        (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    ) / 4.0
    gy = (
        (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    ) / 4.0
    return gx, gy


def canny_edges(
    image: np.ndarray,
    *,
    sigma_px: float = CANNY_SIGMA_PX,
    low: float = CANNY_LOW,
    high: float = CANNY_HIGH,
) -> np.ndarray:
    """A boolean edge map by the Canny procedure (numpy only).

    Gaussian blur, Sobel gradient, non-maximum suppression along the gradient direction
    (quantised to 0/45/90/135 degrees), then hysteresis: pixels above ``high`` are edges,
    and pixels above ``low`` joined to them through 8-connected pixels above ``low``.
    The outermost pixel ring is never an edge (its gradient sees the padding).

    Raises:
        ValueError: If ``low > high``.
    """
    if low > high:
        raise ValueError(f"low threshold {low} must not exceed high threshold {high}")
    g = _gaussian_blur(to_gray(image), sigma_px)
    gx, gy = _sobel(g)
    mag = np.hypot(gx, gy)
    angle = (np.rad2deg(np.arctan2(gy, gx)) + 180.0) % 180.0
    direction = (np.round(angle / 45.0).astype(int)) % 4  # 0: x, 1: 45, 2: y, 3: 135
    # neighbour offsets (dy, dx) along the gradient for each direction
    offsets = {0: (0, 1), 1: (1, 1), 2: (1, 0), 3: (1, -1)}
    p = np.pad(mag, 1)
    h, w = mag.shape
    keep = np.zeros_like(mag, dtype=bool)
    for d, (dy, dx) in offsets.items():
        fwd = p[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
        bwd = p[1 - dy : 1 - dy + h, 1 - dx : 1 - dx + w]
        keep |= (direction == d) & (mag >= fwd) & (mag >= bwd)
    nms = np.where(keep, mag, 0.0)
    nms[0, :] = nms[-1, :] = nms[:, 0] = nms[:, -1] = 0.0
    strong = nms >= high
    weak = nms >= low
    edges = strong
    while True:  # grow strong edges through weak pixels until nothing changes
        q = np.pad(edges, 1)
        grown = np.zeros_like(edges)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                grown |= q[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
        grown &= weak
        if np.array_equal(grown | edges, edges):
            return edges
        edges = grown | edges


def canny_edge_density(image: np.ndarray, **kwargs: Any) -> float:
    """Geometry: the share of pixels :func:`canny_edges` marks (keyword args pass on)."""
    return float(canny_edges(image, **kwargs).mean())


def image_factors(
    images: Iterable[np.ndarray], scene_kinds: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """The three probe factors for a batch: ``texture``, ``geometry`` and (with
    ``scene_kinds``) ``scene`` (a string label per image)."""
    tex, geo = [], []
    for img in images:
        tex.append(gabor_energy(img))
        geo.append(canny_edge_density(img))
    out = {"texture": np.asarray(tex), "geometry": np.asarray(geo)}
    if scene_kinds is not None:
        if len(scene_kinds) != len(tex):
            raise ValueError(f"{len(scene_kinds)} scene kinds for {len(tex)} images")
        out["scene"] = np.asarray(list(scene_kinds), dtype=object)
    return out


def factor_config() -> dict[str, Any]:
    """The factor parameters, for the report."""
    return {
        "texture": {
            "measure": "Gabor energy (quadrature pair, mean |response|^2)",
            "wavelengths_px": list(GABOR_WAVELENGTHS_PX),
            "orientations": GABOR_ORIENTATIONS,
            "sigma": "0.56 x wavelength",
            "gamma": 0.5,
        },
        "geometry": {
            "measure": "Canny edge density (share of edge pixels)",
            "blur_sigma_px": CANNY_SIGMA_PX,
            "low": CANNY_LOW,
            "high": CANNY_HIGH,
            "units": "gradient magnitude of the [0, 1] image (sharp unit step = 1)",
        },
    }
