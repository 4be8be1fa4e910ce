"""GSD tiers as in ScaleEarth: high (< 0.2 m), mid (0.2-1 m), low (>= 1 m), low split in A/B.

ScaleEarth sec. 2 organises its data by three tiers aligned with the CS-HLoRA anchor
groups (object, structure, semantic) and reports the low tier as low-A and low-B
(Fig. 2b); the paper does not state the A/B boundary, so it is configurable here
(default 5 m, between VHR-derived products and Sentinel-2/Landsat). Ranges are tiered
by their geometric mean, the statistic the resolver uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from earthvlm.scale.gsd import GSD, check_gsd_m


class Tier(StrEnum):
    """A GSD tier. ``coarse`` folds low-A and low-B into ``low``."""

    HIGH = "high"
    MID = "mid"
    LOW_A = "low-a"
    LOW_B = "low-b"

    @property
    def coarse(self) -> str:
        """The three-tier name: ``high``, ``mid`` or ``low``."""
        return "low" if self in (Tier.LOW_A, Tier.LOW_B) else self.value


@dataclass(frozen=True)
class TierScheme:
    """Tier boundaries in metres per pixel (each boundary belongs to the coarser tier).

    Attributes:
        high_max_m: Upper bound of the high tier (exclusive). ScaleEarth: 0.2 m.
        mid_max_m: Upper bound of the mid tier (exclusive). ScaleEarth: 1.0 m.
        low_split_m: Boundary between low-A and low-B. Not given by the paper; 5 m.
    """

    high_max_m: float = 0.2
    mid_max_m: float = 1.0
    low_split_m: float = 5.0

    def __post_init__(self) -> None:
        for name in ("high_max_m", "mid_max_m", "low_split_m"):
            check_gsd_m(getattr(self, name), source=f"TierScheme.{name}")
        if not self.high_max_m < self.mid_max_m < self.low_split_m:
            raise ValueError(
                "TierScheme boundaries must increase: high_max_m < mid_max_m < low_split_m, "
                f"got {self.high_max_m}, {self.mid_max_m}, {self.low_split_m}"
            )

    def tier_of_m(self, gsd_m: float) -> Tier:
        """The tier of a GSD in metres per pixel."""
        g = check_gsd_m(gsd_m, source="tier_of_m")
        if g < self.high_max_m:
            return Tier.HIGH
        if g < self.mid_max_m:
            return Tier.MID
        return Tier.LOW_A if g < self.low_split_m else Tier.LOW_B

    def tier_of(self, gsd: GSD) -> Tier | None:
        """The tier of a GSD value (a range by its geometric mean); ``None`` when unknown."""
        return self.tier_of_m(gsd.point_m) if gsd.is_known else None


#: The ScaleEarth tiers with the default low-A / low-B split at 5 m.
DEFAULT_TIERS = TierScheme()


def tier_of(gsd: GSD | float, scheme: TierScheme = DEFAULT_TIERS) -> Tier | None:
    """The tier of a :class:`GSD` or of a number of metres per pixel (``None`` if unknown)."""
    if isinstance(gsd, GSD):
        return scheme.tier_of(gsd)
    return scheme.tier_of_m(gsd)
