"""Provenance for saved artifacts: package versions and the git commit of the code."""

from __future__ import annotations

import subprocess
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from earthvlm import __version__


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the source tree earthvlm runs from (``None`` outside a checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
            text=True, timeout=5, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def package_version(name: str) -> str | None:
    """The installed version of a package, or ``None``."""
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def provenance(
    packages: tuple[str, ...] = ("torch", "transformers", "peft", "accelerate"),
) -> dict[str, Any]:
    """earthvlm's version, the given packages' versions and the git commit."""
    out: dict[str, Any] = {"earthvlm": __version__}
    out.update({p: package_version(p) for p in packages})
    out["git_commit"] = git_commit()
    return out
