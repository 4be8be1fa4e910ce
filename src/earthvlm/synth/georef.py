"""Where synthetic images sit on Earth: UTM zone 33N, centred on the central meridian.

The grid pixel is ``gsd * 0.9996`` (the UTM scale factor there), so the ground distance
between pixel centres at the image centre is exactly the GSD, and the GSD resolver
recovers from each file the value its record stores.
"""

from __future__ import annotations

from rasterio.transform import Affine

UTM_CRS = "EPSG:32633"
UTM_K0 = 0.9996  # UTM scale factor on the central meridian


def utm_transform(gsd_m: float, width: int, height: int, northing_m: float) -> Affine:
    """A UTM 33N geotransform centred on the central meridian with ground GSD ``gsd_m``."""
    px = gsd_m * UTM_K0
    return Affine(px, 0.0, 500_000.0 - width * px / 2, 0.0, -px, northing_m + height * px / 2)
