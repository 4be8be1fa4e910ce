"""Micro-ScaleEarth: the scale experiment on a laptop, and the quickstart's main job.

:func:`run_experiment` trains a tiny Qwen-VL without GSD (stage 1), then the stage-2
variants B2 (LoRA), B3 (GSD as text), B4 (MoE-LoRA) and CS-HLoRA + SSE-U from the same
checkpoint with the same data and budget, runs every diagnostic (spoofing, gates,
calibration, rank probe) and writes a report with figures whose claims are checked on
the measured numbers. :func:`preset` gives the ``quick``, ``full`` and ``ci`` settings.
"""

from earthvlm.experiments.micro.config import PRESETS, VARIANTS, MicroConfig, Variant, preset
from earthvlm.experiments.micro.report import check_claims, write_experiment_report
from earthvlm.experiments.micro.run import ExperimentResult, ModelResult, run_experiment

__all__ = [
    "PRESETS",
    "VARIANTS",
    "ExperimentResult",
    "MicroConfig",
    "ModelResult",
    "Variant",
    "check_claims",
    "preset",
    "run_experiment",
    "write_experiment_report",
]
