"""Materials: a 10-band reflectance spectrum and a SAR backscatter per surface.

Bands follow Sentinel-2's 10 m and 20 m bands (B02 blue ... B12 SWIR-2). Spectra are
plausible shapes, not a spectral library: vegetation has the red edge and a high NIR
plateau, water falls to ~0 in the NIR and SWIR, soils rise towards the SWIR, built-up
surfaces are flat and bright in the SWIR. The optical RGB view is bands (B04, B03, B02)
of the same spectra, so the optical and multispectral views always agree.

SAR backscatter sigma0 in dB (C-band, VV-like): calm water is dark (-22 dB), grass and
soil moderate, forest volume scattering brighter, metal objects very bright, and
building walls produce double-bounce returns (added by the renderer along walls).
"""

from __future__ import annotations

import numpy as np

#: Band names of the multispectral view, in order.
BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
#: Indexes of red, green, blue in :data:`BANDS` (the optical view).
RGB_INDEX = (2, 1, 0)
#: Channel of the SAR backscatter (linear sigma0) on the render canvas, after the bands.
SAR_CHANNEL = len(BANDS)
N_CHANNELS = len(BANDS) + 1

# Base spectra (reflectance 0-1) over BANDS
_VEG = (0.04, 0.08, 0.04, 0.12, 0.30, 0.38, 0.42, 0.43, 0.22, 0.11)
_DRY_VEG = (0.06, 0.09, 0.10, 0.15, 0.22, 0.26, 0.28, 0.29, 0.30, 0.20)
_FOREST = (0.02, 0.05, 0.03, 0.09, 0.24, 0.30, 0.33, 0.34, 0.15, 0.07)
_WATER = (0.07, 0.06, 0.04, 0.03, 0.02, 0.015, 0.01, 0.01, 0.005, 0.003)
_SOIL = (0.10, 0.14, 0.19, 0.22, 0.24, 0.26, 0.27, 0.28, 0.34, 0.30)
_SAND = (0.22, 0.28, 0.34, 0.37, 0.39, 0.40, 0.41, 0.42, 0.45, 0.40)
_CONCRETE = (0.25, 0.27, 0.28, 0.29, 0.30, 0.30, 0.31, 0.31, 0.33, 0.30)
_ASPHALT = (0.07, 0.08, 0.08, 0.09, 0.09, 0.10, 0.10, 0.10, 0.12, 0.11)


def _paint(r: float, g: float, b: float, nir: float = 0.3, swir: float = 0.25) -> tuple[float, ...]:
    """A painted surface: visible bands from its colour, flat NIR and SWIR."""
    return (b, g, r, (r + nir) / 2, nir, nir, nir, nir, swir, swir * 0.9)


#: name -> (spectrum over BANDS, sigma0 dB)
MATERIALS: dict[str, tuple[tuple[float, ...], float]] = {
    "grass": (_VEG, -12.0),
    "crop": (_VEG, -10.0),
    "dry_grass": (_DRY_VEG, -13.0),
    "forest": (_FOREST, -7.5),
    "water": (_WATER, -22.0),
    "soil": (_SOIL, -14.0),
    "sand": (_SAND, -16.0),
    "concrete": (_CONCRETE, -10.0),
    "asphalt": (_ASPHALT, -18.0),
    "lane_mark": (_paint(0.85, 0.85, 0.8, 0.8, 0.7), -14.0),
    "line_white": (_paint(0.9, 0.9, 0.9, 0.85, 0.75), -12.0),
    "roof_red": (_paint(0.45, 0.15, 0.10, 0.35, 0.40), -5.0),
    "roof_grey": (_paint(0.30, 0.30, 0.32, 0.30, 0.32), -5.0),
    "roof_white": (_paint(0.70, 0.70, 0.70, 0.65, 0.60), -5.0),
    "roof_dark": (_paint(0.12, 0.12, 0.13, 0.15, 0.18), -5.0),
    "roof_ridge": (_paint(0.20, 0.20, 0.20, 0.25, 0.25), -3.0),
    "paint_white": (_paint(0.85, 0.85, 0.85, 0.75, 0.6), 2.0),
    "paint_black": (_paint(0.04, 0.04, 0.05, 0.06, 0.05), 2.0),
    "paint_red": (_paint(0.60, 0.05, 0.05, 0.40, 0.3), 2.0),
    "paint_blue": (_paint(0.05, 0.12, 0.55, 0.35, 0.25), 2.0),
    "paint_grey": (_paint(0.45, 0.45, 0.47, 0.40, 0.35), 2.0),
    "glass": (_paint(0.08, 0.10, 0.12, 0.08, 0.06), 0.0),
    "tank_white": (_paint(0.80, 0.80, 0.78, 0.70, 0.60), 4.0),
    "tank_roof": (_paint(0.70, 0.70, 0.68, 0.62, 0.55), 3.0),
    "pool_water": (_paint(0.10, 0.55, 0.75, 0.05, 0.02), -20.0),
    "court_green": (_paint(0.15, 0.45, 0.25, 0.25, 0.2), -11.0),
    "court_orange": (_paint(0.70, 0.35, 0.15, 0.40, 0.35), -11.0),
    "cloud": ((0.75, 0.76, 0.77, 0.77, 0.77, 0.77, 0.76, 0.76, 0.55, 0.45), 0.0),
    "shadow": ((0.02, 0.02, 0.02, 0.03, 0.04, 0.05, 0.05, 0.05, 0.04, 0.03), -20.0),
}

#: Colour words for materials (for colour questions).
COLOUR_NAMES: dict[str, str] = {
    "paint_white": "white", "paint_black": "black", "paint_red": "red",
    "paint_blue": "blue", "paint_grey": "grey", "roof_red": "red", "roof_grey": "grey",
    "roof_white": "white", "roof_dark": "dark grey", "tank_white": "white",
}  # fmt: skip


def material_vector(name: str) -> np.ndarray:
    """The canvas vector of a material: 10 reflectances then linear sigma0."""
    try:
        spec, db = MATERIALS[name]
    except KeyError:
        raise KeyError(f"unknown material {name!r}; known: {sorted(MATERIALS)}") from None
    return np.array([*spec, 10 ** (db / 10)], dtype=np.float32)


#: (len(MATERIALS), N_CHANNELS) table and name -> row index, built once.
MATERIAL_NAMES: tuple[str, ...] = tuple(MATERIALS)
MATERIAL_TABLE = np.stack([material_vector(n) for n in MATERIAL_NAMES])
MATERIAL_INDEX = {n: i for i, n in enumerate(MATERIAL_NAMES)}
