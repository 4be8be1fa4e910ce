"""The coded UHR test raster, written once per session (see ``uhr_rasters.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from uhr_rasters import write_coded_tif


@pytest.fixture(scope="session")
def coded_tif(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_coded_tif(tmp_path_factory.mktemp("uhr") / "coded.tif")
