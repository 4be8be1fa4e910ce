"""The output side of the diagnostics: a Markdown report (plus its numbers as JSON) and
the figure helpers the plots share.

A section is Markdown text or any result with ``to_markdown()`` (and, for the JSON
twin, ``to_dict()``): :class:`~.spoof.SpoofCurve`, :class:`~.gates.GateCurves`,
:class:`~.calibration.CalibrationStats`, :class:`~.probe.ProbeResult`. Figures are
drawn on a bare :class:`matplotlib.figure.Figure` (no pyplot, no global backend), and
matplotlib is imported only when a plot is made.
"""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from earthvlm import __version__
from earthvlm.io import atomic_path, atomic_write_text
from earthvlm.provenance import git_commit

#: GSD tier boundaries marked on every GSD axis (high | mid | low-A | low-B), metres.
TIER_BOUNDARIES_M: tuple[float, ...] = (0.2, 1.0, 5.0)


# -- Markdown -----------------------------------------------------------------------------


def fmt_ci(lo: float, hi: float) -> str:
    """``[lo, hi]`` to three decimals (``-`` when undefined)."""
    if math.isnan(lo) or math.isnan(hi):
        return "-"
    return f"[{lo:.3f}, {hi:.3f}]"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table (cells are ``str()``-ed, pipes escaped)."""

    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def _jsonable(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist())
    if isinstance(v, np.generic):
        return _jsonable(v.item())
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if hasattr(v, "to_dict"):
        return _jsonable(v.to_dict())
    return str(v)


def write_report(
    path: str | Path,
    sections: Mapping[str, Any],
    config: Mapping[str, Any],
    seed: int,
    *,
    title: str = "ScaleEarth diagnostics",
    figures: Mapping[str, str | Path] | None = None,
    notes: str = "",
) -> Path:
    """Write the Markdown report at ``path`` and its numbers beside it (``.json``).

    Args:
        path: The ``.md`` file to write (atomically; folders are created).
        sections: Heading -> Markdown text, or a result with ``to_markdown()``; written
            in order. Results with ``to_dict()`` also go to the JSON twin.
        config: The configuration the diagnostics ran with (model, data, sweep,
            probe settings); written as JSON in the report.
        seed: The seed every random draw derived from.
        title: The report's title.
        figures: Caption -> PNG path; embedded (relative to the report when possible).
        notes: Free text after the header (what was run, caveats).

    Returns:
        The report path.
    """
    out = Path(path)
    version = __version__
    commit = git_commit()
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    cfg = _jsonable(dict(config))
    lines = [
        f"# {title}",
        "",
        markdown_table(
            ["earthvlm", "git commit", "seed", "python", "numpy", "written"],
            [[version, commit or "unknown", seed, platform.python_version(), np.__version__, when]],
        ),
        "",
    ]
    if notes:
        lines += [notes.strip(), ""]
    lines += ["## Config", "", "```json", json.dumps(cfg, indent=2, sort_keys=True), "```", ""]
    numbers: dict[str, Any] = {}
    for heading, body in sections.items():
        text = body if isinstance(body, str) else body.to_markdown()
        lines += [f"## {heading}", "", text.strip(), ""]
        if not isinstance(body, str) and hasattr(body, "to_dict"):
            numbers[heading] = _jsonable(body.to_dict())
    if figures:
        lines += ["## Figures", ""]
        for caption, fig in figures.items():
            p = Path(fig)
            try:
                rel = p.resolve().relative_to(out.parent.resolve())
            except ValueError:
                rel = p
            lines += [f"![{caption}]({rel.as_posix()})", "", f"*{caption}*", ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, "\n".join(lines).rstrip() + "\n")
    twin = {
        "title": title,
        "earthvlm_version": version,
        "git_commit": commit,
        "seed": seed,
        "written": when,
        "config": cfg,
        "sections": numbers,
        "figures": {k: str(v) for k, v in (figures or {}).items()},
    }
    atomic_write_text(out.with_suffix(".json"), json.dumps(twin, indent=2) + "\n")
    return out


# -- figures ------------------------------------------------------------------------------


def new_figure(figsize: tuple[float, float] = (7.0, 4.5)) -> Any:
    """A bare matplotlib Figure (no pyplot state), constrained layout."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, dpi=110, layout="constrained")


def save_figure(fig: Any, path: str | Path) -> Path:
    """Save ``fig`` as PNG at ``path`` atomically (folders are created)."""
    out = Path(path)
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    return out


def mark_gsd_axis(
    ax: Any,
    boundaries_m: Sequence[float] = TIER_BOUNDARIES_M,
    *,
    log10: bool = False,
    relative_to_m: float | None = None,
    annotate: bool = True,
    legend: bool = True,
) -> str:
    """Dashed tier boundaries on a GSD axis.

    Args:
        ax: The axes.
        boundaries_m: The boundaries, metres.
        log10: The axis is log10 GSD (else metres, usually on a log scale).
        relative_to_m: The axis is claimed / true GSD for this true GSD (offset sweeps).
        annotate: Name the values (in metres) in the label.
        legend: Label the first line for the legend.

    Returns:
        The label (e.g. ``tier boundaries 0.2, 1, 5 m``), for a caption where the axes
        have no legend. (Values written above the axes collided with their titles.)
    """
    label = "tier boundaries" + (
        f" {', '.join(f'{b:g}' for b in boundaries_m)} m" if annotate else ""
    )
    for j, b in enumerate(boundaries_m):
        x = b / relative_to_m if relative_to_m else b
        x = math.log10(x) if log10 else x
        ax.axvline(x, color="0.55", ls="--", lw=0.9, label=label if legend and j == 0 else None)
    return label
