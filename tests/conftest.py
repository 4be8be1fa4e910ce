"""Fixtures shared by several test modules.

Keep this file small: only fixtures used by more than one module belong here.

* ``write_geotiff``: writes a tiny GeoTIFF with a chosen CRS, affine transform or GCPs
  (used by the georef, raster and resolver tests).
* ``micro_ci``: a finished micro-ScaleEarth run of the ``ci`` preset (the experiment,
  trained-model and ``diagnose`` tests).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.errors import NotGeoreferencedWarning


@pytest.fixture
def write_geotiff() -> Callable[..., Path]:
    """A factory ``write_geotiff(path, *, crs=None, transform=None, gcps=None, ...)``.

    Writes ``data`` (default: ``arange`` over a ``(count, height, width)`` uint8 array)
    to a GeoTIFF at ``path`` and returns the path. ``crs`` is anything rasterio accepts
    (``"EPSG:32633"``, a PROJ string); ``transform`` an ``Affine`` (rasterio's identity
    when omitted); ``gcps`` a list of ``GroundControlPoint`` in ``crs``.
    """

    def _write(
        path: Path,
        *,
        crs: Any = None,
        transform: Any = None,
        gcps: Sequence[Any] | None = None,
        width: int = 4,
        height: int = 4,
        count: int = 1,
        dtype: str = "uint8",
        data: np.ndarray | None = None,
    ) -> Path:
        if data is None:
            data = (np.arange(count * height * width) % 251).reshape(count, height, width)
        data = np.asarray(data, dtype=dtype)
        count, height, width = data.shape
        profile: dict[str, Any] = {
            "driver": "GTiff",
            "width": width,
            "height": height,
            "count": count,
            "dtype": dtype,
            "crs": crs,
        }
        if gcps is not None:
            profile["gcps"] = list(gcps)
        elif transform is not None:
            profile["transform"] = transform
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(data)
        return Path(path)

    return _write


@pytest.fixture(scope="session")
def micro_ci(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished micro-ScaleEarth run of the ``ci`` preset, made through the CLI
    (``earthvlm quickstart --preset ci``): data, stage 1, the four stage-2 variants,
    report, figures and ``results.json``. Some minutes; shared by the experiment, the
    trained-model and the ``diagnose`` tests. ``EARTHVLM_MICRO_CI_DIR`` names a folder
    to run in instead (a finished one is reused, which speeds up local reruns)."""
    import os

    from typer.testing import CliRunner

    from earthvlm.cli.main import app

    out = Path(os.environ.get("EARTHVLM_MICRO_CI_DIR") or tmp_path_factory.mktemp("micro"))
    result = CliRunner(env={"COLUMNS": "400"}).invoke(
        app, ["quickstart", "--preset", "ci", "--out", str(out)]
    )
    if result.exit_code != 0:
        raise RuntimeError(f"quickstart --preset ci failed:\n{result.output}") from (
            result.exception
        )
    return out
