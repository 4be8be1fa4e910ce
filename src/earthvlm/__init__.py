"""earthvlm: remote-sensing vision-language models that know the ground sampling distance.

The package is layered (imports point downward only)::

    cli/                      people: the ``earthvlm`` command
    data/                     records, JSONL IO with a quarantine ledger, samplers
    scale/  geo/              GSD values, tiers, georeferencing, sensors; rasters

Low layers (``scale``, ``geo``, ``data``) import no torch.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("earthvlm")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
