"""earthvlm: remote-sensing vision-language models that know the ground sampling distance.

Four published systems (ScaleEarth, RSCoVLM, ZoomEarth, EarthMind) on the real Qwen2.5-VL /
Qwen3-VL classes of transformers. The package is layered; imports point downward only
(``tests/test_layers.py`` checks it, and ``docs/architecture.md`` draws it)::

    cli/  serve/              people: the ``earthvlm`` command, the OpenAI-compatible server
    experiments/              whole experiments (micro-ScaleEarth, fusion)
    train/  eval/             SFT and GRPO loops | benchmarks, metrics, diagnostics, runner
    uhr/                      UHR reading, views with their own GSD, the zoom tool and loop
    models/                   the one assembled model (EarthVLM), its recipe, saving, export
    adapters/  fusion/  teacher/   CS-HLoRA and baselines | optical + SAR fusion | teacher LLMs
    data/  synth/             records, sources, mixing, collation | the synthetic EO world
    scale/  geo/              GSD values, tiers, georeferencing | rasters, boxes, IoU

The low layers (``geo``, ``scale``, ``data``, ``synth``, ``teacher``) import no torch.
"""

import os
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from pathlib import Path

try:
    __version__ = version("earthvlm")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"


def _package_dir(name: str) -> Path | None:
    spec = find_spec(name)  # finds the package without importing it
    origin = spec.origin if spec is not None else None
    return Path(origin).parent if origin else None


def _point_proj_at_data() -> None:
    """Point PROJ at a ``proj.db`` through ``PROJ_DATA``, before rasterio loads.

    rasterio hands its wheel's PROJ data to GDAL in code, which libgeotiff's own PROJ
    context does not see: opening a GeoTIFF in, say, kilometres then prints "Cannot find
    proj.db" (harmless, alarming). The environment variable reaches every context. A
    ``PROJ_DATA`` / ``PROJ_LIB`` that holds a ``proj.db`` is left alone; one that does
    not (another install's setting) is replaced. The data is rasterio's own (it matches
    the PROJ that rasterio links), else pyproj's; pyproj reads its own folder first, so
    it is unaffected.
    """
    set_ = [k for k in ("PROJ_DATA", "PROJ_LIB") if k in os.environ]
    if any(Path(os.environ[k], "proj.db").is_file() for k in set_):
        return
    rasterio, pyproj = _package_dir("rasterio"), _package_dir("pyproj")
    for folder in (
        rasterio / "proj_data" if rasterio else None,
        pyproj / "proj_dir" / "share" / "proj" if pyproj else None,
    ):
        if folder is not None and (folder / "proj.db").is_file():
            for k in set_:
                del os.environ[k]
            os.environ["PROJ_DATA"] = str(folder)
            return


_point_proj_at_data()

__all__ = ["__version__"]
