"""Project exceptions.

Every error a user can trigger with bad input derives from :class:`EarthVLMError`
and says what was found, where it came from, and what to do about it.
"""

from __future__ import annotations


class EarthVLMError(Exception):
    """Base class of every earthvlm error raised for bad input or configuration."""


class GSDError(EarthVLMError, ValueError):
    """A ground sampling distance is invalid (not positive, not finite, absurdly large)
    or was used where a known value is required."""


class RasterError(EarthVLMError):
    """A raster cannot be opened, is refused for safety, or its pixels cannot be read."""


class PathEscapeError(EarthVLMError, ValueError):
    """A path from a dataset points outside the dataset root (or is a URL / GDAL virtual path)."""


class RecordError(EarthVLMError, ValueError):
    """A sample record or a JSONL file of records is invalid."""


class SamplerError(EarthVLMError, ValueError):
    """A sampler's constraints cannot be satisfied by the data it was given."""


class ConfigError(EarthVLMError, ValueError):
    """A config (a YAML file, a mapping, a ``--set`` override) is unreadable or has a bad
    key or value; the message names the file, the dotted key and what is allowed."""
