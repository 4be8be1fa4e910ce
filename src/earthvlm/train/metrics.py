"""What the loop logs beyond the loss: CS-HLoRA gate use per tier group, SSE-U error, JSONL.

* :func:`gate_means`: the mean gate h_k(s) (Eq. 1) over the object, structure and
  semantic rank groups, at the scales the batch's images were conditioned on: a gate
  that does not follow the GSD shows here first.
* :func:`sseu_abs_error`: |mu - log10 g| on the exact-GSD images (SSE-U's regression
  error in log10 units; 0.3 is a factor of 2).
* :class:`MetricsLog`: one JSON line per logged step in the run folder.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from earthvlm.adapters.cshlora import CSHLoRAConfig
from earthvlm.io import atomic_write_text
from earthvlm.scale.gsd import GSD, GSDKind

#: Names of the paper's three rank groups (sec. 3.2: object, structure, semantic ranks).
TIER_GROUPS = ("object", "structure", "semantic")


def rank_groups(config: CSHLoRAConfig) -> list[list[int]]:
    """The ranks of each tier group, as :meth:`CSHLoRAConfig.tau_init` lays them out."""
    total = config.tiers[-1][1]
    groups: list[list[int]] = [[] for _ in config.tiers]
    for k in range(config.r):
        pos = (k + 0.5) * total / config.r
        t = next(i for i, (lo, hi, _) in enumerate(config.tiers) if lo <= pos < hi)
        groups[t].append(k)
    return groups


def group_names(config: CSHLoRAConfig) -> list[str]:
    n = len(config.tiers)
    return list(TIER_GROUPS) if n == 3 else [f"tier{i}" for i in range(n)]


@torch.no_grad()
def gate_means(
    layers: dict[str, Any], s_image: torch.Tensor, config: CSHLoRAConfig
) -> dict[str, float]:
    """Mean gate of each rank group over layers and images: ``{"gate_object": ...}``."""
    if not layers or s_image is None or s_image.numel() == 0:
        return {}
    groups = rank_groups(config)
    names = group_names(config)
    sums = [0.0] * len(groups)
    for layer in layers.values():
        h = layer.gate(s_image.detach().float().to(layer.cshlora_tau.device))  # (n, r)
        for i, ranks in enumerate(groups):
            if ranks:
                sums[i] += float(h[:, ranks].mean())
    return {f"gate_{n}": s / len(layers) for n, s in zip(names, sums, strict=True)}


@torch.no_grad()
def sseu_abs_error(mu: torch.Tensor | None, gsds: Sequence[GSD]) -> tuple[float, int]:
    """Sum of |mu - log10 g| over the exact-GSD images, and their count."""
    if mu is None:
        return 0.0, 0
    total, n = 0.0, 0
    for m, g in zip(mu.detach().float().tolist(), gsds, strict=True):
        if g.kind is GSDKind.EXACT:
            total += abs(m - g.log10_gsd)
            n += 1
    return total, n


class MetricsLog:
    """Appends one JSON object per line to ``metrics.jsonl``.

    On resume, lines of steps after the checkpoint (logged before a crash, then lost)
    are dropped first, so the file reads as one uninterrupted run.
    """

    def __init__(self, path: str | Path, *, keep_through_step: int | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if keep_through_step is not None and self.path.is_file():
            kept = [
                line
                for line in self.path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= keep_through_step
            ]
            atomic_write_text(self.path, "".join(line + "\n" for line in kept))
        elif keep_through_step is None:
            atomic_write_text(self.path, "")

    def write(self, row: dict[str, Any]) -> None:
        clean = {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in row.items()
        }
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(clean, sort_keys=False) + "\n")


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of a run's ``metrics.jsonl``."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


__all__ = [
    "TIER_GROUPS",
    "MetricsLog",
    "gate_means",
    "group_names",
    "rank_groups",
    "read_metrics",
    "sseu_abs_error",
]
