"""The optical + SAR fusion experiment (EarthMind sec. 3.2, Table 4, App. H) on the
synthetic world: HCA vs the baselines, optical-only / SAR-only / fused evaluation split by
clouds, and the modality attention score per layer. ``earthvlm fusion run`` runs it."""

from earthvlm.experiments.fusion.config import METHOD_LABELS, PRESETS, FusionExpConfig, preset
from earthvlm.experiments.fusion.run import FusionExpResult, run_experiment

__all__ = [
    "METHOD_LABELS",
    "PRESETS",
    "FusionExpConfig",
    "FusionExpResult",
    "preset",
    "run_experiment",
]
