"""Diagnostics that show whether the scale mechanism works, on any trained model.

Each is a pure function over data and a small interface to the model, so it runs on a
7B checkpoint and in a unit test alike; each result has ``to_markdown()`` and
``to_dict()`` for :func:`write_report`, and a ``plot_*`` function that writes a PNG.

* :mod:`.spoof`: GSD spoofing (ScaleEarth App. A.3): accuracy over claimed GSDs with
  bootstrap CIs on a class-balanced subset, flips within ambiguous pairs.
* :mod:`.gates`: learned gate curves h_k(s) per tier group (Fig. 8d); the hook that
  records the CS-HLoRA bottleneck for the probe. (The only module that uses torch, and
  only inside the functions that read a model.)
* :mod:`.calibration`: SSE-U calibration ratio, reliability, resolver branches, sigma
  with and without scale cues.
* :mod:`.probe`: per-rank ridge probes to texture, geometry and scene identity (App. A.4).
* :mod:`.factors`: Gabor energy and Canny edge density in numpy.
* :mod:`.report`: the Markdown report (with a JSON twin) and shared figure helpers.

Importing this package imports neither torch nor matplotlib.
"""

from earthvlm.eval.diagnostics.calibration import (
    GAUSSIAN_RATIO,
    CalibrationStats,
    plot_calibration,
    sseu_calibration,
)
from earthvlm.eval.diagnostics.factors import (
    canny_edge_density,
    canny_edges,
    factor_config,
    gabor_energy,
    image_factors,
)
from earthvlm.eval.diagnostics.gates import (
    BottleneckRecorder,
    GateCurves,
    bottleneck_layer,
    gate_curves,
    gate_curves_from_params,
    plot_gate_curves,
    rank_groups,
)
from earthvlm.eval.diagnostics.probe import ProbeResult, plot_probe_heatmap, rank_probe
from earthvlm.eval.diagnostics.report import TIER_BOUNDARIES_M, write_report
from earthvlm.eval.diagnostics.spoof import (
    PAPER_SPOOF_DELTAS,
    PAPER_SPOOF_GSDS_M,
    SpoofCurve,
    SpoofSample,
    balanced_subset,
    bootstrap_ci,
    plot_spoof_curves,
    spoof_curve,
)

__all__ = [
    "GAUSSIAN_RATIO",
    "PAPER_SPOOF_DELTAS",
    "PAPER_SPOOF_GSDS_M",
    "TIER_BOUNDARIES_M",
    "BottleneckRecorder",
    "CalibrationStats",
    "GateCurves",
    "ProbeResult",
    "SpoofCurve",
    "SpoofSample",
    "balanced_subset",
    "bootstrap_ci",
    "bottleneck_layer",
    "canny_edge_density",
    "canny_edges",
    "factor_config",
    "gabor_energy",
    "gate_curves",
    "gate_curves_from_params",
    "image_factors",
    "plot_calibration",
    "plot_gate_curves",
    "plot_probe_heatmap",
    "plot_spoof_curves",
    "rank_groups",
    "rank_probe",
    "spoof_curve",
    "sseu_calibration",
    "write_report",
]
