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

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("earthvlm")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
