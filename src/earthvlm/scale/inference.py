"""The inference-time GSD resolver of ScaleEarth (sec. 3.3, Eq. 5).

    g* = g_meta          if metadata gives a GSD
         10 ** mu        else, if SSE-U is confident (sigma < sigma_tau)
         g0              otherwise (the neutral anchor, 1 m)

with sigma = exp(logvar / 2) in log10-GSD units, sigma_tau = 0.3 (a +-2x interval) and
g0 = 1 m (the boundary between the structure and semantic tiers, so a wrong fallback
degrades gracefully). Each decision reports its branch. A range GSD from metadata is
used at its geometric mean (the evaluation rule of sec. 3.2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from earthvlm.scale.gsd import GSD, GSDSource

SIGMA_TAU = 0.3
NEUTRAL_GSD_M = 1.0


class Branch(StrEnum):
    """Which case of Eq. 5 decided."""

    METADATA = "metadata"
    ESTIMATE = "estimate"
    NEUTRAL = "neutral"


@dataclass(frozen=True)
class ScaleDecision:
    """The GSD a sample is conditioned on, and why."""

    gsd: GSD
    branch: Branch
    mu: float | None = None
    sigma: float | None = None

    @property
    def log10_gsd(self) -> float:
        return self.gsd.log10_gsd


def decide_gsd(
    metadata: GSD | None,
    mu: float | None,
    logvar: float | None,
    *,
    sigma_tau: float = SIGMA_TAU,
    neutral_m: float = NEUTRAL_GSD_M,
) -> ScaleDecision:
    """Eq. 5 for one sample.

    Args:
        metadata: The GSD from metadata (unknown or ``None`` if there is none).
        mu: SSE-U's predicted log10 GSD (``None`` if no head).
        logvar: SSE-U's predicted log variance of log10 GSD.
        sigma_tau: Confidence threshold on sigma.
        neutral_m: The neutral fallback GSD.
    """
    sigma = math.exp(0.5 * logvar) if logvar is not None else None
    if metadata is not None and metadata.is_known:
        return ScaleDecision(metadata, Branch.METADATA, mu, sigma)
    if mu is not None and sigma is not None and math.isfinite(mu) and sigma < sigma_tau:
        g = GSD.exact(
            10.0 ** max(min(mu, 5.0), -3.0), GSDSource.ESTIMATE,
            f"SSE-U mu={mu:.3f}, sigma={sigma:.3f}", sigma_log10=sigma,
        )  # fmt: skip
        return ScaleDecision(g, Branch.ESTIMATE, mu, sigma)
    why = "no estimate" if sigma is None else f"SSE-U unsure (sigma={sigma:.3f} >= {sigma_tau})"
    return ScaleDecision(
        GSD.exact(neutral_m, GSDSource.DEFAULT, f"neutral fallback: {why}"),
        Branch.NEUTRAL,
        mu,
        sigma,
    )


def spoofed(gsd_m: float, deltas: list[float]) -> list[float]:
    """GSD spoofing (App. A.3): ``g * 10 ** delta`` for each offset."""
    return [gsd_m * 10.0**d for d in deltas]
