"""Library messages in the words of the command line.

The library's errors name their fix as a Python caller applies it (``allow_vrt=True``);
a person at the command line needs the flag, or, where a command offers none, the fix
that is left. :func:`for_cli` rewrites those hints, so every message a command prints
suggests something its user can do.
"""

from __future__ import annotations

#: Library hint -> (with a flag, without one).
_VRT_HINT = " or open it with allow_vrt=True if you trust it."


def for_cli(message: str, *, vrt_flag: str | None = None) -> str:
    """``message`` with its library-only hints rewritten: the VRT refusal names
    ``vrt_flag`` (e.g. ``--allow-vrt``) when the command has one, else only the
    conversion to a GeoTIFF."""
    if _VRT_HINT in message:
        tail = f" or pass {vrt_flag} if you trust it." if vrt_flag else "."
        message = message.replace(_VRT_HINT, tail)
    return message


__all__ = ["for_cli"]
